"""hw/bit_packer.py against golden/bit_packer.py and golden/container.py, under cocotb.

Each test makes a q stream (a calibrated feature map, or random symbols under a hand-built profile
with every mode), turns it into the golden token pairs (`tokens`, `raw_tokens`) that the packer
takes, and the golden tiles (`encode_q`: header word with length, mode, tile number and CRC, then
the chosen payload, raw when coded_words >= raw_words) that it must send. sim/tb_bit_packer.py
drives the tokens with random valid gaps, takes the words with random ready stalls, and every
word and its first/last flags are compared. At full rate into an always-ready sink the cycles
per value over the whole tensor must stay within 1.02.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden.calibrate import calibrate
from golden.profile import ClassParams
from golden.quantizer import quantize
from golden.transform import forward, to_pixels
from hw.bit_packer import BitPacker
from sim.runner import run_cocotb
from sim.tb_bit_packer import packer_data
from sim.tb_framed import design_verilog, feature_map
from sim.tb_vlc_encoder import every_mode_profile, fixture_map, identity_profile, random_q

pytestmark = pytest.mark.hw

RATES = {"stalls": (0.7, 0.6), "full_rate": (1.0, 1.0)}
MAX_CYCLES_PER_VALUE = 1.02
TAIL_CLOCKS = 10      # last token to the last tile's header: P1, P2, pend, W, F, WAIT, HEADER, out
FIELDS = ("data", "first", "last")
MODE_CODED, MODE_RAW = 0, 1

# The main instance: tile buffers of 160 words, lane 0 of 1.
MAX_TILE_WORDS = 160
# A small instance with lane numbering (lane 2 of 3) and buffers a coded payload can overrun.
LANE = {"max_tile_words": 16, "tile_first": 2, "tile_step": 3}


def _verilog(max_tile_words=MAX_TILE_WORDS, tile_first=0, tile_step=1):
    return design_verilog(BitPacker, max_tile_words=max_tile_words, tile_first=tile_first,
                          tile_step=tile_step)


def _run(name, data, rate="stalls", testcase="bit_packer_stream", design=None, seed=1,
         **extra):
    valid_prob, ready_prob = RATES[rate]
    params = {"block": "BitPacker", "test": f"bit_packer-{name}", "valid_prob": valid_prob,
              "ready_prob": ready_prob, "values": int(data["in_tile_last"].size), **extra}
    bench = {k: v for k, v in data.items() if not k.startswith("tile_")}
    result = run_cocotb(_verilog(**(design or {})), "sim.tb_bit_packer", testcase=testcase,
                        data=bench, params=params, seed=seed)
    out = result.outputs
    if not out:
        return out
    # The one comparison: every word and its flags, in stream order (repeated streams: the
    # same words again, the commit restarts the tile numbers).
    repeat = int(extra.get("repeat", 1))
    out["equal"] = all(np.array_equal(out[k], np.tile(data[f"exp_{k}"], repeat))
                       for k in FIELDS)
    return out


def _check(out, data, rate):
    assert out["equal"], f"{int(out['mismatches'])} mismatching words"
    assert int(out["error"]) == 0
    if rate == "full_rate":
        per_value = int(out["cycles"]) / data["in_tile_last"].size
        assert per_value <= MAX_CYCLES_PER_VALUE, f"{per_value:.4f} cycles/value"


# -- real feature maps ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", list(RATES))
def test_feature_map(rate):
    """A 64 x 16 x 16 ResNet-18 feature map (PCA, auto coder, 8-pixel tiles): 16384 values."""
    x = feature_map(channels=64, height=16, width=16)
    prof = calibrate(x, transform="pca", group=8, bits=6, tile_pixels=8)
    q = quantize(forward(to_pixels(x), prof), prof)
    assert prof.raw_words(prof.tile_pixels) <= MAX_TILE_WORDS
    data = packer_data(prof, q, image_pixels=256)
    out = _run(f"fmap-{rate}", data, rate)
    _check(out, data, rate)
    if rate == "full_rate":
        # The last tile leaves as soon as it is packed: the CRCs run while packing, so the end
        # of the stream trails the last token by that tile's words and a few clocks, not twice.
        tail = int(out["cycles"]) - data["in_tile_last"].size
        last_words = int(data["tile_payload_words"][-1]) + 1
        assert tail <= last_words + TAIL_CLOCKS, f"tail {tail}, last tile {last_words} words"


def test_feature_map_post_relu():
    """A post-ReLU map (layer2.0.conv1, first 64 channels, Huffman with zero flags): tiles far
    below their raw size, next to the pre-ReLU map above."""
    x = fixture_map("layer2.0.conv1.post", 64, 16, 16, relu=True)
    prof = calibrate(x, transform="pca", group=8, bits=7, coder="huffman", tile_pixels=4)
    q = quantize(forward(to_pixels(x), prof), prof)
    data = packer_data(prof, q, image_pixels=256)
    _check(_run("fmap-relu", data), data, "stalls")


# -- random symbols, every mode ----------------------------------------------------------------


@pytest.mark.parametrize("rate", list(RATES))
def test_every_mode(rng, rate):
    """Random symbols: tiles that code well and tiles that fall back to raw, images whose last
    tile is short, and the whole stream twice with a commit between (tile numbers restart)."""
    prof = every_mode_profile(rng, channels=48, tile_pixels=3)
    q = random_q(prof, rng, 100)
    data = packer_data(prof, q, image_pixels=25)
    modes = set(data["tile_mode"].tolist())
    assert modes == {MODE_CODED, MODE_RAW}, f"want coded and raw tiles, got modes {modes}"
    _check(_run(f"modes-{rate}", data, rate, repeat=2), data, rate)


def test_one_value_tiles(rng):
    """C = 1, one pixel per tile: every token closes a tile (its padded word and the tile end
    follow at once), 1100 tiles so the tile number wraps at 1024."""
    cls = every_mode_profile(rng).classes
    prof = identity_profile([cls[10]], [0], tile_pixels=1)      # huffman with zero flag
    q = random_q(prof, rng, 1100)
    data = packer_data(prof, q)
    _check(_run("c1-t1", data), data, "stalls")


def test_all_drop(rng):
    """Every class dropped: each tile is a lone header word (raw, length 0), first and last."""
    prof = identity_profile([ClassParams("drop", bits=3)], np.zeros(8, dtype=np.int64),
                            tile_pixels=2)
    q = np.zeros((20, 8), dtype=np.int64)
    data = packer_data(prof, q)
    assert (data["tile_payload_words"] == 0).all()
    _check(_run("all-drop", data), data, "stalls")


def test_lanes_and_coded_overrun(rng):
    """Lane 2 of 3 (tile numbers 2, 5, 8, ... mod 1024) with 16-word tile buffers, exactly the
    raw size of a tile: noisy tiles whose coded payload is twice that (not stored, sent raw),
    and all-zero tiles that code to one word."""
    cls = ClassParams("rice", zflag=True, bits=16, k=0, esc=16)
    prof = identity_profile([cls], np.zeros(16, dtype=np.int64), tile_pixels=4)
    assert prof.raw_words(prof.tile_pixels) == LANE["max_tile_words"]
    q = rng.choice([-32768, 32767, 12345, -23456], size=(4 * 400, 16))
    q[rng.random(400).repeat(4) < 0.3] = 0
    data = packer_data(prof, q, tile_first=LANE["tile_first"], tile_step=LANE["tile_step"])
    assert set(data["tile_mode"].tolist()) == {MODE_CODED, MODE_RAW}
    _check(_run("lanes", data, design=LANE), data, "stalls")


def test_overflow_flag(rng):
    """A profile whose raw tile (20 words) does not fit the 16-word buffers raises `error`."""
    prof = identity_profile([ClassParams("raw", bits=16)], np.zeros(16, dtype=np.int64),
                            tile_pixels=5)
    assert prof.raw_words(prof.tile_pixels) > LANE["max_tile_words"]
    q = rng.integers(-32768, 32768, size=(20, 16))
    _run("overflow", packer_data(prof, q), testcase="bit_packer_overflow_flag", design=LANE)


def test_reset_mid_tile(rng):
    prof = every_mode_profile(rng, channels=48, tile_pixels=3)
    q = random_q(prof, rng, 40)
    data = packer_data(prof, q)
    out = _run("reset", data, testcase="bit_packer_reset_mid_tile", abort_after=4 * 144 + 77)
    _check(out, data, "stalls")


def test_mismatch_is_caught(rng):
    """One flipped bit in one coded token must show in the words: the comparison can fail."""
    prof = every_mode_profile(rng, channels=48, tile_pixels=3)
    q = random_q(prof, rng, 30)
    data = packer_data(prof, q)
    tile = int(np.flatnonzero(data["tile_mode"] == MODE_CODED)[0])
    per_tile = prof.tile_pixels * prof.channels
    nbits = data["in_coded_nbits"][tile * per_tile:(tile + 1) * per_tile]
    k = tile * per_tile + int(np.flatnonzero(nbits > 4)[0])
    data["in_coded_value"][k] ^= 1 << 2
    out = _run("wrong-token", data)
    assert not out["equal"] and int(out["mismatches"]) > 0

