"""The integer primitives every block uses (docs/FORMAT.md, "Notation").

All functions take Python ints or NumPy integer arrays (broadcasting, shifts may be per-element
arrays) and compute in int64. `>>` on int64 is NumPy's arithmetic (floor) shift, which is the
shift FORMAT.md defines.
"""

from __future__ import annotations

import numpy as np


def _i64(a):
    return np.asarray(a, dtype=np.int64)


def round_shift(a, s):
    """`a` if `s == 0`, else `(a + (1 << (s - 1))) >> s`: divide by 2^s, rounding half up.

    `(1 << s) >> 1` is `1 << (s - 1)` for `s > 0` and 0 for `s == 0`, so one expression covers
    both cases of the definition element by element.
    """
    a, s = _i64(a), _i64(s)
    if np.any(s < 0) or np.any(s > 62):
        raise ValueError("round_shift: shift must be in 0..62")
    return (a + ((np.int64(1) << s) >> 1)) >> s


def clamp(a, lo, hi):
    """`min(max(a, lo), hi)`."""
    return np.minimum(np.maximum(_i64(a), _i64(lo)), _i64(hi))


def sclamp(a, bits):
    """Clamp to the signed range of `bits` bits: `[-2^(bits-1), 2^(bits-1) - 1]`."""
    b = _i64(bits)
    half = np.int64(1) << (b - 1)
    return clamp(a, -half, half - 1)


def zigzag(v):
    """Signed to unsigned: 0, -1, 1, -2, 2 -> 0, 1, 2, 3, 4 (`2v` if `v >= 0` else `-2v - 1`)."""
    v = _i64(v)
    return np.where(v >= 0, 2 * v, -2 * v - 1)


def unzigzag(u):
    """Inverse of `zigzag`: even u -> u/2, odd u -> -(u+1)/2."""
    u = _i64(u)
    return np.where(u & 1, -(u >> 1) - 1, u >> 1)


def signed_width(m):
    """Smallest signed width (>= 1) whose range holds every value of magnitude up to `m`,
    i.e. both `-m` and `m`: width w with `m <= 2^(w-1) - 1` (w = 1 holds only 0 and -1)."""
    m = _i64(m)
    w = np.ones_like(m)
    while np.any(m > (np.int64(1) << (w - 1)) - 1):
        w = np.where(m > (np.int64(1) << (w - 1)) - 1, w + 1, w)
    return w
