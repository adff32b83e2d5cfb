"""Tile walker: the pixel count of each tile a lane handles, in order.

A tensor's tiles are `tile_pixels` consecutive pixels of one image, the last tile of each image
shorter when `tile_pixels` does not divide the image's pixels (docs/FORMAT.md, "Tiles"). Lane p of
P handles tiles p, p + P, p + 2P, ... of the tensor (numbering restarts at every tensor, and runs
across images). Every block of a lane that counts pixels (hw/framer.py, hw/bit_unpacker.py,
hw/vlc_decoder.py) takes its tiles' sizes from here, so the walk over the other lanes' tiles is
written once.

Stream contract
---------------
- `o`: the pixel count (1..tile_pixels) of each of the lane's tiles, in order; one beat per tile,
  taken by the consumer when it starts the tile. The stream never ends: the image wraps around.
- `cfg`: tile_pixels (global 3) and image_pixels (global 8) are latched; the commit (global 7)
  restarts the walk at the tensor's first tile a clock after its write (and drops a count not
  yet taken; a consumer takes none in the commit's clock or the one after). Before the first
  commit `o` is never valid.

One tile of the walk per clock: after the commit, `tile_first` + 2 clocks to the first count;
after a count is taken, `tile_step` clocks to the next one (with `tile_step` = 1 it is computed
in the clock that takes the previous one, so a lane never waits for it). Every lane's tile has at
least C values, so with C >= `tile_step` the walk is always ahead of the consumer.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import (
    GLOBAL_IMAGE_PIXELS,
    GLOBAL_TILE_PIXELS,
    REGION_GLOBAL,
    config_signature,
    index,
    region,
    restart_after_commit,
)

TILE_PIXEL_BITS = 16    # tile_pixels < 2^16 (golden/profile.py validates it)
IMAGE_PIXEL_BITS = 32   # image_pixels < 2^32 (config data width)


class TileWalker(wiring.Component):
    """Pixel counts of the tiles `tile_first`, `tile_first + tile_step`, ... (module docstring).
    """

    def __init__(self, tile_first: int = 0, tile_step: int = 1):
        if tile_step < 1 or tile_first < 0:
            raise ValueError("tile_step must be >= 1 and tile_first >= 0")
        self.tile_first = int(tile_first)
        self.tile_step = int(tile_step)
        super().__init__({
            "cfg": In(config_signature()),
            "o": Out(stream.Signature(TILE_PIXEL_BITS)),
        })

    def elaborate(self, platform):
        m = Module()

        tile_pixels = Signal(TILE_PIXEL_BITS)
        image_pixels = Signal(IMAGE_PIXEL_BITS)
        cfg = self.cfg
        with m.If(cfg.valid & (region(cfg.p.addr) == REGION_GLOBAL)):
            with m.Switch(index(cfg.p.addr)):
                with m.Case(GLOBAL_TILE_PIXELS):
                    m.d.sync += tile_pixels.eq(cfg.p.data)
                with m.Case(GLOBAL_IMAGE_PIXELS):
                    m.d.sync += image_pixels.eq(cfg.p.data)

        armed = Signal()        # a commit was seen: the geometry is valid
        pos = Signal(IMAGE_PIXEL_BITS)      # first pixel (within its image) of the next tile
        skips = Signal(range(max(self.tile_first, self.tile_step - 1) + 1))  # others' tiles
        left = Signal(IMAGE_PIXEL_BITS)
        m.d.comb += left.eq(image_pixels - pos)
        nxt = Signal(IMAGE_PIXEL_BITS + 1)
        m.d.comb += nxt.eq(pos + tile_pixels)
        after = Mux(nxt >= image_pixels, 0, nxt)     # the tile after: next image at its end

        free = ~self.o.valid | self.o.ready
        with m.If(armed & free):
            m.d.sync += pos.eq(after)
            with m.If(skips != 0):
                m.d.sync += [skips.eq(skips - 1), self.o.valid.eq(0)]
            with m.Else():
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.eq(Mux(left < tile_pixels, left, tile_pixels)),
                    skips.eq(self.tile_step - 1),
                ]

        # The commit restarts the walk a clock late (hw/config.py `restart_after_commit`); a
        # consumer takes no count in that clock (hw/framer.py, hw/bit_unpacker.py and
        # hw/vlc_decoder.py each restart with it).
        restart = restart_after_commit(m, cfg)
        with m.If(restart):
            m.d.sync += [armed.eq(1), pos.eq(0), skips.eq(self.tile_first),
                         self.o.valid.eq(0)]
        return m
