"""Bit packer and tile header (golden twin of hw/bit_packer.py).

docs/FORMAT.md ("Tiles") is the definition. Stream bit `b` goes to bit `b % 64` of word `b // 64`;
a token `(value, nbits)` puts bit `i` of `value` at stream bit `start + i`; the last word is padded
with zeros. Words are little endian in memory and in files.

The tile header word: bits 0..19 payload length in words, 20..21 mode (0 coded, 1 raw), 22..31
tile number mod 1024, 32..63 CRC-32 (zlib) over the payload bytes followed by the 4 bytes of
header bits 0..31, all little endian.

`pack_at` is the vectorized packer (any token placement, used by the container to write every
tile of a tensor straight into the DRAM image); `pack` packs one stream from bit 0;
`pack_reference` is the bit-by-bit loop twin.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

LEN_BITS = 20
MAX_PAYLOAD_WORDS = (1 << LEN_BITS) - 1
MODE_CODED, MODE_RAW = 0, 1
TILE_NO_MOD = 1024

WORD = np.dtype("<u8")


def _check_tokens(value, nbits) -> tuple[np.ndarray, np.ndarray]:
    value = np.asarray(value).astype(np.uint64, copy=False).ravel()
    nbits = np.asarray(nbits).astype(np.int64, copy=False).ravel()
    if value.shape != nbits.shape:
        raise ValueError(f"{value.size} token values but {nbits.size} lengths")
    if nbits.size and (nbits.min() < 0 or nbits.max() > 64):
        raise ValueError("token lengths must be in 0..64")
    short = nbits < 64
    if (value[short] >> nbits[short].astype(np.uint64)).any():
        raise ValueError("a token value has bits set at or above its length")
    return value, nbits


def pack_at(value, nbits, start, nwords: int, out: np.ndarray | None = None) -> np.ndarray:
    """OR tokens into `nwords` zero words (or into `out`), token i at absolute stream bit
    `start[i]`. Tokens must not overlap and `start` must be non-decreasing (a stream, or several
    streams one after the other)."""
    value, nbits = _check_tokens(value, nbits)
    start = np.asarray(start, dtype=np.int64).ravel()
    if start.shape != value.shape:
        raise ValueError(f"{value.size} tokens but {start.size} start positions")
    words = np.zeros(nwords, dtype=WORD) if out is None else out
    keep = nbits > 0
    n, s = nbits[keep], start[keep]
    if s.size and (s[0] < 0 or (s[1:] < s[:-1] + n[:-1]).any() or s[-1] + n[-1] > 64 * words.size):
        raise ValueError("tokens overlap, run backwards or do not fit the words")
    pack_into(value.view(np.int64), nbits, start, words)
    return words


def pack_into(value: np.ndarray, nbits: np.ndarray, start: np.ndarray, words: np.ndarray) -> None:
    """The packer without checks: token values (int64 views of the uint64 tokens), lengths
    and start bits, ORed into the uint64 array `words`.

    Each word receives the low part of every token that starts in it, combined with one
    `bitwise_or.reduceat` (the starts are sorted, so the tokens of a word are consecutive), plus
    the spill of the at most one token that crosses into it from the word before. Shifts are done
    in int64, which wraps like the uint64 words it is a view of.
    """
    if not words.size or not value.size:
        return
    w = np.minimum(start >> 6, words.size - 1)          # 0-bit tokens may sit at the very end
    o = start & 63
    first = np.flatnonzero(np.concatenate(([True], w[1:] != w[:-1])))
    wv = words.view(np.int64)
    wv[w[first]] |= np.bitwise_or.reduceat(value << o, first)
    spill = np.flatnonzero(o + nbits > 64)               # implies o >= 1: the shift is < 64
    if spill.size:
        sv = value[spill]
        wv[w[spill] + 1] |= (sv >> (64 - o[spill])) & ((np.int64(1) << o[spill]) - 1)


def stream_words(nbits_total: int) -> int:
    """Words a stream of `nbits_total` bits occupies."""
    return -(-int(nbits_total) // 64)


def pack(value, nbits) -> np.ndarray:
    """One stream of tokens from bit 0 -> uint64 words, the last one zero-padded."""
    value, nbits = _check_tokens(value, nbits)
    ends = np.cumsum(nbits)
    total = int(ends[-1]) if ends.size else 0
    return pack_at(value, nbits, ends - nbits, stream_words(total))


def pack_reference(value, nbits) -> np.ndarray:
    """`pack` as a loop: every bit of every token, in stream order."""
    value, nbits = _check_tokens(value, nbits)
    bits: list[int] = []
    for v, n in zip(value.tolist(), nbits.tolist(), strict=True):
        bits += [(v >> i) & 1 for i in range(n)]
    words = [0] * stream_words(len(bits))
    for b, bit in enumerate(bits):
        words[b // 64] |= bit << (b % 64)
    return np.array(words, dtype=WORD)


# -- tile header ---------------------------------------------------------------------------------
class TileHeader(NamedTuple):
    payload_words: int
    mode: int
    tile_no: int        # tile number mod 1024
    check: int          # the CRC-32 field as stored


def header_low(payload_words: int, mode: int, tile_no: int) -> int:
    """Header bits 0..31: length, mode and tile number mod 1024."""
    if not 0 <= payload_words <= MAX_PAYLOAD_WORDS:
        raise ValueError(f"payload of {payload_words} words does not fit the 20-bit length field")
    if mode not in (MODE_CODED, MODE_RAW):
        raise ValueError(f"tile mode {mode} is not 0 (coded) or 1 (raw)")
    return payload_words | mode << LEN_BITS | (tile_no % TILE_NO_MOD) << 22


def tile_check(payload, low: int) -> int:
    """CRC-32 over the payload bytes (little endian words) followed by the 4 LE bytes of `low`.

    `payload` is anything with the buffer protocol holding the payload bytes (a uint64 word
    array, or a slice of a byte view of the DRAM image).
    """
    if isinstance(payload, np.ndarray) and payload.dtype != np.uint8:
        payload = np.ascontiguousarray(payload, dtype=WORD).view(np.uint8)
    return zlib.crc32((low & 0xFFFFFFFF).to_bytes(4, "little"), zlib.crc32(payload))


def tile_header(payload_words: int, mode: int, tile_no: int, payload) -> np.uint64:
    """The header word of a tile whose payload words are `payload`."""
    low = header_low(int(payload_words), int(mode), int(tile_no))
    return np.uint64(low | tile_check(payload, low) << 32)


def parse_tile_header(word) -> TileHeader:
    """Split a header word into its fields (no check here: see `tile_check`)."""
    word = int(word)
    return TileHeader(word & MAX_PAYLOAD_WORDS, (word >> LEN_BITS) & 3,
                      (word >> 22) & (TILE_NO_MOD - 1), word >> 32)
