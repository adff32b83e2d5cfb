"""Lossless baseline coders for int8 feature maps: zero-value compression (ZVC) and EBPC.

Both work on one image's tensor at a time (a *transmission*), values in memory order (NCHW,
channel planes one after the other), 8-bit two's-complement words. Both have an encoder that
produces real bytes and a decoder that gives the tensor back bit-exactly; sizes in the evaluation
are ``len`` of those bytes.

ZVC (zero-value compression, as in Rhu et al., "Compressing DMA Engine", HPCA 2018): a bitmask with
one bit per value (1 = non-zero), then the non-zero values, 8 bits each. Stored as the mask bytes
(``ceil(n / 8)``) followed by the non-zero bytes.

EBPC (Cavigelli, Rutishauser, Benini, "EBPC: Extended Bit-Plane Compression for Deep Neural Network
Inference and Training Accelerators", IEEE JETCAS 2019; implemented here from the paper's
description) splits the stream in two:

- ZNZ stream, zero run-length coding of the zero / non-zero pattern: a non-zero value is the bit
  ``1``; a run of r zeros (1 <= r <= 16; longer runs are cut into runs of 16 and a rest) is ``0``
  followed by r - 1 in 4 bits.
- BPC stream, bit-plane compression of the non-zero values in blocks of 8 (the last block is
  filled up with zero words). A block is its first word (8 bits, the *base*), then the 7 deltas
  ``d_i = w_i - w_(i-1)`` as 9-bit two's complement, cut into 9 delta bit-planes ``DBP_k`` (bit k of
  d_1..d_7, d_1 the most significant bit of the 7-bit plane word). Planes are XORed with their
  upper neighbour (``DBX_8 = DBP_8``, ``DBX_k = DBP_k ^ DBP_(k+1)``) and coded from k = 8 down to 0:

      DBX = 0, a run of r >= 2 such planes   001 + (r - 2) in 3 bits
      DBX = 0, a single one                  01
      DBX = all ones                         00000
      DBP = 0 (and DBX != 0)                 00001
      DBX has two adjacent ones              00010 + position of the first one (3 bits)
      DBX has a single one                   00011 + its position (3 bits)
      anything else                          1 + DBX (7 bits)

  (positions count from the most significant bit of the plane word, i.e. d_1 is position 0).

Both streams are written most significant bit first (the first stream bit is bit 7 of byte 0),
each padded with zero bits to a whole byte. The decoder is told the number of values, as the
EBPC hardware is.

The encoders are vectorized; the decoders are plain loops that read the definition above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ZRLE_MAX = 16           # longest zero run in one ZNZ token
ZRLE_BITS = 4           # bits of (run length - 1)
BLOCK = 8               # BPC block size (words)
WORD_BITS = 8
DELTA_BITS = WORD_BITS + 1
PLANE_BITS = BLOCK - 1  # one bit per delta
POS_BITS = 3            # ceil(log2(PLANE_BITS))
RUN_BITS = 3            # zero-plane run length - 2, runs of up to DELTA_BITS planes


# -- bit streams -------------------------------------------------------------------------------
def pack_tokens(code: np.ndarray, nbits: np.ndarray) -> bytes:
    """Tokens ``(code, nbits)``, each written most significant bit first, in order -> bytes
    (zero-padded to a whole byte). Tokens with ``nbits == 0`` write nothing."""
    code = np.asarray(code, dtype=np.int64).ravel()
    nbits = np.asarray(nbits, dtype=np.int64).ravel()
    total = int(nbits.sum())
    if total == 0:
        return b""
    tok = np.repeat(np.arange(code.size), nbits)
    start = np.cumsum(nbits) - nbits
    offs = np.arange(total) - start[tok]
    bits = (code[tok] >> (nbits[tok] - 1 - offs)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


class BitReader:
    """Reads a byte string most significant bit first; refuses to read past its end."""

    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8)).tolist()
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > len(self.bits):
            raise ValueError("truncated stream: read past the end")
        v = 0
        for b in self.bits[self.pos:self.pos + n]:
            v = (v << 1) | b
        self.pos += n
        return v

    def padding_ok(self) -> bool:
        """True when only zero padding bits of the last byte are left."""
        rest = self.bits[self.pos:]
        return len(rest) < 8 and not any(rest)


def _check_int8(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ValueError(f"expected an int8 tensor, got {x.dtype}")
    return x


def _images(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, C*H*W); (C, H, W) is one image."""
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"expected a (C, H, W) or (N, C, H, W) tensor, got shape {x.shape}")
    return x.reshape(x.shape[0], -1)


# -- ZVC ---------------------------------------------------------------------------------------
def zvc_encode_image(v: np.ndarray) -> bytes:
    v = _check_int8(v).ravel()
    nz = v != 0
    return np.packbits(nz).tobytes() + v[nz].tobytes()


def zvc_decode_image(data: bytes, n: int) -> np.ndarray:
    mask_bytes = -(-n // 8)
    if len(data) < mask_bytes:
        raise ValueError("truncated ZVC stream: mask incomplete")
    mask = np.unpackbits(np.frombuffer(data[:mask_bytes], dtype=np.uint8))
    if mask[n:].any():
        raise ValueError("nonzero ZVC mask padding")
    mask = mask[:n].astype(bool)
    values = np.frombuffer(data[mask_bytes:], dtype=np.int8)
    if values.size != int(mask.sum()):
        raise ValueError(f"ZVC stream holds {values.size} values, the mask {int(mask.sum())}")
    if (values == 0).any():
        raise ValueError("ZVC stream holds a zero among its non-zero values")
    out = np.zeros(n, dtype=np.int8)
    out[mask] = values
    return out


# -- EBPC: ZNZ stream --------------------------------------------------------------------------
def znz_tokens(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ZNZ tokens, one slot per value (0 bits where a value is inside a run already coded)."""
    n = v.size
    nz = v != 0
    idx = np.arange(n)
    last_nz = np.maximum.accumulate(np.where(nz, idx, -1))
    run_pos = idx - last_nz - 1                         # position inside its zero run
    next_nz = np.minimum.accumulate(np.where(nz, idx, n)[::-1])[::-1]
    chunk_start = ~nz & (run_pos % ZRLE_MAX == 0)
    chunk_len = np.minimum(ZRLE_MAX, next_nz - idx)
    code = np.where(nz, 1, chunk_len - 1)               # '0' + (r - 1) is just r - 1 in 5 bits
    nbits = np.where(nz, 1, np.where(chunk_start, 1 + ZRLE_BITS, 0))
    return code, nbits


# -- EBPC: BPC stream --------------------------------------------------------------------------
def _popcount7(a: np.ndarray) -> np.ndarray:
    return sum((a >> i) & 1 for i in range(PLANE_BITS))


def bpc_tokens(nonzero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BPC tokens of the non-zero words: (blocks, 1 + 9) arrays, base then planes 8..0."""
    w = np.asarray(nonzero, dtype=np.int64)
    nblocks = -(-w.size // BLOCK)
    blocks = np.zeros(nblocks * BLOCK, dtype=np.int64)
    blocks[:w.size] = w
    blocks = blocks.reshape(nblocks, BLOCK)
    base = blocks[:, 0] & ((1 << WORD_BITS) - 1)
    delta = np.diff(blocks, axis=1) & ((1 << DELTA_BITS) - 1)   # (B, 7), 9-bit two's complement
    weights = 1 << np.arange(PLANE_BITS - 1, -1, -1)             # d_1 in the plane's MSB
    ks = np.arange(DELTA_BITS - 1, -1, -1)                       # planes 8..0
    dbp = (((delta[:, None, :] >> ks[None, :, None]) & 1) * weights).sum(axis=2)   # (B, 9)
    dbx = dbp.copy()
    dbx[:, 1:] = dbp[:, 1:] ^ dbp[:, :-1]
    full = (1 << PLANE_BITS) - 1
    zero = dbx == 0
    # zero-plane runs: length of the run starting at each plane, and where runs start
    run = np.zeros_like(dbx)
    for j in range(DELTA_BITS - 1, -1, -1):
        nxt = run[:, j + 1] if j + 1 < DELTA_BITS else 0
        run[:, j] = np.where(zero[:, j], 1 + nxt, 0)
    start = zero.copy()
    start[:, 1:] &= ~zero[:, :-1]
    ones = _popcount7(dbx)
    top = np.zeros_like(dbx)                     # position of the first one from the MSB
    for p in range(PLANE_BITS - 1, -1, -1):
        top = np.where((dbx >> (PLANE_BITS - 1 - p)) & 1, p, top)
    pair = (ones == 2) & (((dbx << 1) & dbx) != 0)
    code = np.select(
        [zero & start & (run >= 2), zero & start, zero, dbx == full, dbp == 0, pair, ones == 1],
        [(0b001 << RUN_BITS) | np.maximum(run - 2, 0), 0b01, 0, 0b00000, 0b00001,
         (0b00010 << POS_BITS) | top, (0b00011 << POS_BITS) | top],
        default=(1 << PLANE_BITS) | dbx)
    nbits = np.select(
        [zero & start & (run >= 2), zero & start, zero, dbx == full, dbp == 0, pair, ones == 1],
        [3 + RUN_BITS, 2, 0, 5, 5, 5 + POS_BITS, 5 + POS_BITS],
        default=1 + PLANE_BITS)
    codes = np.concatenate([base[:, None], code], axis=1)
    lens = np.concatenate([np.full((nblocks, 1), WORD_BITS), nbits], axis=1)
    return codes, lens


@dataclass(frozen=True)
class EbpcStreams:
    znz: bytes
    bpc: bytes

    def __len__(self) -> int:
        return len(self.znz) + len(self.bpc)


def ebpc_encode_image(v: np.ndarray) -> EbpcStreams:
    v = _check_int8(v).ravel()
    znz = pack_tokens(*znz_tokens(v))
    bpc = pack_tokens(*bpc_tokens(v[v != 0])) if (v != 0).any() else b""
    return EbpcStreams(znz, bpc)


def _sext(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def bpc_decode_block(r: BitReader) -> list[int]:
    """One BPC block: the 8 words (signed)."""
    base = _sext(r.read(WORD_BITS), WORD_BITS)
    dbp: list[int] = []            # planes 8..0
    full = (1 << PLANE_BITS) - 1
    while len(dbp) < DELTA_BITS:
        prev = dbp[-1] if dbp else 0
        if r.read(1):                                   # 1 + DBX
            dbx = r.read(PLANE_BITS)
        elif r.read(1):                                 # 01: one zero plane
            dbx = 0
        elif r.read(1):                                 # 001 + run
            n = r.read(RUN_BITS) + 2
            if len(dbp) + n > DELTA_BITS:
                raise ValueError("BPC zero-plane run past the last plane")
            for _ in range(n):
                dbp.append(dbp[-1] if dbp else 0)
            continue
        else:
            kind = r.read(2)
            if kind == 0b00:                            # 00000: all ones
                dbx = full
            elif kind == 0b01:                          # 00001: DBP = 0
                dbp.append(0)
                continue
            else:                                       # 00010 pair / 00011 single
                pos = r.read(POS_BITS)
                if pos >= PLANE_BITS or (kind == 0b10 and pos >= PLANE_BITS - 1):
                    raise ValueError(f"BPC one position {pos} out of range")
                dbx = (0b11 if kind == 0b10 else 0b1) << (PLANE_BITS - 1 - pos - (kind == 0b10))
        dbp.append(dbx ^ prev)
    words = [base]
    for i in range(PLANE_BITS):                     # delta i+1: bit k from plane 8-k, MSB first
        d = 0
        for j, plane in enumerate(dbp):
            d |= ((plane >> (PLANE_BITS - 1 - i)) & 1) << (DELTA_BITS - 1 - j)
        words.append(words[-1] + _sext(d, DELTA_BITS))
    if any(not -128 <= w <= 127 for w in words):
        raise ValueError("BPC block decodes outside the int8 range")
    return words


def ebpc_decode_image(s: EbpcStreams, n: int) -> np.ndarray:
    z = BitReader(s.znz)
    nz_mask = []
    while len(nz_mask) < n:
        if z.read(1):
            nz_mask.append(True)
        else:
            r = z.read(ZRLE_BITS) + 1
            if len(nz_mask) + r > n:
                raise ValueError("ZNZ zero run past the last value")
            nz_mask.extend([False] * r)
    if not z.padding_ok():
        raise ValueError("ZNZ stream has data after the last value")
    count = sum(nz_mask)
    b = BitReader(s.bpc)
    values: list[int] = []
    while len(values) < count:
        values.extend(bpc_decode_block(b))
    if not b.padding_ok():
        raise ValueError("BPC stream has data after the last block")
    if any(values[count:]):
        raise ValueError("BPC fill words are not zero")
    if any(v == 0 for v in values[:count]):
        raise ValueError("BPC stream holds a zero among the non-zero values")
    out = np.zeros(n, dtype=np.int8)
    out[np.asarray(nz_mask, dtype=bool)] = np.asarray(values[:count], dtype=np.int8)
    return out


# -- whole tensors -----------------------------------------------------------------------------
def zvc_encode(x) -> list[bytes]:
    """One ZVC stream per image of a (C, H, W) or (N, C, H, W) int8 tensor."""
    return [zvc_encode_image(v) for v in _images(_check_int8(x))]


def zvc_decode(streams: list[bytes], shape) -> np.ndarray:
    shape = tuple(shape)
    per = int(np.prod(shape[-3:]))
    return np.stack([zvc_decode_image(s, per) for s in streams]).reshape(shape)


def ebpc_encode(x) -> list[EbpcStreams]:
    """One EBPC transmission (ZNZ and BPC streams) per image."""
    return [ebpc_encode_image(v) for v in _images(_check_int8(x))]


def ebpc_decode(streams: list[EbpcStreams], shape) -> np.ndarray:
    shape = tuple(shape)
    per = int(np.prod(shape[-3:]))
    return np.stack([ebpc_decode_image(s, per) for s in streams]).reshape(shape)


def coded_bytes(streams) -> int:
    """Total bytes of the streams an encoder returned."""
    return sum(len(s) for s in streams)
