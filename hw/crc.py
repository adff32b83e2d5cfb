"""CRC-32 (zlib's `crc32`) over a word of any width per clock.

The tile header check of docs/FORMAT.md is zlib's CRC-32 over the payload bytes followed by the
four little-endian bytes of header bits 0..31. zlib's CRC is bit-reflected: each byte is shifted
in least significant bit first. A little-endian word therefore enters in plain bit order, bit 0
first, so a `width`-bit step is the serial update applied to bits 0, 1, ..., width-1 of the word.
That update is linear over GF(2) in (state, data); the matrix is computed here in Python at
elaboration and becomes one XOR tree per state bit.

Two ways to use it:

- `crc32_next(state, data)`: the combinational next state (an Amaranth value) after `data`,
  without the initial value or the final inversion. Start from `CRC32_INIT`; the CRC of the bytes
  is `state ^ CRC32_XOROUT`.
- `Crc32(data_width)`: a register around it. `clear` restarts, `valid` absorbs `data` (both in
  one clock: restart, then absorb), `crc` is the finished CRC of everything absorbed since the
  last clear, i.e. `zlib.crc32(bytes)` of the words in little-endian order. One word per clock,
  `crc` valid the clock after the last `valid`.
"""

from functools import cache

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

CRC32_POLY = 0xEDB88320  # zlib's polynomial, reflected
CRC32_INIT = 0xFFFFFFFF
CRC32_XOROUT = 0xFFFFFFFF


def crc32_serial(state: int, data: int, width: int) -> int:
    """The defining bit-serial update in plain Python: `width` bits of `data`, bit 0 first."""
    for b in range(width):
        fb = (state ^ (data >> b)) & 1
        state = (state >> 1) ^ (CRC32_POLY if fb else 0)
    return state


@cache
def crc32_matrix(width: int) -> tuple[tuple[int, int], ...]:
    """Per next-state bit `i`: `(state_mask, data_mask)`, the state and data bits whose XOR is
    bit `i` after a `width`-bit step (the update is linear, so unit vectors give the columns)."""
    if width < 1:
        raise ValueError("CRC step width must be at least 1")
    state_cols = [crc32_serial(1 << j, 0, width) for j in range(32)]
    data_cols = [crc32_serial(0, 1 << j, width) for j in range(width)]
    rows = []
    for i in range(32):
        smask = sum(1 << j for j in range(32) if state_cols[j] >> i & 1)
        dmask = sum(1 << j for j in range(width) if data_cols[j] >> i & 1)
        rows.append((smask, dmask))
    return tuple(rows)


def _xor_of(value: Value, mask: int) -> Value:
    bits = [value[j] for j in range(len(value)) if mask >> j & 1]
    return Cat(*bits).xor() if bits else Const(0, 1)


def crc32_next(state, data) -> Value:
    """Combinational CRC-32 state after absorbing all of `data` (width = `len(data)`).

    Pass signals (or slices of them): every output bit reads its own subset of input bits, so an
    expression given here would be repeated once per use in the generated netlist."""
    state, data = Value.cast(state), Value.cast(data)
    if len(state) != 32:
        raise ValueError("CRC-32 state must be 32 bits wide")
    rows = crc32_matrix(len(data))
    return Cat(*(_xor_of(state, sm) ^ _xor_of(data, dm) for sm, dm in rows))


class Crc32(wiring.Component):
    """Running CRC-32 over `data_width`-bit words (see the module docstring).

    Ports: `clear` (In 1), `valid` (In 1), `data` (In data_width), `crc` (Out 32, finished CRC).
    """

    def __init__(self, data_width: int = 64):
        self.data_width = int(data_width)
        crc32_matrix(self.data_width)  # reject a bad width at construction
        super().__init__({
            "clear": In(1),
            "valid": In(1),
            "data": In(self.data_width),
            "crc": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=CRC32_INIT)
        start = Signal(32)
        m.d.comb += start.eq(Mux(self.clear, CRC32_INIT, state))
        with m.If(self.valid):
            m.d.sync += state.eq(crc32_next(start, self.data))
        with m.Elif(self.clear):
            m.d.sync += state.eq(CRC32_INIT)
        m.d.comb += self.crc.eq(state ^ CRC32_XOROUT)
        return m
