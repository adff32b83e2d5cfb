"""Board top: host link, encoder and decoder lanes and their on-chip buffers, on a UART.

`BoardCore` is the whole design with the serial pins as ports (`rx`, `tx`): what a board runs, and
what sim/tb_board.py simulates with a UART model on those pins. `BoardTop` puts it on a board
through an amaranth-boards platform: the host-link UART resource named by the board's
constraints file (constraints/<board>.py), an LED for errors.

Designs:

- `codec`: host link + one encoder lane and one decoder lane (hw/encoder_lane.py,
  hw/decoder_lane.py): the board check of `fmcodec board`.
- `link`: the host link without lanes (INFO, ECHO and CONFIG work; TILE answers ERROR
  NO_CODEC), to bring up a board and its serial link before the lanes fit or exist.
- `loopback`: every byte received is sent back, through the UART blocks and a small FIFO; the
  first thing to try on a new board.

`BoardCore` streams the configuration writes to both lanes (`cfg` is always ready), and shows
them on `cfg_tap` for a testbench.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from amaranth import Elaboratable, Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from fmcodec import protocol as P
from hw.host_link import HostLink
from hw.uart import UartRx, UartTx, uart_divisor

DESIGNS = ("codec", "link", "loopback")

CfgTap = data.StructLayout({"valid": 1, "addr": 20, "data": 32})


class LanesMissing(RuntimeError):
    """The codec lanes (hw/encoder_lane.py, hw/decoder_lane.py) are not in this checkout."""


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
    count: int = 1


def lanes_available() -> tuple[bool, str]:
    for mod in ("hw.encoder_lane", "hw.decoder_lane"):
        if importlib.util.find_spec(mod) is None:
            return False, f"{mod.replace('.', '/')}.py does not exist yet (issue 3's lanes)"
    return True, ""


IN_WIDTH = {"int8": 8, "uint8": 9, "int16": 16}   # the encoder lane's signed input


def codec_lanes(dtype: str = "int8", group: int = 8, max_channels: int = 64,
                max_tile_words: int = 64) -> Lanes:
    """One encoder lane and one decoder lane (hw/encoder_lane.py, hw/decoder_lane.py);
    LanesMissing while they do not exist."""
    ok, why = lanes_available()
    if not ok:
        raise LanesMissing(why)
    from hw.decoder_lane import DecoderLane
    from hw.encoder_lane import EncoderLane

    if dtype not in IN_WIDTH:
        raise ValueError(f"dtype {dtype!r} not one of {tuple(IN_WIDTH)}")
    return Lanes(
        encoder=lambda: EncoderLane(in_width=IN_WIDTH[dtype], group=group,
                                    max_channels=max_channels, max_tile_words=max_tile_words),
        decoder=lambda: DecoderLane(dtype=dtype, group=group, max_channels=max_channels),
        group=group, max_channels=max_channels)


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
            max_channels=self.lanes.max_channels if self.lanes else 0, in_shape=in_shape,
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


class BoardTop(Elaboratable):
    """`core` on a board: its serial pins on the link resource, its error flag on an LED.

    `link` is the (name, number) of the UART resource in the platform; `clk_freq` comes from
    the platform's default clock.
    """

    def __init__(self, make_core: Callable[[float], wiring.Component], link=("uart", 0)):
        self.make_core = make_core
        self.link = link

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.make_core(platform.default_clk_frequency)
        uart = platform.request(*self.link)
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx)]
        try:
            led = platform.request("led", 0)
        except Exception:  # a board without a plain LED: the error flag stays internal
            led = None
        if led is not None:
            m.d.comb += led.o.eq(core.error)
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


__all__ = ["BoardCore", "BoardTop", "DESIGNS", "Lanes", "LanesMissing", "LoopbackCore",
           "codec_lanes", "lanes_available", "make_core"]
