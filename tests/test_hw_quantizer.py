"""hw/quantizer.py against golden/quantizer.py, in generated Verilog under cocotb.

Each test builds a profile (calibrated on a feature map, or built by hand with every class at an
edge of its parameter ranges), computes the golden output stream, runs sim/tb_quantizer.py on the
Verilog of the block and compares every received value, component index and tile flag with the
golden stream. Streams run with random valid gaps and ready stalls, and once at full rate into an
always-ready sink, where the cycles per value (pipeline fill included) must stay within 1.02.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden.calibrate import calibrate
from golden.profile import ClassParams, Profile, config_writes
from golden.quantizer import dequantize, quantize
from golden.transform import forward, to_pixels
from hw.quantizer import Q_BITS, Y_BITS, Dequantizer, Quantizer
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
STALLS = {"valid_prob": 0.7, "ready_prob": 0.6}
FULL_RATE = {"valid_prob": 1.0, "ready_prob": 1.0}
MAX_CYCLES_PER_VALUE = 1.02
SIZES = {"Quantizer": (Y_BITS, Q_BITS), "Dequantizer": (Q_BITS, Y_BITS),
         "WrongClampQuantizer": (Y_BITS, Q_BITS)}


def _segment(profile, x_in, y_out, image_pixels, name="", rates=STALLS):
    """A segment: program `profile`, stream the (P, C) `x_in`, expect the (P, C) `y_out`."""
    ends = tile_ends(x_in.shape[0], profile.tile_pixels, image_pixels)
    return segment(config_writes(profile, image_pixels=image_pixels),
                   framed_values(x_in, ends, profile.channels),
                   framed_values(y_out, ends, profile.channels), name, **rates)


def _run(cls, name, segments, seed=1):
    data, info = framed_data(segments)
    block = cls.__name__.lstrip("_")
    in_width, out_width = SIZES[block]
    params = {"block": block, "test": name, "in_width": in_width, "out_width": out_width,
              "segments": info}
    out = run_cocotb(design_verilog(cls, max_channels=MAX_CHANNELS), "sim.tb_quantizer",
                     data=data, params=params, seed=seed).outputs
    # The one comparison: every value, component and tile flag, in stream order.
    expected = expected_stream(data)
    out["equal"] = all(np.array_equal(out[k], expected[k]) for k in expected)
    return out


def _check(out, full_rate_segments=()):
    assert out["equal"], f"{int(out['mismatches'].sum())} mismatching values"
    for k in full_rate_segments:
        per_value = int(out["cycles"][k]) / int(out["values"][k])
        assert per_value <= MAX_CYCLES_PER_VALUE, f"{per_value:.4f} cycles/value"


@pytest.fixture(scope="module")
def fmap():
    """Transform outputs of a (1, 64, 8, 8) int8 feature map under its calibrated PCA profile
    (16 classes, one tile per 5 pixels)."""
    x = feature_map(channels=64, height=8, width=8)
    prof = calibrate(x, transform="pca", group=8, bits=6, tile_pixels=5)
    return prof, forward(to_pixels(x), prof)


def test_quantizer_feature_map(fmap):
    """At full rate into an always-ready sink (cycles measured), then under stalls."""
    prof, y = fmap
    q = quantize(y, prof)
    _check(_run(Quantizer, "fmap", [_segment(prof, y, q, 64, "full_rate", FULL_RATE),
                                    _segment(prof, y, q, 64, "stalls")]), [0])


def test_dequantizer_feature_map(fmap):
    prof, y = fmap
    q = quantize(y, prof)
    yh = dequantize(q, prof)
    _check(_run(Dequantizer, "fmap", [_segment(prof, q, yh, 64, "full_rate", FULL_RATE),
                                      _segment(prof, q, yh, 64, "stalls")]), [0])


# Every class at an edge: (mode, bits, qmul, qshift, dqmul, dqshift).
EDGE_CLASSES = [
    ("raw", 16, 65535, 0, 65535, 0),     # both products far beyond the clamps
    ("raw", 1, 65535, 47, 1, 47),        # 1-bit symbols; shifts at their maximum
    ("raw", 8, 1, 0, 1, 0),              # identity, clamped to 8 bits
    ("drop", 8, 65535, 10, 65535, 10),   # dropped: 0 whatever y
    ("rice", 16, 32768, 15, 32768, 15),  # exact halves
    ("raw", 2, 3, 1, 3, 1),              # every odd product is a rounding tie
    ("raw", 12, 0, 0, 0, 0),             # zero multipliers
    ("raw", 16, 65535, 47, 65535, 47),   # everything rounds to 0
    ("raw", 16, 65535, 24, 65535, 24),
    ("raw", 5, 4097, 13, 4097, 13),
    ("raw", 9, 12345, 20, 12345, 3),
    ("raw", 16, 1, 1, 1, 1),             # ties on odd values, positive and negative
    ("raw", 3, 65535, 39, 65535, 39),
    ("raw", 16, 1, 0, 256, 0),           # 24-bit y clamped to 16 bits; q * 256 clamped to 24
    ("raw", 15, 40000, 8, 40000, 8),
    ("rice", 4, 2, 2, 60000, 17),
]


def _edge_profile(channels=32):
    classes = [ClassParams(mode=m, bits=b, qmul=qm, qshift=qs, dqmul=dm, dqshift=ds)
               for m, b, qm, qs, dm, ds in EDGE_CLASSES]
    class_map = np.arange(channels) % len(classes)
    return Profile(channels=channels, group=1, transform="identity", frac_bits=0,
                   matrix=np.ones((channels, 1, 1), dtype=np.int64),
                   offsets=np.zeros(channels, dtype=np.int64), class_map=class_map,
                   classes=classes, tile_pixels=3)


def _edge_values(channels, bits, rng, pixels=40):
    """Rows at the signed `bits` extremes, alternating, all zero, +-1, then random values at
    every scale."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    alt = np.arange(channels) % 2
    rows = [np.full(channels, lo), np.full(channels, hi), np.where(alt, lo, hi),
            np.where(alt, hi, lo), np.zeros(channels), np.zeros(channels), np.zeros(channels),
            np.where(alt, 1, -1), np.where(alt, -3, 3)]
    rows += list(rng.integers(lo, hi + 1, size=(10, channels)))
    scale = 1 << rng.integers(0, bits - 1, size=(pixels - len(rows), channels))
    rows += list(rng.integers(-scale, scale))
    return np.asarray(rows, dtype=np.int64)


def test_quantizer_edges(rng):
    prof = _edge_profile()
    y = _edge_values(prof.channels, Y_BITS, rng)
    _check(_run(Quantizer, "edges", [_segment(prof, y, quantize(y, prof), 10)]))


def test_dequantizer_edges(rng):
    prof = _edge_profile()
    q = _edge_values(prof.channels, Q_BITS, rng)
    yh = dequantize(q, prof)
    assert (yh == (1 << 23) - 1).any() and (yh == -(1 << 23)).any()
    _check(_run(Dequantizer, "edges", [_segment(prof, q, yh, 10)]))


class _WrongClampQuantizer(Quantizer):
    """Deliberately wrong: clamps one bit narrower than the class's bits."""

    def _limit(self, p):
        return ((1 << p["bits"]) >> 2) - 1, p["mode"] == 0


def test_quantizer_wrong_hardware_is_caught(rng):
    prof = _edge_profile()
    y = _edge_values(prof.channels, Y_BITS, rng)
    out = _run(_WrongClampQuantizer, "wrong", [_segment(prof, y, quantize(y, prof), 10)])
    assert not out["equal"] and int(out["mismatches"].sum()) > 0
