"""UART receiver and transmitter with stream ports: 8 data bits, no parity, 1 stop bit (8N1).

Stream contract
---------------
- `UartRx.o`: one byte per character received on the `rx` pin, in arrival order. A serial line
  cannot be paused, so `o` must be drained faster than characters arrive (one per
  10 * `divisor` clocks); a byte still unread when the next one completes is replaced and
  `overrun` pulses. A character whose stop bit reads 0 is dropped and `framing_error` pulses
  (a break or a baud rate mismatch).
- `UartTx.i`: one byte per character sent on the `tx` pin; `i.ready` is high while the
  transmitter is idle and in the last clock of a stop bit, so a steady stream of bytes goes out
  back to back, one every 10 * `divisor` clocks.

`divisor` = round(clk_freq / baud) clocks per bit; the rate error this leaves must stay below
about 2 % for the receiver's mid-bit sampling (`uart_divisor` checks it).

The receiver synchronizes `rx` through two flip-flops, waits for a falling edge, confirms the start
bit half a bit later (a glitch shorter than that is ignored) and then samples every bit in its
middle. Latency from the middle of the stop bit to `o.valid`: one clock.
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MAX_RATE_ERROR = 0.02


def uart_divisor(clk_freq: float, baud: int) -> int:
    """Clocks per bit for `baud` at `clk_freq`; ValueError when the rate cannot be made closely."""
    divisor = round(clk_freq / baud)
    if divisor < 4:
        raise ValueError(f"{baud} baud needs at least 4 clocks per bit; {clk_freq / 1e6:g} MHz "
                         f"gives {clk_freq / baud:.2f}")
    error = abs(clk_freq / divisor - baud) / baud
    if error > MAX_RATE_ERROR:
        raise ValueError(f"{baud} baud at {clk_freq / 1e6:g} MHz is off by {error:.1%} "
                         f"(divisor {divisor}); choose another rate or clock")
    return divisor


class UartRx(wiring.Component):
    """Serial `rx` pin in, bytes on `o` (see the module docstring)."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"divisor must be at least 4, not {divisor}")
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "overrun": Out(1),
            "framing_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()

        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor))
        bit = Signal(range(8))
        shreg = Signal(8)

        m.d.comb += [self.overrun.eq(0), self.framing_error.eq(0)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"      # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    # LSB first: shift right, the new bit enters at the top.
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(self.divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.d.comb += self.overrun.eq(self.o.valid & ~self.o.ready)
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                    # Back to IDLE in the middle of the stop bit: the next start edge may come
                    # half a bit early without being missed.
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Bytes on `i` out, serial `tx` pin (see the module docstring)."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"divisor must be at least 4, not {divisor}")
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()

        timer = Signal(range(self.divisor))
        # Start bit, 8 data bits LSB first, stop bit; shifted out bit 0 first, ones behind.
        shreg = Signal(10, init=0x3FF)
        remaining = Signal(range(11))

        # Ready when idle, or in the last clock of a stop bit: bytes then go out back to back,
        # one every 10 * divisor clocks, as fast as a receiver at the same rate delivers them.
        m.d.comb += self.i.ready.eq((remaining == 0) | ((remaining == 1) & (timer == 0)))
        m.d.sync += self.tx.eq(shreg[0])

        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq((self.i.payload << 1) | (1 << 9)), remaining.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(remaining != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shreg.eq((shreg >> 1) | (1 << 9)), remaining.eq(remaining - 1),
                             timer.eq(self.divisor - 1)]
        return m
