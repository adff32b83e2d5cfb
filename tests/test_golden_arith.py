"""golden/arith.py against the definitions in docs/FORMAT.md, written out as plain Python."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from golden.arith import clamp, round_shift, sclamp, signed_width, unzigzag, zigzag


def rs_def(a: int, s: int) -> int:
    return a if s == 0 else (a + (1 << (s - 1))) >> s


def zz_def(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


ints40 = st.integers(-(1 << 40), 1 << 40)


@given(st.lists(st.tuples(ints40, st.integers(0, 47)), min_size=1, max_size=50))
def test_round_shift_matches_definition(pairs):
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    s = np.array([p[1] for p in pairs], dtype=np.int64)
    assert round_shift(a, s).tolist() == [rs_def(x, y) for x, y in pairs]


def test_round_shift_half_up_and_scalar_shift():
    a = np.array([-6, -5, -3, -1, 0, 1, 3, 5, 6])
    assert round_shift(a, 1).tolist() == [-3, -2, -1, 0, 0, 1, 2, 3, 3]
    assert round_shift(a, 0).tolist() == a.tolist()
    assert int(round_shift(7, 2)) == 2


def test_round_shift_rejects_bad_shift():
    import pytest
    with pytest.raises(ValueError):
        round_shift(1, -1)


@given(st.lists(ints40, min_size=1, max_size=50), st.integers(1, 32))
def test_sclamp_and_clamp(vals, b):
    lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
    assert sclamp(np.array(vals), b).tolist() == [min(max(v, lo), hi) for v in vals]
    assert clamp(np.array(vals), -3, 5).tolist() == [min(max(v, -3), 5) for v in vals]


def test_zigzag_sequence_and_inverse():
    assert zigzag([0, -1, 1, -2, 2]).tolist() == [0, 1, 2, 3, 4]
    v = np.arange(-70000, 70000)
    assert zigzag(v).tolist() == [zz_def(int(x)) for x in v]
    assert np.array_equal(unzigzag(zigzag(v)), v)
    assert np.array_equal(zigzag(unzigzag(np.arange(140000))), np.arange(140000))


def test_signed_width():
    m = np.array([0, 1, 2, 3, 4, 127, 128, 32767, 32768])
    assert signed_width(m).tolist() == [1, 2, 3, 3, 4, 8, 9, 16, 17]
