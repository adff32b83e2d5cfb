"""golden/vlc_encoder.py, golden/bit_packer.py and golden/vlc_decoder.py.

The vectorized encoder, packer and decoder against their loop twins (tokens_reference,
pack_reference, decode_tile_reference), round trips for every mode and zero-flag combination, a
hand-derived bitstream that pins the bit order, and malformed payloads.

The profile builders here are shared with tests/test_golden_container.py.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from golden.bit_packer import (
    pack,
    pack_at,
    pack_reference,
    parse_tile_header,
    tile_check,
    tile_header,
)
from golden.errors import ContainerError
from golden.huffman import limited_lengths
from golden.profile import HUFF_ESC, ClassParams, Profile
from golden.vlc_decoder import decode_raw, decode_tile_reference, decode_tiles
from golden.vlc_encoder import check_symbols, raw_tokens, tokens, tokens_reference

MODES = ("drop", "raw", "rice", "huffman")


# -- profile and data builders (also used by test_golden_container.py) ---------------------------
def make_profile(classes, class_map, tile_pixels=8, layout="fixed", dtype="int8", relu=False):
    """An identity-transform profile (group 1) around hand-built classes."""
    C = len(class_map)
    p = Profile(channels=C, group=1, transform="identity", frac_bits=12,
                matrix=np.full((C, 1, 1), 1 << 12, dtype=np.int64),
                offsets=np.zeros(C, dtype=np.int64), class_map=np.asarray(class_map),
                classes=list(classes), tile_pixels=tile_pixels, layout=layout, dtype=dtype,
                relu=relu)
    p.validate()
    return p


def huffman_lengths(rng, max_len=16, incomplete=False):
    """Random length-limited code over the 64 symbols, ESC always coded; some symbols unused."""
    counts = np.floor(rng.pareto(1.0, 64) * 10 * (rng.random(64) < 0.7)).astype(int)
    counts[:4] += rng.integers(0, 4000, 4)
    counts[HUFF_ESC] = max(1, counts[HUFF_ESC])
    keep = np.argsort(-counts[:HUFF_ESC], kind="stable")[: (1 << max_len) - 1]
    counts[:HUFF_ESC] = np.where(np.isin(np.arange(HUFF_ESC), keep), counts[:HUFF_ESC], 0)
    ln = limited_lengths(counts, max_len)
    if incomplete:
        coded = [s for s in range(HUFF_ESC) if ln[s]]
        for s in rng.permutation(coded)[: max(1, len(coded) // 3)]:
            ln[int(s)] = 0
    return ln


def random_class(rng, mode=None, zflag=None, bits=None):
    mode = mode or MODES[rng.integers(0, 4)]
    bits = int(bits or rng.integers(1, 17))
    zflag = bool(rng.integers(0, 2)) if zflag is None else zflag
    if mode == "drop":
        return ClassParams("drop", bits=bits)
    if mode == "rice":
        esc = int(rng.integers(1, min(16, 32 - bits) + 1))
        return ClassParams("rice", zflag=zflag, bits=bits, k=int(rng.integers(0, 16)), esc=esc)
    if mode == "huffman":
        return ClassParams("huffman", zflag=zflag, bits=bits,
                           lengths=huffman_lengths(rng, int(rng.integers(1, 17)),
                                                   incomplete=bool(rng.integers(0, 2))))
    return ClassParams("raw", zflag=zflag, bits=bits)


def random_profile(rng, channels=None, n_classes=None, **kw):
    C = int(channels or rng.integers(1, 13))
    n = int(n_classes or rng.integers(1, 6))
    classes = [random_class(rng) for _ in range(n)]
    return make_profile(classes, rng.integers(0, n, C), **kw)


def random_q(rng, profile, P, zero_frac=None):
    """Symbols within each class's width: a mix of small values, zeros and both extremes."""
    C = profile.channels
    bits = profile.class_array("bits")
    half = np.int64(1) << (bits - 1)
    scale = rng.choice([0.5, 2.0, 8.0, 1000.0], size=C)
    q = np.round(rng.laplace(size=(P, C)) * scale).astype(np.int64)
    ext = rng.random((P, C))
    q = np.where(ext < 0.03, -half, np.where(ext > 0.97, half - 1, q))
    zf = rng.random() if zero_frac is None else zero_frac
    q[rng.random((P, C)) < zf] = 0
    q[rng.random(P) < 0.2] = 0                              # whole zero pixels
    q = np.clip(q, -half, half - 1)
    q[:, profile.class_array("mode") == 0] = 0
    return q


def encode_tile(q, profile):
    v, n = tokens(q, profile)
    return pack(v, n)


# -- the bit order, by hand ----------------------------------------------------------------------
def hand_profile():
    """comp 0 raw 4 bits; comp 1 rice k=1 esc=3 bits=4; comp 2 Huffman bits=4 with symbol 0 ->
    '0', symbol 1 -> '10', ESC -> '11'; comps 3, 4 raw 2 bits with a zero flag."""
    lengths = [0] * 64
    lengths[0], lengths[1], lengths[HUFF_ESC] = 1, 2, 2
    classes = [ClassParams("raw", bits=4), ClassParams("rice", bits=4, k=1, esc=3),
               ClassParams("huffman", bits=4, lengths=lengths),
               ClassParams("raw", zflag=True, bits=2)]
    return make_profile(classes, [0, 1, 2, 3, 3], tile_pixels=3)


HAND_Q = np.array([[-3, 2, 1, 0, 0], [7, -1, 0, 0, -1], [0, 5, -1, 1, 0]])
# Every token written out from FORMAT.md, stream bits first to last:
HAND_TOKENS = [
    # pixel 0
    "1011",     # raw -3 = 0b1101, least significant bit first
    "1100",     # rice 2: u = 4, u >> 1 = 2 ones, a zero, low bit of u = 0
    "111000",   # huffman 1: u = 2 has no code -> ESC '11', then 4 bits of 1
    "0",        # zero flag 0: comps 3 and 4 are zero, no tokens follow
    "",
    # pixel 1
    "1110",     # raw 7
    "01",       # rice -1: u = 1, no ones, a zero, low bit 1
    "0",        # huffman 0: symbol 0 -> '0'
    "100",      # zero flag 1, then raw 2 bits of 0
    "11",       # raw 2 bits of -1
    # pixel 2
    "0000",     # raw 0
    "1111010",  # rice 5: u = 10, u >> 1 = 5 >= esc = 3 -> three ones, then 4 bits of 5 (0101)
    "10",       # huffman -1: u = 1 -> code '10', first code bit first
    "110",      # zero flag 1, raw 2 bits of 1
    "00",       # raw 0
]
HAND_WORD = 0x3578653873D   # the 45 bits above, stream bit b in word bit b


def test_hand_example_tokens_and_word():
    p = hand_profile()
    v, n = tokens(HAND_Q, p)
    assert n.ravel().tolist() == [len(t) for t in HAND_TOKENS]
    expect = [int(t[::-1], 2) if t else 0 for t in HAND_TOKENS]
    assert v.ravel().tolist() == expect
    words = pack(v, n)
    assert words.tolist() == [HAND_WORD]
    assert pack_reference(v, n).tolist() == [HAND_WORD]
    assert (decode_tiles([words], [3], p) == HAND_Q).all()
    assert (decode_tile_reference(words, 3, p) == HAND_Q).all()


def test_hand_example_tile_header():
    words = np.array([HAND_WORD], dtype=np.uint64)
    h = int(tile_header(1, 0, 1029, words))
    low = 1 | 0 << 20 | (1029 % 1024) << 22
    assert h & 0xFFFFFFFF == low
    crc = zlib.crc32(HAND_WORD.to_bytes(8, "little") + low.to_bytes(4, "little"))
    assert h >> 32 == crc
    assert parse_tile_header(h) == (1, 0, 5, crc)
    assert tile_check(words, low) == crc


def test_hand_raw_payload():
    p = hand_profile()
    v, n = raw_tokens(HAND_Q, p)
    assert n[0].tolist() == [4, 4, 4, 2, 2]
    words = pack(v, n)                                   # 3 pixels x 16 bits
    bits = "".join(format(int(x) & ((1 << b) - 1), f"0{b}b")[::-1]
                   for row in HAND_Q for x, b in zip(row, [4, 4, 4, 2, 2], strict=True))
    assert words.tolist() == [int(bits[::-1], 2)]
    assert (decode_tile_reference(words, 3, p, raw=True) == HAND_Q).all()
    assert (decode_raw(words, [0], [1], [3], p) == HAND_Q).all()


# -- encoder ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("trial", range(25))
def test_tokens_match_reference(trial, rng):
    p = random_profile(rng)
    q = random_q(rng, p, int(rng.integers(0, 30)))
    v, n = tokens(q, p)
    vr, nr = tokens_reference(q, p)
    assert (n == nr).all() and (v == vr).all()
    assert n.max(initial=0) <= 33
    assert (v >> n.astype(np.uint64) == 0).all()


def _zz(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _rice_len(v: int, k: int, esc: int, bits: int) -> int:
    return (_zz(v) >> k) + 1 + k if _zz(v) >> k < esc else esc + bits


def test_token_lengths_by_mode():
    lengths = huffman_lengths(np.random.default_rng(1))
    cases = [
        (ClassParams("raw", bits=5), lambda v: 5),
        (ClassParams("rice", bits=6, k=2, esc=4), lambda v: _rice_len(v, 2, 4, 6)),
        (ClassParams("rice", bits=8, k=0, esc=16), lambda v: _rice_len(v, 0, 16, 8)),
        (ClassParams("huffman", bits=8, lengths=lengths),
         lambda v: lengths[_zz(v)] if _zz(v) < 63 and lengths[_zz(v)] else lengths[63] + 8),
    ]
    for cp, want in cases:
        p = make_profile([cp], [0])
        vals = np.arange(-(1 << (cp.bits - 1)), 1 << (cp.bits - 1))
        _, n = tokens(vals[:, None], p)
        assert n.ravel().tolist() == [want(int(v)) for v in vals]
    p = make_profile([ClassParams("drop", bits=4)], [0])
    assert tokens(np.zeros((3, 1), dtype=np.int64), p)[1].tolist() == [[0], [0], [0]]


def test_rice_escape_boundary():
    # k = 0, esc = 3: u = 2 is the longest regular token (110), u = 3 escapes (111 + bits).
    p = make_profile([ClassParams("rice", bits=4, k=0, esc=3)], [0])
    v, n = tokens(np.array([[1], [-2]]), p)               # u = 2, u = 3
    assert n.ravel().tolist() == [3, 3 + 4]
    assert v.ravel().tolist() == [0b011, 0b111 | (-2 & 15) << 3]


def test_zero_flag_costs_one_bit_per_zero_pixel():
    cls = ClassParams("huffman", zflag=True, bits=4, lengths=huffman_lengths(
        np.random.default_rng(2)))
    p = make_profile([cls], [0] * 6)
    q = np.zeros((10, 6), dtype=np.int64)
    q[3, 4] = 1
    _, n = tokens(q, p)
    assert n.sum(axis=1).tolist()[:3] == [1, 1, 1]
    assert n[3, 0] >= 2 and (n[3, 1:] > 0).all()
    assert (n[[0, 1, 2, 4, 5]][:, 1:] == 0).all()


def test_symbols_out_of_width_are_refused():
    p = make_profile([ClassParams("raw", bits=3), ClassParams("drop")], [0, 1])
    with pytest.raises(ValueError, match="outside class 0's 3-bit range"):
        tokens(np.array([[4, 0]]), p)
    with pytest.raises(ValueError, match="outside class 0's 3-bit range"):
        raw_tokens(np.array([[-5, 0]]), p)
    with pytest.raises(ValueError, match="dropped class 1 and must be 0"):
        tokens(np.array([[0, 1]]), p)
    with pytest.raises(ValueError, match="expected"):
        check_symbols(np.zeros((3, 3), dtype=np.int64), p)


# -- packer ----------------------------------------------------------------------------------------
@given(st.lists(st.integers(0, 64), max_size=200), st.integers(0, 2**32 - 1))
def test_pack_matches_reference(lengths, seed):
    rng = np.random.default_rng(seed)
    n = np.array(lengths, dtype=np.int64)
    raw = rng.integers(0, 2**63, size=n.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    mask = np.where(n == 64, np.uint64(2**64 - 1),
                    (np.uint64(1) << np.minimum(n, 63).astype(np.uint64)) - np.uint64(1))
    v = raw & mask
    words = pack(v, n)
    assert words.tolist() == pack_reference(v, n).tolist()
    assert words.size == -(-int(n.sum()) // 64)


def test_pack_at_places_streams_word_aligned():
    v = np.array([1, 3, 0x1FFFFFFFF, 5], dtype=np.uint64)
    n = np.array([1, 2, 33, 3])
    start = np.array([0, 1, 64 + 40, 200])                  # the 33-bit token crosses a word
    w = pack_at(v, n, start, 4)
    ref = 0
    for x, s in zip(v.tolist(), start.tolist(), strict=True):
        ref |= x << s
    assert w.tolist() == [(ref >> (64 * i)) & (2**64 - 1) for i in range(4)]
    with pytest.raises(ValueError, match="overlap"):
        pack_at(v, n, np.array([0, 0, 100, 200]), 4)
    with pytest.raises(ValueError, match="bits set"):
        pack(np.array([4], dtype=np.uint64), np.array([2]))


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,zflag", [(m, z) for m in MODES for z in (False, True)
                                         if not (m == "drop" and z)])
@pytest.mark.parametrize("bits", [1, 2, 8, 16])
def test_roundtrip_every_mode(mode, zflag, bits, rng):
    if mode == "rice" and bits == 16:
        cls = ClassParams("rice", zflag=zflag, bits=16, k=int(rng.integers(0, 16)), esc=16)
    else:
        cls = random_class(rng, mode, zflag, bits)
    other = ClassParams("raw", zflag=True, bits=3)
    p = make_profile([cls, other], [0, 1, 0, 0, 1, 0])
    tiles = [random_q(rng, p, P) for P in (1, 7, 7, 7, 30)]
    payloads = [encode_tile(q, p) for q in tiles]
    got = decode_tiles(payloads, [len(q) for q in tiles], p)
    assert (got == np.concatenate(tiles)).all()
    for q, w in zip(tiles, payloads, strict=True):
        assert (decode_tile_reference(w, len(q), p) == q).all()


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 12), min_size=1, max_size=6))
def test_roundtrip_random_profiles(seed, pixel_counts):
    rng = np.random.default_rng(seed)
    p = random_profile(rng)
    tiles = [random_q(rng, p, P) for P in pixel_counts]
    payloads = [encode_tile(q, p) for q in tiles]
    got = decode_tiles(payloads, pixel_counts, p)
    assert (got == np.concatenate(tiles)).all()
    for q, w in zip(tiles, payloads, strict=True):
        assert (decode_tile_reference(w, len(q), p) == q).all()


def test_roundtrip_extremes_and_zeros(rng):
    classes = [random_class(rng, m, z, b) for m in ("raw", "rice", "huffman")
               for z in (False, True) for b in (1, 16)]
    p = make_profile(classes, np.arange(len(classes)).repeat(2))
    bits = p.class_array("bits")
    lo, hi = -(np.int64(1) << (bits - 1)), (np.int64(1) << (bits - 1)) - 1
    tiles = [np.zeros((5, p.channels), dtype=np.int64),
             np.broadcast_to(lo, (5, p.channels)).copy(),
             np.broadcast_to(hi, (5, p.channels)).copy()]
    payloads = [encode_tile(q, p) for q in tiles]
    assert (decode_tiles(payloads, [5, 5, 5], p) == np.concatenate(tiles)).all()


def test_long_huffman_codes_and_escape_of_every_value(rng):
    # Geometric counts give a 16-bit limited code; every value of an 8-bit class goes through.
    counts = [2 ** max(0, 40 - s) for s in range(64)]
    cls = ClassParams("huffman", zflag=True, bits=8, lengths=limited_lengths(counts, 16))
    assert max(cls.lengths) == 16
    p = make_profile([cls], [0, 0])
    q = np.stack([np.arange(-128, 128), np.roll(np.arange(-128, 128), 7)], axis=1)
    w = encode_tile(q, p)
    assert (decode_tiles([w], [256], p) == q).all()
    assert (decode_tile_reference(w, 256, p) == q).all()


# -- malformed payloads ----------------------------------------------------------------------------
def _both(words, pixels, p):
    """Decode with both decoders: the same symbols, or both raise ContainerError."""
    try:
        ref = decode_tile_reference(words, pixels, p)
    except ContainerError:
        ref = None
    try:
        fast = decode_tiles([words], [pixels], p)
    except ContainerError:
        fast = None
    assert (ref is None) == (fast is None)
    if ref is not None:
        assert (ref == fast).all()
    return ref


def test_truncated_and_padded_payloads(rng):
    p = make_profile([random_class(rng, "huffman", True, 8), random_class(rng, "rice", False, 6)],
                     [0, 1, 0, 1])
    q = random_q(rng, p, 40, zero_frac=0.3)
    w = encode_tile(q, p)
    with pytest.raises(ContainerError, match="past the end"):
        decode_tiles([w[:-1]], [40], p)
    with pytest.raises(ContainerError, match="past the end"):
        decode_tile_reference(w[:-1], 40, p)
    extra = np.concatenate([w, np.zeros(1, dtype=np.uint64)])
    with pytest.raises(ContainerError, match="too many words"):
        decode_tiles([extra], [40], p)
    with pytest.raises(ContainerError, match="too many words"):
        decode_tile_reference(extra, 40, p)
    used = int(tokens(q, p)[1].sum())
    if used % 64:
        bad = w.copy()
        bad[-1] |= np.uint64(1) << np.uint64(63)
        with pytest.raises(ContainerError, match="padding"):
            decode_tiles([bad], [40], p)
        with pytest.raises(ContainerError, match="padding"):
            decode_tile_reference(bad, 40, p)


def test_invalid_huffman_code():
    lengths = [0] * 64
    lengths[0], lengths[HUFF_ESC] = 2, 2                    # '00' and '01'; '1x' is no code
    p = make_profile([ClassParams("huffman", bits=4, lengths=lengths)], [0])
    w = np.array([0b11], dtype=np.uint64)
    with pytest.raises(ContainerError, match="invalid Huffman code"):
        decode_tiles([w], [1], p)
    with pytest.raises(ContainerError, match="invalid Huffman code"):
        decode_tile_reference(w, 1, p)


def test_invalid_code_early_in_a_batch(rng):
    """An invalid code sends its tile's position far out of the window table; the lockstep pass
    must still finish and name that tile (and only read inside its buffers)."""
    lengths = [0] * 64
    lengths[0], lengths[1], lengths[HUFF_ESC] = 2, 2, 2    # '00', '10', '01'; '11' is no code
    p = make_profile([ClassParams("huffman", bits=4, lengths=lengths)], [0, 0])
    good = [random_q(rng, p, 4) for _ in range(3)]
    payloads = [encode_tile(q, p) for q in good]
    payloads.insert(1, np.array([0b11], dtype=np.uint64))
    with pytest.raises(ContainerError, match="tile 1: invalid Huffman code"):
        decode_tiles(payloads, [4] * 4, p)
    with pytest.raises(ContainerError, match="invalid Huffman code"):
        decode_tile_reference(payloads[1], 4, p)


def test_value_outside_class_width_is_refused():
    lengths = [0] * 64
    lengths[10], lengths[HUFF_ESC] = 1, 1                 # symbol 10 (value 5) in a 2-bit class
    p = make_profile([ClassParams("huffman", bits=2, lengths=lengths)], [0])
    w = np.array([0], dtype=np.uint64)                      # '0' -> symbol 10
    with pytest.raises(ContainerError, match="decoded value outside the width"):
        decode_tiles([w], [1], p)
    with pytest.raises(ContainerError, match="outside the 2-bit range"):
        decode_tile_reference(w, 1, p)


@given(st.integers(0, 2**32 - 1))
def test_garbage_payloads_agree(seed):
    """Random words and single bit flips: both decoders give the same symbols or both refuse."""
    rng = np.random.default_rng(seed)
    p = random_profile(rng)
    pixels = int(rng.integers(1, 8))
    q = random_q(rng, p, pixels)
    w = encode_tile(q, p)
    if w.size:
        flipped = w.copy()
        bit = int(rng.integers(0, 64 * w.size))
        flipped[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
        _both(flipped, pixels, p)
    garbage = rng.integers(0, 2**63, size=int(rng.integers(0, 4)), dtype=np.uint64)
    _both(garbage, pixels, p)


def test_lockstep_isolates_a_bad_tile(rng):
    p = make_profile([random_class(rng, "huffman", True, 8)], [0, 0, 0])
    tiles = [random_q(rng, p, 6, zero_frac=0.2) for _ in range(5)]
    payloads = [encode_tile(q, p) for q in tiles]
    payloads[3] = payloads[3][:-1]
    with pytest.raises(ContainerError, match="tile 3"):
        decode_tiles(payloads, [6] * 5, p)
    with pytest.raises(ContainerError, match="tile 33"):
        decode_tiles(payloads, [6] * 5, p, tile_ids=[30, 31, 32, 33, 34])
