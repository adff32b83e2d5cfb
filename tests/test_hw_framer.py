"""hw/framer.py in generated Verilog under cocotb: component indices and tile ends.

The expected stream comes from the golden container's tiling (tiles of `tile_pixels` pixels that
never cross an image, so the last tile of an image is short). A commit write (global 7) in the
middle of a pixel must restart the counters: the values after it are channel 0 of pixel 0 again.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden.profile import ClassParams, Profile, config_writes
from hw.config import GLOBAL_COMMIT, REGION_GLOBAL
from hw.framer import Framer
from sim.runner import run_cocotb
from sim.tb_framed import design_verilog, framed_data, framed_values, tile_ends

pytestmark = pytest.mark.hw

RATES = {"stalls": (0.7, 0.6), "full_rate": (1.0, 1.0)}


def _profile(channels, tile_pixels):
    return Profile(channels=channels, group=1, transform="identity", frac_bits=0,
                   matrix=np.ones((channels, 1, 1), dtype=np.int64),
                   offsets=np.zeros(channels, dtype=np.int64),
                   class_map=np.zeros(channels, dtype=np.int64),
                   classes=[ClassParams(mode="raw")], tile_pixels=tile_pixels)


def _run(name, channels, tile_pixels, image_pixels, images, rng, rate="stalls", abort_at=None):
    prof = _profile(channels, tile_pixels)
    pixels = images * image_pixels
    x = rng.integers(-128, 128, size=(pixels, channels))
    x[0], x[1] = -128, 127
    stream = framed_values(x, tile_ends(pixels, tile_pixels, image_pixels), channels)
    writes = config_writes(prof, image_pixels=image_pixels)
    params = {"block": "Framer", "test": name, "width": 8, "raw_input": True,
              "valid_prob": RATES[rate][0], "ready_prob": RATES[rate][1]}
    mid = None
    if abort_at is not None:
        # A partial tensor of `abort_at` values (framed from the reset counters), the commit
        # write, then the whole tensor again from channel 0 of pixel 0.
        stream = {k: np.concatenate([v[:abort_at], v]) for k, v in stream.items()}
        mid = [((REGION_GLOBAL << 16) | GLOBAL_COMMIT, prof.raw_bits_per_pixel)]
        params["mid_at"] = abort_at
    data = framed_data(writes, {"data": stream["data"]}, stream, mid_writes=mid)
    out = run_cocotb(design_verilog(Framer, width=8), "sim.tb_framer", data=data,
                     params=params, seed=1).outputs
    for k in ("data", "comp", "tile_last"):
        assert np.array_equal(out[k], stream[k]), f"{k} differs"
    return out


@pytest.mark.parametrize("rate", list(RATES))
def test_framer_tiles(rate, rng):
    """12 channels, tiles of 5 pixels, images of 7 pixels (a short tile at each image end)."""
    out = _run(f"tiles-{rate}", 12, 5, 7, 3, rng, rate)
    if rate == "full_rate":
        assert int(out["cycles"]) / len(out["data"]) <= 1.02


def test_framer_commit_restarts_counters(rng):
    _run("commit", 12, 5, 7, 2, rng, abort_at=3 * 12 + 5)


def test_framer_one_channel_one_pixel_tiles(rng):
    _run("c1", 1, 1, 3, 2, rng)
