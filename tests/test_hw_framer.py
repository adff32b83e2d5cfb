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
from sim.tb_framed import (
    design_verilog,
    expected_stream,
    framed_data,
    framed_values,
    segment,
    tile_ends,
)
from sim.tb_lanes import lane_rows

pytestmark = pytest.mark.hw

STALLS = {"valid_prob": 0.7, "ready_prob": 0.6}
FULL_RATE = {"valid_prob": 1.0, "ready_prob": 1.0}


def _profile(channels, tile_pixels):
    return Profile(channels=channels, group=1, transform="identity", frac_bits=0,
                   matrix=np.ones((channels, 1, 1), dtype=np.int64),
                   offsets=np.zeros(channels, dtype=np.int64),
                   class_map=np.zeros(channels, dtype=np.int64),
                   classes=[ClassParams(mode="raw")], tile_pixels=tile_pixels)


def _stream(channels, tile_pixels, image_pixels, images, rng):
    pixels = images * image_pixels
    x = rng.integers(-128, 128, size=(pixels, channels))
    x[0], x[1] = -128, 127
    return framed_values(x, tile_ends(pixels, tile_pixels, image_pixels), channels)


def _run(name, segments, **design):
    data, info = framed_data(segments)
    params = {"block": "Framer", "test": name, "width": 8, "raw_input": True, "segments": info}
    out = run_cocotb(design_verilog(Framer, width=8, **design), "sim.tb_framer", data=data,
                     params=params, seed=1).outputs
    expected = expected_stream(data)
    for k in expected:
        assert np.array_equal(out[k], expected[k]), f"{k} differs"
    return out


def test_framer_tiles(rng):
    """12 channels, tiles of 5 pixels, images of 7 pixels (a short tile at each image end); at
    full rate, then under stalls, then 1 channel with 1-pixel tiles."""
    s = _stream(12, 5, 7, 3, rng)
    writes = config_writes(_profile(12, 5), image_pixels=7)
    s1 = _stream(1, 1, 3, 2, rng)
    out = _run("tiles", [segment(writes, {"data": s["data"]}, s, "full_rate", **FULL_RATE),
                         segment(writes, {"data": s["data"]}, s, "stalls", **STALLS),
                         segment(config_writes(_profile(1, 1), image_pixels=3),
                                 {"data": s1["data"]}, s1, "c1", **STALLS)])
    assert int(out["cycles"][0]) / int(out["values"][0]) <= 1.02


def test_framer_commit_restarts_counters(rng):
    """A partial tensor (3 pixels and 5 values), the commit write alone, then a whole tensor,
    which must start again from channel 0 of pixel 0 of a fresh tile."""
    s = _stream(12, 5, 7, 2, rng)
    cut = 3 * 12 + 5
    part = {k: v[:cut] for k, v in s.items()}
    commit = [((REGION_GLOBAL << 16) | GLOBAL_COMMIT, 96)]
    _run("commit", [segment(config_writes(_profile(12, 5), image_pixels=7),
                            {"data": part["data"]}, part, "partial", **STALLS),
                    segment(commit, {"data": s["data"]}, s, "after_commit", **STALLS)])


def _lane_stream(channels, tile_pixels, image_pixels, images, lane, lanes, rng):
    """The stream of lane `lane` of `lanes`: the pixels of tiles lane, lane + lanes, ..."""
    s = _stream(channels, tile_pixels, image_pixels, images, rng)
    rows = lane_rows((images, channels, 1, image_pixels), tile_pixels, lanes)[lane]
    idx = (rows[:, None] * channels + np.arange(channels)).reshape(-1)
    return {k: v[idx] for k, v in s.items()}


def test_framer_lane_of_three(rng):
    """Lane 1 of 3 (tile_first 1, tile_step 3) sees only tiles 1, 4, 7, ...: 5-pixel tiles on
    7-pixel images give it short and full tiles in turn; 1-channel 1-pixel tiles (shorter than
    the step, so the framer waits for the walk) after a new configuration."""
    s = _lane_stream(12, 5, 7, 5, 1, 3, rng)
    s1 = _lane_stream(1, 1, 4, 3, 1, 3, rng)
    out = _run("lane1of3", [
        segment(config_writes(_profile(12, 5), image_pixels=7), {"data": s["data"]}, s,
                "full_rate", **FULL_RATE),
        segment(config_writes(_profile(12, 5), image_pixels=7), {"data": s["data"]}, s,
                "stalls", **STALLS),
        segment(config_writes(_profile(1, 1), image_pixels=4), {"data": s1["data"]}, s1,
                "c1", **STALLS)], tile_first=1, tile_step=3)
    assert int(out["cycles"][0]) / int(out["values"][0]) <= 1.02
