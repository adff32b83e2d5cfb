"""hw/vlc_encoder.py against golden/vlc_encoder.py, in generated Verilog under cocotb.

Each test builds a profile (calibrated on a feature map with every coder, or built by hand with
every mode, zero flag, width and code extreme), quantizes or draws the q stream, computes the
golden token pairs (`tokens`, `raw_tokens`), runs sim/tb_vlc_encoder.py on the Verilog of the
encoder and compares every coded token, raw token and tile flag with the golden ones. Streams run
with random valid gaps and ready stalls, and at full rate into an always-ready sink, where the
cycles per value over the whole tensor (pixel-buffer fill included) must stay within 1.02.
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
    out["equal"] = all(np.array_equal(out[k], data[f"exp_{k}"]) for k in FIELDS)
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
