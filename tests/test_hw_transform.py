"""hw/transform.py against golden/transform.py, in generated Verilog under cocotb.

Each test builds a profile (calibrated on a feature map, or built by hand for the extremes),
computes the golden output stream, runs sim/tb_transform.py on the Verilog of the block and
compares every received value, component index and tile flag with the golden stream. Streams
run with random valid gaps and ready stalls, and once at full rate into an always-ready sink,
where the cycles per value (pipeline fill included) must stay within 1.02.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden.calibrate import calibrate
from golden.profile import ClassParams, Profile, config_writes
from golden.quantizer import dequantize, quantize
from golden.transform import build_matrices, forward, inverse, to_pixels
from hw.transform import Y_BITS, InverseTransform, Transform, _sclamp
from sim.runner import run_cocotb
from sim.tb_framed import (
    design_verilog,
    expected_stream,
    feature_map,
    framed_data,
    framed_values,
    segment,
    tile_ends,
)

pytestmark = pytest.mark.hw

MAX_CHANNELS = 64
FWD8 = {"in_width": 8, "group": 8, "max_channels": MAX_CHANNELS}
STALLS = {"valid_prob": 0.7, "ready_prob": 0.6}
FULL_RATE = {"valid_prob": 1.0, "ready_prob": 1.0}
MAX_CYCLES_PER_VALUE = 1.02


def _segment(profile, x_in, y_out, image_pixels, name="", rates=STALLS):
    """A segment: program `profile`, stream the (P, C) `x_in`, expect the (P, C) `y_out`."""
    ends = tile_ends(x_in.shape[0], profile.tile_pixels, image_pixels)
    return segment(config_writes(profile, image_pixels=image_pixels),
                   framed_values(x_in, ends, profile.channels),
                   framed_values(y_out, ends, profile.channels), name, **rates)


def _run(cls, kwargs, name, segments, testcase="transform_stream", in_width=8,
         out_width=Y_BITS, seed=1, **extra):
    data, info = framed_data(segments)
    prof_channels = int(data["s0_in_comp"].max()) + 1
    params = {"block": cls.__name__.lstrip("_"), "test": name, "in_width": in_width,
              "out_width": out_width, "segments": info, "group": kwargs["group"],
              "channels": prof_channels, "max_channels": MAX_CHANNELS, **extra}
    out = run_cocotb(design_verilog(cls, **kwargs), "sim.tb_transform", testcase=testcase,
                     data=data, params=params, seed=seed).outputs
    if testcase != "transform_error_flag":
        # The one comparison: every value, component and tile flag, in stream order.
        expected = expected_stream(data)
        out["equal"] = all(np.array_equal(out[k], expected[k]) for k in expected)
    return out


def _check(out, full_rate_segments=()):
    assert out["equal"], f"{int(out['mismatches'].sum())} mismatching values"
    assert int(out["error"]) == 0
    for k in full_rate_segments:
        per_value = int(out["cycles"][k]) / int(out["values"][k])
        assert per_value <= MAX_CYCLES_PER_VALUE, f"{per_value:.4f} cycles/value"


# -- forward -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fmap():
    """A (1, 64, 8, 8) int8 feature map and its PCA profile (N = 8, one tile per 3 pixels)."""
    x = feature_map(channels=64, height=8, width=8)
    return x, calibrate(x, transform="pca", group=8, bits=6, tile_pixels=3)


def test_forward_feature_map(fmap):
    """At full rate into an always-ready sink (cycles measured), then under stalls."""
    x, prof = fmap
    pixels = to_pixels(x)
    y = forward(pixels, prof)
    out = _run(Transform, FWD8, "fmap", [_segment(prof, pixels, y, 64, "full_rate", FULL_RATE),
                                         _segment(prof, pixels, y, 64, "stalls")])
    _check(out, full_rate_segments=[0])


def _extreme_profile(frac_bits, channels=16, group=8, dtype="int8"):
    """Coefficients at the 18-bit limit, offsets at the int8 edges, and a group whose
    coefficient 2^(F-1) makes every odd input a rounding tie."""
    rng = np.random.default_rng(frac_bits)
    g = channels // group
    lim = (1 << 17) - 1
    mat = rng.choice([-lim, lim, -lim + 1, 0, 1, -1], size=(g, group, group))
    mat[0] = lim
    mat[0, 1::2] = -lim
    if frac_bits:
        mat[-1] = np.eye(group, dtype=np.int64) * (1 << (frac_bits - 1))
        mat[-1, 0, 1] = -(1 << (frac_bits - 1))
    offsets = rng.choice([-128, 127, 0, 5, -7], size=channels)
    return Profile(channels=channels, group=group, transform="pca", frac_bits=frac_bits,
                   matrix=mat, offsets=offsets, class_map=np.zeros(channels, dtype=np.int64),
                   classes=[ClassParams(mode="raw")], tile_pixels=4, dtype=dtype)


def _extreme_pixels(channels, rng, lo=-128, hi=127, pixels=48):
    """Rows of all-lo, all-hi, alternating, all-zero (a whole tile), then random values."""
    rows = [np.full(channels, lo), np.full(channels, hi),
            np.where(np.arange(channels) % 2, lo, hi), np.where(np.arange(channels) % 2, hi, lo)]
    rows += [np.zeros(channels, dtype=np.int64)] * 4
    rows += list(rng.integers(lo, hi + 1, size=(pixels - len(rows), channels)))
    return np.asarray(rows, dtype=np.int64)


def test_forward_extremes(rng):
    """F = 0 (sums far beyond the 24-bit clamp), 12 and 16 (rounding ties), reprogrammed
    between segments."""
    segments = []
    for frac_bits in (0, 12, 16):
        prof = _extreme_profile(frac_bits)
        x = _extreme_pixels(prof.channels, rng)
        y = forward(x, prof)
        if frac_bits == 0:
            assert (y == -(1 << 23)).any() and (y == (1 << 23) - 1).any(), "must reach the clamp"
        segments.append(_segment(prof, x, y, 6, f"f{frac_bits}"))
    _check(_run(Transform, FWD8, "extremes", segments))


def test_forward_group16_dct_int16(rng):
    """N = 16, a DCT, int16 input with offsets at the int16 edges, images of 10 pixels."""
    c = 32
    mat = build_matrices("dct", c, 16, 14)
    offsets = rng.choice([-32768, 32767, 0, 1000], size=c)
    prof = Profile(channels=c, group=16, transform="dct", frac_bits=14, matrix=mat,
                   offsets=offsets, class_map=np.zeros(c, dtype=np.int64),
                   classes=[ClassParams(mode="raw")], tile_pixels=4, dtype="int16")
    x = _extreme_pixels(c, rng, -32768, 32767, pixels=40)
    out = _run(Transform, {"in_width": 16, "group": 16, "max_channels": MAX_CHANNELS}, "dct16",
               [_segment(prof, x, forward(x, prof), 10)], in_width=16)
    _check(out)


def test_inverse_group16_int16(rng):
    """N = 16, int16 output: the DCT round trip of int16 data, then a random (non-symmetric)
    matrix on full-range 24-bit inputs, which catches any transposed coefficient access."""
    c = 32
    prof = Profile(channels=c, group=16, transform="dct", frac_bits=14,
                   matrix=build_matrices("dct", c, 16, 14),
                   offsets=rng.choice([-32768, 32767, 0, 1000], size=c),
                   class_map=np.zeros(c, dtype=np.int64), classes=[ClassParams(mode="raw")],
                   tile_pixels=4, dtype="int16")
    y = forward(_extreme_pixels(c, rng, -32768, 32767, pixels=40), prof)
    rand = Profile(**{**prof.__dict__, "transform": "pca", "frac_bits": 16,
                      "matrix": rng.integers(-(1 << 17) + 1, 1 << 17, size=(2, 16, 16))})
    yr = _extreme_pixels(c, rng, -(1 << 23), (1 << 23) - 1, pixels=40)
    out = _run(InverseTransform, {"dtype": "int16", "group": 16, "max_channels": MAX_CHANNELS},
               "inv-dct16", [_segment(prof, y, inverse(y, prof), 10, "dct"),
                             _segment(rand, yr, inverse(yr, rand), 10, "random")],
               in_width=Y_BITS, out_width=16)
    _check(out)


def test_forward_reset_mid_tile(fmap):
    x, prof = fmap
    pixels = to_pixels(x)[:16]
    out = _run(Transform, FWD8, "reset", [_segment(prof, pixels, forward(pixels, prof), 16)],
               testcase="transform_reset_mid_tile", abort_after=5 * 64 + 13)
    _check(out)


def test_forward_error_flag(fmap):
    _, prof = fmap
    pixels = np.zeros((1, prof.channels), dtype=np.int64)
    _run(Transform, FWD8, "error", [_segment(prof, pixels, pixels, 1)],
         testcase="transform_error_flag", coeff_width=18, offset_width=17)


class _WrongClampTransform(Transform):
    """Deliberately wrong: clamps to 23 bits instead of 24."""

    def _clamp(self, value):
        return _sclamp(value, Y_BITS - 1)


def test_forward_wrong_hardware_is_caught(rng):
    prof = _extreme_profile(0)
    x = _extreme_pixels(prof.channels, rng)
    out = _run(_WrongClampTransform, FWD8, "wrong", [_segment(prof, x, forward(x, prof), 6)])
    assert not out["equal"] and int(out["mismatches"].sum()) > 0


# -- inverse -------------------------------------------------------------------------------------


def test_inverse_feature_map(fmap):
    """The read path as it runs, yh = dequantize(quantize(forward(x))): at full rate, then
    under stalls."""
    x, prof = fmap
    pixels = to_pixels(x)
    yh = dequantize(quantize(forward(pixels, prof), prof), prof)
    xh = inverse(yh, prof)
    out = _run(InverseTransform, {"dtype": "int8", "group": 8, "max_channels": MAX_CHANNELS},
               "inv-fmap", [_segment(prof, yh, xh, 64, "full_rate", FULL_RATE),
                            _segment(prof, yh, xh, 64, "stalls")], in_width=Y_BITS, out_width=8)
    _check(out, full_rate_segments=[0])


@pytest.mark.parametrize("dtype,relu,width", [("int8", True, 8), ("uint8", False, 9),
                                              ("int16", False, 16)])
def test_inverse_extremes(dtype, relu, width, rng):
    prof = _extreme_profile(12, dtype=dtype)
    prof.relu = relu
    lo, hi = -(1 << 23), (1 << 23) - 1
    yh = _extreme_pixels(prof.channels, rng, lo, hi)
    yh[8:16] = rng.integers(-4096 * 200, 4096 * 200, size=(8, prof.channels))  # inside range
    xh = inverse(yh, prof)
    assert (xh == prof.dtype_range[1]).any()
    out = _run(InverseTransform, {"dtype": dtype, "group": 8, "max_channels": MAX_CHANNELS},
               f"inv-extremes-{dtype}", [_segment(prof, yh, xh, 6)], in_width=Y_BITS,
               out_width=width)
    _check(out)
