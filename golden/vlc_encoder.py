"""Variable-length encoder: quantized symbols -> tokens (golden twin of hw/vlc_encoder.py).

docs/FORMAT.md ("Variable-length code") is the definition. A token is `(value, nbits)` with the
first stream bit in bit 0 of `value`; the bit packer lays tokens end to end. For a pixel of C
components the coded payload is the C tokens in component order, where

- `drop` sends nothing (0 bits),
- `raw` sends `bits` bits of q, two's complement, least significant bit first,
- `rice` sends `u >> k` ones, a zero and the low `k` bits of `u = zigzag(q)`, or, when
  `u >> k >= esc`, `esc` ones and `bits` bits of q,
- `huffman` sends the canonical code of `u` (bit-reversed, so the first code bit is bit 0), or the
  code of ESC (63) followed by `bits` bits of q when `u` has no code of its own,

and the zero flag of a `zflag` class is merged into the token of the class's first (lowest
index) component of the pixel as its bit 0: that token is `1 | token << 1` when some component of
the class is non-zero in the pixel, and the single bit `0` otherwise, in which case every other
component of the class in the pixel gets a 0-bit token. The longest token is 33 bits (flag, a
16-bit Huffman ESC code and 16 raw bits; or flag, `esc + bits <= 32`).

`tokens` is vectorized per class; `tokens_reference` is the same definition as a plain loop.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from golden.arith import zigzag
from golden.huffman import canonical_codes
from golden.profile import HUFF_ESC, MODE_ID, MODES

MAX_TOKEN_BITS = 33
_DROP, _RAW, _RICE, _HUFF = (MODE_ID[m] for m in MODES)


def check_symbols(q, profile) -> np.ndarray:
    """`q` as a (P, C) int64 array, checked against the profile: every value within its class's
    `bits`-bit two's complement range, and 0 for components of `drop` classes (the quantizer
    clamps, so anything else is a caller's bug and would not survive a round trip)."""
    q = np.asarray(q)
    if q.ndim != 2 or q.shape[1] != profile.channels:
        raise ValueError(f"expected (P, {profile.channels}) quantized symbols, got shape {q.shape}")
    if q.size and not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"quantized symbols must be integers, got {q.dtype}")
    q = q.astype(np.int64, copy=False)
    if not q.size:
        return q
    bits = profile.class_array("bits")
    drop = profile.class_array("mode") == _DROP
    hi = np.where(drop, 0, (np.int64(1) << (bits - 1)) - 1)
    lo = np.where(drop, 0, -(np.int64(1) << (bits - 1)))
    bad = (q < lo) | (q > hi)
    if bad.any():
        p, k = (int(i) for i in np.argwhere(bad)[0])
        c = int(profile.class_map[k])
        if drop[k]:
            raise ValueError(f"q[{p}, {k}] = {q[p, k]}: component {k} is in dropped class {c} "
                             f"and must be 0")
        raise ValueError(f"q[{p}, {k}] = {q[p, k]} outside class {c}'s {bits[k]}-bit range "
                         f"[{lo[k]}, {hi[k]}]")
    return q


def class_columns(profile) -> list[np.ndarray]:
    """Per class, its component indices in ascending order (the first one carries the zero flag)."""
    cmap = np.asarray(profile.class_map)
    return [np.flatnonzero(cmap == c) for c in range(len(profile.classes))]


def huffman_tables(cp) -> tuple[np.ndarray, np.ndarray]:
    """`(code_reversed, length)` per symbol 0..63 as int64 arrays (length 0: no code)."""
    codes = canonical_codes(cp.lengths)
    return (np.array([c for c, _ in codes], dtype=np.int64),
            np.array([n for _, n in codes], dtype=np.int64))


def class_tokens(v: np.ndarray, cp) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of one class without the zero flag: int64 values and lengths, shaped like `v`.

    The definition, vectorized over values; `token_table` evaluates it once per class value."""
    mode = MODE_ID[cp.mode]
    bits = int(cp.bits)
    raw = v & ((1 << bits) - 1)                          # two's complement, bits wide
    if mode == _DROP:
        return np.zeros_like(v), np.zeros_like(v)
    if mode == _RAW:
        return raw, np.full_like(v, bits)
    u = zigzag(v)
    if mode == _RICE:
        k, esc = int(cp.k), int(cp.esc)
        qq = u >> k
        escape = qq >= esc
        qc = np.minimum(qq, esc)                         # keeps the shifts below in range
        coded = ((np.int64(1) << qc) - 1) | ((u & ((1 << k) - 1)) << (qc + 1))
        value = np.where(escape, ((1 << esc) - 1) | (raw << esc), coded)
        nbits = np.where(escape, esc + bits, qc + 1 + k)
        return value, nbits
    code, length = huffman_tables(cp)
    sym = np.where(u < HUFF_ESC, u, HUFF_ESC)
    sym = np.where(length[sym] > 0, sym, HUFF_ESC)
    escape = sym == HUFF_ESC
    value = code[sym] | np.where(escape, raw << length[HUFF_ESC], 0)
    nbits = length[sym] + np.where(escape, bits, 0)
    return value, nbits


def _class_key(cp) -> tuple:
    return (cp.mode, int(cp.bits), int(cp.k), int(cp.esc),
            tuple(cp.lengths) if cp.mode == "huffman" else ())


@lru_cache(maxsize=256)
def _token_table(key: tuple) -> tuple[np.ndarray, np.ndarray]:
    mode, bits, k, esc, lengths = key
    half = 1 << (bits - 1)
    cp = SimpleNamespace(mode=mode, bits=bits, k=k, esc=esc, lengths=list(lengths))
    value, nbits = class_tokens(np.arange(-half, half, dtype=np.int64), cp)
    value.setflags(write=False)
    nbits.setflags(write=False)
    return value, nbits


def token_table(cp) -> tuple[np.ndarray, np.ndarray]:
    """Token (without zero flag) of every value of a class: `(value, nbits)` int64 arrays indexed
    by `v + 2^(bits-1)` (cached: a token depends only on the value and the class parameters)."""
    return _token_table(_class_key(cp))


@lru_cache(maxsize=64)
def _profile_tables(keys: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The token tables of all classes one after the other, and where value 0 of each sits."""
    tables = [_token_table(key) for key in keys]
    sizes = np.array([v.size for v, _ in tables], dtype=np.int64)
    zero = np.cumsum(sizes) - sizes // 2                  # index of value 0 of each class
    out = (np.concatenate([v for v, _ in tables]), np.concatenate([n for _, n in tables]), zero)
    for a in out:
        a.setflags(write=False)
    return out


def tokens_i64(q, profile) -> tuple[np.ndarray, np.ndarray]:
    """`tokens` with int64 values (they are below 2^33), as the container uses them."""
    q = check_symbols(q, profile)
    # One gather through the concatenated per-class token tables does every component at once.
    values, lengths, zero = _profile_tables(tuple(_class_key(cp) for cp in profile.classes))
    index = q + zero[np.asarray(profile.class_map)]
    value = values[index]
    nbits = lengths[index]
    for cp, cols in zip(profile.classes, class_columns(profile), strict=True):
        if not cols.size or not cp.zflag:
            continue
        nz = (q[:, cols] != 0).any(axis=1)
        keep = nz[:, None].astype(np.int64)
        val = value[:, cols] * keep
        nb = nbits[:, cols] * keep
        val[:, 0] = (val[:, 0] << 1) | nz
        nb[:, 0] += 1
        value[:, cols] = val
        nbits[:, cols] = nb
    return value, nbits


def tokens(q, profile) -> tuple[np.ndarray, np.ndarray]:
    """Coded tokens of every component: `(value uint64 (P, C), nbits int64 (P, C))`, in stream
    order (pixel by pixel, component by component), zero flags merged (see the module doc)."""
    value, nbits = tokens_i64(q, profile)
    return value.view(np.uint64), nbits


def raw_tokens(q, profile) -> tuple[np.ndarray, np.ndarray]:
    """Raw payload tokens: `bits` bits of q for every non-dropped component, no flags."""
    q = check_symbols(q, profile)
    bits = profile.class_array("bits")
    keep = profile.class_array("mode") != _DROP
    nbits = np.broadcast_to(np.where(keep, bits, 0), q.shape).copy()
    value = (q & ((np.int64(1) << nbits) - 1)).astype(np.uint64)
    return value, nbits


def token_lengths(q, profile) -> np.ndarray:
    """Coded bits per component, (P, C) int64: the cost accounting view of `tokens`."""
    return tokens(q, profile)[1]


# -- reference loop ----------------------------------------------------------------------------
def _zz(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _token_reference(v: int, cp) -> tuple[int, int]:
    bits = cp.bits
    raw = v & ((1 << bits) - 1)
    if cp.mode == "drop":
        return 0, 0
    if cp.mode == "raw":
        return raw, bits
    u = _zz(v)
    # Build the token as a list of stream bits, first bit first, then read it as a number.
    out: list[int] = []
    if cp.mode == "rice":
        qq = u >> cp.k
        if qq < cp.esc:
            out += [1] * qq + [0] + [(u >> i) & 1 for i in range(cp.k)]
        else:
            out += [1] * cp.esc + [(raw >> i) & 1 for i in range(bits)]
    else:
        codes = canonical_codes(cp.lengths)
        s = u if u < HUFF_ESC and cp.lengths[u] > 0 else HUFF_ESC
        rev, n = codes[s]
        out += [(rev >> i) & 1 for i in range(n)]
        if s == HUFF_ESC:
            out += [(raw >> i) & 1 for i in range(bits)]
    return sum(b << i for i, b in enumerate(out)), len(out)


def tokens_reference(q, profile) -> tuple[np.ndarray, np.ndarray]:
    """`tokens` written as a loop over pixels and components, straight from FORMAT.md."""
    q = check_symbols(q, profile)
    P, C = q.shape
    value = np.zeros((P, C), dtype=np.uint64)
    nbits = np.zeros((P, C), dtype=np.int64)
    cmap = [int(c) for c in profile.class_map]
    for p in range(P):
        row = [int(v) for v in q[p]]
        seen: set[int] = set()
        for k in range(C):
            c = cmap[k]
            cp = profile.classes[c]
            val, nb = _token_reference(row[k], cp)
            if cp.zflag:
                flag = int(any(row[j] != 0 for j in range(C) if cmap[j] == c))
                if not flag:
                    val, nb = 0, 0
                if c not in seen:                        # first component of the class
                    val, nb = flag | (val << 1), nb + 1
            seen.add(c)
            value[p, k], nbits[p, k] = val, nb
    return value, nbits
