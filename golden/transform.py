"""Channel transform: y = T (x - mu), block-diagonal over groups of N channels, and its inverse.

Golden twin of hw/transform.py. docs/FORMAT.md ("Transform") is the definition:

    d[j]       = x[g*N + j] - mu[g*N + j]
    y[g*N + i] = sclamp(round_shift(sum_j T[g][i][j] * d[j], F), 24)
    xh[g*N + j] = clamp(round_shift(sum_i T[g][i][j] * yh[g*N + i], F) + mu[g*N + j], lo, hi)

Pixels are (P, C) int64 arrays, one row per pixel in raster order (n, h, w). Everything here is
exact int64 arithmetic; only the matrix builders (and PCA in particular) use floating point, and
their integer result is what a profile stores.

Overflow: |d| <= 2^16 (int16 minus an in-range offset), |T| < 2^17 (the profile's 18-bit signed
coefficient limit), so one group sum is below 2^33 * N: int64 holds it for any N < 2^30. The
inverse sums |yh| < 2^23 times |T| < 2^17 over N terms: below 2^40 * N.
"""

from __future__ import annotations

import math

import numpy as np

from golden.arith import clamp, round_shift, sclamp
from golden.profile import DTYPES, Y_BITS

COEFF_LIMIT = 1 << 17  # coefficients are 18-bit signed (golden/profile.py validates |T| < 2^17)


# -- pixels ----------------------------------------------------------------------------------
def to_pixels(x) -> np.ndarray:
    """(C, H, W) or (N, C, H, W) tensor -> (P, C) int64, pixels in raster order (n, h, w)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected a (C, H, W) or (N, C, H, W) tensor, got shape {x.shape}")
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1).reshape(n * h * w, c), dtype=np.int64)


def from_pixels(pixels, shape, dtype) -> np.ndarray:
    """Inverse of `to_pixels`: (P, C) -> tensor of `shape` ((C, H, W) or (N, C, H, W)).

    `dtype` is a NumPy dtype or a profile dtype name; values outside its range are an error (the
    inverse transform clamps, so they indicate a bug, never something to wrap silently).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4):
        raise ValueError(f"expected a (C, H, W) or (N, C, H, W) shape, got {shape}")
    n, c, h, w = shape if len(shape) == 4 else (1, *shape)
    pixels = np.asarray(pixels)
    if pixels.shape != (n * h * w, c):
        raise ValueError(f"pixels of shape {pixels.shape} do not make a tensor of shape {shape}")
    dt = np.dtype(DTYPES[dtype][0] if isinstance(dtype, str) and dtype in DTYPES else dtype)
    info = np.iinfo(dt)
    if pixels.size and (pixels.min() < info.min or pixels.max() > info.max):
        raise ValueError(f"pixel values outside the {dt} range [{info.min}, {info.max}]")
    x = pixels.reshape(n, h, w, c).transpose(0, 3, 1, 2).astype(dt)
    return np.ascontiguousarray(x.reshape(shape))


# -- matrices --------------------------------------------------------------------------------
def _check_nf(n: int, frac_bits: int) -> None:
    if n < 1:
        raise ValueError(f"group size must be >= 1, got {n}")
    if not 0 <= frac_bits <= 16:
        raise ValueError(f"frac_bits {frac_bits} outside 0..16")


def _to_int(m: np.ndarray) -> np.ndarray:
    """Round to the nearest integer (ties to even, as np.rint), check the 18-bit limit, and
    refuse a matrix with a row that rounded to all zeros (that component would be lost)."""
    out = np.rint(m).astype(np.int64)
    if np.abs(out).max(initial=0) >= COEFF_LIMIT:
        raise ValueError("transform coefficients do not fit 18-bit signed; lower frac_bits")
    if out.size and not np.abs(out).max(axis=-1).all():
        raise ValueError(f"frac_bits too small for a group of {m.shape[-1]}: a transform row "
                         "rounds to all zeros")
    return out


def identity_matrix(n: int, frac_bits: int = 12) -> np.ndarray:
    """`2^F I`, (N, N) int64."""
    _check_nf(n, frac_bits)
    return np.eye(n, dtype=np.int64) << frac_bits


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def wht_matrix(n: int, frac_bits: int = 12) -> np.ndarray:
    """Sylvester Hadamard matrix with rows in sequency order (number of sign changes 0..N-1),
    times `round(2^F / sqrt(N))`; (N, N) int64. N must be a power of two."""
    _check_nf(n, frac_bits)
    if not is_power_of_two(n):
        raise ValueError(f"the Walsh-Hadamard transform needs a power-of-two group size, got {n}")
    h = np.ones((1, 1), dtype=np.int64)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    changes = (np.diff(h, axis=1) != 0).sum(axis=1)
    h = h[np.argsort(changes, kind="stable")]
    scale = int(np.rint(2.0**frac_bits / math.sqrt(n)))
    return _to_int(h * scale)


def dct_matrix(n: int, frac_bits: int = 12) -> np.ndarray:
    """Orthonormal DCT-II, `round(2^F * a_i * cos(pi (2j+1) i / 2N))`; (N, N) int64."""
    _check_nf(n, frac_bits)
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    a = np.where(i == 0, math.sqrt(1.0 / n), math.sqrt(2.0 / n))
    return _to_int(2.0**frac_bits * a * np.cos(np.pi * (2 * j + 1) * i / (2 * n)))


def channel_offsets(pixels) -> np.ndarray:
    """Per-channel `floor(mean + 0.5)`, computed exactly: `(2 sum + P) // (2 P)`; (C,) int64."""
    pixels = np.asarray(pixels, dtype=np.int64)
    p = pixels.shape[0]
    if p == 0:
        raise ValueError("channel offsets need at least one pixel")
    return (2 * pixels.sum(axis=0) + p) // (2 * p)


def pca_matrices(pixels, offsets, n: int, frac_bits: int = 12) -> np.ndarray:
    """Per group of N channels: eigenvectors of the covariance of `x - mu` over the pixels,
    rows sorted by descending eigenvalue, each signed so that its largest-magnitude entry is
    positive, as `np.rint(V^T * 2^F)`; (G, N, N) int64.

    The covariance is centered on the exact mean (subtracting the integer offsets first only
    keeps the numbers small). With fewer pixels than N the covariance is rank-deficient; the
    null-space rows are still an orthonormal completion (whatever LAPACK returns), carry zero
    calibration variance, and calibration then drops or cheaply codes them. One pixel gives a
    zero covariance, whose eigenvectors LAPACK returns as the identity.
    """
    pixels = np.asarray(pixels, dtype=np.int64)
    p, c = pixels.shape
    _check_nf(n, frac_bits)
    if c % n:
        raise ValueError(f"group size {n} must divide the channel count {c}")
    if p < 1:
        raise ValueError("PCA needs at least one calibration pixel")
    d = (pixels - np.asarray(offsets, dtype=np.int64)).astype(np.float64)
    d -= d.mean(axis=0)
    out = np.empty((c // n, n, n), dtype=np.int64)
    for g in range(c // n):
        dg = d[:, g * n:(g + 1) * n]
        cov = dg.T @ dg / p
        w, v = np.linalg.eigh(cov)
        order = np.argsort(-w, kind="stable")
        vt = v[:, order].T                       # row i = i-th strongest eigenvector
        big = np.argmax(np.abs(vt), axis=1)      # first largest-magnitude entry per row
        sign = np.where(vt[np.arange(n), big] < 0, -1.0, 1.0)
        out[g] = _to_int(vt * sign[:, None] * 2.0**frac_bits)
    return out


def build_matrices(kind: str, channels: int, n: int, frac_bits: int = 12, pixels=None,
                   offsets=None) -> np.ndarray:
    """The (G, N, N) matrix stack of a transform kind; `pca` needs calibration pixels/offsets."""
    if n < 1 or channels % n:
        raise ValueError(f"group size {n} must divide the channel count {channels}")
    g = channels // n
    if kind == "pca":
        if pixels is None or offsets is None:
            raise ValueError("the pca transform needs calibration pixels and offsets")
        return pca_matrices(pixels, offsets, n, frac_bits)
    builders = {"identity": identity_matrix, "wht": wht_matrix, "dct": dct_matrix}
    if kind not in builders:
        raise ValueError(f"unknown transform {kind!r} (expected one of "
                         f"{('identity', 'wht', 'dct', 'pca')})")
    return np.broadcast_to(builders[kind](n, frac_bits), (g, n, n)).copy()


# -- forward and inverse ---------------------------------------------------------------------
def _check_pixels(pixels, profile) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != profile.channels:
        raise ValueError(f"expected (P, {profile.channels}) pixels, got shape {pixels.shape}")
    if not np.issubdtype(pixels.dtype, np.integer):
        raise ValueError(f"pixels must be integers, got {pixels.dtype}")
    return pixels.astype(np.int64, copy=False)


def _group_products(a: np.ndarray, t: np.ndarray, transpose: bool) -> np.ndarray:
    """Exact integer products per group: out[p, g, i] = sum_j a[p, g, j] * t[g, i, j]
    (`transpose=False`) or sum_j a[p, g, j] * t[g, j, i] (`transpose=True`), as int64.

    When every partial sum is bounded by max|a| * max|t| * N < 2^53, float64 holds every product
    and every partial sum exactly, in any summation order, so BLAS gives the integer result (and
    is far faster than an int64 einsum for large N); otherwise the int64 einsum does it.
    """
    n = t.shape[-1]
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(t).max(initial=0)) * n
    if bound >= 1 << 53:
        return np.einsum("pgj,gji->pgi" if transpose else "pgj,gij->pgi", a, t)
    tf = t.astype(np.float64)
    if not transpose:
        tf = tf.transpose(0, 2, 1)
    out = np.matmul(a.astype(np.float64).transpose(1, 0, 2), tf)       # (g, p, n)
    return out.transpose(1, 0, 2).astype(np.int64)


def forward(pixels, profile) -> np.ndarray:
    """y = sclamp(round_shift(T (x - mu), F), 24) per group; (P, C) -> (P, C) int64."""
    x = _check_pixels(pixels, profile)
    p, c = x.shape
    g, n = profile.groups, profile.group
    t = np.asarray(profile.matrix, dtype=np.int64)
    d = (x - np.asarray(profile.offsets, dtype=np.int64)).reshape(p, g, n)
    acc = _group_products(d, t, transpose=False).reshape(p, c)
    return sclamp(round_shift(acc, profile.frac_bits), Y_BITS)


def inverse(yh, profile, relu: bool | None = None) -> np.ndarray:
    """xh = clamp(round_shift(T^T yh, F) + mu, lo, hi) per group; (P, C) -> (P, C) int64.

    `lo, hi` is the profile dtype's range, with `lo = max(lo, 0)` when ReLU is on (`relu=None`
    takes the profile's setting).
    """
    y = _check_pixels(yh, profile)
    p, c = y.shape
    g, n = profile.groups, profile.group
    t = np.asarray(profile.matrix, dtype=np.int64)
    acc = _group_products(y.reshape(p, g, n), t, transpose=True).reshape(p, c)
    lo, hi = _out_range(profile, relu)
    return clamp(round_shift(acc, profile.frac_bits) + np.asarray(profile.offsets, np.int64),
                 lo, hi)


def _out_range(profile, relu: bool | None) -> tuple[int, int]:
    lo, hi = profile.dtype_range
    if profile.relu if relu is None else relu:
        lo = max(lo, 0)
    return lo, hi


# -- reference loops: FORMAT.md read line by line, for the agreement tests --------------------
def _rs(a: int, s: int) -> int:
    return a if s == 0 else (a + (1 << (s - 1))) >> s


def _clamp(a: int, lo: int, hi: int) -> int:
    return min(max(a, lo), hi)


def forward_reference(pixels, profile) -> np.ndarray:
    x = np.asarray(pixels).tolist()
    T = np.asarray(profile.matrix).tolist()
    mu = np.asarray(profile.offsets).tolist()
    N, F, C = profile.group, profile.frac_bits, profile.channels
    half = 1 << (Y_BITS - 1)
    out = []
    for px in x:
        y = [0] * C
        for g in range(C // N):
            d = [px[g * N + j] - mu[g * N + j] for j in range(N)]
            for i in range(N):
                acc = sum(T[g][i][j] * d[j] for j in range(N))
                y[g * N + i] = _clamp(_rs(acc, F), -half, half - 1)
        out.append(y)
    return np.asarray(out, dtype=np.int64).reshape(len(x), C)


def inverse_reference(yh, profile, relu: bool | None = None) -> np.ndarray:
    y = np.asarray(yh).tolist()
    T = np.asarray(profile.matrix).tolist()
    mu = np.asarray(profile.offsets).tolist()
    N, F, C = profile.group, profile.frac_bits, profile.channels
    lo, hi = _out_range(profile, relu)
    out = []
    for py in y:
        xh = [0] * C
        for g in range(C // N):
            for j in range(N):
                acc = sum(T[g][i][j] * py[g * N + i] for i in range(N))
                xh[g * N + j] = _clamp(_rs(acc, F) + mu[g * N + j], lo, hi)
        out.append(xh)
    return np.asarray(out, dtype=np.int64).reshape(len(y), C)
