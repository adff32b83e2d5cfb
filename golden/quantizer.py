"""Quantizer and dequantizer per component class (golden twin of hw/quantizer.py).

docs/FORMAT.md ("Quantizer") is the definition; for a component of class c:

    q  = sclamp(round_shift(y * qmul, qshift), bits)      # 0 when the class mode is "drop"
    yh = sclamp(round_shift(q * dqmul, dqshift), 24)

`step_to_params` turns a real quantizer step into the integer multipliers and shifts
(q ~= y / step, yh ~= q * step). Overflow: |y| < 2^23 and qmul < 2^16 give |y * qmul| < 2^39;
|q| < 2^15 and dqmul < 2^16 give < 2^31; the rounding constant adds at most 2^46. All in int64.
"""

from __future__ import annotations

import math

import numpy as np

from golden.arith import round_shift, sclamp
from golden.profile import MODE_ID, Y_BITS

MUL_LIMIT = 1 << 16   # qmul, dqmul < 2^16
MAX_SHIFT = 47        # qshift, dqshift in 0..47


def _fixed_point(x: float) -> tuple[int, int]:
    """(m, s) with m / 2^s ~= x, m < 2^16, s in 0..47 the largest shift that keeps m < 2^16.

    m = floor(x * 2^s + 0.5). When even s = 0 gives m >= 2^16, m saturates at 2^16 - 1 (the
    largest factor the hardware can apply).
    """
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"quantizer scale must be a positive finite number, got {x!r}")
    for s in range(MAX_SHIFT, -1, -1):
        m = math.floor(math.ldexp(x, s) + 0.5)
        if m < MUL_LIMIT:
            return m, s
    return MUL_LIMIT - 1, 0


def step_to_params(step: float) -> tuple[int, int, int, int]:
    """`(qmul, qshift, dqmul, dqshift)` for a quantizer step: qmul / 2^qshift ~= 1 / step and
    dqmul / 2^dqshift ~= step, each with the largest shift that keeps its multiplier < 2^16
    (so the multiplier has 16 significant bits whenever the step is in range).

    Representable steps are about 1/65535 .. 65535; outside that the multiplier saturates.
    """
    step = float(step)
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"quantizer step must be a positive finite number, got {step!r}")
    qmul, qshift = _fixed_point(1.0 / step)
    dqmul, dqshift = _fixed_point(step)
    return qmul, qshift, dqmul, dqshift


def _component_params(profile):
    return (profile.class_array("qmul"), profile.class_array("qshift"),
            profile.class_array("dqmul"), profile.class_array("dqshift"),
            profile.class_array("bits"), profile.class_array("mode") == MODE_ID["drop"])


def _check(a, profile, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] != profile.channels:
        raise ValueError(f"expected (P, {profile.channels}) {what}, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got {a.dtype}")
    return a.astype(np.int64, copy=False)


def quantize(y, profile) -> np.ndarray:
    """(P, C) transform outputs -> (P, C) int64 quantized symbols; dropped classes give 0."""
    y = _check(y, profile, "transform outputs")
    qmul, qshift, _, _, bits, drop = _component_params(profile)
    q = sclamp(round_shift(y * qmul, qshift), bits)
    q[:, drop] = 0
    return q


def dequantize(q, profile) -> np.ndarray:
    """(P, C) symbols -> (P, C) int64 reconstructed transform outputs."""
    q = _check(q, profile, "quantized symbols")
    _, _, dqmul, dqshift, _, _ = _component_params(profile)
    return sclamp(round_shift(q * dqmul, dqshift), Y_BITS)


# -- reference loops ---------------------------------------------------------------------------
def _rs(a: int, s: int) -> int:
    return a if s == 0 else (a + (1 << (s - 1))) >> s


def _sclamp(a: int, b: int) -> int:
    return min(max(a, -(1 << (b - 1))), (1 << (b - 1)) - 1)


def quantize_reference(y, profile) -> np.ndarray:
    rows = np.asarray(y).tolist()
    cmap = np.asarray(profile.class_map).tolist()
    out = []
    for row in rows:
        q = []
        for k, v in enumerate(row):
            c = profile.classes[cmap[k]]
            q.append(0 if c.mode == "drop" else _sclamp(_rs(v * c.qmul, c.qshift), c.bits))
        out.append(q)
    return np.asarray(out, dtype=np.int64).reshape(len(rows), profile.channels)


def dequantize_reference(q, profile) -> np.ndarray:
    rows = np.asarray(q).tolist()
    cmap = np.asarray(profile.class_map).tolist()
    out = []
    for row in rows:
        out.append([_sclamp(_rs(v * profile.classes[cmap[k]].dqmul,
                                profile.classes[cmap[k]].dqshift), Y_BITS)
                    for k, v in enumerate(row)])
    return np.asarray(out, dtype=np.int64).reshape(len(rows), profile.channels)
