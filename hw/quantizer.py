"""Quantizer and dequantizer: a per-class multiply, rounding shift and clamp of every component.

docs/FORMAT.md, "Quantizer", is the definition (c = class of the value's component):

    quantize     q  = sclamp(round_shift(y * qmul[c], qshift[c]), bits[c])    # 0 for mode "drop"
    dequantize   yh = sclamp(round_shift(q * dqmul[c], dqshift[c]), 24)

Stream contract (both blocks)
-----------------------------
- `i`: `framed(in_width)` values; `comp` selects the class through the class map.
- `o`: `framed(out_width)` (16 for the quantizer, 24 for the dequantizer), one value per input
  value, `comp` and `tile_last` passed through.
- `cfg`: class map (region 2) and class parameters (region 3: mode, bits, qmul, qshift for the
  quantizer; dqmul, dqshift for the dequantizer) are held in small on-chip memories.

Throughput one value per clock; latency 7 clocks. Stages: class map read, class register, class
parameter read, multiply (and decode the rounding constant), round, shift, clamp. Every block RAM
output is registered before it feeds logic. The stages move together whenever the output
register is empty or read (`~o.valid | o.ready`), so payload and valid hold while `o.ready` is
low; bubbles in the pipeline stay bubbles (at full rate there are none). The input passes a
one-value skid register, so `i.ready` is a flip-flop (no combinational path from `o.ready` to
`i.ready`); the skid fills only while the pipeline stands and drains before the port is read
again.

The shift field holds 0..63. Every shift above `w` (the product width) gives 0 exactly as
`round_shift` does (for |p| < 2^(w-1) and s > w, p + 2^(s-1) lies in [0, 2^s)), so the shift is
saturated at `w + 1` and the rounding adder is `w + 2` bits wide instead of 64.
"""

from amaranth import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hw.config import (
    CLASS_BITS,
    CLASS_DQMUL,
    CLASS_DQSHIFT,
    CLASS_MODE,
    CLASS_QMUL,
    CLASS_QSHIFT,
    MODE_DROP,
    REGION_CLASS,
    REGION_CLASSMAP,
    config_signature,
    index,
    region,
)
from hw.framing import COMP_BITS, framed

Y_BITS = 24     # transform output and dequantizer output width (FORMAT.md)
Q_BITS = 16     # largest quantized width (bits in 1..16)
MUL_BITS = 16   # qmul, dqmul < 2^16
SHIFT_BITS = 6  # qshift, dqshift in 0..47
DSP_WIDTH = 18  # the FPGA multipliers' signed operand width (ECP5 MULT18X18D)
STAGES = 7      # pipeline depth, the output register included


class _ScaleStage(wiring.Component):
    """Class lookup, multiply, round-shift and clamp; subclasses name the fields and the clamp."""

    # Field index -> (name, shape) of the class parameters this block keeps.
    _fields: dict

    def __init__(self, *, in_width, out_width, max_channels, max_classes):
        if max_channels > 1 << COMP_BITS:
            raise ValueError(f"max_channels {max_channels} above {1 << COMP_BITS}")
        self.in_width = in_width
        self.out_width = out_width
        self.max_channels = max_channels
        self.max_classes = max_classes
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(framed(in_width))),
            "o": Out(stream.Signature(framed(out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        cfg_region = region(cfg.payload.addr)
        cfg_index = index(cfg.payload.addr)
        class_bits = max(ceil_log2(self.max_classes), 1)

        # The whole pipeline moves together: every stage takes its predecessor's value (or
        # bubble) whenever the output register may take one, `en`, one LUT from two registers.
        # (Stages that each moved on their own, closing up bubbles under back-pressure, made
        # `en` of stage 1 a chain through all seven stages, the lane's critical path.)
        # The input goes through a skid register, so `i.ready` is a flip-flop: the upstream
        # block (the VLC decoder's token loop, behind the dequantizer) does not wait for `en`
        # within its own clock. `inp` is the skid's value while it holds one, else the input
        # port.
        skid_v = Signal()
        skid = Signal.like(self.i.payload)
        inp = Signal.like(self.i.payload)
        m.d.comb += [self.i.ready.eq(~skid_v),
                     inp.eq(Mux(skid_v, skid, self.i.payload))]
        v = [Signal(name="v0")] + [Signal(name=f"v{k}") for k in range(1, STAGES)]
        en = Signal()
        m.d.comb += [v[0].eq(skid_v | self.i.valid),
                     en.eq(~self.o.valid | self.o.ready)]
        # A value taken while the pipeline stands waits in the skid; the skid drains first.
        with m.If(en):
            m.d.sync += skid_v.eq(0)
        with m.Elif(self.i.valid & ~skid_v):
            m.d.sync += [skid_v.eq(1), skid.eq(self.i.payload)]

        def stage(k, **values):
            """Registers of stage k, loaded whenever the pipeline moves; `v[k]` follows."""
            regs = {name: Signal(Value.cast(val).shape(), name=f"{name}{k}")
                    for name, val in values.items()}
            with m.If(en):
                m.d.sync += v[k].eq(v[k - 1])
                m.d.sync += [regs[name].eq(val) for name, val in values.items()]
            return regs

        # Stage 1: the class map answers. Stage 2: its answer is registered (a block RAM's
        # clock-to-output is too slow to address the parameter memories in the same clock).
        # Stage 3: the class parameters answer.
        class_map = Memory(shape=class_bits, depth=self.max_channels, init=[])
        m.submodules.class_map = class_map
        wp = class_map.write_port()
        m.d.comb += [
            wp.addr.eq(cfg_index),
            wp.data.eq(cfg.payload.data),
            wp.en.eq(cfg.valid & (cfg_region == REGION_CLASSMAP)
                     & (cfg_index < self.max_channels)),
        ]
        class_read = class_map.read_port()
        m.d.comb += [class_read.addr.eq(inp.comp), class_read.en.eq(en)]
        s1 = stage(1, y=inp.data, comp=inp.comp, tl=inp.tile_last)
        s2 = stage(2, y=s1["y"], comp=s1["comp"], tl=s1["tl"], cls=class_read.data)

        params = {}
        for field, (name, shape) in self._fields.items():
            mem = Memory(shape=shape, depth=self.max_classes, init=[])
            m.submodules[name] = mem
            wp = mem.write_port()
            m.d.comb += [
                wp.addr.eq(cfg_index[3:]),
                wp.data.eq(cfg.payload.data),
                wp.en.eq(cfg.valid & (cfg_region == REGION_CLASS) & (cfg_index[:3] == field)
                         & (cfg_index[3:] < self.max_classes)),
            ]
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(s2["cls"]), rp.en.eq(en)]
            params[name] = rp.data
        s3 = stage(3, y=s2["y"], comp=s2["comp"], tl=s2["tl"])

        # Stage 4: the product, and the saturated shift with its rounding constant (see the
        # module docstring). Stage 5: round half up. Stage 6: shift. They are three stages so
        # that the multiplier, the wide add and the barrel shifter each get a clock.
        mul, shift = self._mul_shift(params)
        prod_width = self.in_width + MUL_BITS + 1
        shift_max = prod_width + 1
        sat_shift = Signal(range(shift_max + 1))
        m.d.comb += sat_shift.eq(Mux(shift > shift_max, shift_max, shift))
        round_const = Signal(signed(prod_width + 2))
        m.d.comb += round_const.eq((1 << sat_shift) >> 1)
        # A wide input is multiplied in two halves, each within an 18 x 18 DSP multiplier, and
        # the halves are summed with the rounding constant in the next clock.
        y = s3["y"]
        if self.in_width > DSP_WIDTH:
            split = self.in_width // 2
            part_lo = Signal(split + MUL_BITS)      # the unsigned low half of y times mul
            part_hi = Signal(signed(self.in_width - split + MUL_BITS + 1))
            m.d.comb += [part_lo.eq(y[:split] * mul), part_hi.eq(y[split:].as_signed() * mul)]
        else:
            split = 0
            part_lo = Signal(signed(prod_width))
            part_hi = Signal(signed(1))             # constant 0
            m.d.comb += part_lo.eq(y * mul)
        lim3, zero3 = self._limit(params)
        lim = Signal(unsigned(self.out_width - 1))
        zero = Signal()
        m.d.comb += [lim.eq(lim3), zero.eq(zero3)]
        s4 = stage(4, lo=part_lo, hi=part_hi, rc=round_const, sh=sat_shift, lim=lim, zero=zero,
                   comp=s3["comp"], tl=s3["tl"])
        rounded = Signal(signed(prod_width + 2))
        m.d.comb += rounded.eq((s4["hi"] << split) + s4["lo"] + s4["rc"])
        s5 = stage(5, a=rounded, sh=s4["sh"], lim=s4["lim"], zero=s4["zero"], comp=s4["comp"],
                   tl=s4["tl"])
        shifted = Signal(signed(prod_width + 2))
        m.d.comb += shifted.eq(s5["a"] >> s5["sh"])
        s6 = stage(6, r=shifted, lim=s5["lim"], zero=s5["zero"], comp=s5["comp"], tl=s5["tl"])

        # Stage 7 (the output register): clamp to [-lim - 1, lim].
        r, hi = s6["r"], s6["lim"]
        lo = Signal(signed(self.out_width))
        m.d.comb += lo.eq(-hi - 1)
        clamped = Mux(r > hi, hi, Mux(r < lo, lo, r))
        with m.If(en):
            m.d.sync += [
                self.o.valid.eq(v[STAGES - 1]),
                self.o.payload.data.eq(Mux(s6["zero"], 0, clamped)),
                self.o.payload.comp.eq(s6["comp"]),
                self.o.payload.tile_last.eq(s6["tl"]),
            ]
        return m


class Quantizer(_ScaleStage):
    """`framed(in_width)` transform outputs in, `framed(16)` quantized values out.

    Parameters: `in_width` (24 behind the transform; the input width when the transform is folded
    into the weights), `max_channels` (class map depth), `max_classes`.
    """

    _fields = {
        CLASS_MODE: ("mode", unsigned(2)),
        CLASS_BITS: ("bits", unsigned(5)),
        CLASS_QMUL: ("qmul", unsigned(MUL_BITS)),
        CLASS_QSHIFT: ("qshift", unsigned(SHIFT_BITS)),
    }

    def __init__(self, in_width: int = Y_BITS, max_channels: int = 512, max_classes: int = 16):
        super().__init__(in_width=in_width, out_width=Q_BITS, max_channels=max_channels,
                         max_classes=max_classes)

    def _mul_shift(self, p):
        return p["qmul"], p["qshift"]

    def _limit(self, p):
        # bits in 1..16: the upper limit 2^(bits-1) - 1; a dropped class quantizes to 0.
        return ((1 << p["bits"]) >> 1) - 1, p["mode"] == MODE_DROP


class Dequantizer(_ScaleStage):
    """`framed(in_width)` (16) quantized values in, `framed(24)` reconstructed components out.

    Parameters: `in_width` (16), `max_channels`, `max_classes`. A dropped class arrives as q = 0
    and leaves as 0 through the same formula.
    """

    _fields = {
        CLASS_DQMUL: ("dqmul", unsigned(MUL_BITS)),
        CLASS_DQSHIFT: ("dqshift", unsigned(SHIFT_BITS)),
    }

    def __init__(self, in_width: int = Q_BITS, max_channels: int = 512, max_classes: int = 16):
        super().__init__(in_width=in_width, out_width=Y_BITS, max_channels=max_channels,
                         max_classes=max_classes)

    def _mul_shift(self, p):
        return p["dqmul"], p["dqshift"]

    def _limit(self, p):
        return (1 << (Y_BITS - 1)) - 1, 0
