"""Forward and inverse channel transform, block-diagonal over groups of N channels.

docs/FORMAT.md, "Transform", is the definition:

    forward   y[gN+i]  = sclamp(round_shift(sum_j T[g][i][j] * (x[gN+j] - mu[gN+j]), F), 24)
    inverse   xh[gN+j] = clamp(round_shift(sum_i T[g][i][j] * yh[gN+i], F) + mu[gN+j], lo, hi)

Stream contract (both blocks)
-----------------------------
- `i`: `framed(in_width)` values of whole pixels in component order (`comp` = 0..C-1), as the
  Framer, the Quantizer or the Dequantizer produce them. C must be a multiple of N.
- `o`: `framed(out_width)`, one value per input value, same `comp` order; `tile_last` comes out on
  the value that has the same `comp` as the input value that carried it (the last of a pixel).
- `cfg`: coefficients (region 0), offsets (region 1), F (global 2), ReLU (global 5, inverse only).
  `error` is high while the last C (global 0) or N (global 1) written does not suit this
  instance (N differs from the elaborated `group`; C is 0, not a multiple of N or above
  `max_channels`), and after a commit (global 7) of a configuration that wrote a coefficient
  or an offset that does not fit `coeff_width` / `offset_width` bits, or an index beyond
  `max_channels`; such writes are dropped, and the output would differ from the golden model.

Throughput one value per clock sustained: N multipliers, one per output of a group, accumulate all
N sums of a group while its N inputs arrive (input j multiplies column j of T[g] in the forward
block, row i in the inverse one); the finished N sums move to an output buffer and are shifted out
one per clock while the next group accumulates. The round-half-up constant of `round_shift` is the
accumulators' initial value, so the output side is only an arithmetic shift and a clamp.

Latency: the first value of a group leaves 6 clocks (forward) or 7 clocks (inverse) after the last
value of that group entered (with `o.ready` high). Back-pressure stalls the input only when a
finished group finds the output buffer still busy.

N must be a power of two (8 or 16 typically): the coefficient write address and the position in
the group are then bit fields of the index.
"""

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from hw.config import (
    GLOBAL_CHANNELS,
    GLOBAL_COMMIT,
    GLOBAL_FRAC_BITS,
    GLOBAL_GROUP,
    GLOBAL_RELU,
    REGION_COEFF,
    REGION_GLOBAL,
    REGION_OFFSET,
    config_signature,
    index,
    region,
)
from hw.framing import COMP_BITS, framed

Y_BITS = 24          # transform output and dequantizer output width (FORMAT.md)
FRAC_BITS_WIDTH = 5  # F register; profiles use 0..16

DTYPES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def _sclamp(value, bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


class _GroupTransform(wiring.Component):
    """The shared datapath: config decode, MAC front end and output buffer.

    `transposed` selects how a coefficient write `(g*N + i)*N + j` lands in the N coefficient
    memories: memory `m`, address `a` such that the value entering with `comp = a` multiplies
    into accumulator `m`. Forward: `m = i`, `a = g*N + j`; inverse: `m = j`, `a = g*N + i`.
    """

    def __init__(self, *, in_width, out_width, group, max_channels, coeff_width, offset_width,
                 transposed):
        if group < 1 or group & (group - 1):
            raise ValueError(f"group size {group} must be a power of two")
        if max_channels % group or max_channels > 1 << COMP_BITS:
            raise ValueError(f"max_channels {max_channels} must be a multiple of the group size "
                             f"and at most {1 << COMP_BITS}")
        self.in_width = in_width
        self.out_width = out_width
        self.group = group
        self.max_channels = max_channels
        self.coeff_width = coeff_width
        self.offset_width = offset_width
        self._transposed = transposed
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(framed(in_width))),
            "o": Out(stream.Signature(framed(out_width))),
            "error": Out(1),
        })

    # Width of the value that enters the multipliers (after the forward offset subtraction).
    def _mac_input_width(self):
        raise NotImplementedError

    def _acc_width(self):
        # Sum of N products of `coeff_width`-bit and `_mac_input_width()`-bit signed values, plus
        # one bit for the rounding constant.
        return self.coeff_width + self._mac_input_width() + exact_log2(self.group) + 1

    def elaborate(self, platform):
        m = Module()
        N, L = self.group, exact_log2(self.group)
        cfg = self.cfg
        acc_width = self._acc_width()

        # -- configuration -----------------------------------------------------------------
        self.frac_bits = Signal(FRAC_BITS_WIDTH)
        self.relu = Signal()
        n_bad = Signal()
        c_bad = Signal()
        # A table write that this instance cannot hold; reported once the configuration commits.
        range_pending = Signal()
        range_bad = Signal()
        m.d.comb += self.error.eq(n_bad | c_bad | range_bad)
        cfg_region = region(cfg.payload.addr)
        cfg_index = index(cfg.payload.addr)
        cfg_data = cfg.payload.data
        with m.If(cfg.valid & (cfg_region == REGION_GLOBAL)):
            with m.Switch(cfg_index):
                with m.Case(GLOBAL_GROUP):
                    m.d.sync += n_bad.eq(cfg_data != N)
                with m.Case(GLOBAL_CHANNELS):
                    m.d.sync += c_bad.eq((cfg_data == 0) | (cfg_data[:L] != 0)
                                         | (cfg_data > self.max_channels))
                with m.Case(GLOBAL_FRAC_BITS):
                    m.d.sync += self.frac_bits.eq(cfg_data)
                with m.Case(GLOBAL_RELU):
                    m.d.sync += self.relu.eq(cfg_data[0])
                with m.Case(GLOBAL_COMMIT):
                    m.d.sync += [range_bad.eq(range_pending), range_pending.eq(0)]

        def fits(width):
            top = cfg_data[width - 1:]
            return (top == 0) | (top == (1 << len(top)) - 1)

        coeff_mems = []
        coeff_reads = []
        if self._transposed:
            coeff_sel = cfg_index[:L]
            coeff_addr = cfg_index[L:]
        else:
            coeff_sel = cfg_index[L:2 * L]
            coeff_addr = (cfg_index[2 * L:] << L) | cfg_index[:L]
        coeff_in_range = cfg_index < self.max_channels * N
        offset_in_range = cfg_index < self.max_channels
        with m.If(cfg.valid & (cfg_region == REGION_COEFF)
                  & ~(coeff_in_range & fits(self.coeff_width))):
            m.d.sync += range_pending.eq(1)
        with m.If(cfg.valid & (cfg_region == REGION_OFFSET)
                  & ~(offset_in_range & fits(self.offset_width))):
            m.d.sync += range_pending.eq(1)
        for k in range(N):
            mem = Memory(shape=signed(self.coeff_width), depth=self.max_channels, init=[])
            m.submodules[f"coeff{k}"] = mem
            wp = mem.write_port()
            m.d.comb += [
                wp.addr.eq(coeff_addr),
                wp.data.eq(cfg_data),
                wp.en.eq(cfg.valid & (cfg_region == REGION_COEFF) & coeff_in_range
                     & fits(self.coeff_width) & (coeff_sel == k)),
            ]
            coeff_mems.append(mem)
            coeff_reads.append(mem.read_port())

        offsets = Memory(shape=signed(self.offset_width), depth=self.max_channels, init=[])
        m.submodules.offsets = offsets
        wp = offsets.write_port()
        m.d.comb += [
            wp.addr.eq(cfg_index),
            wp.data.eq(cfg_data),
            wp.en.eq(cfg.valid & (cfg_region == REGION_OFFSET) & offset_in_range
                     & fits(self.offset_width)),
        ]
        offset_read = offsets.read_port()

        # -- front end: offsets, multipliers, accumulators -----------------------------------
        # Stage 1 holds the accepted value while the offset memory answers; stage 2 the MAC input
        # while the coefficient memories answer; stage 3 the N products. All three move together
        # on `en_f`, which drops only when stage 3 finishes a group that the output buffer cannot
        # take yet.
        en_f = Signal()
        en_o = Signal()
        m.d.comb += self.i.ready.eq(en_f)

        v1 = Signal()
        x1 = Signal(signed(self.in_width))
        comp1 = Signal(COMP_BITS)
        tl1 = Signal()
        with m.If(en_f):
            m.d.sync += [
                v1.eq(self.i.valid),
                x1.eq(self.i.payload.data),
                comp1.eq(self.i.payload.comp),
                tl1.eq(self.i.payload.tile_last),
            ]

        mac_in = Signal(signed(self._mac_input_width()))
        self._mac_input(m, x1, comp1, offset_read, en_f, mac_in)

        v2 = Signal()
        d2 = Signal(signed(self._mac_input_width()))
        comp2 = Signal(COMP_BITS)
        tl2 = Signal()
        for rp in coeff_reads:
            m.d.comb += [rp.addr.eq(comp1), rp.en.eq(en_f)]
        with m.If(en_f):
            m.d.sync += [v2.eq(v1), d2.eq(mac_in), comp2.eq(comp1), tl2.eq(tl1)]

        prod_width = self.coeff_width + self._mac_input_width()
        v3 = Signal()
        p3 = [Signal(signed(prod_width), name=f"p3_{k}") for k in range(N)]
        comp3 = Signal(COMP_BITS)
        tl3 = Signal()
        with m.If(en_f):
            m.d.sync += [v3.eq(v2), comp3.eq(comp2), tl3.eq(tl2)]
            m.d.sync += [p.eq(rp.data * d2) for p, rp in zip(p3, coeff_reads, strict=True)]

        first3 = comp3[:L] == 0
        end3 = comp3[:L] == N - 1
        round_const = Signal(signed(acc_width))
        m.d.comb += round_const.eq((1 << self.frac_bits) >> 1)
        acc = [Signal(signed(acc_width), name=f"acc{k}") for k in range(N)]
        total = [Signal(signed(acc_width), name=f"total{k}") for k in range(N)]
        for a, t, p in zip(acc, total, p3, strict=True):
            m.d.comb += t.eq(Mux(first3, round_const, a) + p)
            with m.If(v3 & en_f):
                m.d.sync += a.eq(t)

        # -- output buffer -----------------------------------------------------------------
        buf = [Signal(signed(acc_width), name=f"buf{k}") for k in range(N)]
        buf_valid = Signal()
        buf_idx = Signal(max(L, 1))
        buf_base = Signal(COMP_BITS)
        buf_tl = Signal()
        pop = buf_valid & en_o
        pop_last = pop & (buf_idx == N - 1)
        buf_can_load = ~buf_valid | pop_last
        m.d.comb += en_f.eq(~(v3 & end3 & ~buf_can_load))

        with m.If(pop):
            m.d.sync += buf_idx.eq(buf_idx + 1)
            with m.If(buf_idx == N - 1):
                m.d.sync += buf_valid.eq(0)
        with m.If(v3 & end3 & buf_can_load):
            m.d.sync += [
                buf_valid.eq(1),
                buf_idx.eq(0),
                buf_base.eq(comp3 & ~(N - 1)),
                buf_tl.eq(tl3),
            ]
            m.d.sync += [b.eq(t) for b, t in zip(buf, total, strict=True)]

        # -- output pipeline: stage A shifts, then the block's own tail --------------------
        # Every output stage moves on `en_o`, so payload and valid hold while `o.ready` is low.
        m.d.comb += en_o.eq(~self.o.valid | self.o.ready)
        va = Signal()
        sa = Signal(signed(acc_width))
        compa = Signal(COMP_BITS)
        tla = Signal()
        out_comp = buf_base | buf_idx
        with m.If(en_o):
            m.d.sync += [
                va.eq(buf_valid),
                sa.eq(Array(buf)[buf_idx] >> self.frac_bits),
                compa.eq(out_comp),
                tla.eq(buf_tl & (buf_idx == N - 1)),
            ]
        self._output(m, en_o, va, sa, compa, tla, out_comp, offset_read)
        return m


class Transform(_GroupTransform):
    """Forward transform: `framed(in_width)` in, `framed(24)` out (see the module docstring).

    Parameters: `in_width` (signed input width, 9 for uint8 data), `group` (N, a power of two),
    `max_channels` (depth of the coefficient and offset memories), `coeff_width` (signed
    coefficient width, 18 fits every profile), `offset_width` (signed offset width).
    """

    def __init__(self, in_width: int = 8, group: int = 8, max_channels: int = 512,
                 coeff_width: int = 18, offset_width: int = 17):
        super().__init__(in_width=in_width, out_width=Y_BITS, group=group,
                         max_channels=max_channels, coeff_width=coeff_width,
                         offset_width=offset_width, transposed=False)

    def _mac_input_width(self):
        return max(self.in_width, self.offset_width) + 1

    def _mac_input(self, m, x1, comp1, offset_read, en_f, mac_in):
        m.d.comb += [
            offset_read.addr.eq(self.i.payload.comp),
            offset_read.en.eq(en_f),
            mac_in.eq(x1 - offset_read.data),
        ]

    def _output(self, m, en_o, va, sa, compa, tla, out_comp, offset_read):
        with m.If(en_o):
            m.d.sync += [
                self.o.valid.eq(va),
                self.o.payload.data.eq(_sclamp(sa, Y_BITS)),
                self.o.payload.comp.eq(compa),
                self.o.payload.tile_last.eq(tla),
            ]


class InverseTransform(_GroupTransform):
    """Inverse transform: `framed(in_width)` (24) in, `framed(out_width)` out, optional ReLU.

    Parameters: `dtype` ("int8", "uint8" or "int16": the output range, and `out_width` 8, 9 or 16
    since framed data is signed), `group`, `max_channels`, `in_width`, `coeff_width`,
    `offset_width` as for `Transform`.
    """

    def __init__(self, dtype: str = "int8", group: int = 8, max_channels: int = 512,
                 in_width: int = Y_BITS, coeff_width: int = 18, offset_width: int = 17):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} (expected one of {tuple(DTYPES)})")
        self.dtype = dtype
        self.lo, self.hi = DTYPES[dtype]
        out_width = max(self.hi.bit_length(), (-self.lo - 1).bit_length()) + 1
        super().__init__(in_width=in_width, out_width=out_width, group=group,
                         max_channels=max_channels, coeff_width=coeff_width,
                         offset_width=offset_width, transposed=True)

    def _mac_input_width(self):
        return self.in_width

    def _mac_input(self, m, x1, comp1, offset_read, en_f, mac_in):
        m.d.comb += mac_in.eq(x1)

    def _output(self, m, en_o, va, sa, compa, tla, out_comp, offset_read):
        # The offset of the output channel is read while stage A shifts; stage B adds it and the
        # output register clamps, which keeps the add and the compare in separate clocks.
        m.d.comb += [offset_read.addr.eq(out_comp), offset_read.en.eq(en_o)]
        vb = Signal()
        sb = Signal(signed(len(sa) + 1))
        compb = Signal(COMP_BITS)
        tlb = Signal()
        with m.If(en_o):
            m.d.sync += [vb.eq(va), sb.eq(sa + offset_read.data), compb.eq(compa), tlb.eq(tla)]
        lo = Mux(self.relu, max(self.lo, 0), self.lo)
        with m.If(en_o):
            m.d.sync += [
                self.o.valid.eq(vb),
                self.o.payload.data.eq(Mux(sb > self.hi, self.hi, Mux(sb < lo, lo, sb))),
                self.o.payload.comp.eq(compb),
                self.o.payload.tile_last.eq(tlb),
            ]
