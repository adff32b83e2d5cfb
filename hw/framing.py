"""Payload layouts of the value streams between the blocks of a lane.

Every value inside a lane travels with its component (channel) index within the pixel and a flag
marking the last value of a tile, so a block looks up its per-class parameters from `comp` and
closes a tile on `tile_last` without a counter of its own. `hw/framer.py` attaches both to the raw
conv-engine stream; the decoder lane's VLC decoder produces them from its own counters.
"""

from amaranth.hdl import signed
from amaranth.lib import data

COMP_BITS = 10  # up to 1024 channels (ResNet-18 needs 512)


def framed(width: int) -> data.StructLayout:
    """A value of a pixel: `data` (signed), `comp` in 0..C-1, `tile_last` on a tile's last value."""
    return data.StructLayout({
        "data": signed(width),
        "comp": COMP_BITS,
        "tile_last": 1,
    })
