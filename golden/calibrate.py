"""Calibration: from feature maps to a codec profile.

    offsets     mu = per-channel floor(mean + 0.5)
    transform   pca per group on the calibration pixels; dct / wht / identity are fixed
    step        one uniform step for all components: max|y| of the strongest (largest-variance)
                component / (2^(B-1) - 1), so that component's symbols use B bits
    classes     components sorted by variance (descending), cut into K = min(max_classes, C)
                contiguous bands of (near) equal count; class 0 holds the strongest components
    per class   bits = smallest signed width holding +-max|q| seen; mode and code parameters are
                chosen by their exact cost in bits on the calibration symbols of that class

The cost model (`token_bits`, `pixel_bits`) counts exactly the bits docs/FORMAT.md makes the
encoder write, so the profile's `calibration` metadata can report the predicted size.
"""

from __future__ import annotations

import numpy as np

from golden.arith import signed_width, zigzag
from golden.huffman import entropy_bits, limited_lengths
from golden.profile import (
    DTYPES,
    HUFF_ESC,
    HUFF_SYMBOLS,
    LAYOUTS,
    MAX_CLASSES,
    TRANSFORMS,
    ClassParams,
    Profile,
)
from golden.quantizer import quantize, step_to_params
from golden.transform import build_matrices, channel_offsets, forward, is_power_of_two, to_pixels
from golden.vlc_encoder import class_tokens

CODERS = ("auto", "golomb", "huffman", "pooled-huffman")
MIN_STEP = 1.0 / 65536
MAX_STEP = 65535.0   # the largest step the 16-bit dequantizer multiplier can apply exactly
MAX_BITS = 16
# Candidate modes per coder. Drop is not a coder: a class that is all zero in calibration is
# dropped under every coder except the pooled baseline.
CODER_MODES = {"auto": ("raw", "rice", "huffman"), "golomb": ("rice",), "huffman": ("huffman",)}


# -- exact cost model --------------------------------------------------------------------------
def rice_esc(bits: int) -> int:
    """The escape threshold calibration uses: as many unary ones as allowed (esc + bits <= 32)."""
    return min(16, 32 - bits)


def _symbols(u: np.ndarray) -> np.ndarray:
    return np.where(u < HUFF_ESC, u, HUFF_ESC)


def token_bits(v, cls: ClassParams) -> np.ndarray:
    """Bits of the token of each value v (no zero flag): the encoder's own definition."""
    return class_tokens(np.asarray(v, dtype=np.int64), cls)[1]


def pixel_bits(qc, cls: ClassParams) -> np.ndarray:
    """Coded bits per pixel of one class: `qc` is (P, n), that class's components of each
    pixel; includes the zero flag (1 bit per pixel) when the class has one."""
    qc = np.asarray(qc, dtype=np.int64)
    t = token_bits(qc, cls).sum(axis=1)
    if cls.mode != "drop" and cls.zflag:
        t = 1 + np.where((qc != 0).any(axis=1), t, 0)
    return t


def payload_bits(q, profile: Profile) -> np.ndarray:
    """Coded payload bits of each pixel (tokens and flags, no padding or headers); (P,) int64.
    `q` is (P, C), the quantizer's output."""
    q = np.asarray(q, dtype=np.int64)
    out = np.zeros(q.shape[0], dtype=np.int64)
    for ci, cls in enumerate(profile.classes):
        comps = np.flatnonzero(profile.class_map == ci)
        if comps.size:
            out += pixel_bits(q[:, comps], cls)
    return out


def tile_words(q, profile: Profile, image_pixels: int) -> np.ndarray:
    """Words each tile occupies (header + min(coded, raw) payload), per FORMAT.md "Tiles"."""
    pb = payload_bits(q, profile)
    p = pb.shape[0]
    if image_pixels < 1 or p % image_pixels:
        raise ValueError(f"{p} pixels are not a whole number of {image_pixels}-pixel images")
    tp = profile.tile_pixels
    starts = (np.arange(0, p, image_pixels)[:, None] + np.arange(0, image_pixels, tp)).ravel()
    lens = np.diff(np.append(starts, p))
    coded = -(-np.add.reduceat(pb, starts) // 64)
    raw = -(-lens * profile.raw_bits_per_pixel // 64)
    return 1 + np.where(coded >= raw, raw, coded)


def _hist(u: np.ndarray) -> np.ndarray:
    return np.bincount(u.ravel(), minlength=HUFF_SYMBOLS) if u.size else np.zeros(
        HUFF_SYMBOLS, dtype=np.int64)


def _rice_cost(hist: np.ndarray, bits: int) -> tuple[int, int]:
    """Best (cost, k) for a zigzag histogram; ties go to the smaller k."""
    u = np.flatnonzero(hist)          # the histogram is sparse for wide classes
    n = hist[u]
    esc = rice_esc(bits)
    best = None
    for k in range(min(15, bits) + 1):
        qq = u >> k
        cost = int((n * np.where(qq < esc, qq + 1 + k, esc + bits)).sum())
        if best is None or cost < best[0]:
            best = (cost, k)
    return best


def huffman_for(hist: np.ndarray) -> list[int]:
    """Code lengths for a zigzag histogram over the 64-symbol alphabet: values u >= 63 count as
    ESC, and ESC always gets a code (a count of at least 1) so unseen values stay codable."""
    sym = np.zeros(HUFF_SYMBOLS, dtype=np.int64)
    sym[:HUFF_ESC] = hist[:HUFF_ESC]
    sym[HUFF_ESC] = max(int(hist[HUFF_ESC:].sum()), 1)
    return limited_lengths(sym)


def _huffman_cost(hist: np.ndarray, bits: int) -> tuple[int, list[int]]:
    lengths = huffman_for(hist)
    ln = np.asarray(lengths, dtype=np.int64)
    n_esc = int(hist[HUFF_ESC:].sum())
    cost = int((hist[:HUFF_ESC] * ln[:HUFF_ESC]).sum()) + n_esc * (int(ln[HUFF_ESC]) + bits)
    return cost, lengths


def _choose_class(qc: np.ndarray, bits: int, modes) -> tuple[ClassParams, dict[str, int]]:
    """Cheapest (mode, zflag) for one class's symbols `qc` (P, n); returns the class params
    (quantizer fields still unset) and the cost of every candidate tried."""
    p = qc.shape[0]
    nz_rows = (qc != 0).any(axis=1)
    u_all = zigzag(qc)
    hists = {False: _hist(u_all), True: _hist(u_all[nz_rows])}
    n_vals = {False: qc.size, True: int(nz_rows.sum()) * qc.shape[1]}
    candidates: dict[str, int] = {}
    best = None
    for mode in modes:
        for zflag in (False, True):
            flag = p if zflag else 0
            if mode == "raw":
                cost, extra = n_vals[zflag] * bits, {}
            elif mode == "rice":
                c, k = _rice_cost(hists[zflag], bits)
                cost, extra = c, {"k": k, "esc": rice_esc(bits)}
            else:
                c, lengths = _huffman_cost(hists[zflag], bits)
                cost, extra = c, {"lengths": lengths}
            cost += flag
            candidates[mode + ("+zflag" if zflag else "")] = cost
            if best is None or cost < best[0]:
                best = (cost, ClassParams(mode=mode, zflag=zflag, bits=bits, **extra))
    return best[1], candidates


# -- calibration -------------------------------------------------------------------------------
def _check_input(x) -> tuple[np.ndarray, str]:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"expected a (C, H, W) or (N, C, H, W) tensor, got {x.ndim} dimensions "
                         f"(shape {x.shape})")
    if np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"float tensors ({x.dtype}) must be scaled to int8, uint8 or int16 by "
                         "the caller (the codec works on integer feature maps)")
    names = {np.dtype(t): name for name, (t, _, _) in DTYPES.items()}
    if x.dtype not in names:
        raise ValueError(f"unsupported dtype {x.dtype}; expected one of {tuple(DTYPES)}")
    if x.size == 0:
        raise ValueError(f"empty tensor (shape {x.shape})")
    return x, names[x.dtype]


def calibrate(x, transform: str = "pca", group: int = 8, bits: int = 8, coder: str = "auto",
              tile_pixels: int | None = None, layout: str = "fixed", frac_bits: int = 12,
              max_classes: int = MAX_CLASSES, relu: bool = False, drop: bool = True) -> Profile:
    """Build a codec profile from an int8/uint8/int16 tensor (C, H, W) or (N, C, H, W).

    `bits` (B, 2..16) is the width of the strongest component's symbols; lower B means coarser
    steps. `coder`: "auto" (cheapest of raw / Rice / Huffman per class, with or without the zero
    flag), "golomb" (Rice only), "huffman" (Huffman only), or "pooled-huffman" (the paper's
    baseline: one width and one Huffman table for every component, no flags, no drop).
    `tile_pixels` defaults to W (one image row per tile). `drop=False` keeps classes that are
    all zero in the calibration data (coded, at the cheapest width, instead of dropped), so a
    tensor that does use those components later still gets them back.

    PCA with few pixels: any P >= 1 works. With P < N the covariance is rank-deficient and the
    components beyond its rank see zero variance, so they land in the weakest classes.
    """
    x, dtype = _check_input(x)
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r} (expected one of {TRANSFORMS})")
    if coder not in CODERS:
        raise ValueError(f"unknown coder {coder!r} (expected one of {CODERS})")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (expected one of {LAYOUTS})")
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in 2..{MAX_BITS}, got {bits!r}")
    if not isinstance(max_classes, (int, np.integer)) or not 1 <= max_classes <= MAX_CLASSES:
        raise ValueError(f"max_classes must be in 1..{MAX_CLASSES}, got {max_classes!r}")
    if not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= 16:
        raise ValueError(f"frac_bits must be in 0..16, got {frac_bits!r}")
    c, h, w = x.shape[-3:]
    if not isinstance(group, (int, np.integer)) or group < 1 or c % group:
        raise ValueError(f"group size {group!r} must be a positive divisor of the channel count "
                         f"{c}")
    if transform == "wht" and not is_power_of_two(group):
        raise ValueError(f"the wht transform needs a power-of-two group size, got {group}")
    tile_pixels = w if tile_pixels is None else tile_pixels
    if not isinstance(tile_pixels, (int, np.integer)) or not 1 <= tile_pixels < 1 << 16:
        raise ValueError(f"tile_pixels must be in 1..65535, got {tile_pixels!r}")

    pixels = to_pixels(x)
    offsets = channel_offsets(pixels)
    matrix = build_matrices(transform, c, group, frac_bits, pixels, offsets)
    prof = Profile(channels=c, group=group, transform=transform, frac_bits=frac_bits,
                   matrix=matrix, offsets=offsets, class_map=np.zeros(c, dtype=np.int64),
                   classes=[ClassParams(mode="raw")], tile_pixels=int(tile_pixels),
                   layout=layout, dtype=dtype, relu=bool(relu))
    y = forward(pixels, prof)

    # One uniform step, set by the strongest component.
    var = y.astype(np.float64).var(axis=0)
    order = np.argsort(-var, kind="stable")
    strongest = int(order[0])
    peak = int(np.abs(y[:, strongest]).max())
    step = min(max(peak / ((1 << (bits - 1)) - 1), MIN_STEP), MAX_STEP)
    qmul, qshift, dqmul, dqshift = step_to_params(step)
    qparams = {"qmul": qmul, "qshift": qshift, "dqmul": dqmul, "dqshift": dqshift}
    prof.classes = [ClassParams(mode="raw", bits=MAX_BITS, **qparams)]
    q_all = quantize(y, prof)              # every component at the widest width

    # Classes: equal-count bands of the variance order.
    k_classes = min(max_classes, c)
    bands = np.array_split(order, k_classes)
    class_map = np.empty(c, dtype=np.int64)
    for ci, band in enumerate(bands):
        class_map[band] = ci

    classes: list[ClassParams] = []
    info = []
    if coder == "pooled-huffman":
        width = int(min(signed_width(np.abs(q_all).max()), MAX_BITS))
        hist = _hist(zigzag(q_all))
        lengths = huffman_for(hist)
        for _ in bands:
            classes.append(ClassParams(mode="huffman", zflag=False, bits=width,
                                       lengths=list(lengths), **qparams))
            info.append({})
    else:
        for band in bands:
            qc = q_all[:, band]
            width = int(min(signed_width(np.abs(qc).max()), MAX_BITS))
            if not qc.any() and not drop:
                # All zero here, but kept: the width of the step's range leaves room for the
                # values another tensor may bring, and the zero flag makes it cost ~1 bit/pixel.
                width = bits
            if not qc.any() and drop:
                cp, cand = ClassParams(mode="drop", bits=width), {}
            else:
                cp, cand = _choose_class(qc, width, CODER_MODES[coder])
            for f, v in qparams.items():
                setattr(cp, f, v)
            classes.append(cp)
            info.append({"candidates": cand})
    prof.class_map = class_map
    prof.classes = classes
    prof.validate()

    # Predicted size on the calibration data, from the same cost model.
    q = quantize(y, prof)
    values = int(q.size)
    ent = 0.0
    class_info = []
    for ci, (band, cp) in enumerate(zip(bands, classes, strict=True)):
        cost = int(pixel_bits(q[:, band], cp).sum())
        if cp.mode != "drop":
            ent += entropy_bits(np.bincount(zigzag(q[:, band]).ravel()))
        d = {"components": int(band.size), "mode": cp.mode, "zflag": bool(cp.zflag),
             "bits": cp.bits, "cost_bits": cost}
        if cp.mode == "rice":
            d["k"] = cp.k
        d.update(info[ci])
        class_info.append(d)
    total = sum(d["cost_bits"] for d in class_info)
    n_img = x.shape[0] if x.ndim == 4 else 1
    words = tile_words(q, prof, pixels.shape[0] // n_img)
    prof.calibration = {
        "transform": transform, "group": int(group), "bits": int(bits), "coder": coder,
        "step": float(step), "strongest_component": strongest,
        "pixels": int(pixels.shape[0]), "values": values,
        "predicted_bits_per_value": total / values,
        "predicted_tile_bits_per_value": 64 * int(words.sum()) / values,
        "entropy_bits_per_value": ent / values,
        "raw_bits_per_value": prof.raw_bits_per_pixel / c,
        "classes": class_info,
    }
    return prof
