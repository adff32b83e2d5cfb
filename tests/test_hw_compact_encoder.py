"""The compact (sequential, iCE40UP5K-sized) encoder lane against the golden codec.

Same testbench as the full-rate lane (sim/tb_lanes.py "encoder_lane"): the lane takes raw values
and must put out exactly the golden container's tile words, headers (CRC) included, with the
`first` and `last` flags. Small real feature-map slices keep the per-clock Python testbench fast;
one Verilator model per lane build serves every case.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fmcodec.capacity import LaneBuild, problems
from golden.calibrate import calibrate
from golden.container import tiling
from golden.transform import to_pixels
from hw.compact_encoder import CompactEncoderLane
from sim.runner import run_cocotb
from sim.tb_framed import design_verilog
from sim.tb_lanes import encoder_case, fixture_tensor, golden_tiles, lane_rows

pytestmark = pytest.mark.hw

C = 64
PARAMS = {"max_channels": C, "max_tile_words": 64}
CYCLES_PER_VALUE = 120       # the testbench's timeout bound, well above the lane's rate
MAX_CYCLES_PER_VALUE = 60    # the lane's measured rate is about 50 (module docstring)
STALLS = {"valid_prob": 0.7, "ready_prob": 0.6}


@pytest.fixture(scope="module")
def fmap():
    f = fixture_tensor("layer1.0.conv1.pre")
    assert f.shape[1] == C
    return f


def _small(f, n=1, h=4, w=8):
    return np.ascontiguousarray(f[:n, :, :h, :w])


def _simulate(design, data, params, expected):
    """One run of the encoder-lane testbench; every word, `first` and `last` equal to golden."""
    params["timeout_cycles_per_value"] = CYCLES_PER_VALUE
    out = run_cocotb(design, "sim.tb_lanes", testcase="encoder_lane", data=data,
                     params=params).outputs
    assert int(out["extra"]) == 0, f"{int(out['extra'])} beats more than expected"
    for f, v in expected.items():
        got = out[f].astype(np.int64) if f == "data" else out[f]
        assert np.array_equal(got, np.asarray(v, dtype=np.int64)), \
            f"{f}: {int((got != v).sum())} of {len(v)} differ"
    print(f"{params['test']}: {int(out['cycles']) / params['values']:.1f} cycles per value")
    return out


def _run(x, profile, name, design=None, **kw):
    data, params, expected, enc = encoder_case(x, profile, f"compact_encoder/{name}", **kw)
    out = _simulate(design or design_verilog(CompactEncoderLane, **PARAMS), data, params,
                    expected)
    return out, enc


# Profiles are calibrated on all four images of the layer (a real mix of classes) and run on a
# small slice; tiles of 8 pixels keep the raw tile (up to 8 bits x 64 channels) within the
# build's 64 words.

def test_pca_auto_full_rate(fmap):
    profile = calibrate(fmap, transform="pca", group=8, bits=8, tile_pixels=8)
    out, _ = _run(_small(fmap), profile, "pca_full_rate")
    assert int(out["error"]) == 0
    assert int(out["cycles"]) / _small(fmap).size <= MAX_CYCLES_PER_VALUE


def test_pca_auto_stalls(fmap):
    """4-bit classes: Huffman with and without zero flags, Rice with zero flags, drop."""
    profile = calibrate(fmap, transform="pca", group=8, bits=4, tile_pixels=8)
    modes = {(cp.mode, bool(cp.zflag)) for cp in profile.classes}
    assert {("huffman", True), ("huffman", False), ("rice", True), ("drop", False)} <= modes
    out, _ = _run(_small(fmap), profile, "pca_stalls", **STALLS)
    assert int(out["error"]) == 0


def test_every_mode(fmap):
    """Classes edited into the modes calibration does not pick here: raw with a zero flag,
    Rice with a zero flag and an escape at 3 (so large values take the escape), drop."""
    profile = calibrate(fmap, transform="pca", group=8, bits=8, tile_pixels=8)
    cl = list(profile.classes)
    cl[15] = dataclasses.replace(cl[15], mode="drop")
    cl[14] = dataclasses.replace(cl[14], mode="raw", zflag=True)
    cl[13] = dataclasses.replace(cl[13], mode="rice", zflag=True, k=1, esc=3)
    cl[12] = dataclasses.replace(cl[12], zflag=True)
    cl[0] = dataclasses.replace(cl[0], mode="rice", zflag=False, k=2, esc=2)
    profile = dataclasses.replace(profile, classes=cl)
    out, _ = _run(_small(fmap), profile, "every_mode")
    assert int(out["error"]) == 0


def test_golomb(fmap):
    x = _small(fmap)
    profile = calibrate(fmap, transform="pca", group=8, bits=8, coder="golomb", tile_pixels=8)
    assert any(cp.mode == "rice" for cp in profile.classes)
    out, _ = _run(x, profile, "golomb", **STALLS)
    assert int(out["error"]) == 0


def test_dct_short_tiles(fmap):
    """Three 3x3 images in tiles of 7 pixels: each image ends in a 2-pixel tile."""
    x = np.ascontiguousarray(fmap[:3, :, :3, :3])
    profile = calibrate(x, transform="dct", group=8, bits=6, tile_pixels=7)
    assert list(tiling(x.shape, 7).count) == [7, 2] * 3
    out, _ = _run(x, profile, "dct_short_tiles", **STALLS)
    assert int(out["error"]) == 0


def test_raw_fallback(fmap):
    """Noise under a feature-map profile codes worse than raw: raw and coded tiles side by side
    (the noise pixels first, then feature-map pixels)."""
    ref = _small(fmap)
    profile = calibrate(ref, transform="pca", group=8, bits=8, tile_pixels=8)
    rng = np.random.default_rng(3)
    noise = rng.integers(-128, 128, size=(1, C, 2, 8), dtype=np.int8)
    x = np.concatenate([noise, ref[:, :, :2]], axis=2)
    out, enc = _run(x, profile, "raw_fallback")
    assert set(enc.tile_mode.tolist()) == {0, 1}, enc.tile_mode
    assert int(out["error"]) == 0


def _error_flag(x, profile, name):
    """The lane's `error` after a run on a profile outside the build's limits (its words are
    not checked: they cannot match)."""
    assert problems(profile, LaneBuild(max_channels=C, max_tile_words=PARAMS["max_tile_words"]))
    data, params, _, _ = encoder_case(x, profile, f"compact_encoder/{name}")
    params["timeout_cycles_per_value"] = CYCLES_PER_VALUE
    params["n_out"] = 1          # one word is enough to end the run
    out = run_cocotb(design_verilog(CompactEncoderLane, **PARAMS), "sim.tb_lanes",
                     testcase="encoder_lane", data=data, params=params).outputs
    return int(out["error"])


def test_too_many_channels_raises_error(fmap):
    x = np.ascontiguousarray(np.concatenate([fmap[:1, :, :1, :2]] * 2, axis=1))   # 128
    assert _error_flag(x, calibrate(x, transform="dct", group=8, bits=8, tile_pixels=2),
                       "too_many_channels") == 1


def test_tile_beyond_buffer_raises_error(fmap):
    """Raw tiles of 16 pixels need more than the build's 64 words: the raw buffer overruns."""
    profile = calibrate(fmap, transform="pca", group=8, bits=8, tile_pixels=16)
    assert profile.raw_words(16) > PARAMS["max_tile_words"]
    assert _error_flag(np.ascontiguousarray(fmap[:1, :, :1, :16]), profile,
                       "tile_beyond_buffer") == 1


def test_int16_input(fmap):
    """int16 values (in_width 16): offsets and d = x - mu take their full width."""
    x16 = fmap.astype(np.int16) * 181 + 300
    profile = calibrate(x16, transform="pca", group=8, bits=8, tile_pixels=8)
    assert profile.dtype == "int16"
    design = design_verilog(CompactEncoderLane, in_width=16, **PARAMS)
    out, _ = _run(_small(x16), profile, "int16", design=design, **STALLS)
    assert int(out["error"]) == 0


def test_lane_1_of_2(fmap):
    """Lane 1 of P = 2 (`tile_first` 1, `tile_step` 2, hw/tile_walker.py): it takes tiles 1, 3,
    5, 7 of three 3x3 images in tiles of 4 pixels (4, 4, 1 per image) and numbers them so."""
    x = np.ascontiguousarray(fmap[:3, :, :3, :3])
    profile = calibrate(x, transform="pca", group=8, bits=8, tile_pixels=4)
    data, params, _, enc = encoder_case(x, profile, "compact_encoder/lane_1_of_2", **STALLS)
    rows = lane_rows(x.shape, 4, 2)[1]
    data["in_data"] = to_pixels(x)[rows].reshape(-1)
    words, first, last = golden_tiles(enc)
    tile = np.cumsum(first) - 1                     # the tile of every golden word
    keep = tile % 2 == 1
    assert enc.tile_count[1::2].tolist() == [4, 4, 1, 4]
    expected = {"data": words[keep], "first": first[keep], "last": last[keep]}
    params.update(values=int(data["in_data"].size), n_out=int(keep.sum()))
    design = design_verilog(CompactEncoderLane, tile_first=1, tile_step=2, **PARAMS)
    out = _simulate(design, data, params, expected)
    assert int(out["error"]) == 0


def test_edge_parameters(fmap):
    """Shift and width extremes: F = 3, qshift 0 and 47, 16-bit raw and Rice classes (k 15,
    esc 16, with a zero flag)."""
    profile = calibrate(fmap, transform="dct", group=8, bits=8, tile_pixels=4, frac_bits=3)
    cl = list(profile.classes)
    cl[1] = dataclasses.replace(cl[1], mode="raw", bits=16, qmul=1, qshift=0, zflag=False)
    cl[2] = dataclasses.replace(cl[2], mode="rice", bits=16, qmul=3, qshift=0, k=15, esc=16,
                                zflag=True)
    cl[3] = dataclasses.replace(cl[3], qmul=65535, qshift=47)
    profile = dataclasses.replace(profile, classes=cl)
    out, _ = _run(np.ascontiguousarray(fmap[:1, :, :2, :4]), profile, "edge_parameters")
    assert int(out["error"]) == 0
