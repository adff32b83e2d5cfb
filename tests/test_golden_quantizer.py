"""golden/quantizer.py: vectorized quantizer against the FORMAT.md reference loops, and the
step -> (multiplier, shift) conversion."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.profile import MODES, ClassParams, Profile
from golden.quantizer import (
    dequantize,
    dequantize_reference,
    quantize,
    quantize_reference,
    step_to_params,
)

Y_MIN, Y_MAX = -(1 << 23), (1 << 23) - 1


def make_profile(classes, class_map):
    c = len(class_map)
    return Profile(channels=c, group=1, transform="identity", frac_bits=12,
                   matrix=np.full((c, 1, 1), 4096, dtype=np.int64),
                   offsets=np.zeros(c, dtype=np.int64),
                   class_map=np.asarray(class_map, dtype=np.int64), classes=classes,
                   tile_pixels=1)


@pytest.mark.parametrize("step", [1 / 65535, 1e-3, 0.1, 0.37, 0.5, 1.0, 1.5, 2.0, 3.0, 7.77,
                                  100.0, 1234.5, 65535.0])
def test_step_to_params(step):
    qmul, qshift, dqmul, dqshift = step_to_params(step)
    for m, s, target in ((qmul, qshift, 1 / step), (dqmul, dqshift, step)):
        assert 0 < m < 1 << 16 and 0 <= s <= 47
        assert m == math.floor(target * 2**s + 0.5)
        # The largest shift: one more would overflow the 16-bit multiplier (or hit 47).
        assert s == 47 or math.floor(target * 2 ** (s + 1) + 0.5) >= 1 << 16
        assert abs(m / 2**s / target - 1) <= 2**-15


def test_step_to_params_saturates_and_rejects():
    assert step_to_params(1 / 70000)[:2] == (65535, 0)
    assert step_to_params(70000.0)[2:] == (65535, 0)
    assert step_to_params(1.0) == (32768, 15, 32768, 15)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="step"):
            step_to_params(bad)


@st.composite
def quant_case(draw):
    k = draw(st.integers(1, 4))
    classes = []
    for _ in range(k):
        mode = draw(st.sampled_from(MODES))
        classes.append(ClassParams(
            mode=mode, bits=draw(st.integers(1, 16)),
            qmul=draw(st.one_of(st.integers(0, 65535), st.just(65535))),
            qshift=draw(st.integers(0, 47)),
            dqmul=draw(st.one_of(st.integers(0, 65535), st.just(65535))),
            dqshift=draw(st.integers(0, 47))))
    c = draw(st.integers(1, 8))
    cmap = draw(st.lists(st.integers(0, k - 1), min_size=c, max_size=c))
    p = draw(st.integers(1, 5))
    vals = st.one_of(st.integers(Y_MIN, Y_MAX), st.sampled_from([Y_MIN, Y_MAX, 0, 1, -1]))
    y = np.array(draw(st.lists(vals, min_size=p * c, max_size=p * c))).reshape(p, c)
    qv = st.one_of(st.integers(-32768, 32767), st.sampled_from([-32768, 32767, 0]))
    q = np.array(draw(st.lists(qv, min_size=p * c, max_size=p * c))).reshape(p, c)
    return make_profile(classes, cmap), y, q


@settings(max_examples=100, deadline=None)
@given(quant_case())
def test_quantizer_matches_reference(case):
    prof, y, q = case
    got = quantize(y, prof)
    assert np.array_equal(got, quantize_reference(y, prof))
    assert np.array_equal(dequantize(q, prof), dequantize_reference(q, prof))
    bits = prof.class_array("bits")
    assert (np.abs(got) <= 1 << (bits - 1)).all()
    drop = prof.class_array("mode") == 0
    assert (got[:, drop] == 0).all()


@pytest.mark.parametrize("step", [0.25, 1.0, 2.5, 13.0, 300.0])
def test_quantizer_approximates_step(step):
    qmul, qshift, dqmul, dqshift = step_to_params(step)
    prof = make_profile([ClassParams(mode="raw", bits=16, qmul=qmul, qshift=qshift,
                                     dqmul=dqmul, dqshift=dqshift)], [0, 0])
    y = np.arange(-8000, 8000).reshape(-1, 2)
    q = quantize(y, prof)
    assert np.abs(q - y / step).max() <= 0.5 + 1e-3
    yh = dequantize(q, prof)
    assert np.abs(yh - y).max() <= step / 2 + 1 + 1e-3 * step


def test_unit_step_is_lossless():
    qmul, qshift, dqmul, dqshift = step_to_params(1.0)
    prof = make_profile([ClassParams(mode="raw", bits=16, qmul=qmul, qshift=qshift,
                                     dqmul=dqmul, dqshift=dqshift)], [0])
    y = np.arange(-32768, 32768).reshape(-1, 1)
    assert np.array_equal(dequantize(quantize(y, prof), prof), y)


def test_clamp_and_drop():
    prof = make_profile([ClassParams(mode="raw", bits=4, qmul=1), ClassParams(mode="drop",
                         bits=8, qmul=1)], [0, 1])
    y = np.array([[100, 100], [-100, -100], [3, 3]])
    assert quantize(y, prof).tolist() == [[7, 0], [-8, 0], [3, 0]]


def test_input_errors():
    prof = make_profile([ClassParams(mode="raw")], [0, 0])
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        quantize(np.zeros((2, 3), np.int64), prof)
    with pytest.raises(ValueError, match="integers"):
        dequantize(np.zeros((2, 2)), prof)
