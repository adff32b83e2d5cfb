"""Canonical, length-limited Huffman codes (docs/FORMAT.md, "Variable-length code").

`limited_lengths` builds optimal code lengths under a maximum length with package-merge;
`canonical_codes` and `decoder_tables` turn lengths into the encoder and decoder tables that the
golden coder uses and that the configuration writes carry to the hardware.
"""

from __future__ import annotations

import numpy as np

MAX_LEN = 16


def bit_reverse(value: int, nbits: int) -> int:
    out = 0
    for _ in range(nbits):
        out = (out << 1) | (value & 1)
        value >>= 1
    return out


def limited_lengths(counts, max_len: int = MAX_LEN) -> list[int]:
    """Optimal prefix-code lengths for `counts` with no length above `max_len` (package-merge).

    Symbols with count 0 get length 0 (no code). A single used symbol gets length 1.
    """
    counts = [int(c) for c in counts]
    used = [i for i, c in enumerate(counts) if c > 0]
    lengths = [0] * len(counts)
    if not used:
        return lengths
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    if len(used) > 1 << max_len:
        raise ValueError(f"{len(used)} symbols cannot have codes of at most {max_len} bits")
    # Package-merge: items are (weight, tuple of symbols); each list level merges pairs.
    leaves = sorted((counts[s], (s,)) for s in used)
    current = list(leaves)
    for _ in range(max_len - 1):
        packages = [(current[i][0] + current[i + 1][0], current[i][1] + current[i + 1][1])
                    for i in range(0, len(current) - 1, 2)]
        current = sorted(leaves + packages, key=lambda t: t[0])
    for _, syms in current[: 2 * len(used) - 2]:
        for s in syms:
            lengths[s] += 1
    return lengths


def _sorted_symbols(lengths) -> list[int]:
    return sorted((s for s, ln in enumerate(lengths) if ln), key=lambda s: (lengths[s], s))


def canonical_codes(lengths) -> list[tuple[int, int]]:
    """Per symbol `(code_reversed, length)`; `(0, 0)` for symbols without a code.

    The reversed code is the token value: the first (most significant) code bit goes first in
    the stream, i.e. into bit 0.
    """
    out = [(0, 0)] * len(lengths)
    code, prev = 0, 0
    for i, s in enumerate(_sorted_symbols(lengths)):
        ln = lengths[s]
        if i:
            code = (code + 1) << (ln - prev)
        prev = ln
        out[s] = (bit_reverse(code, ln), ln)
    return out


def decoder_tables(lengths, max_len: int = MAX_LEN):
    """`first, count, base` indexed by length 0..max_len, and the canonical symbol order.

    A code word read most significant bit first as an `l`-bit number v is symbol
    `symbols[base[l] + v - first[l]]` when `0 <= v - first[l] < count[l]`.
    """
    symbols = _sorted_symbols(lengths)
    count = [0] * (max_len + 1)
    for s in symbols:
        count[lengths[s]] += 1
    first = [0] * (max_len + 1)
    base = [0] * (max_len + 1)
    code, idx = 0, 0
    for ln in range(1, max_len + 1):
        code <<= 1
        first[ln] = code
        base[ln] = idx
        code += count[ln]
        idx += count[ln]
    return first, count, base, symbols


def code_lut(lengths, width: int = MAX_LEN):
    """Lookup tables over every `width`-bit stream window (first stream bit in bit 0).

    Returns `(length, symbol)` arrays of size 2**width; length 0 where no code matches
    (possible only for incomplete codes). Used by the vectorized golden decoder.
    """
    ln_lut = np.zeros(1 << width, dtype=np.int64)
    sym_lut = np.zeros(1 << width, dtype=np.int64)
    for s, (rev, ln) in enumerate(canonical_codes(lengths)):
        if ln:  # every window whose low `ln` bits are the reversed code word
            ln_lut[rev::1 << ln] = ln
            sym_lut[rev::1 << ln] = s
    return ln_lut, sym_lut


def entropy_bits(counts) -> float:
    """Total empirical entropy in bits of a histogram."""
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return 0.0
    p = c[c > 0] / n
    return float(-(c[c > 0] * np.log2(p)).sum())
