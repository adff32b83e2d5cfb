"""The codec alone, with registered ports, for the synthesis report (`python -m hw.build report`).

A block's ports are hundreds of bits wide and an iCE40UP5K-SG48 has 39 I/O pins, so `SynthTop`
feeds every input bit of the wrapped component from one shift register on a single pin (`si`)
and captures every output bit in a register, folded by a tree of registered 4-input XORs onto a
single pin (`so`). Every path of the component then starts and ends at a flip-flop, as in a
design around it, no input is constant and no output unused, so nothing is optimized away; the
wrapper's own cost (one flip-flop per port bit, a LUT and a flip-flop per four output bits) is
included in the figures and is the same for every configuration of a unit.

The clock is constrained to the target frequency of the device: 40 MHz on the iCE40UP5K, 100 MHz
on the ECP5-85F (speed grade 6).

Configurations (`configurations`): the encoder + decoder lane in the issue's configurations
(transform group N = 8 and 16, 1 and 2 lanes, Huffman and Golomb-Rice coders) once
hw/encoder_lane.py and hw/decoder_lane.py exist, and the compact lane pair (hw/compact_encoder.py,
hw/compact_decoder.py: the iCEBreaker's lanes); and each codec block alone (`unit: block`, the
compact lanes one at a time among them), which is what can be measured before the lanes are
composed. A block record is a block, never a lane pair.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from amaranth import Cat, Const, Elaboratable, Module, Signal, Value
from amaranth.build import Attrs, Clock, Pins, Resource
from amaranth.lib import io, wiring
from amaranth.vendor import LatticeECP5Platform, LatticeICE40Platform

TARGET_MHZ = {"ice40": 40, "ecp5": 100}
DEVICE_NAME = {"ice40": "iCE40UP5K-SG48", "ecp5": "LFE5U-85F-6-CABGA381"}

# Parameters the report builds with (recorded in every record's config). The ECP5-85F takes a
# lane for ResNet-18's widest layer; the iCE40UP5K (30 block RAMs of 4 kbit) one sized like the
# iCEBreaker's board top: 64 channels, tiles of 8 pixels (64 words raw at B = 8).
MAX_CHANNELS = {"ice40": 64, "ecp5": 512}
MAX_TILE_WORDS = {"ice40": 64, "ecp5": 512}
Q_BITS = 8                  # B = 8 (issue 5's lane target)
TARGET_MHZ_LINK = 12e6      # the host link's UART divisor is sized for the iCEBreaker's clock


class _Ice40Synth(LatticeICE40Platform):
    device = "iCE40UP5K"
    package = "SG48"
    default_clk = "clk"
    resources = [
        Resource("clk", 0, Pins("35", dir="i"), Clock(TARGET_MHZ["ice40"] * 1e6),
                 Attrs(GLOBAL=True, IO_STANDARD="SB_LVCMOS")),
        Resource("si", 0, Pins("2", dir="i"), Attrs(IO_STANDARD="SB_LVCMOS")),
        Resource("so", 0, Pins("4", dir="o"), Attrs(IO_STANDARD="SB_LVCMOS")),
    ]
    connectors = []


class _Ecp5Synth(LatticeECP5Platform):
    device = "LFE5U-85F"
    package = "BG381"
    speed = "6"
    default_clk = "clk"
    resources = [
        Resource("clk", 0, Pins("G2", dir="i"), Clock(TARGET_MHZ["ecp5"] * 1e6),
                 Attrs(IO_TYPE="LVCMOS33")),
        Resource("si", 0, Pins("B11", dir="i"), Attrs(IO_TYPE="LVCMOS33")),
        Resource("so", 0, Pins("C11", dir="o"), Attrs(IO_TYPE="LVCMOS33")),
    ]
    connectors = []


def platform(device: str):
    return {"ice40": _Ice40Synth, "ecp5": _Ecp5Synth}[device]()


def port_values(component: wiring.Component) -> tuple[list, list]:
    """(inputs, outputs): (path, signal) of every port of `component`, by flow; constants (an
    always-ready stream's ready, an always-valid one's valid) left out. Arrays of interfaces
    (`.array(n)` members: a list on the component) are walked element by element."""
    inputs, outputs = [], []

    def elements(value, dims, path):
        if not dims:
            yield path, value
            return
        for k in range(dims[0]):
            yield from elements(value[k], dims[1:], path + (k,))

    # A member's `signature` is already flipped for an `In` member, so its ports' flows are
    # the component's view.
    def walk(obj, members, path):
        for name, member in members.items():
            for p, value in elements(getattr(obj, name), member.dimensions, path + (name,)):
                if not member.is_port:
                    walk(value, member.signature.members, p)
                elif not isinstance(value, Const):
                    (inputs if member.flow == wiring.In else outputs).append((p, value))

    walk(component, component.signature.members, ())
    return inputs, outputs


class SynthTop(Elaboratable):
    """`make()`'s component(s) between a serial input chain and a registered XOR tree.

    `make` returns one component or a list of them (an encoder and a decoder lane); their
    `cfg` inputs are one shared port, as in a lane pair that takes one configuration stream.
    `core_reset`: on the ECP5, the components in a domain with a reset, as the board top puts
    the compact lanes (hw/board_top.py, core_domain_after_gsr).
    """

    def __init__(self, make: Callable[[], wiring.Component | list], core_reset: bool = False):
        self.make = make
        self.core_reset = core_reset

    def elaborate(self, platform):
        from hw.board_top import core_domain_after_gsr

        m = Module()
        made = self.make()
        components = made if isinstance(made, (list, tuple)) else [made]
        inputs, outputs, shared = [], [], {}
        # As on the boards: the compact lanes in a domain with a reset on the ECP5.
        place = core_domain_after_gsr(m, platform) if self.core_reset else lambda c: c
        for i, component in enumerate(components):
            m.submodules[f"dut{i}" if len(components) > 1 else "dut"] = place(component)
            ins, outs = port_values(component)
            for path, value in ins:
                if path[0] == "cfg" and path in shared:
                    m.d.comb += value.eq(shared[path])
                    continue
                if path[0] == "cfg":
                    shared[path] = value
                inputs.append(value)
            outputs += [value for _, value in outs]
        m.submodules.si = si_buffer = io.Buffer("i", platform.request("si", 0, dir="-"))
        m.submodules.so = so_buffer = io.Buffer("o", platform.request("so", 0, dir="-"))
        si, so = si_buffer.i, so_buffer.o

        width_in = sum(len(Value.cast(v)) for v in inputs)
        chain = Signal(max(width_in, 1))
        m.d.sync += chain.eq(Cat(si, chain[:-1]))
        pos = 0
        for v in inputs:
            n = len(Value.cast(v))
            m.d.comb += v.eq(chain[pos:pos + n])
            pos += n

        level = Signal(sum(len(Value.cast(v)) for v in outputs) or 1)
        m.d.sync += level.eq(Cat(*outputs) if outputs else 0)
        while len(level) > 1:
            nxt = Signal((len(level) + 3) // 4)
            m.d.sync += [nxt[i].eq(level[4 * i:4 * i + 4].xor()) for i in range(len(nxt))]
            level = nxt
        m.d.comb += so.eq(level)
        return m


# -- configurations ------------------------------------------------------------------------------

def lanes_exist() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("hw.encoder_lane", "hw.decoder_lane"))


def _block_builds(device: str) -> list[tuple[dict, Callable]]:
    from hw.bit_packer import BitPacker
    from hw.bit_unpacker import BitUnpacker
    from hw.board_top import make_core
    from hw.framer import Framer
    from hw.quantizer import Dequantizer, Quantizer
    from hw.transform import InverseTransform, Transform
    from hw.vlc_decoder import VlcDecoder
    from hw.vlc_encoder import VlcEncoder

    C, W = MAX_CHANNELS[device], MAX_TILE_WORDS[device]
    builds = []

    def add(name, make, **params):
        builds.append(({"unit": "block", "block": name, **params}, make))

    add("framer", lambda: Framer(width=8), width=8)
    add("host_link", lambda: make_core("link", clk_freq=TARGET_MHZ_LINK, baud=1_000_000,
                                       dtype="int8", value_depth=1024, word_depth=256),
        uart=True, value_depth=1024, word_depth=256)
    for n in (8, 16):
        add("transform", lambda n=n: Transform(in_width=8, group=n, max_channels=C), N=n,
            max_channels=C)
        add("inverse_transform", lambda n=n: InverseTransform("int8", group=n, max_channels=C),
            N=n, max_channels=C)
    add("quantizer", lambda: Quantizer(max_channels=C), max_channels=C)
    add("dequantizer", lambda: Dequantizer(max_channels=C), max_channels=C)
    add("vlc_encoder", lambda: VlcEncoder(q_width=Q_BITS, max_channels=C), B=Q_BITS,
        max_channels=C)
    add("bit_packer", lambda: BitPacker(max_tile_words=W), max_tile_words=W)
    add("bit_unpacker", lambda: BitUnpacker())
    add("vlc_decoder", lambda: VlcDecoder(q_width=Q_BITS, max_channels=C), B=Q_BITS,
        max_channels=C)
    # The compact lanes one at a time (their pair is a lane build, `_lane_builds`).
    from hw.board_top import lanes_available

    if lanes_available("compact")[0]:
        from hw.compact_decoder import CompactDecoderLane
        from hw.compact_encoder import CompactEncoderLane

        add("compact_encoder", lambda: CompactEncoderLane(max_channels=C, max_tile_words=W),
            N=8, max_channels=C, max_tile_words=W)
        add("compact_decoder", lambda: CompactDecoderLane(max_channels=C, max_tile_words=W),
            N=8, max_channels=C, max_tile_words=W)
    return builds


# (N, lanes) of the lane builds. N = 16 with 2 lanes is left out: it is about twice the N = 16
# lane and the slowest place-and-route of all, and says nothing the other three do not.
LANE_CONFIGS = ((8, 1), (16, 1), (8, 2))


def multi_lane_exists() -> bool:
    return importlib.util.find_spec("hw.multi_lane") is not None


def _lane_builds(device: str) -> tuple[list[tuple[dict, Callable]], list[str]]:
    """Encoder + decoder lanes (hw/encoder_lane.py, hw/decoder_lane.py; 2 lanes through
    hw/multi_lane.py) and the compact lane pair (hw/compact_encoder.py,
    hw/compact_decoder.py), int8 in.

    The coder is not a build option: every lane holds all modes (drop, raw, Rice/Exp-Golomb,
    Huffman up to L = 16) and the profile picks one per class at run time, so one build serves
    the Huffman and the Golomb configurations alike. The lanes are built for quantized widths up
    to 16 bits (B = 8 is a run-time choice too).
    """
    from hw.board_top import codec_lanes, lanes_available

    C, W = MAX_CHANNELS[device], MAX_TILE_WORDS[device]
    builds, why = [], []
    for n, lanes in LANE_CONFIGS:
        cfg = {"unit": "enc+dec lane", "N": n, "lanes": lanes,
               "coders": "huffman+golomb (run time)", "max_bits": 16, "L": 16, "word_bits": 64,
               "max_channels": C, "max_tile_words": W}
        if lanes == 1:
            pair = codec_lanes(dtype="int8", group=n, max_channels=C, max_tile_words=W)
            builds.append((cfg, lambda pair=pair: [pair.encoder(), pair.decoder()]))
        elif multi_lane_exists():
            def make(n=n, lanes=lanes):
                from hw.multi_lane import DecoderLanes, EncoderLanes

                return [EncoderLanes(lanes, in_width=8, group=n, max_channels=C,
                                     max_tile_words=W),
                        DecoderLanes(lanes, max_tile_words=W, dtype="int8", group=n,
                                     max_channels=C)]
            builds.append((cfg, make))
        else:
            why.append(f"N={n}, {lanes} lanes: hw/multi_lane.py does not exist yet")
    # The compact lane pair (several clocks per value; what the iCEBreaker carries). Its label
    # has no "lanes=" so that `--only "N=8 lanes=1"` still picks the full-rate lane alone.
    cfg = {"unit": "compact enc+dec lane", "N": 8, "coders": "huffman+golomb (run time)",
           "max_bits": 16, "L": 16, "word_bits": 64, "max_channels": C, "max_tile_words": W}
    ok, missing = lanes_available("compact")
    if ok:
        pair = codec_lanes(dtype="int8", group=8, max_channels=C, max_tile_words=W,
                           kind="compact")
        builds.append((cfg, lambda pair=pair: [pair.encoder(), pair.decoder()]))
    else:
        why.append(f"compact lane: {missing}")
    return builds, why


def configurations(device: str, blocks: bool | None = None):
    """([(config, make)], [why a configuration is not built]) for one device.

    `blocks`: True adds the per-block builds, False leaves them out, None (default) adds them
    only while the lanes do not exist yet.
    """
    builds, why = [], []
    if lanes_exist():
        lane_builds, lane_why = _lane_builds(device)
        builds += lane_builds
        why += lane_why
    else:
        why.append("encoder + decoder lanes: hw/encoder_lane.py / hw/decoder_lane.py do not "
                   "exist yet")
    if blocks or (blocks is None and not lanes_exist()):
        builds += _block_builds(device)
    return builds, why
