"""Golden-model throughput against zlib level 6 on the same bytes (`fmcodec bench`).

Reports values per second, best of `repeats` runs each, for golden encode (tensor -> container
bytes) and decode (container bytes -> reconstruction) of a 64x56x56 int8 correlated tensor, and for
zlib level 6 compress and decompress of the same int8 bytes, in the same run.
"""

from __future__ import annotations

import platform
import time
import zlib

import numpy as np


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run_bench(repeats: int = 5, shape=(64, 56, 56), seed: int = 0) -> dict:
    from golden import codec
    from golden.calibrate import calibrate
    from golden.synthetic import correlated_tensor

    c, h, w = shape
    x = correlated_tensor(c, h, w, seed=seed)
    profile = calibrate(x, transform="pca", group=8, bits=8)
    data = codec.encode(x, profile)
    xh = codec.decode(data, profile)
    raw = x.tobytes()
    z = zlib.compress(raw, 6)
    values = x.size
    t_enc = _best(lambda: codec.encode(x, profile), repeats)
    t_dec = _best(lambda: codec.decode(data, profile), repeats)
    t_zc = _best(lambda: zlib.compress(raw, 6), repeats)
    t_zd = _best(lambda: zlib.decompress(z), repeats)
    return {
        "tensor": f"int8 {c}x{h}x{w} correlated (golden.synthetic, seed {seed})",
        "values": int(values),
        "golden_encode_values_per_s": values / t_enc,
        "golden_decode_values_per_s": values / t_dec,
        "zlib6_compress_values_per_s": values / t_zc,
        "zlib6_decompress_values_per_s": values / t_zd,
        "encode_vs_zlib6_compress": t_zc / t_enc,
        "decode_vs_zlib6_compress": t_zc / t_dec,
        "decode_vs_zlib6_decompress": t_zd / t_dec,
        "golden_bits_per_value": 8 * codec.encode_tensor(x, profile).bytes_moved / values,
        "zlib6_bits_per_value": 8 * len(z) / values,
        "max_abs_error": int(np.abs(xh.astype(np.int64) - x).max()),
        "repeats": repeats,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


METHODS = (
    ("fmcodec pca auto", dict(transform="pca", coder="auto")),
    ("fmcodec pca huffman", dict(transform="pca", coder="huffman")),
    ("fmcodec pca golomb", dict(transform="pca", coder="golomb")),
    ("paper: pca pooled-huffman", dict(transform="pca", coder="pooled-huffman")),
    ("fmcodec dct auto", dict(transform="dct", coder="auto")),
    ("fmcodec wht auto", dict(transform="wht", coder="auto")),
    ("no transform, fmcodec VLC", dict(transform="identity", coder="auto")),
)


def size_table(x: np.ndarray, group: int = 8, bits: int = 8, label: str = "") -> list[dict]:
    """Real container bits/value of every method on tensor `x`, with entropies and SQNR.

    Every method quantizes with the same uniform step rule (B bits for the strongest component),
    so methods sharing a transform have identical symbols and SQNR: their sizes compare at equal
    quality. `pooled_entropy_bits_per_value` of the paper's row is what the paper reported.
    """
    from golden.calibrate import calibrate
    from golden.stats import measure

    rows = []
    for name, kw in METHODS:
        profile = calibrate(x, group=group, bits=bits, **kw)
        s = measure(x, profile)
        rows.append({"tensor": label, "method": name, "group": group, "bits": bits,
                     **{k: s[k] for k in ("bits_per_value", "entropy_bits_per_value",
                                          "pooled_entropy_bits_per_value",
                                          "overhead_vs_entropy", "sqnr_db", "raw_tiles")}})
    return rows


def run_sizes(group: int = 8, bits: int = 8) -> list[dict]:
    """`size_table` on the 64x56x56 correlated tensor and on the bundled real feature maps."""
    from pathlib import Path

    from golden.synthetic import correlated_tensor

    rows = size_table(correlated_tensor(64, 56, 56), group, bits, "synthetic 64x56x56")
    fixture = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "featuremaps.npz"
    if fixture.is_file():
        with np.load(fixture) as f:
            for key in f.files:
                t = f[key]
                if t.ndim == 4 and t.dtype == np.int8:
                    rows += size_table(t, group, bits, f"{key} {'x'.join(map(str, t.shape))}")
    return rows
