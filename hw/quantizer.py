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

Throughput one value per clock; latency 5 clocks. Stages: class map read, class parameter read,
multiply, rounding shift, clamp. A stage takes a new value when it is empty or its value moves on,
so payload and valid hold while `o.ready` is low, bubbles close up under back-pressure, and
`i.ready` is combinational from `o.ready` through one OR per stage.

The shift field holds 0..63. Every shift above `w` (the product width) gives 0 exactly as
`round_shift` does, so the shift is saturated at `w + 1` and the rounding adder is only `w + 2` bits
wide instead of 64.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
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

        # Stage k takes a new value when it is empty or its value moves on (en[k + 1]), so
        # bubbles close up under back-pressure; en[5] is the output register's.
        v = [None] + [Signal(name=f"v{k}") for k in range(1, 5)]
        en = [None] + [Signal(name=f"en{k}") for k in range(1, 6)]
        m.d.comb += en[5].eq(~self.o.valid | self.o.ready)
        for k in range(4, 0, -1):
            m.d.comb += en[k].eq(~v[k] | en[k + 1])
        m.d.comb += self.i.ready.eq(en[1])

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
        m.d.comb += [class_read.addr.eq(self.i.payload.comp), class_read.en.eq(en[1])]

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
            m.d.comb += [rp.addr.eq(class_read.data), rp.en.eq(en[2])]
            params[name] = rp.data

        # Stage 1: class map answers. Stage 2: class parameters answer.
        y1, comp1, tl1 = Signal(signed(self.in_width)), Signal(COMP_BITS), Signal()
        y2, comp2, tl2 = Signal(signed(self.in_width)), Signal(COMP_BITS), Signal()
        with m.If(en[1]):
            m.d.sync += [
                v[1].eq(self.i.valid), y1.eq(self.i.payload.data),
                comp1.eq(self.i.payload.comp), tl1.eq(self.i.payload.tile_last),
            ]
        with m.If(en[2]):
            m.d.sync += [v[2].eq(v[1]), y2.eq(y1), comp2.eq(comp1), tl2.eq(tl1)]

        # Stage 3: the product; the shift is saturated (see the module docstring).
        mul, shift = self._mul_shift(params)
        prod_width = self.in_width + MUL_BITS + 1
        shift_max = prod_width + 1
        p3 = Signal(signed(prod_width))
        s3 = Signal(range(shift_max + 1))
        comp3, tl3 = Signal(COMP_BITS), Signal()
        lim_shape = unsigned(self.out_width - 1)
        lim3, zero3 = Signal(lim_shape), Signal()
        lim2, zero2 = self._limit(params)
        with m.If(en[3]):
            m.d.sync += [
                v[3].eq(v[2]), p3.eq(y2 * mul), s3.eq(Mux(shift > shift_max, shift_max, shift)),
                comp3.eq(comp2), tl3.eq(tl2), lim3.eq(lim2), zero3.eq(zero2),
            ]

        # Stage 4: round half up and shift.
        r4 = Signal(signed(prod_width + 2))
        comp4, tl4 = Signal(COMP_BITS), Signal()
        lim4, zero4 = Signal(lim_shape), Signal()
        round_const = Signal(signed(prod_width + 2))
        m.d.comb += round_const.eq((1 << s3) >> 1)
        with m.If(en[4]):
            m.d.sync += [
                v[4].eq(v[3]), r4.eq((p3 + round_const) >> s3),
                comp4.eq(comp3), tl4.eq(tl3), lim4.eq(lim3), zero4.eq(zero3),
            ]

        # Stage 5 (output register): clamp to [-lim - 1, lim].
        lo4 = Signal(signed(self.out_width))
        m.d.comb += lo4.eq(-lim4 - 1)
        clamped = Mux(r4 > lim4, lim4, Mux(r4 < lo4, lo4, r4))
        with m.If(en[5]):
            m.d.sync += [
                self.o.valid.eq(v[4]),
                self.o.payload.data.eq(Mux(zero4, 0, clamped)),
                self.o.payload.comp.eq(comp4),
                self.o.payload.tile_last.eq(tl4),
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
