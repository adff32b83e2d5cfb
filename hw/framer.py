"""Framer: attach the component index and the tile boundary to the raw conv-engine stream.

Stream contract
---------------
- `i`: one signed channel value per beat, channel order within a pixel, pixels in raster order
  (docs/FORMAT.md, "Tensors and pixels").
- `o`: `framed(width)` (hw/framing.py): the same value with `comp` = its channel index and
  `tile_last` set on the last value of every tile. A tile is `tile_pixels` consecutive pixels and
  also ends at the last pixel of each image (`image_pixels`), so the last tile of an image may be
  shorter (docs/FORMAT.md, "Tiles").
- `cfg`: C (global 0), tile_pixels (global 3) and image_pixels (global 8) are latched from the
  configuration stream; the commit write (global 7) clears the channel, tile and image counters, so
  the next value is channel 0 of the first pixel of a new tensor.

Throughput one value per clock; latency one clock (a single output register, whose ready path is
combinational: `i.ready = ~o.valid | o.ready`).
"""

from amaranth import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import (
    GLOBAL_CHANNELS,
    GLOBAL_COMMIT,
    GLOBAL_IMAGE_PIXELS,
    GLOBAL_TILE_PIXELS,
    REGION_GLOBAL,
    config_signature,
    index,
    region,
)
from hw.framing import COMP_BITS, framed

TILE_PIXEL_BITS = 16    # tile_pixels < 2^16 (golden/profile.py validates it)
IMAGE_PIXEL_BITS = 32   # image_pixels < 2^32 (config data width)


class Framer(wiring.Component):
    """Raw channel values in, `framed(width)` values out (see the module docstring)."""

    def __init__(self, width: int = 8):
        self.width = width
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(signed(width))),
            "o": Out(stream.Signature(framed(width))),
        })

    def elaborate(self, platform):
        m = Module()

        channels = Signal(COMP_BITS + 1)
        tile_pixels = Signal(TILE_PIXEL_BITS)
        image_pixels = Signal(IMAGE_PIXEL_BITS)

        comp = Signal(COMP_BITS)
        tile_pix = Signal(TILE_PIXEL_BITS)
        image_pix = Signal(IMAGE_PIXEL_BITS)

        commit = Signal()
        with m.If(self.cfg.valid & (region(self.cfg.payload.addr) == REGION_GLOBAL)):
            with m.Switch(index(self.cfg.payload.addr)):
                with m.Case(GLOBAL_CHANNELS):
                    m.d.sync += channels.eq(self.cfg.payload.data)
                with m.Case(GLOBAL_TILE_PIXELS):
                    m.d.sync += tile_pixels.eq(self.cfg.payload.data)
                with m.Case(GLOBAL_IMAGE_PIXELS):
                    m.d.sync += image_pixels.eq(self.cfg.payload.data)
                with m.Case(GLOBAL_COMMIT):
                    m.d.comb += commit.eq(1)

        pixel_last = comp == channels - 1
        tile_end = tile_pix == tile_pixels - 1
        image_end = image_pix == image_pixels - 1

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.data.eq(self.i.payload),
                self.o.payload.comp.eq(comp),
                self.o.payload.tile_last.eq(pixel_last & (tile_end | image_end)),
                comp.eq(comp + 1),
            ]
            with m.If(pixel_last):
                m.d.sync += [
                    comp.eq(0),
                    tile_pix.eq(tile_pix + 1),
                    image_pix.eq(image_pix + 1),
                ]
                with m.If(tile_end | image_end):
                    m.d.sync += tile_pix.eq(0)
                with m.If(image_end):
                    m.d.sync += image_pix.eq(0)

        # The commit write starts a new tensor; it wins over a value accepted in the same clock.
        with m.If(commit):
            m.d.sync += [comp.eq(0), tile_pix.eq(0), image_pix.eq(0)]

        return m
