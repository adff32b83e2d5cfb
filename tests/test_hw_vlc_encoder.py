"""hw/vlc_encoder.py against golden/vlc_encoder.py, in generated Verilog under cocotb.

Each test builds a profile (calibrated on a feature map with every coder, or built by hand with
every mode, zero flag, width and code extreme), quantizes or draws the q stream, computes the
golden token pairs (`tokens`, `raw_tokens`), runs sim/tb_vlc_encoder.py on the Verilog of the
encoder and compares every coded token, raw token and tile flag with the golden ones. Streams run
with random valid gaps and ready stalls, and at full rate into an always-ready sink, where the
cycles per value over the whole tensor (pixel-buffer fill included) must stay within 1.02.
The lookahead tests check that the read side runs D components behind the write side (D from the
class map, docs in hw/vlc_encoder.py) and falls back to whole pixels for a map written out of order.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden.calibrate import calibrate
from golden.profile import ClassParams, config_writes
from golden.quantizer import quantize
from golden.transform import forward, to_pixels
from hw.vlc_encoder import VlcEncoder
from sim.runner import run_cocotb
from sim.tb_framed import design_verilog, feature_map
from sim.tb_vlc_encoder import (
    encoder_data,
    every_mode_classes,
    every_mode_profile,
    fixture_map,
    identity_profile,
    random_q,
)

pytestmark = pytest.mark.hw

MAX_CHANNELS = 64
RATES = {"stalls": (0.7, 0.6), "full_rate": (1.0, 1.0)}
MAX_CYCLES_PER_VALUE = 1.02
FIELDS = ("coded_value", "coded_nbits", "raw_value", "raw_nbits", "tile_last")


def _verilog():
    # One instance for every test: converted once per process, one cached Verilator model.
    return design_verilog(VlcEncoder, q_width=16, max_channels=MAX_CHANNELS, max_classes=16)


def _run(name, data, rate="stalls", testcase="vlc_encoder_stream", seed=1, **extra):
    valid_prob, ready_prob = RATES[rate]
    params = {"block": "VlcEncoder", "test": f"vlc_encoder-{name}", "q_width": 16,
              "valid_prob": valid_prob, "ready_prob": ready_prob, **extra}
    result = run_cocotb(_verilog(), "sim.tb_vlc_encoder", testcase=testcase, data=data,
                        params=params, seed=seed)
    out = result.outputs
    if not out:
        return out
    # The one comparison: every field of every token pair, in stream order.
    reps = int(extra.get("repeat", 1))
    out["equal"] = all(np.array_equal(out[k], np.tile(data[f"exp_{k}"], reps)) for k in FIELDS)
    return out


def _check(out, rate):
    assert out["equal"], f"{int(out['mismatches'])} mismatching token pairs"
    assert int(out["error"]) == 0
    if rate == "full_rate":
        per_value = int(out["cycles"]) / len(out["tile_last"])
        assert per_value <= MAX_CYCLES_PER_VALUE, f"{per_value:.4f} cycles/value"


def _fmap_q(coder, bits=6, tile_pixels=8, h=8, w=8):
    x = feature_map(channels=64, height=h, width=w)
    prof = calibrate(x, transform="pca", group=8, bits=bits, coder=coder, tile_pixels=tile_pixels)
    return prof, quantize(forward(to_pixels(x), prof), prof), h * w


# -- real feature maps ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", list(RATES))
def test_feature_map(rate):
    """A 64 x 16 x 16 ResNet-18 feature map (PCA, auto coder): 16384 values."""
    prof, q, hw = _fmap_q("auto", h=16, w=16)
    out = _run(f"fmap-{rate}", encoder_data(prof, q, hw), rate)
    _check(out, rate)


def test_feature_map_post_relu():
    """A post-ReLU map (layer2.0.conv1, first 64 channels, more than half zeros): PCA at 5 bits
    gives zero-flagged Huffman classes and a Rice class; 4-pixel tiles."""
    x = fixture_map("layer2.0.conv1.post", 64, 16, 16, relu=True)
    prof = calibrate(x, transform="pca", group=8, bits=5, tile_pixels=4)
    q = quantize(forward(to_pixels(x), prof), prof)
    assert any(c.zflag for c in prof.classes), "calibration chose no zero flag"
    _check(_run("fmap-relu", encoder_data(prof, q, 256)), "stalls")


@pytest.mark.parametrize("coder,bits", [("huffman", 8), ("golomb", 5), ("pooled-huffman", 7)])
def test_feature_map_coders(coder, bits):
    prof, q, hw = _fmap_q(coder, bits=bits, tile_pixels=5)
    modes = {c.mode for c in prof.classes}
    assert modes - {"drop"}, "calibration left nothing to code"
    out = _run(f"fmap-{coder}", encoder_data(prof, q, hw))
    _check(out, "stalls")


# -- every mode, random symbols ----------------------------------------------------------------


@pytest.mark.parametrize("rate", list(RATES))
def test_every_mode(rng, rate):
    prof = every_mode_profile(rng, channels=48, tile_pixels=3)
    q = random_q(prof, rng, 75)
    out = _run(f"modes-{rate}", encoder_data(prof, q, image_pixels=25), rate)
    _check(out, rate)


def test_full_width_channels(rng):
    """C = max_channels: both halves of the pixel buffer in full use."""
    prof = every_mode_profile(rng, channels=MAX_CHANNELS, tile_pixels=2)
    q = random_q(prof, rng, 24)
    _check(_run("c64", encoder_data(prof, q)), "stalls")


@pytest.mark.parametrize("mode", ["huffman", "rice", "raw"])
def test_one_channel(rng, mode):
    """C = 1: every value is a whole pixel (the buffer halves swap every clock) and its own
    zero flag; a zero costs one bit."""
    cls = every_mode_profile(rng).classes
    pick = {"huffman": 10, "rice": 5, "raw": 3}[mode]
    assert cls[pick].mode == mode and cls[pick].zflag
    prof = identity_profile([cls[pick]], [0], tile_pixels=1)
    q = random_q(prof, rng, 800)       # enough values that 8 clocks of fill stay within 1.02
    for rate in RATES:
        _check(_run(f"c1-{mode}-{rate}", encoder_data(prof, q), rate), rate)


def test_all_drop(rng):
    """Every class dropped: every token is empty."""
    prof = identity_profile([ClassParams("drop", bits=3), ClassParams("drop", bits=8)],
                            rng.integers(0, 2, size=8), tile_pixels=4)
    q = np.zeros((20, 8), dtype=np.int64)
    _check(_run("all-drop", encoder_data(prof, q)), "stalls")


def test_reset_mid_stream(rng):
    prof = every_mode_profile(rng, channels=48, tile_pixels=3)
    q = random_q(prof, rng, 30)
    out = _run("reset", encoder_data(prof, q), testcase="vlc_encoder_reset_mid_stream",
               abort_after=7 * 48 + 19)
    _check(out, "stalls")


def test_error_flag(rng):
    prof = every_mode_profile(rng, channels=48)
    q = random_q(prof, rng, 2)
    _run("error", encoder_data(prof, q), testcase="vlc_encoder_error_flag", channels=48,
         max_channels=MAX_CHANNELS)


def test_mismatch_is_caught(rng):
    """Hardware programmed with one Rice parameter off by one and one zero flag flipped must
    give mismatching tokens: the comparison can fail."""
    prof = every_mode_profile(rng, channels=48, tile_pixels=3)
    q = random_q(prof, rng, 30)
    data = encoder_data(prof, q)
    writes = data["writes"].copy()
    # class 4 field 7 is k | esc << 8 (k = 2); class 5 field 1 is its zero flag (1).
    for idx, new in ((4 * 8 + 7, 3 | 5 << 8), (5 * 8 + 1, 0)):
        row = np.flatnonzero(writes[:, 0] == (3 << 16 | idx))
        assert row.size == 1
        writes[row, 1] = new
    assert not np.array_equal(writes, config_writes(prof))
    data["writes"] = writes
    out = _run("wrong-config", data)
    assert not out["equal"] and int(out["mismatches"]) > 0


# -- lookahead: the read side D components behind the write side ---------------------------------

SPAN = 21
PIPE = 11        # clocks the last token pair trails the last value by with D = 0 (tail, below)


def _span_profile(rng, channels: int = MAX_CHANNELS):
    """Classes on contiguous runs: zero-flagged ones spanning SPAN (the widest), 5 and 0
    components, the rest classes without a flag, so the lookahead D is SPAN."""
    classes = every_mode_classes(rng)
    plain = [c for c, k in enumerate(classes) if not k.zflag and k.mode != "drop"]
    cmap = rng.choice(plain, size=channels)
    cmap[7:7 + SPAN + 1:4] = 5                 # rice, zero flag: components 7 .. 7 + SPAN
    cmap[7 + SPAN] = 5
    cmap[40:46] = 11                           # huffman, zero flag: a run of 6
    cmap[50] = 2                               # raw 1-bit, zero flag: one component
    cmap[60:] = 0                              # dropped
    return identity_profile(classes, cmap, tile_pixels=3)


def _tail(out, values):
    """`cycles` minus the values: what the last token pair trails the input by (at full rate)."""
    return int(out["cycles"]) - values


@pytest.mark.parametrize("rate", list(RATES))
def test_lookahead(rng, rate):
    """Bit-exact with the read side D = SPAN behind; at full rate the last token pair follows the
    last value by D plus the pipeline, not by a whole pixel. Run twice, reprogrammed in between."""
    prof = _span_profile(rng)
    q = random_q(prof, rng, 40)
    # Pixels whose zero-flagged classes are non-zero only in their last component: a read side
    # that ran further ahead than D would send those classes' flags as 0.
    for c in (5, 11):
        comps = np.flatnonzero(prof.class_map == c)
        q[3::4, comps] = 0
        q[3::4, comps[-1]] = 1
    out = _run(f"lookahead-{rate}", encoder_data(prof, q), rate, repeat=2)
    _check(out, rate)
    if rate == "full_rate":
        tail = _tail(out, q.size)
        assert tail <= SPAN + PIPE, f"tail {tail} clocks: the read side waited for whole pixels"


def test_lookahead_out_of_order_map(rng):
    """A class map written out of index order gives no lookahead (the block cannot vouch for D):
    still bit-exact, and the read side waits for whole pixels."""
    prof = _span_profile(rng)
    q = random_q(prof, rng, 20)
    data = encoder_data(prof, q)
    writes = data["writes"]
    rows = np.flatnonzero(writes[:, 0] >> 16 == 2)
    assert rows.size == prof.channels
    writes[rows] = writes[rows[::-1]]          # index C-1 first, index 0 last
    out = _run("lookahead-reversed", data, "full_rate")
    _check(out, "stalls")                      # bit-exact; 20 pixels of C fill exceed 1.02
    assert _tail(out, q.size) >= prof.channels, "a reversed map must not enable the lookahead"


def test_lookahead_no_zero_flag(rng):
    """No zero-flagged class: D = 0, tokens follow values at pipeline latency."""
    classes = [k for k in every_mode_classes(rng) if not k.zflag]
    prof = identity_profile(classes, rng.integers(0, len(classes), size=MAX_CHANNELS), 4)
    q = random_q(prof, rng, 30)
    out = _run("lookahead-none", encoder_data(prof, q), "full_rate")
    _check(out, "full_rate")
    assert _tail(out, q.size) <= PIPE
