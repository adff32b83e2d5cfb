"""Coded size and quality of a tensor under a profile (`fmcodec stats`).

Sizes are real container bytes: the golden encoder builds the DRAM image and the file, and the
reconstruction is decoded back from those bytes, never estimated.
"""

from __future__ import annotations

import numpy as np

from golden import codec
from golden.huffman import entropy_bits
from golden.profile import DTYPES, MODE_ID, Profile


def class_entropy_bits(q: np.ndarray, profile: Profile) -> float:
    """Total per-class empirical entropy (bits) of the symbols q (P, C); dropped classes cost 0."""
    comp_class = profile.class_map
    total = 0.0
    for c, cp in enumerate(profile.classes):
        if cp.mode == "drop":
            continue
        vals = q[:, comp_class == c].ravel()
        if vals.size:
            total += entropy_bits(np.unique(vals, return_counts=True)[1])
    return total


def sqnr_db(x: np.ndarray, xh: np.ndarray) -> float:
    x = x.astype(np.float64)
    err = float(((x - xh.astype(np.float64)) ** 2).sum())
    sig = float((x ** 2).sum())
    if err == 0:
        return float("inf")
    if sig == 0:
        return float("-inf")
    return 10 * np.log10(sig / err)


def measure(x: np.ndarray, profile: Profile) -> dict:
    """Encode `x`, decode the bytes, and report sizes (bits/value with headers) and quality."""
    q = codec.quantize_tensor(x, profile)
    enc = codec.encode_q(q, x.shape, profile)
    data = codec.to_file_bytes(enc, profile, embed_profile=False)
    xh = codec.decode(data, profile)
    values = int(x.size)
    dtype_bits = np.iinfo(DTYPES[profile.dtype][0]).bits
    coded = profile.class_array("mode") != MODE_ID["drop"]
    ent = class_entropy_bits(q, profile) / values
    pooled = q[:, coded].ravel()
    pooled_ent = entropy_bits(np.unique(pooled, return_counts=True)[1]) / values
    bpv = 8 * enc.bytes_moved / values
    return {
        "shape": list(x.shape),
        "values": values,
        "container_bytes": int(enc.bytes_moved),
        "bits_per_value": bpv,
        "entropy_bits_per_value": ent,
        "pooled_entropy_bits_per_value": pooled_ent,
        "overhead_vs_entropy": bpv / ent - 1 if ent > 0 else None,
        "sqnr_db": sqnr_db(x, xh),
        "max_abs_error": int(np.abs(x.astype(np.int64) - xh).max()),
        "raw_bits_per_value": dtype_bits,
        "compression_ratio": dtype_bits / bpv if bpv else None,
        "footprint_bytes": int(enc.footprint),
        "file_bytes": len(data),
        "tiles": int(enc.n_tiles),
        "raw_tiles": int((enc.tile_mode == 1).sum()),
        "coded_components": int(coded.sum()),
        "profile": profile.checksum,
    }
