"""The compact (iCE40-sized) decoder lane against the golden codec, in Verilog under cocotb.

The same testbench as the full decoder lane (sim/tb_lanes.py "decoder_lane"): the golden
container's tile words in, exactly the golden reconstruction out (value, comp and tile_last, one
equality each). Small tensors, since the lane takes tens of clocks per value and the testbench
drives every clock from Python: real feature maps at full rate (clocks per value measured) and
under stalls with ReLU, Rice only, DCT with a short last tile per image, lane 1 of 2, raw tiles
next to coded ones with Rice escapes and Huffman ESCs, zero flags, dropped and raw classes, and
a corrupted or truncated tile (error raised, exact value count, every other tile exact), and a
channel count of 0 or not a multiple of N (error raised, every tile ends, no hang).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from golden.calibrate import calibrate
from golden.profile import config_address
from hw.compact_decoder import CompactDecoderLane
from hw.config import GLOBAL_CHANNELS, REGION_GLOBAL
from sim.runner import run_cocotb
from sim.tb_framed import design_verilog
from sim.tb_lanes import check_other_tiles_exact, decoder_case, fixture_tensor, lane_rows

pytestmark = pytest.mark.hw

C = 64
MAX_TILE_WORDS = 64
CYCLES_PER_VALUE = 60       # the run's timeout per value; the measured rate is asserted below
MAX_CYCLES_PER_VALUE = 44   # clocks per value at full rate, payload words included (41.7)
STALLS = {"valid_prob": 0.7, "ready_prob": 0.6}


@pytest.fixture(scope="module")
def fmap():
    f = fixture_tensor("layer1.0.conv1.pre")
    assert f.shape[1] == C
    return f


def _design(**kw):
    return design_verilog(CompactDecoderLane, max_channels=C, max_tile_words=MAX_TILE_WORDS, **kw)


def _case(x, profile, name, **kw):
    assert profile.raw_words(profile.tile_pixels) <= MAX_TILE_WORDS
    data, params, expected, enc = decoder_case(x, profile, f"compact_decoder/{name}", **kw)
    params["timeout_cycles_per_value"] = CYCLES_PER_VALUE
    return data, params, expected, enc


def _run(data, params, expected=None, design=None):
    out = run_cocotb(design or _design(), "sim.tb_lanes", testcase="decoder_lane", data=data,
                     params=params).outputs
    assert int(out["extra"]) == 0, f"{int(out['extra'])} beats more than expected"
    for f, v in (expected or {}).items():
        got = out[f].astype(np.int64)
        assert np.array_equal(got, np.asarray(v, dtype=np.int64)), \
            f"{f}: {int((got != v).sum())} of {len(v)} differ"
    return out


def _exact(x, profile, name, **kw):
    data, params, expected, enc = _case(x, profile, name, **kw)
    out = _run(data, params, expected)
    assert int(out["error"]) == 0
    return out, enc


def test_full_rate(fmap):
    x = np.ascontiguousarray(fmap[:1, :, :2, :8])
    profile = calibrate(fmap[:1], transform="pca", group=8, bits=8, tile_pixels=8)
    out, enc = _exact(x, profile, "full_rate")
    per_value = int(out["cycles"]) / x.size
    print(f"CompactDecoderLane: {per_value:.1f} cycles/value "
          f"({int(sum(enc.tile_payload_words))} payload words, {x.size} values)")
    assert per_value <= MAX_CYCLES_PER_VALUE


def test_stalls_relu(fmap):
    x = np.ascontiguousarray(fmap[1:2, :, :2, :8])
    profile = calibrate(fmap[:1], transform="pca", group=8, bits=8, tile_pixels=8, relu=True)
    _exact(x, profile, "stalls_relu", **STALLS)


def test_golomb(fmap):
    x = np.ascontiguousarray(fmap[2:3, :, 4:6, :8])
    profile = calibrate(fmap[2:3], transform="pca", group=8, bits=8, tile_pixels=8,
                        coder="golomb")
    _exact(x, profile, "golomb")


def test_dct_short_tiles(fmap):
    """Three images of 3 x 4 pixels in tiles of 7: a 5-pixel last tile per image."""
    x = np.ascontiguousarray(fmap[:3, :, :3, :4])
    profile = calibrate(x, transform="dct", group=8, bits=6, tile_pixels=7)
    _, enc = _exact(x, profile, "dct_short_tiles")
    assert sorted(set(enc.tile_count.tolist())) == [5, 7]


def test_lane_one_of_two(fmap):
    """Lane 1 of 2 (`tile_first` 1, `tile_step` 2): it gets the tensor's odd tiles only, here
    every image's short last tile, and checks their tile numbers 1, 3, 5."""
    x = np.ascontiguousarray(fmap[:3, :, :3, :4])
    profile = calibrate(x, transform="dct", group=8, bits=6, tile_pixels=7)
    data, params, expected, enc = _case(x, profile, "lane_one_of_two")
    ends = np.cumsum(1 + enc.tile_payload_words)
    keep = np.concatenate([np.arange(ends[t - 1], ends[t]) for t in range(1, ends.size, 2)])
    data["in_data"], data["in_last"] = data["in_data"][keep], data["in_last"][keep]
    rows = lane_rows(x.shape, profile.tile_pixels, 2)[1]
    pick = (rows[:, None] * C + np.arange(C)[None, :]).reshape(-1)
    params["n_out"] = params["values"] = int(pick.size)
    out = _run(data, params, {f: np.asarray(v)[pick] for f, v in expected.items()},
               design=_design(tile_first=1, tile_step=2))
    assert int(out["error"]) == 0


def test_raw_tiles_and_escapes(fmap):
    """Noise next to a feature map, with the feature map's profile: a tile of noise goes raw;
    a feature map tile with one noisy pixel stays coded, with Rice escapes and Huffman ESCs."""
    rng = np.random.default_rng(5)
    noise = rng.integers(-128, 128, size=(1, C, 1, 8)).astype(np.int8)
    x = np.concatenate([fmap[:1, :, :1, :8], noise], axis=0)
    x[0, :, 0, 3] = rng.integers(-128, 128, size=C)
    profile = calibrate(fmap[:1], transform="pca", group=8, bits=8, tile_pixels=8)
    _, enc = _exact(x, profile, "raw_tiles")
    assert enc.tile_mode.tolist() == [0, 1]


def test_zero_flags_drop_raw_classes():
    """Huffman and Rice classes with zero flags, dropped classes, two classes turned into raw
    ones (with and without a zero flag) and a Rice class with frequent escapes, under stalls."""
    f = fixture_tensor("conv1.pre")
    profile = copy.deepcopy(calibrate(f[:1], transform="pca", group=8, bits=5, tile_pixels=8))
    modes = [(c.mode, bool(c.zflag)) for c in profile.classes]
    assert {("huffman", True), ("rice", True), ("drop", False)} <= set(modes)
    coded = [n for n, c in enumerate(profile.classes) if c.mode == "huffman"]
    for n, zflag in zip(coded[:2], (True, False), strict=True):
        profile.classes[n].mode = "raw"
        profile.classes[n].zflag = zflag
        profile.classes[n].lengths = [0] * len(profile.classes[n].lengths)
    rice = [c for c in profile.classes if c.mode == "rice"]
    rice[0].esc, rice[0].k = 1, 0       # every nonzero value escapes
    rice[1].esc, rice[1].k = 1, 1       # the larger ones escape
    profile.validate()
    x = np.ascontiguousarray(f[1:2, :, :2, :8])
    _exact(x, profile, "zero_flags", **STALLS)


def _damaged(fmap, name, damage):
    """Tile 1's words (header at `start`, `n` payload words) damaged by `damage`, which returns
    the new words and `last` flags: the error flag rises, exactly
    the tensor's value count comes out, and every other tile is exact."""
    x = np.ascontiguousarray(fmap[:1, :, :3, :8])
    profile = calibrate(fmap[:1], transform="pca", group=8, bits=8, tile_pixels=8)
    data, params, expected, enc = _case(x, profile, name)
    bad_tile = 1
    start = int(sum(1 + n for n in enc.tile_payload_words[:bad_tile]))
    data["in_data"], data["in_last"] = damage(data["in_data"].copy(), data["in_last"].copy(),
                                              start, int(enc.tile_payload_words[bad_tile]))
    check_other_tiles_exact(_run(data, params), expected, profile.tile_pixels * C, bad_tile)


def test_corrupted_bit(fmap):
    def flip(words, last, start, n):
        words[start + 1] ^= 1 << 17
        return words, last
    _damaged(fmap, "corrupt", flip)


def test_truncated_tile(fmap):
    """The reader's `last` two words early: the rest of the tile's words never come."""
    def truncate(words, last, start, n):
        assert n > 3
        last[start + n - 2] = 1
        return np.delete(words, [start + n - 1, start + n]), np.delete(last, [start + n - 1,
                                                                            start + n])
    _damaged(fmap, "truncated", truncate)


@pytest.mark.parametrize("channels", [0, 60])
def test_bad_channel_count_ends_tiles(fmap, channels):
    """C written as 0 or as 60 (not a multiple of N = 8) for a 64-channel stream: a `transform`
    error, and still every tile ends in bounded clocks, all its words taken: a pixel ends with
    the group that reaches C, so N values per pixel for C = 0 and 64 for C = 60."""
    x = np.ascontiguousarray(fmap[:1, :, :2, :8])
    profile = calibrate(fmap[:1], transform="pca", group=8, bits=8, tile_pixels=8)
    data, params, expected, enc = _case(x, profile, f"bad_channels_{channels}")
    at = data["writes"][:, 0] == config_address(REGION_GLOBAL, GLOBAL_CHANNELS)
    assert int(at.sum()) == 1
    data["writes"][at, 1] = channels
    per_pixel = 8 * -(-channels // 8) or 8
    pixels = x.shape[2] * x.shape[3]
    comp = np.tile(np.arange(per_pixel), pixels)
    tile_last = np.zeros((pixels, per_pixel), dtype=np.int64)
    tile_last[enc.tile_start + enc.tile_count - 1, -1] = 1
    params["n_out"] = comp.size
    out = _run(data, params, {"comp": comp, "tile_last": tile_last.reshape(-1)})
    assert int(out["error"]) == 1


def test_group_of_one_is_refused():
    with pytest.raises(ValueError, match="N >= 2"):
        CompactDecoderLane(group=1)
