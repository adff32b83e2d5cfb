"""The golden codec's quantize / reconstruct path, fast enough to run inside a network.

Top-1 under compression needs what the decoder gives back for every boundary of every batch; the
entropy coder is lossless, so that is ``reconstruct(quantize_tensor(x))`` of ``golden.codec``. The
golden transform computes its matrix products with int64 ``einsum``, which does not use BLAS;
here the same products run as float64 matrix multiplications. Every operand is an integer and
every partial sum stays below 2^53 (``_check_exact``), so float64 arithmetic is exact whatever
order BLAS sums in, and the result is converted back to int64 before any rounding. Everything
else (rounding shifts, clamps, quantizer, dequantizer) is the golden code itself.

``tests/test_eval_fastpath.py`` checks equality with ``golden.transform.forward``/``inverse`` and,
through a real encode and decode, with ``golden.codec.decode``; the evaluation driver repeats the
decode check at run time.
"""

from __future__ import annotations

import numpy as np

from golden.arith import clamp, round_shift, sclamp
from golden.profile import Y_BITS, Profile
from golden.quantizer import dequantize, quantize
from golden.transform import from_pixels, to_pixels

EXACT = 1 << 53


def _check_exact(profile: Profile, max_abs: int) -> None:
    t = int(np.abs(np.asarray(profile.matrix)).max(initial=0))
    if t * max_abs * profile.group >= EXACT:
        raise ValueError("matrix products could exceed 2^53: use golden.transform instead")


def _blockdiag(a: np.ndarray, profile: Profile, transpose: bool) -> np.ndarray:
    """(P, C) int64 -> (P, C) int64: per group, ``T a`` (forward) or ``T^T a`` (inverse)."""
    p, c = a.shape
    g, n = profile.groups, profile.group
    t = np.asarray(profile.matrix, dtype=np.float64)               # (G, N, N), row = component
    m = t if transpose else t.transpose(0, 2, 1)
    out = np.matmul(a.reshape(p, g, n).transpose(1, 0, 2).astype(np.float64), m)   # (G, P, N)
    return out.transpose(1, 0, 2).reshape(p, c).astype(np.int64)


def forward(pixels: np.ndarray, profile: Profile) -> np.ndarray:
    """Same as ``golden.transform.forward``."""
    d = np.asarray(pixels, dtype=np.int64) - np.asarray(profile.offsets, dtype=np.int64)
    _check_exact(profile, int(np.abs(d).max(initial=0)))
    return sclamp(round_shift(_blockdiag(d, profile, False), profile.frac_bits), Y_BITS)


def inverse(yh: np.ndarray, profile: Profile) -> np.ndarray:
    """Same as ``golden.transform.inverse`` with the profile's ReLU setting."""
    yh = np.asarray(yh, dtype=np.int64)
    _check_exact(profile, int(np.abs(yh).max(initial=0)))
    lo, hi = profile.dtype_range
    if profile.relu:
        lo = max(lo, 0)
    acc = _blockdiag(yh, profile, True)
    return clamp(round_shift(acc, profile.frac_bits) + np.asarray(profile.offsets, np.int64),
                 lo, hi)


def quantize_tensor(x: np.ndarray, profile: Profile) -> np.ndarray:
    """Same as ``golden.codec.quantize_tensor``: (P, C) symbols."""
    return quantize(forward(to_pixels(x), profile), profile)


def reconstruct_q(q: np.ndarray, shape, profile: Profile) -> np.ndarray:
    """Same as ``golden.codec.reconstruct``."""
    return from_pixels(inverse(dequantize(q, profile), profile), shape, profile.dtype)


def roundtrip(x: np.ndarray, profile: Profile) -> np.ndarray:
    """What ``golden.codec.decode(golden.codec.encode(x, profile))`` returns, without coding."""
    return reconstruct_q(quantize_tensor(x, profile), x.shape, profile)
