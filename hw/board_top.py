"""Board top: host link, encoder and decoder lanes and their on-chip buffers, on a UART.

`BoardCore` is the whole design with the serial pins as ports (`rx`, `tx`): what a board runs, and
what sim/tb_board.py simulates with a UART model on those pins. `BoardTop` puts it on a board
through an amaranth-boards platform: the host-link UART resource named by the board's
constraints file (constraints/<board>.py), an LED for errors.

Designs:

- `codec`: host link + one encoder lane and one decoder lane: the board check of `fmcodec board`.
  The lanes are the full-rate ones (hw/encoder_lane.py, hw/decoder_lane.py) or, on a board whose
  constraints file says `LANES = "compact"` (the iCEBreaker), the compact ones
  (hw/compact_encoder.py, hw/compact_decoder.py), which fit an iCE40UP5K.
- `link`: the host link without lanes (INFO, ECHO and CONFIG work; TILE answers ERROR
  NO_CODEC), to bring up a board and its serial link before the lanes fit or exist.
- `loopback`: every byte received is sent back, through the UART blocks and a small FIFO; the
  first thing to try on a new board.

`BoardCore` streams the configuration writes to both lanes (`cfg` is always ready), and shows
them on `cfg_tap` for a testbench.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amaranth import (
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
    signed,
)
from amaranth.build import ResourceError
from amaranth.lib import data, io, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from fmcodec import protocol as P
from hw.host_link import HostLink
from hw.uart import UartRx, UartTx, uart_divisor

DESIGNS = ("codec", "link", "loopback")

CfgTap = data.StructLayout({"valid": 1, "addr": 20, "data": 32})


class LanesMissing(RuntimeError):
    """The codec lanes of the asked kind (`LANE_KINDS`) are not in this checkout."""


@dataclass
class Lanes:
    """How to build the codec lanes a board carries.

    `encoder()` returns a component with `cfg` (config stream in), `i` (values in) and `o`
    (`packed_word()` out); `decoder()` one with `cfg`, `i` (`container_word()` in), `o` (values
    out, plain or `framed`) and `error` (or a `status` with an `error` field).
    """
    encoder: Callable[[], Any]
    decoder: Callable[[], Any]
    group: int
    max_channels: int
    max_tile_words: int
    count: int = 1


# The lane kinds a board can carry: the full-rate lanes (one value per clock; hw/encoder_lane.py,
# hw/decoder_lane.py) and the compact ones (several clocks per value, small enough for an
# iCE40UP5K; hw/compact_encoder.py, hw/compact_decoder.py).
LANE_KINDS = {
    "full": ("hw.encoder_lane", "hw.decoder_lane"),
    "compact": ("hw.compact_encoder", "hw.compact_decoder"),
}


def lanes_available(kind: str = "full") -> tuple[bool, str]:
    if kind not in LANE_KINDS:
        return False, f"unknown lane kind {kind!r} (one of {', '.join(LANE_KINDS)})"
    for mod in LANE_KINDS[kind]:
        if importlib.util.find_spec(mod) is None:
            return False, f"{mod.replace('.', '/')}.py does not exist yet"
    return True, ""


IN_WIDTH = {"int8": 8, "uint8": 9, "int16": 16}   # the encoder lane's signed input


def codec_lanes(dtype: str = "int8", group: int = 8, max_channels: int = 64,
                max_tile_words: int = 64, kind: str = "full") -> Lanes:
    """One encoder lane and one decoder lane of `kind` ("full" or "compact", `LANE_KINDS`);
    LanesMissing while they do not exist."""
    ok, why = lanes_available(kind)
    if not ok:
        raise LanesMissing(why)
    if dtype not in IN_WIDTH:
        raise ValueError(f"dtype {dtype!r} not one of {tuple(IN_WIDTH)}")
    if kind == "compact":
        from hw.compact_decoder import CompactDecoderLane as Decoder
        from hw.compact_encoder import CompactEncoderLane as Encoder

        def encoder():
            return Encoder(in_width=IN_WIDTH[dtype], group=group, max_channels=max_channels,
                           max_tile_words=max_tile_words)

        def decoder():
            return Decoder(dtype=dtype, group=group, max_channels=max_channels,
                           max_tile_words=max_tile_words)
    else:
        from hw.decoder_lane import DecoderLane
        from hw.encoder_lane import EncoderLane

        def encoder():
            return EncoderLane(in_width=IN_WIDTH[dtype], group=group, max_channels=max_channels,
                               max_tile_words=max_tile_words)

        def decoder():
            return DecoderLane(dtype=dtype, group=group, max_channels=max_channels)
    return Lanes(encoder=encoder, decoder=decoder, group=group, max_channels=max_channels,
                 max_tile_words=max_tile_words)


def _value(payload):
    """A lane's value: the payload itself, or its `data` field when it is framed."""
    try:
        return payload.data
    except AttributeError:
        return payload


def _error(lane):
    if hasattr(lane, "error"):
        return lane.error
    return lane.status.error


class BoardCore(wiring.Component):
    """The board's design with its serial pins as ports (see the module docstring)."""

    def __init__(self, *, clk_freq: float, baud: int = P.DEFAULT_BAUD, dtype: str = "int8",
                 value_depth: int = 1024, word_depth: int = 256, lanes: Lanes | None = None,
                 idle_limit: int = 1 << 16, frame_timeout_s: float = P.FRAME_TIMEOUT_S):
        self.clk_freq = clk_freq
        self.baud = baud
        self.divisor = uart_divisor(clk_freq, baud)
        self.dtype = dtype
        self.value_depth = value_depth
        self.word_depth = word_depth
        self.lanes = lanes
        self.idle_limit = idle_limit
        self.frame_timeout_s = frame_timeout_s
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "error": Out(1),
            "cfg_tap": Out(CfgTap),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UartRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UartTx(self.divisor)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]

        enc = dec = None
        in_shape = out_shape = signed(16)
        if self.lanes is not None:
            enc, dec = self.lanes.encoder(), self.lanes.decoder()
            m.submodules.encoder = enc
            m.submodules.decoder = dec
            in_shape = enc.i.payload.shape()
            out_shape = _value(dec.o.payload).shape()

        m.submodules.link = link = HostLink(
            clk_freq=self.clk_freq, baud=self.baud, dtype=self.dtype,
            value_depth=self.value_depth, word_depth=self.word_depth,
            codec=self.lanes is not None, lanes=self.lanes.count if self.lanes else 0,
            group=self.lanes.group if self.lanes else 0,
            max_channels=self.lanes.max_channels if self.lanes else 0,
            max_tile_words=self.lanes.max_tile_words if self.lanes else 0, in_shape=in_shape,
            out_shape=out_shape, idle_limit=self.idle_limit,
            frame_timeout_s=self.frame_timeout_s)
        wiring.connect(m, uart_rx.o, link.rx)
        wiring.connect(m, link.tx, uart_tx.i)
        m.d.comb += [self.error.eq(link.error),
                     self.cfg_tap.valid.eq(link.cfg.valid),
                     self.cfg_tap.addr.eq(link.cfg.payload.addr),
                     self.cfg_tap.data.eq(link.cfg.payload.data)]

        if enc is not None:
            # The configuration is a broadcast: both lanes take every write (always ready).
            for lane in (enc, dec):
                m.d.comb += [lane.cfg.valid.eq(link.cfg.valid),
                             lane.cfg.payload.eq(link.cfg.payload)]
            wiring.connect(m, link.enc_i, enc.i)
            wiring.connect(m, enc.o, link.enc_o)
            wiring.connect(m, link.dec_i, dec.i)
            m.d.comb += [link.dec_o.valid.eq(dec.o.valid),
                         link.dec_o.payload.eq(_value(dec.o.payload)),
                         dec.o.ready.eq(link.dec_o.ready),
                         link.dec_error.eq(_error(dec))]
        return m


class LoopbackCore(wiring.Component):
    """Every byte received on `rx` is sent back on `tx` (a FIFO absorbs rate differences)."""

    def __init__(self, *, clk_freq: float, baud: int = P.DEFAULT_BAUD, depth: int = 64):
        self.divisor = uart_divisor(clk_freq, baud)
        self.depth = depth
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UartRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UartTx(self.divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.depth)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     fifo.w_data.eq(uart_rx.o.payload), fifo.w_en.eq(uart_rx.o.valid),
                     uart_rx.o.ready.eq(fifo.w_rdy),
                     uart_tx.i.payload.eq(fifo.r_data), uart_tx.i.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(uart_tx.i.ready)]
        # Sticky: a byte was lost (FIFO full or a bad stop bit).
        with m.If(uart_rx.overrun | uart_rx.framing_error | (uart_rx.o.valid & ~fifo.w_rdy)):
            m.d.sync += self.error.eq(1)
        return m


def ecp5_pll_params(f_in: float, f_out: float) -> dict:
    """EHXPLLL dividers for `f_out` from `f_in` (feedback from CLKOP), as yowasp-ecppll finds
    them: PFD 3.125..400 MHz, VCO 400..800 MHz, the closest output (VCO near 600 MHz among
    equals); ValueError if off by more than 0.1 %."""
    best = None
    for ref in range(1, 129):
        pfd = f_in / ref
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for fb in range(1, 81):
            out = pfd * fb
            for op in range(2, 129, 2):       # even: the 0-degree phase is then op / 2 - 1
                if not 400e6 <= out * op <= 800e6:
                    continue
                # The closest output; among equals, the VCO nearest the middle of its range.
                key = (abs(out - f_out), abs(out * op - 600e6))
                if best is None or key < best[0]:
                    best = (key, ref, fb, op, out)
    if best is None or best[0][0] > 1e-3 * f_out:
        raise ValueError(f"the ECP5 PLL cannot make {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    _, ref, fb, op, out = best
    return {"CLKI_DIV": ref, "CLKFB_DIV": fb, "CLKOP_DIV": op, "CLKOP_CPHASE": op // 2 - 1,
            "f_out": out}


def core_domain_after_gsr(m: Module, platform) -> Callable:
    """On the ECP5, a domain `core` on the sync clock, held in reset for the first clock after
    the global set/reset lets go (at power-up, a PLL lock, the reset button); returns what puts
    a design's sync logic in it (elsewhere: the design as it is, the domain has a reset).

    The ECP5's sync domain is reset-less: GSR puts each flip-flop at its initial value. That is
    enough for a design whose registers keep their initial values in the netlist, but yosys
    drops them where it re-encodes a state register (the compact lanes' one-hot sequencers,
    hw/compact_encoder.py and hw/compact_decoder.py; yosys warns "Initialization value on FSM
    state register is ignored"): every state flip-flop would come up 0, no state active, and
    the encoder lane would never start. A synchronous reset puts them in their first state; on
    the iCE40 the platform's own domain already has one. Only the compact lanes take it: on the
    full-rate codec a reset net to every flip-flop took the ECPIX-5's routing from 140 s to
    497 s."""
    from amaranth.vendor import LatticeECP5Platform

    if not isinstance(platform, LatticeECP5Platform):
        return lambda design: design
    first = Signal(init=1, name="core_reset")       # 1 from GSR, 0 a clock later
    m.d.sync += first.eq(0)
    m.domains.core = ClockDomain("core")
    m.d.comb += [ClockSignal("core").eq(ClockSignal("sync")), ResetSignal("core").eq(first)]
    return DomainRenamer({"sync": "core"})


class BoardTop(Elaboratable):
    """`core` on a board: its serial pins on the link resource, its error flag on an LED.

    `link` is the (name, number) of the UART resource in the platform. The design runs on the
    board's default clock, or, with `clock_hz`, on an ECP5 PLL's output at that frequency
    (nextpnr derives its clock constraint from the board clock's), held in reset (the ECP5's
    global set/reset) until the PLL locks. `core_reset`: on the ECP5, the core in a domain with
    a reset after the global set/reset (`core_domain_after_gsr`; the compact lanes need it).
    """

    def __init__(self, make_core: Callable[[float], wiring.Component], link=("uart", 0),
                 clock_hz: float | None = None, core_reset: bool = False):
        self.make_core = make_core
        self.link = link
        self.clock_hz = clock_hz
        self.core_reset = core_reset

    def _pll_domain(self, m, platform) -> float:
        from amaranth.vendor import LatticeECP5Platform

        f_in = platform.default_clk_frequency
        if not isinstance(platform, LatticeECP5Platform):
            raise ValueError(f"a {self.clock_hz / 1e6:g} MHz clock needs a PLL; only the ECP5 "
                             f"one is supported (the board clock is {f_in / 1e6:g} MHz)")
        pll = ecp5_pll_params(f_in, self.clock_hz)
        m.submodules.clk_buffer = clk_in = io.Buffer(
            "i", platform.request(platform.default_clk, dir="-"))
        reset_in = Const(0)
        if platform.default_rst is not None:
            m.submodules.rst_buffer = rst = io.Buffer(
                "i", platform.request(platform.default_rst, dir="-"))
            reset_in = rst.i
        clk_out, locked = Signal(name="pll_clk"), Signal(name="pll_locked")
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{f_in / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{pll['f_out'] / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKI_DIV=pll["CLKI_DIV"],
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=pll["CLKOP_DIV"],
            p_CLKOP_CPHASE=pll["CLKOP_CPHASE"], p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=pll["CLKFB_DIV"],
            i_RST=0, i_STDBY=0, i_CLKI=clk_in.i, o_CLKOP=clk_out, i_CLKFB=clk_out,
            i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
            i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        # Reset: the PLL's lock and the reset button, synchronized to the PLL's clock by two
        # flip-flops outside the global set/reset, drive the ECP5's GSR (SGSR), which puts every
        # other flip-flop at its initial value over its own network; the domain is reset-less.
        # Amaranth's ECP5 platforms make their default domain the same way (the ULX3S build).
        # A ResetSynchronizer here had driven a fabric net to every flip-flop with a reset
        # (125,217 routed arcs against the ULX3S's 114,779 for the same codec) and made the
        # ECPIX-5's routing take 497 s where the ULX3S's took 142.
        hold_n, release_n = Signal(name="gsr_hold_n"), Signal(name="gsr_release_n")
        m.submodules.gsr_ff0 = Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clk_out,
                                        i_D=locked & ~reset_in, o_Q=hold_n)
        m.submodules.gsr_ff1 = Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clk_out,
                                        i_D=hold_n, o_Q=release_n)
        m.submodules.sgsr = Instance("SGSR", i_CLK=clk_out, i_GSR=release_n)  # GSR: active low
        m.domains.sync = sync = ClockDomain("sync", reset_less=True)
        m.d.comb += sync.clk.eq(clk_out)
        # No clock constraint on the PLL's output: no name given to it here survives synthesis
        # (nextpnr warned and ignored it), and nextpnr derives the output's constraint from the
        # input's (the board clock) and the dividers ("Derived frequency constraint of 25.0 MHz
        # for net clk").
        return pll["f_out"]

    def elaborate(self, platform):
        m = Module()
        clk_freq = platform.default_clk_frequency
        if self.clock_hz is not None and abs(self.clock_hz - clk_freq) > 1:
            clk_freq = self._pll_domain(m, platform)
        core = self.make_core(clk_freq)
        m.submodules.core = core_domain_after_gsr(m, platform)(core) if self.core_reset else core
        uart = platform.request(*self.link, dir="-")
        m.submodules.rx_buffer = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx)]
        # The error flag on the first LED (the red one of an RGB LED on the ECPIX-5).
        for name, part in (("led", None), ("rgb_led", "r")):
            try:
                led = platform.request(name, 0, dir="-")
            except ResourceError:
                continue
            m.submodules.led_buffer = led_buffer = io.Buffer(
                "o", getattr(led, part) if part else led)
            m.d.comb += led_buffer.o.eq(core.error)
            break
        return m


def make_core(design: str, *, clk_freq: float, baud: int, dtype: str, value_depth: int,
              word_depth: int, lanes: Lanes | None = None):
    if design == "loopback":
        return LoopbackCore(clk_freq=clk_freq, baud=baud)
    if design == "link":
        return BoardCore(clk_freq=clk_freq, baud=baud, dtype=dtype, value_depth=value_depth,
                         word_depth=word_depth, lanes=None)
    if design == "codec":
        if lanes is None:
            raise ValueError("the codec design needs its lanes")
        return BoardCore(clk_freq=clk_freq, baud=baud, dtype=dtype, value_depth=value_depth,
                         word_depth=word_depth, lanes=lanes)
    raise ValueError(f"unknown design {design!r}; expected one of {', '.join(DESIGNS)}")


__all__ = ["BoardCore", "BoardTop", "DESIGNS", "LANE_KINDS", "Lanes", "LanesMissing",
           "LoopbackCore", "codec_lanes", "lanes_available", "make_core"]
