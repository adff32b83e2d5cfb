"""golden/transform.py: fast vectorized code against the FORMAT.md reference loops, matrix
builders, pixel order and exact round trips."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.profile import DTYPES, ClassParams, Profile
from golden.transform import (
    build_matrices,
    channel_offsets,
    dct_matrix,
    forward,
    forward_reference,
    from_pixels,
    identity_matrix,
    inverse,
    inverse_reference,
    pca_matrices,
    to_pixels,
    wht_matrix,
)


def make_profile(matrix, offsets, frac_bits=12, dtype="int8", relu=False):
    g, n, _ = matrix.shape
    c = g * n
    return Profile(channels=c, group=n, transform="pca", frac_bits=frac_bits,
                   matrix=np.asarray(matrix, dtype=np.int64),
                   offsets=np.asarray(offsets, dtype=np.int64),
                   class_map=np.zeros(c, dtype=np.int64), classes=[ClassParams(mode="raw")],
                   tile_pixels=1, dtype=dtype, relu=relu)


# -- pixels ------------------------------------------------------------------------------------
def test_pixel_raster_order():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    px = to_pixels(x)
    assert px.shape == (40, 3) and px.dtype == np.int64
    i = 0
    for n in range(2):
        for h in range(4):
            for w in range(5):
                assert px[i].tolist() == x[n, :, h, w].tolist()
                i += 1
    assert np.array_equal(from_pixels(px, x.shape, np.int16), x)
    y = x[0]
    assert np.array_equal(to_pixels(y), px[:20])
    back = from_pixels(to_pixels(y), y.shape, "int16")
    assert back.dtype == np.int16 and np.array_equal(back, y)


def test_pixel_errors():
    with pytest.raises(ValueError, match="tensor"):
        to_pixels(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="do not make"):
        from_pixels(np.zeros((5, 3)), (3, 2, 2), np.int8)
    with pytest.raises(ValueError, match="range"):
        from_pixels(np.full((4, 1), 200), (1, 2, 2), np.int8)


# -- matrices ----------------------------------------------------------------------------------
def test_identity_and_wht_values():
    assert np.array_equal(identity_matrix(3, 4), 16 * np.eye(3, dtype=np.int64))
    h = wht_matrix(4, 12) // 2048
    assert h.tolist() == [[1, 1, 1, 1], [1, 1, -1, -1], [1, -1, -1, 1], [1, -1, 1, -1]]
    w = wht_matrix(8, 12)
    assert set(np.abs(w).ravel().tolist()) == {round(4096 / 8**0.5)}
    changes = (np.diff(np.sign(w), axis=1) != 0).sum(axis=1)
    assert changes.tolist() == list(range(8))
    for bad in (3, 6, 12):
        with pytest.raises(ValueError, match="power-of-two"):
            wht_matrix(bad)
    assert wht_matrix(4, 1).tolist() == h.tolist()
    with pytest.raises(ValueError, match="frac_bits too small"):
        wht_matrix(4, 0)                    # scale round(1/2) = 0
    with pytest.raises(ValueError, match="frac_bits too small"):
        dct_matrix(4, 0)


def test_dct_values():
    d = dct_matrix(2, 12)
    assert d.tolist() == [[2896, 2896], [2896, -2896]]
    d4 = dct_matrix(4, 12)
    assert d4[0].tolist() == [2048] * 4
    assert d4[2].tolist() == [2048, -2048, -2048, 2048]
    assert d4[1].tolist() == [2676, 1108, -1108, -2676]


def near_orthogonal(t, f):
    n = t.shape[-1]
    err = np.abs(t @ t.T - (1 << (2 * f)) * np.eye(n, dtype=np.int64)).max()
    # Each coefficient is within 1/2 of 2^F times an orthonormal entry: |A E^T| <= 2^F sqrt(N)/2.
    return err <= (1 << f) * np.sqrt(n) + n


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64])
@pytest.mark.parametrize("f", [8, 12, 16])
def test_fixed_matrices_near_orthogonal(n, f):
    assert near_orthogonal(wht_matrix(n, f), f)
    assert near_orthogonal(dct_matrix(n, f), f)
    assert np.array_equal(identity_matrix(n, f) @ identity_matrix(n, f).T,
                          (1 << 2 * f) * np.eye(n, dtype=np.int64))
    for m in (wht_matrix(n, f), dct_matrix(n, f)):
        assert np.abs(m).max() < 1 << 17


@pytest.mark.parametrize("n", [1, 3, 8, 16])
def test_pca_matrices(n):
    rng = np.random.default_rng(n)
    c = 2 * n
    mix = rng.standard_normal((c, c)) * (0.5 ** np.arange(c))
    px = np.rint(rng.standard_normal((500, c)) @ mix.T * 20).astype(np.int64)
    mu = channel_offsets(px)
    t = pca_matrices(px, mu, n, 12)
    assert t.shape == (2, n, n) and t.dtype == np.int64
    for g in range(2):
        assert near_orthogonal(t[g], 12)
        rows = t[g]
        big = np.argmax(np.abs(rows), axis=1)
        assert (rows[np.arange(n), big] > 0).all()
        var = ((px[:, g * n:(g + 1) * n] - mu[g * n:(g + 1) * n]) @ rows.T).var(axis=0)
        assert (np.diff(var) <= 1e-6 * var[0] + 1).all()  # descending variance
    assert np.array_equal(t, pca_matrices(px, mu, n, 12))  # deterministic


def test_pca_few_pixels_and_errors():
    px = np.array([[1, 2, 3, 4]])
    t = pca_matrices(px, channel_offsets(px), 4, 12)       # zero covariance: still orthogonal
    assert near_orthogonal(t[0], 12)
    t = pca_matrices(np.array([[1, 2, 3, 4], [5, 1, 0, 2]]), np.zeros(4, np.int64), 4, 12)
    assert near_orthogonal(t[0], 12)
    with pytest.raises(ValueError, match="divide"):
        pca_matrices(px, np.zeros(4, np.int64), 3, 12)
    with pytest.raises(ValueError, match="pixels and offsets"):
        build_matrices("pca", 4, 4, 12)
    with pytest.raises(ValueError, match="unknown transform"):
        build_matrices("fft", 4, 4, 12)
    with pytest.raises(ValueError, match="divide"):
        build_matrices("dct", 6, 4, 12)


def test_channel_offsets_exact():
    rng = np.random.default_rng(1)
    for p in (1, 2, 3, 7, 100):
        px = rng.integers(-32768, 32768, (p, 5))
        mu = channel_offsets(px)
        for c in range(5):
            mean = Fraction(int(px[:, c].sum()), p)
            assert mu[c] == (mean + Fraction(1, 2)).__floor__()
    assert channel_offsets(np.array([[-1], [0]])).tolist() == [0]    # -0.5 rounds up
    assert channel_offsets(np.array([[-2], [-1]])).tolist() == [-1]  # -1.5 rounds up


# -- forward / inverse against the reference loops ---------------------------------------------
@st.composite
def transform_case(draw):
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    _, lo, hi = DTYPES[dtype]
    n = draw(st.integers(1, 6))
    g = draw(st.integers(1, 3))
    p = draw(st.integers(1, 6))
    f = draw(st.integers(0, 16))
    kind = draw(st.sampled_from(["random", "extreme", "identity", "dct"]))
    if kind == "random":
        m = np.array(draw(st.lists(st.integers(-(1 << 17) + 1, (1 << 17) - 1),
                                   min_size=g * n * n, max_size=g * n * n))).reshape(g, n, n)
    elif kind == "extreme":
        m = np.array(draw(st.lists(st.sampled_from([-(1 << 17) + 1, (1 << 17) - 1, 0]),
                                   min_size=g * n * n, max_size=g * n * n))).reshape(g, n, n)
    else:
        f = max(f, 3)   # F = 0 can round a DCT row to zeros, which the builder refuses
        m = build_matrices(kind, g * n, n, f)
    vals = st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0]))
    x = np.array(draw(st.lists(vals, min_size=p * g * n, max_size=p * g * n))).reshape(p, g * n)
    mu = np.array(draw(st.lists(vals, min_size=g * n, max_size=g * n)))
    yvals = st.one_of(st.integers(-(1 << 23), (1 << 23) - 1),
                      st.sampled_from([-(1 << 23), (1 << 23) - 1, 0]))
    yh = np.array(draw(st.lists(yvals, min_size=p * g * n, max_size=p * g * n)))
    relu = draw(st.booleans())
    prof = make_profile(m, mu, f, dtype, relu)
    return prof, x.astype(DTYPES[dtype][0]), yh.reshape(p, g * n)


@settings(max_examples=150, deadline=None)
@given(transform_case())
def test_forward_inverse_match_reference(case):
    prof, x, yh = case
    assert np.array_equal(forward(x, prof), forward_reference(x, prof))
    for relu in (None, True, False):
        got = inverse(yh, prof, relu)
        assert np.array_equal(got, inverse_reference(yh, prof, relu))
    lo, hi = prof.dtype_range
    xh = inverse(yh, prof)
    assert xh.min() >= (max(lo, 0) if prof.relu else lo) and xh.max() <= hi


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("kind", ["identity", "wht", "dct", "pca"])
def test_fast_matches_reference_on_tensors(dtype, kind):
    t, lo, hi = DTYPES[dtype]
    rng = np.random.default_rng(7)
    x = rng.integers(lo, hi + 1, (2, 8, 3, 4)).astype(t)
    x[0, :, 0, 0] = lo
    x[0, :, 0, 1] = hi
    px = to_pixels(x)
    mu = channel_offsets(px)
    prof = make_profile(build_matrices(kind, 8, 4, 12, px, mu), mu, 12, dtype)
    y = forward(px, prof)
    assert np.array_equal(y, forward_reference(px, prof))
    assert np.array_equal(inverse(y, prof), inverse_reference(y, prof))


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_identity_round_trip_exact(dtype):
    t, lo, hi = DTYPES[dtype]
    rng = np.random.default_rng(3)
    x = rng.integers(lo, hi + 1, (6, 5, 7)).astype(t)
    x[0, 0, :2] = [lo, hi]
    px = to_pixels(x)
    mu = channel_offsets(px)
    for f in (0, 12, 16):
        prof = make_profile(np.broadcast_to(identity_matrix(3, f), (2, 3, 3)), mu, f, dtype)
        y = forward(px, prof)
        assert np.array_equal(y, px - mu)
        assert np.array_equal(from_pixels(inverse(y, prof), x.shape, t), x)


def test_orthogonal_round_trip_is_close():
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, (500, 16))
    mu = channel_offsets(x)
    for kind in ("wht", "dct", "pca"):
        prof = make_profile(build_matrices(kind, 16, 8, 12, x, mu), mu, 12)
        err = np.abs(inverse(forward(x, prof), prof) - x)
        assert err.max() <= 1, kind


def test_forward_clamps_to_24_bits():
    m = np.full((1, 4, 4), (1 << 17) - 1, dtype=np.int64)
    prof = make_profile(m, np.zeros(4), 0, "int16")
    x = np.full((1, 4), 32767)
    assert forward(x, prof).tolist() == [[(1 << 23) - 1] * 4]
    assert forward(-x - 1, prof).tolist() == [[-(1 << 23)] * 4]


def test_relu_inverse():
    prof = make_profile(identity_matrix(2, 12)[None], np.zeros(2), 12, "int8", relu=True)
    yh = np.array([[-5, 5], [300, -300]])
    assert inverse(yh, prof).tolist() == [[0, 5], [127, 0]]
    assert inverse(yh, prof, relu=False).tolist() == [[-5, 5], [127, -128]]


def test_forward_input_errors():
    prof = make_profile(identity_matrix(2, 12)[None], np.zeros(2), 12)
    with pytest.raises(ValueError, match=r"\(P, 2\)"):
        forward(np.zeros((3, 3), np.int8), prof)
    with pytest.raises(ValueError, match="integers"):
        forward(np.zeros((3, 2)), prof)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_group_products_exact(transpose, big):
    """The float64 BLAS path equals the int64 einsum exactly, at the widest profile values
    (24-bit inputs, 18-bit coefficients, N = 512); beyond 2^53 the einsum path takes over."""
    from golden.transform import _group_products

    rng = np.random.default_rng(11)
    g, n, p = (1, 512, 64) if not big else (2, 8, 16)
    hi_a = (1 << 23) if not big else (1 << 40)
    a = rng.integers(-hi_a, hi_a, size=(p, g, n), dtype=np.int64)
    a[0] = hi_a - 1                                  # the extreme partial sums
    t = rng.integers(-(1 << 17), 1 << 17, size=(g, n, n), dtype=np.int64)
    t[:, 0] = (1 << 17) - 1
    want = np.einsum("pgj,gji->pgi" if transpose else "pgj,gij->pgi", a, t)
    got = _group_products(a, t, transpose)
    assert got.dtype == np.int64 and np.array_equal(got, want)
