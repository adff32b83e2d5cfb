"""Variable-length decoder: coded tile payloads -> quantized symbols (twin of hw/vlc_decoder.py).

The exact inverse of golden/vlc_encoder.py; docs/FORMAT.md ("Variable-length code") is the
definition. Decoding a variable-length stream is sequential within a tile, but the only thing that
carries from one token to the next is the bit position. So the fast decoder works in two passes:

1. Positions, in lockstep over every tile of equal pixel count (vectorized across tiles, a Python
   loop over the `pixels * C` component positions of a tile, one scalar class per step): the
   length of the token at each tile's bit position comes from a per-class lookup table indexed by
   the 17-bit stream window there (Huffman: `golden.huffman.code_lut` with ESC's length plus
   `bits`; Rice: trailing ones, capped at `esc`; a zero-flag class's first component uses a table
   that includes the flag bit, the other components multiply by the per-tile flag). All windows
   are precomputed once per tile, so a Huffman step is three NumPy calls; a run of components of
   constant length (raw, drop) is one step.
2. Values, vectorized over everything: with every token's start known, the values are read from
   64-bit windows, one pass per mode with the class parameters broadcast per component.

Malformed payloads raise `ContainerError`: an invalid Huffman code, a code that runs past the end
of the payload, a payload with more words than its code needs or with nonzero padding bits, a
value outside its class's width. Reads past a tile's payload see zero guard bits, and a tile whose
position ran past its end is reported afterwards (positions only grow, the loop count is fixed),
so the decoder never reads outside its buffers and never loops without bound.

`decode_tile_reference` is the same definition as a plain bit-by-bit loop.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from golden.arith import unzigzag
from golden.bit_packer import WORD
from golden.errors import ContainerError
from golden.huffman import code_lut, decoder_tables
from golden.profile import HUFF_ESC, HUFF_MAX_LEN
from golden.vlc_encoder import class_columns

WIN_BITS = 17                   # a flag bit and a 16-bit Huffman code / Rice unary part
WIN_MASK = (1 << WIN_BITS) - 1
INVALID = 1 << 32               # token length of an invalid Huffman code: overshoots any payload
MAX_WINDOWS = 1 << 22           # windows per lockstep batch (int64: 32 MiB)

# Step kinds of the lockstep program.
_CONST, _LUT, _FIRST, _ZCONST, _ZLUT = range(5)


def _trailing_ones16() -> np.ndarray:
    x = np.arange(1 << 16, dtype=np.int64)
    run = np.ones(x.shape, dtype=bool)
    count = np.zeros(x.shape, dtype=np.int64)
    for i in range(16):
        run &= ((x >> i) & 1) == 1
        count += run
    return count


_ONES16 = _trailing_ones16()


class ClassLuts(NamedTuple):
    key: tuple                      # the Huffman lengths (the cache key of its tables)
    mode: str
    bits: int
    zflag: bool
    k: int
    esc: int
    length16: np.ndarray | None     # token length (no flag) per 16-bit window; None: constant
    plain17: np.ndarray | None      # the same, indexed by a 17-bit window
    first17: np.ndarray | None      # zero-flag classes: flag bit plus token, per 17-bit window
    sym16: np.ndarray | None        # Huffman: symbol per 16-bit window
    code16: np.ndarray | None       # Huffman: code length per 16-bit window (0: no code)


@lru_cache(maxsize=64)
def _huffman_lut(lengths: tuple) -> tuple[np.ndarray, np.ndarray]:
    return code_lut(list(lengths), HUFF_MAX_LEN)


@lru_cache(maxsize=256)
def _class_luts(mode: str, bits: int, zflag: bool, k: int, esc: int, lengths: tuple) -> ClassLuts:
    sym16 = code16 = None
    if mode == "huffman":
        code16, sym16 = _huffman_lut(lengths)
        length16 = np.where(sym16 == HUFF_ESC, code16 + bits, code16)
        length16 = np.where(code16 == 0, INVALID, length16)
    elif mode == "rice":
        ones = np.minimum(_ONES16, esc)
        length16 = np.where(ones >= esc, esc + bits, ones + 1 + k)
    elif mode == "raw":
        length16 = np.full(1 << 16, bits, dtype=np.int64)
    else:
        length16 = None
    plain17 = first17 = None
    if length16 is not None:
        w = np.arange(1 << WIN_BITS, dtype=np.int64)
        plain17 = length16[w & 0xFFFF]
        if zflag:
            first17 = np.where(w & 1, 1 + length16[w >> 1], 1)
    for a in (length16, plain17, first17, sym16, code16):
        if a is not None:
            a.setflags(write=False)
    return ClassLuts(lengths, mode, bits, zflag, k, esc, length16, plain17, first17, sym16,
                     code16)


def class_luts(cp) -> ClassLuts:
    """The decoder tables of one class (cached: they depend only on the class parameters)."""
    return _class_luts(cp.mode, int(cp.bits), bool(cp.zflag), int(cp.k), int(cp.esc),
                       tuple(cp.lengths) if cp.mode == "huffman" else ())


class _Step(NamedTuple):
    kind: int
    lut: np.ndarray | None      # token length per 17-bit window
    cls: int
    n: np.int64                 # constant length (_CONST: of the whole run; _ZCONST: of one)
    k: int                      # first component of the step
    span: int                   # components the step covers (a run of constant lengths)
    fill: np.ndarray | None     # _CONST runs: bit offset of each component inside the run


def _program(profile, luts) -> list[_Step]:
    """The lockstep steps of one pixel. Consecutive components of constant length (raw without
    zero flag, drop) make one step; their inner positions are filled in afterwards."""
    cols = class_columns(profile)
    cmap = np.asarray(profile.class_map).tolist()
    prog: list[_Step] = []
    for k, c in enumerate(cmap):
        cp, L = profile.classes[c], luts[c]
        bits = np.int64(cp.bits if cp.mode == "raw" else 0)
        if cp.mode == "drop" or (cp.mode == "raw" and not cp.zflag):
            last = prog[-1] if prog else None
            if last is not None and last.kind == _CONST:
                prog[-1] = last._replace(n=last.n + bits, span=last.span + 1,
                                         fill=np.append(last.fill, last.n))
            else:
                prog.append(_Step(_CONST, None, c, bits, k, 1, np.zeros(1, dtype=np.int64)))
        elif not cp.zflag:
            prog.append(_Step(_LUT, L.plain17, c, bits, k, 1, None))
        elif k == cols[c][0]:
            prog.append(_Step(_FIRST, L.first17, c, bits, k, 1, None))
        elif cp.mode == "raw":
            prog.append(_Step(_ZCONST, None, c, bits, k, 1, None))
        else:
            prog.append(_Step(_ZLUT, L.plain17, c, bits, k, 1, None))
    return prog


def _windows17(words2d: np.ndarray) -> np.ndarray:
    """The 17-bit stream window at every bit of every row, flat: index `t * 64 * R + bit`."""
    T, R = words2d.shape
    nb = 8 * R
    b = np.zeros((T, nb + 2), dtype=np.uint32)
    b[:, :nb] = words2d.astype(WORD, copy=False).view(np.uint8).reshape(T, nb)
    x = b[:, :nb] | (b[:, 1:nb + 1] << 8) | (b[:, 2:] << 16)   # 24 bits from each byte on
    win = np.empty((T, nb, 8), dtype=np.int64)
    for r in range(8):
        win[:, :, r] = (x >> r) & WIN_MASK
    return win.reshape(-1)


def _window64(words: np.ndarray, addr: np.ndarray) -> np.ndarray:
    """64 stream bits from bit address `addr` of the flat word array (clipped at its end)."""
    wi = addr >> 6
    o = (addr & 63).astype(np.uint64)
    lo = words.take(wi, mode="clip") >> o
    hi = (words.take(wi + 1, mode="clip") << np.uint64(1)) << (np.uint64(63) - o)
    return lo | hi


def _sext(x: np.ndarray, bits) -> np.ndarray:
    """Low `bits` bits of uint64 `x` as two's complement (bits may be a broadcast array)."""
    one = np.uint64(1)
    b = np.asarray(bits).astype(np.uint64)
    x = (x & ((one << b) - one)).astype(np.int64)
    sign = np.int64(1) << (np.asarray(bits, dtype=np.int64) - 1)
    return (x ^ sign) - sign


ESC_MARK = -(1 << 15)           # Huffman value table entry of ESC (no value is this small)


@lru_cache(maxsize=32)
def _huffman_tables(keys: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Value (int16; ESC_MARK for ESC) and code-length (uint8) tables over 16-bit windows of
    several Huffman classes, one after the other."""
    value, code = [], []
    for key in keys:
        length, sym = _huffman_lut(key)
        value.append(np.where(sym == HUFF_ESC, ESC_MARK, unzigzag(sym)).astype(np.int16))
        code.append(length.astype(np.uint8))
    return np.concatenate(value), np.concatenate(code)


def _values(win: np.ndarray, present: np.ndarray, profile, luts) -> tuple[np.ndarray, np.ndarray]:
    """Symbols of the tokens starting at bit 0 of each 64-bit window `win` (pixels, C, T); 0
    where no token is `present`. Also, per tile, whether a value exceeds its class's width
    (possible for non-escaped Rice and Huffman values of a malformed stream).

    One pass per mode over all components of that mode, class parameters broadcast per
    component; escapes, which are rare, are decoded on their own."""
    cmap = np.asarray(profile.class_map)
    modes = [cp.mode for cp in profile.classes]
    comp_mode = np.array([modes[c] for c in cmap.tolist()])
    per = {name: np.array([int(getattr(cp, name)) for cp in profile.classes],
                          dtype=np.int64)[cmap] for name in ("bits", "k", "esc")}
    q = np.zeros(win.shape, dtype=np.int64)
    too_wide = np.zeros(win.shape[2], dtype=bool)
    for mode in ("raw", "rice", "huffman"):
        cols = np.flatnonzero(comp_mode == mode)
        if not cols.size:
            continue
        w = win[:, cols, :]
        bits = per["bits"][cols][None, :, None]
        if mode == "raw":
            q[:, cols, :] = _sext(w, bits) * present[:, cols, :]
            continue
        w16 = (w & np.uint64(0xFFFF)).astype(np.int64)
        if mode == "rice":
            k = per["k"][cols][None, :, None]
            esc = per["esc"][cols][None, :, None]
            ones = np.minimum(_ONES16[w16], esc)
            rem = (w >> (ones + 1).astype(np.uint64)).astype(np.int64) & ((1 << k) - 1)
            v = unzigzag((ones << k) | rem)
            escape = np.nonzero(ones >= esc)
            if escape[0].size:
                shift = np.broadcast_to(esc, w.shape)[escape].astype(np.uint64)
                v[escape] = _sext(w[escape] >> shift, np.broadcast_to(bits, w.shape)[escape])
        else:
            huff = [c for c, m in enumerate(modes) if m == "huffman"]
            values, code = _huffman_tables(tuple(luts[c].key for c in huff))
            slot = np.zeros(len(modes), dtype=np.int64)
            slot[huff] = np.arange(len(huff)) << 16
            idx = slot[cmap[cols]][None, :, None] + w16
            v = values[idx].astype(np.int64)
            escape = np.nonzero(v == ESC_MARK)
            if escape[0].size:
                shift = code[idx[escape]].astype(np.uint64)
                v[escape] = _sext(w[escape] >> shift, np.broadcast_to(bits, w.shape)[escape])
        v *= present[:, cols, :]
        half = np.int64(1) << (bits - 1)
        too_wide |= ((v < -half) | (v >= half)).any(axis=(0, 1))
        q[:, cols, :] = v
    return q, too_wide


def _fail(tile_ids, bad: np.ndarray, message) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ContainerError(f"tile {tile_ids[i]}: {message(i)}")


def _positions(read, S: np.ndarray, prog: list[_Step], C: int, nclasses: int) -> None:
    """Fill S[1:] with the bit address of every token start (the lockstep pass)."""
    rows = list(S)
    flag = [None] * nclasses
    add = np.add
    for p0 in range(0, len(rows) - 1, C):
        for kind, lut, c, n, k, span, _ in prog:
            cur = rows[p0 + k]
            if kind == _LUT:
                add(cur, lut[read(cur)], out=rows[p0 + k + 1])
            elif kind == _CONST:
                add(cur, n, out=rows[p0 + k + span])
            elif kind == _FIRST:
                w = read(cur)
                flag[c] = w & 1
                add(cur, lut[w], out=rows[p0 + k + 1])
            elif kind == _ZLUT:
                add(cur, lut[read(cur)] * flag[c], out=rows[p0 + k + 1])
            else:
                add(cur, flag[c] * n, out=rows[p0 + k + 1])
    # Inside constant runs: the run's start plus fixed offsets, for every pixel at once.
    S3 = S[:-1].reshape(-1, C, S.shape[1])
    for st in prog:
        if st.kind == _CONST and st.span > 1:
            S3[:, st.k + 1:st.k + st.span, :] = S3[:, st.k:st.k + 1, :] + st.fill[1:, None]


def _decode_lockstep(words2d: np.ndarray, nwords: np.ndarray, pixels: int, profile, luts,
                     prog, tile_ids) -> np.ndarray:
    """Decode T coded tiles of `pixels` pixels each; words2d (T, R) has a zero guard word."""
    T, R = words2d.shape
    C = profile.channels
    win17 = _windows17(words2d)
    base = np.arange(T, dtype=np.int64) * (64 * R)
    steps = pixels * C
    S = np.empty((steps + 1, T), dtype=np.int64)          # S[j]: bit address of token j
    S[0] = base
    try:
        _positions(win17.__getitem__, S, prog, C, len(luts))
    except IndexError:
        # Some tile ran far past its payload (or hit an invalid code): redo with clipped reads,
        # then the checks below name the tile.
        _positions(lambda i: win17.take(i, mode="clip"), S, prog, C, len(luts))

    # Where did each tile's code end?
    used = S[-1] - base
    avail = 64 * nwords
    _fail(tile_ids, used >= INVALID, lambda i: "invalid Huffman code")
    _fail(tile_ids, used > avail,
          lambda i: f"code runs past the end of the payload ({nwords[i]} words)")
    _fail(tile_ids, -(-used // 64) < nwords,
          lambda i: f"payload has {nwords[i]} words but its code ends after {used[i]} bits "
                    f"(too many words)")
    tail = used & 63
    last = words2d[np.arange(T), np.maximum(nwords - 1, 0)]
    pad = (tail > 0) & ((last >> tail.astype(np.uint64)) != 0)
    _fail(tile_ids, pad, lambda i: "nonzero padding bits after the code")

    # Values, from the token starts, all components at once.
    first = np.zeros(C, dtype=np.int64)                  # a zero flag precedes the token
    for cp, cols in zip(profile.classes, class_columns(profile), strict=True):
        if cp.zflag and cols.size:
            first[cols[0]] = 1
    first = first[None, :, None]
    addr = S[:-1].reshape(pixels, C, T) + first
    present = np.diff(S, axis=0).reshape(pixels, C, T) > first
    q, too_wide = _values(_window64(words2d.reshape(-1), addr), present, profile, luts)
    _fail(tile_ids, too_wide, lambda i: "decoded value outside the width of its class")
    return q.transpose(2, 0, 1).reshape(T * pixels, C)


def decode_coded(buf: np.ndarray, word_start, nwords, pixels, profile, tile_ids=None
                 ) -> np.ndarray:
    """Decode coded tiles whose payloads lie in `buf` (uint64 words): tile i is
    `buf[word_start[i] : word_start[i] + nwords[i]]` and holds `pixels[i]` pixels.

    Returns the (sum(pixels), C) int64 symbols, tiles in the order given. `tile_ids` names the
    tiles in error messages (default 0, 1, ...).
    """
    buf = np.asarray(buf, dtype=WORD).ravel()
    word_start = np.asarray(word_start, dtype=np.int64).ravel()
    nwords = np.asarray(nwords, dtype=np.int64).ravel()
    pixels = np.asarray(pixels, dtype=np.int64).ravel()
    n = word_start.size
    if not (nwords.size == pixels.size == n):
        raise ValueError("word_start, nwords and pixels need one entry per tile")
    tile_ids = np.arange(n) if tile_ids is None else np.asarray(tile_ids).ravel()
    if n and (word_start.min() < 0 or nwords.min() < 0 or (word_start + nwords).max() > buf.size):
        raise ValueError("a payload lies outside the buffer")
    C = profile.channels
    row0 = np.concatenate(([0], np.cumsum(pixels)))
    out = np.zeros((int(row0[-1]), C), dtype=np.int64)
    if not n:
        return out
    luts = [class_luts(cp) for cp in profile.classes]
    prog = _program(profile, luts)
    for px in np.unique(pixels).tolist():
        idx = np.flatnonzero(pixels == px)
        if px == 0:
            _fail(tile_ids[idx], nwords[idx] > 0, lambda i: "payload of an empty tile")
            continue
        rows_max = max(1, MAX_WINDOWS // (64 * (int(nwords[idx].max()) + 1)))
        for lo in range(0, idx.size, rows_max):
            part = idx[lo:lo + rows_max]
            nw = nwords[part]
            R = int(nw.max()) + 1                        # + a zero guard word
            col = np.arange(R - 1)
            take = col[None, :] < nw[:, None]
            words2d = np.zeros((part.size, R), dtype=WORD)
            words2d[:, :R - 1][take] = buf[(word_start[part][:, None] + col[None, :])[take]]
            q = _decode_lockstep(words2d, nw, px, profile, luts, prog, tile_ids[part])
            rows = (row0[part][:, None] + np.arange(px)[None, :]).reshape(-1)
            out[rows] = q
    return out


def decode_tiles(payloads, pixels_per_tile, profile, tile_ids=None) -> np.ndarray:
    """Decode many coded tiles: `payloads` is a sequence of uint64 word arrays, one per tile,
    `pixels_per_tile` their pixel counts. Returns the (sum of pixels, C) int64 symbols."""
    payloads = [np.asarray(p, dtype=WORD).ravel() for p in payloads]
    nwords = np.array([p.size for p in payloads], dtype=np.int64)
    start = np.concatenate(([0], np.cumsum(nwords)[:-1])).astype(np.int64)
    buf = np.concatenate(payloads) if payloads else np.zeros(0, dtype=WORD)
    pixels = np.asarray(pixels_per_tile, dtype=np.int64).ravel()
    if pixels.size != len(payloads):
        raise ValueError(f"{len(payloads)} payloads but {pixels.size} pixel counts")
    return decode_coded(buf, start[:len(payloads)], nwords, pixels, profile, tile_ids)


def raw_layout(profile) -> tuple[np.ndarray, np.ndarray]:
    """Per component: bit offset within a raw pixel and width (0 for dropped components)."""
    width = np.where(profile.class_array("mode") == 0, 0, profile.class_array("bits"))
    return np.cumsum(width) - width, width


def decode_raw(buf: np.ndarray, word_start, nwords, pixels, profile, tile_ids=None) -> np.ndarray:
    """Decode raw tiles (fixed positions, vectorized over everything); same conventions as
    `decode_coded`. The payload must be exactly `raw_words(pixels)` words with zero padding."""
    buf = np.asarray(buf, dtype=WORD).ravel()
    word_start = np.asarray(word_start, dtype=np.int64).ravel()
    nwords = np.asarray(nwords, dtype=np.int64).ravel()
    pixels = np.asarray(pixels, dtype=np.int64).ravel()
    n = word_start.size
    tile_ids = np.arange(n) if tile_ids is None else np.asarray(tile_ids).ravel()
    if n and (word_start.min() < 0 or (word_start + nwords).max() > buf.size):
        raise ValueError("a payload lies outside the buffer")
    rbpp = profile.raw_bits_per_pixel
    need = -(-pixels * rbpp // 64)
    _fail(tile_ids, nwords != need,
          lambda i: f"raw payload has {nwords[i]} words, {pixels[i]} pixels need {need[i]}")
    tail = (pixels * rbpp) & 63
    last = buf.take(word_start + np.maximum(nwords - 1, 0), mode="clip") if n else buf[:0]
    _fail(tile_ids, (tail > 0) & ((last >> tail.astype(np.uint64)) != 0),
          lambda i: "nonzero padding bits after the raw payload")
    off, width = raw_layout(profile)
    tile_of_row = np.repeat(np.arange(n), pixels)
    row0 = np.concatenate(([0], np.cumsum(pixels)[:-1])).astype(np.int64)
    pix = np.arange(tile_of_row.size) - row0[tile_of_row]
    addr = (64 * word_start[tile_of_row] + pix * rbpp)[:, None] + off[None, :]
    q = np.zeros(addr.shape, dtype=np.int64)
    if not q.size:
        return q
    win = _window64(buf, addr)
    for b in np.unique(width[width > 0]).tolist():
        cols = np.flatnonzero(width == b)
        q[:, cols] = _sext(win[:, cols], b)
    return q


# -- reference loop ------------------------------------------------------------------------------
class _BitReader:
    def __init__(self, words):
        self.words = [int(w) for w in np.asarray(words, dtype=WORD).ravel()]
        self.pos = 0
        self.limit = 64 * len(self.words)

    def bit(self) -> int:
        if self.pos >= self.limit:
            raise ContainerError(f"code runs past the end of the payload ({len(self.words)} words)")
        b = (self.words[self.pos >> 6] >> (self.pos & 63)) & 1
        self.pos += 1
        return b

    def number(self, n: int) -> int:
        """n bits, least significant first."""
        v = 0
        for i in range(n):
            v |= self.bit() << i
        return v

    def signed(self, n: int) -> int:
        v = self.number(n)
        return v - (1 << n) if v >> (n - 1) else v

    def finish(self, what: str) -> None:
        if -(-self.pos // 64) < len(self.words):
            raise ContainerError(f"payload has {len(self.words)} words but its code ends after "
                                 f"{self.pos} bits (too many words)")
        while self.pos < self.limit:
            if self.bit():
                raise ContainerError(f"nonzero padding bits after the {what}")


def _read_token_reference(r: _BitReader, cp) -> int:
    if cp.mode == "raw":
        return r.signed(cp.bits)
    if cp.mode == "rice":
        ones = 0
        while ones < cp.esc and r.bit():
            ones += 1
        if ones == cp.esc:
            return r.signed(cp.bits)
        u = (ones << cp.k) | r.number(cp.k)
    else:
        first, count, base, symbols = decoder_tables(cp.lengths)
        code = 0
        for ln in range(1, HUFF_MAX_LEN + 1):
            code = (code << 1) | r.bit()               # most significant code bit first
            if 0 <= code - first[ln] < count[ln]:
                u = symbols[base[ln] + code - first[ln]]
                break
        else:
            raise ContainerError("invalid Huffman code")
        if u == HUFF_ESC:
            return r.signed(cp.bits)
    v = u // 2 if u % 2 == 0 else -(u + 1) // 2
    if not -(1 << (cp.bits - 1)) <= v < 1 << (cp.bits - 1):
        raise ContainerError(f"decoded value outside the {cp.bits}-bit range of its class")
    return v


def decode_tile_reference(words, pixels: int, profile, raw: bool = False) -> np.ndarray:
    """One tile's payload -> (pixels, C) symbols, bit by bit, straight from FORMAT.md."""
    r = _BitReader(words)
    cmap = [int(c) for c in profile.class_map]
    q = np.zeros((pixels, profile.channels), dtype=np.int64)
    for p in range(pixels):
        flags: dict[int, int] = {}
        for k, c in enumerate(cmap):
            cp = profile.classes[c]
            if cp.mode == "drop":
                continue
            if raw:
                q[p, k] = r.signed(cp.bits)
                continue
            if cp.zflag:
                if c not in flags:
                    flags[c] = r.bit()
                if not flags[c]:
                    continue
            q[p, k] = _read_token_reference(r, cp)
    r.finish("raw payload" if raw else "code")
    return q
