"""Framer: attach the component index and the tile boundary to the raw conv-engine stream.

Stream contract
---------------
- `i`: one signed channel value per beat, channel order within a pixel, pixels in raster order
  (docs/FORMAT.md, "Tensors and pixels"); for lane p of P (`tile_first` = p, `tile_step` = P)
  only the pixels of the tensor's tiles p, p + P, p + 2P, ..., in that order.
- `o`: `framed(width)` (hw/framing.py): the same value with `comp` = its channel index and
  `tile_last` set on the last value of every tile. A tile is `tile_pixels` consecutive pixels and
  also ends at the last pixel of each image (`image_pixels`), so the last tile of an image may be
  shorter (docs/FORMAT.md, "Tiles"); hw/tile_walker.py gives the size of each of the lane's tiles.
- `cfg`: C (global 0) is latched here, tile_pixels (global 3) and image_pixels (global 8) by the
  tile walker; the commit write (global 7) clears the channel and tile counters and restarts the
  walk a clock after its write, so a value accepted in the commit's clock still belongs to the
  tensor before, and the next one is channel 0 of the lane's first tile of a new tensor.

Throughput one value per clock; latency one clock (a single output register, whose ready path is
combinational: `i.ready = ~o.valid | o.ready` while the tile's size is known). After a commit
the input waits `tile_first` + 3 clocks (after the commit's) for the first tile's size; with
`tile_step` > 1 a tile shorter than `tile_step` values (C < P) can make the next one wait too.
"""

from amaranth import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import (
    GLOBAL_CHANNELS,
    REGION_GLOBAL,
    config_signature,
    index,
    region,
    restart_after_commit,
)
from hw.framing import COMP_BITS, framed
from hw.tile_walker import TILE_PIXEL_BITS, TileWalker


class Framer(wiring.Component):
    """Raw channel values in, `framed(width)` values out (see the module docstring).

    Parameters: `width` of the values, `tile_first`/`tile_step` (the tiles of lane p of P: p, P).
    """

    def __init__(self, width: int = 8, tile_first: int = 0, tile_step: int = 1):
        self.width = width
        self.tile_first = tile_first
        self.tile_step = tile_step
        super().__init__({
            "cfg": In(config_signature()),
            "i": In(stream.Signature(signed(width))),
            "o": Out(stream.Signature(framed(width))),
        })

    def elaborate(self, platform):
        m = Module()

        m.submodules.walker = walker = TileWalker(self.tile_first, self.tile_step)
        m.d.comb += [walker.cfg.valid.eq(self.cfg.valid), walker.cfg.payload.eq(self.cfg.payload)]

        channels = Signal(COMP_BITS + 1)
        with m.If(self.cfg.valid & (region(self.cfg.payload.addr) == REGION_GLOBAL) &
                  (index(self.cfg.payload.addr) == GLOBAL_CHANNELS)):
            m.d.sync += channels.eq(self.cfg.payload.data)

        comp = Signal(COMP_BITS)
        tile_pix = Signal(TILE_PIXEL_BITS)
        have = Signal()                    # the current tile's size is in `last_pix`
        last_pix = Signal(TILE_PIXEL_BITS)

        # Whether `comp` is the pixel's last channel is kept in a register, set as `comp` moves,
        # so no comparison with C lies on the path from a value to the tile walker.
        pixel_last = Signal()
        tile_end = pixel_last & (tile_pix == last_pix)

        # The commit resets the counters a clock late (hw/config.py `restart_after_commit`, as
        # the tile walker does); in the restart's clock no value and no tile size is taken.
        restart = restart_after_commit(m, self.cfg)

        m.d.comb += self.i.ready.eq(have & (~self.o.valid | self.o.ready) & ~restart)
        take = self.i.valid & self.i.ready
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.data.eq(self.i.payload),
                self.o.payload.comp.eq(comp),
                self.o.payload.tile_last.eq(tile_end),
                comp.eq(comp + 1),
                pixel_last.eq(comp + 2 == channels),
            ]
            with m.If(pixel_last):
                m.d.sync += [comp.eq(0), pixel_last.eq(channels == 1), tile_pix.eq(tile_pix + 1)]
            with m.If(tile_end):
                m.d.sync += [tile_pix.eq(0), have.eq(0)]

        # The next tile's size is taken as the current tile ends (or as soon as it is known).
        m.d.comb += walker.o.ready.eq((~have | (take & tile_end)) & ~restart)
        with m.If(walker.o.valid & walker.o.ready):
            m.d.sync += [have.eq(1), last_pix.eq(walker.o.payload - 1)]

        # The commit write starts a new tensor after every value accepted up to its clock.
        with m.If(restart):
            m.d.sync += [comp.eq(0), pixel_last.eq(channels == 1), tile_pix.eq(0), have.eq(0)]

        return m
