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
block, row i in the inverse one); the finished N sums move to one of two output slots and are
shifted out one per clock while the next groups accumulate. The round-half-up constant of
`round_shift` is the accumulators' initial value, so the output side is a selection, an
arithmetic shift and a clamp (the inverse adds the offset before the clamp).

Pipeline: front end (all stages move together on `i.ready`): 1 accept (the offset memory
answers), 2 offset register (the coefficient memories answer), 3 offset subtraction and
coefficient register, 4 products, 5 accumulation. The inverse's 24-bit inputs are wider than the
18 x 18 DSP multipliers, so there stage 4 multiplies two halves and stage 5 sums them, and the
accumulation is stage 6. Every memory output is registered before it feeds logic, and `i.ready`
depends on registered state only (it drops only while a finished group finds both output slots
full), so no combinational path runs from `o.ready` to `i.ready`. Output side (each stage takes a
value when it is empty or its value moves on): A select, B shift, then the clamp into `o`
(forward) or C offset add, then the clamp into `o` (inverse).

Latency: the first value of a group leaves 8 clocks (forward) or 10 clocks (inverse) after the
last value of that group entered, with `o.ready` high; a whole tensor of V values takes V + N + 7
(forward) or V + N + 9 (inverse) clocks.

N must be a power of two (8 or 16 typically): the coefficient write address and the position in
the group are then bit fields of the index.
"""

from amaranth import Array, Module, Mux, Signal, Value, signed
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
DSP_WIDTH = 18       # the FPGA multipliers' signed operand width (ECP5 MULT18X18D)

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
        prod_width = self.coeff_width + self._mac_input_width()
        en_f = Signal()   # the whole front end moves
        m.d.comb += self.i.ready.eq(en_f)

        def front(k, **values):
            regs = {name: Signal(Value.cast(val).shape(), name=f"{name}{k}")
                    for name, val in values.items()}
            with m.If(en_f):
                m.d.sync += [regs[name].eq(val) for name, val in values.items()]
            return regs

        # Offsets are read at the input (forward) or at the output (inverse), by one port.
        if self._offsets_at_input:
            m.d.comb += [offset_read.addr.eq(self.i.payload.comp), offset_read.en.eq(en_f)]
        s1 = front(1, v=self.i.valid, x=self.i.payload.data, comp=self.i.payload.comp,
                   tl=self.i.payload.tile_last)
        for rp in coeff_reads:
            m.d.comb += [rp.addr.eq(s1["comp"]), rp.en.eq(en_f)]
        s2 = front(2, v=s1["v"], x=s1["x"], mu=offset_read.data, comp=s1["comp"], tl=s1["tl"])
        mac_in = Signal(signed(self._mac_input_width()))
        m.d.comb += mac_in.eq(s2["x"] - s2["mu"] if self._offsets_at_input else s2["x"])
        s3 = front(3, v=s2["v"], d=mac_in, comp=s2["comp"], tl=s2["tl"],
                   **{f"c{k}": rp.data for k, rp in enumerate(coeff_reads)})
        products = [Signal(signed(prod_width), name=f"product{k}") for k in range(N)]
        d = s3["d"]

        def position(comp):
            # Decoded a clock early: `first` fans out to every accumulator bit.
            return {"first": comp[:L] == 0, "end": comp[:L] == N - 1}

        if len(d) <= DSP_WIDTH:
            # Stage 4: the products.
            m.d.comb += [p.eq(s3[f"c{k}"] * d) for k, p in enumerate(products)]
            sp = front(4, v=s3["v"], comp=s3["comp"], tl=s3["tl"], **position(s3["comp"]),
                       **{f"p{k}": p for k, p in enumerate(products)})
        else:
            # A MAC input wider than the DSP multipliers (the inverse's 24-bit yh) is multiplied
            # in two halves, each within an 18 x 18 multiplier (stage 4), and the halves are
            # summed in a clock of their own (stage 5).
            split = len(d) // 2
            halves = {}
            for k in range(N):
                halves[f"lo{k}"] = s3[f"c{k}"] * d[:split]
                halves[f"hi{k}"] = s3[f"c{k}"] * d[split:].as_signed()
            s4 = front(4, v=s3["v"], comp=s3["comp"], tl=s3["tl"], **halves)
            m.d.comb += [p.eq((s4[f"hi{k}"] << split) + s4[f"lo{k}"])
                         for k, p in enumerate(products)]
            sp = front(5, v=s4["v"], comp=s4["comp"], tl=s4["tl"], **position(s4["comp"]),
                       **{f"p{k}": p for k, p in enumerate(products)})

        # Accumulate; the group's last input completes all N sums at once.
        first = sp["first"]
        end = sp["v"] & sp["end"]
        # The rounding constant comes from a register (a clock after F is written; values come
        # many clocks after the configuration), so F's decode does not run on into the adders.
        round_const = Signal(signed(acc_width))
        m.d.sync += round_const.eq((1 << self.frac_bits) >> 1)
        acc = [Signal(signed(acc_width), name=f"acc{k}") for k in range(N)]
        total = [Signal(signed(acc_width), name=f"total{k}") for k in range(N)]
        for k, (a, t) in enumerate(zip(acc, total, strict=True)):
            m.d.comb += t.eq(Mux(first, round_const, a) + sp[f"p{k}"])
            with m.If(sp["v"] & en_f):
                m.d.sync += a.eq(t)

        # -- two output slots --------------------------------------------------------------
        # A finished group goes to the write slot; the output drains the read slot. With two
        # slots the front end can decide from registered state alone: at full rate a slot has
        # been drained N clocks before the group after next needs it.
        slot = [[Signal(signed(acc_width), name=f"slot{s}_{k}") for k in range(N)]
                for s in range(2)]
        slot_valid = Signal(2)
        slot_base = Array(Signal(COMP_BITS, name=f"slot{s}_base") for s in range(2))
        slot_tl = Signal(2)
        wr, rd = Signal(), Signal()
        idx = Signal(max(L, 1))
        m.d.comb += en_f.eq(~(end & slot_valid.bit_select(wr, 1)))

        with m.If(end & en_f):
            m.d.sync += [wr.eq(~wr), slot_valid.bit_select(wr, 1).eq(1),
                         slot_base[wr].eq(sp["comp"] & ~(N - 1)),
                         slot_tl.bit_select(wr, 1).eq(sp["tl"])]
            for s in range(2):
                with m.If(wr == s):
                    m.d.sync += [b.eq(t) for b, t in zip(slot[s], total, strict=True)]

        # -- output pipeline -----------------------------------------------------------------
        # Stage k takes a value when it is empty or its value moves on; `en_out` is the output
        # register's, so payload and valid hold while `o.ready` is low.
        en_out = Signal()
        m.d.comb += en_out.eq(~self.o.valid | self.o.ready)
        stages = self._output_stages
        v_out = [Signal(name=f"v_{name}") for name in stages]
        en = [Signal(name=f"en_{name}") for name in stages] + [en_out]
        for k in range(len(stages)):
            m.d.comb += en[k].eq(~v_out[k] | en[k + 1])

        def out_stage(k, valid, **values):
            regs = {name: Signal(Value.cast(val).shape(), name=f"{name}_{stages[k]}")
                    for name, val in values.items()}
            with m.If(en[k]):
                m.d.sync += v_out[k].eq(valid)
                m.d.sync += [regs[name].eq(val) for name, val in values.items()]
            return v_out[k], regs

        # Stage A: select the value (a 2N:1 multiplexer, alone in its clock).
        pop = en[0] & slot_valid.bit_select(rd, 1)
        last = idx == N - 1
        with m.If(pop):
            m.d.sync += idx.eq(idx + 1)
            with m.If(last):
                m.d.sync += [rd.eq(~rd), slot_valid.bit_select(rd, 1).eq(0)]
        # A slot loaded and drained in the same clock is always the other slot (wr != rd when
        # both are touched, since a full write slot stalls the front end), so the two updates
        # of `slot_valid` never collide.
        selected = Array(Array(row) for row in slot)[rd][idx]
        out_comp = slot_base[rd] | idx
        if not self._offsets_at_input:
            m.d.comb += [offset_read.addr.eq(out_comp), offset_read.en.eq(en[0])]
        va, a = out_stage(0, slot_valid.bit_select(rd, 1), sum=selected, comp=out_comp,
                          tl=slot_tl.bit_select(rd, 1) & last)
        # Stage B: the arithmetic shift by F.
        shifted = Signal(signed(acc_width))
        m.d.comb += shifted.eq(a["sum"] >> self.frac_bits)
        extra = {} if self._offsets_at_input else {"mu": offset_read.data}
        vb, b = out_stage(1, va, y=shifted, comp=a["comp"], tl=a["tl"], **extra)
        self._output_tail(m, out_stage, en_out, vb, b)
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

    _offsets_at_input = True
    _output_stages = ("a", "b")

    def _mac_input_width(self):
        return max(self.in_width, self.offset_width) + 1

    def _clamp(self, value):
        return _sclamp(value, Y_BITS)

    def _output_tail(self, m, out_stage, en_out, valid, b):
        with m.If(en_out):
            m.d.sync += [
                self.o.valid.eq(valid),
                self.o.payload.data.eq(self._clamp(b["y"])),
                self.o.payload.comp.eq(b["comp"]),
                self.o.payload.tile_last.eq(b["tl"]),
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

    _offsets_at_input = False
    _output_stages = ("a", "b", "c")

    def _mac_input_width(self):
        return self.in_width

    def _output_tail(self, m, out_stage, en_out, valid, b):
        # The offset was read while stage A selected; stage C adds it and the output register
        # clamps, so the add and the compare get a clock each.
        vc, c = out_stage(2, valid, x=b["y"] + b["mu"], comp=b["comp"], tl=b["tl"])
        lo = Mux(self.relu, max(self.lo, 0), self.lo)
        x = c["x"]
        with m.If(en_out):
            m.d.sync += [
                self.o.valid.eq(vc),
                self.o.payload.data.eq(Mux(x > self.hi, self.hi, Mux(x < lo, lo, x))),
                self.o.payload.comp.eq(c["comp"]),
                self.o.payload.tile_last.eq(c["tl"]),
            ]
