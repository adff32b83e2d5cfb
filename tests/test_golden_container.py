"""golden/container.py: tiles, raw fallback, both layouts, the DRAM image and the .fmc file.

Round trips over shapes, tile sizes (short last tiles), layouts and profiles; the file and tile
headers checked field by field against FORMAT.md; and every malformed case: truncation at every
length, single bit flips anywhere, wrong profile, version, magic, mode, lengths.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_golden_vlc import make_profile, random_class, random_profile, random_q

from golden.bit_packer import parse_tile_header, tile_check
from golden.container import (
    ContainerError,
    decode_q,
    encode_q,
    parse_image,
    read_file_bytes,
    tiling,
    to_file_bytes,
)
from golden.huffman import limited_lengths
from golden.profile import ClassParams
from golden.vlc_encoder import tokens


def _q_for(rng, profile, shape, zero_frac=None):
    n, _, h, w = shape if len(shape) == 4 else (1, *shape)
    return random_q(rng, profile, n * h * w, zero_frac)


def small_case(rng, layout="fixed", shape=(2, 3, 3, 5), tile_pixels=4):
    classes = [random_class(rng, "huffman", True, 6), random_class(rng, "rice", False, 8),
               ClassParams("raw", bits=4), ClassParams("drop")]
    p = make_profile(classes, [0, 1, 0, 2, 3, 0][: shape[-3]], tile_pixels=tile_pixels,
                     layout=layout)
    q = _q_for(rng, p, shape, zero_frac=0.5)
    return p, q, shape


def coded_case(rng, layout="fixed"):
    """Tiles that code well (multi-word coded payloads, well below raw size)."""
    lengths = limited_lengths([1 << max(0, 20 - s) for s in range(64)], 16)
    cls = ClassParams("huffman", zflag=True, bits=8, lengths=lengths)
    p = make_profile([cls, ClassParams("rice", bits=8, k=0, esc=8)], [0, 0, 0, 1, 0, 0],
                     tile_pixels=20, layout=layout)
    q = np.clip(np.round(rng.laplace(size=(80, 6)) * 1.5), -3, 3).astype(np.int64)
    q[rng.random(80) < 0.5] = 0
    return p, q, (6, 8, 10)


# -- round trips -----------------------------------------------------------------------------------
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), h=st.integers(1, 6),
       w=st.integers(1, 6), tile_pixels=st.integers(1, 40),
       layout=st.sampled_from(["fixed", "compacted"]), batched=st.booleans(),
       embed=st.booleans())
def test_roundtrip(seed, n, h, w, tile_pixels, layout, batched, embed):
    rng = np.random.default_rng(seed)
    p = random_profile(rng, tile_pixels=tile_pixels, layout=layout)
    shape = (n, p.channels, h, w) if batched or n > 1 else (p.channels, h, w)
    q = _q_for(rng, p, shape)
    enc = encode_q(q, shape, p)
    assert (decode_q(enc.image, shape, p) == q).all()
    data = to_file_bytes(enc, p, embed_profile=embed)
    hdr, p2, q2 = read_file_bytes(data, None if embed else p)
    assert (q2 == q).all()
    assert hdr.tensor_shape == tuple(shape)
    assert p2.checksum == p.checksum
    assert len(data) == 64 + enc.footprint + (8 + len(p.to_json().encode()) if embed else 0)


@pytest.mark.parametrize("layout", ["fixed", "compacted"])
def test_all_zero_and_extreme_tensors(layout, rng):
    p = random_profile(rng, channels=6, tile_pixels=7, layout=layout)
    shape = (2, 6, 5, 3)
    bits = p.class_array("bits")
    drop = p.class_array("mode") == 0
    for fill in (0, "lo", "hi"):
        q = np.zeros((30, 6), dtype=np.int64)
        if fill == "lo":
            q[:] = -(np.int64(1) << (bits - 1))
        elif fill == "hi":
            q[:] = (np.int64(1) << (bits - 1)) - 1
        q[:, drop] = 0
        enc = encode_q(q, shape, p)
        assert (decode_q(enc.image, shape, p) == q).all()


def test_raw_fallback_bounds_every_tile(rng):
    # A code that is bad for the data (Rice k=0 on full-range values): tiles fall back to raw,
    # and no tile ever exceeds raw size plus its header.
    p = make_profile([ClassParams("rice", bits=8, k=0, esc=16)], [0] * 4, tile_pixels=5)
    shape = (4, 4, 7)
    q = rng.integers(-128, 128, size=(28, 4))
    q[:5] = 0                                              # the first tile codes well
    enc = encode_q(q, shape, p)
    raw_need = -(-enc.tile_count * p.raw_bits_per_pixel // 64)
    assert enc.tile_mode[0] == 0 and (enc.tile_mode[1:] == 1).all()
    assert (enc.tile_payload_words[1:] == raw_need[1:]).all()
    assert (enc.tile_payload_words <= raw_need).all()
    assert (decode_q(enc.image, shape, p) == q).all()
    coded = -(-enc.tile_coded_bits // 64)
    assert ((enc.tile_mode == 1) == (coded >= raw_need)).all()


def test_tiles_never_cross_images():
    til = tiling((3, 2, 3, 5), 4)                           # 15 pixels: 4 + 4 + 4 + 3 per image
    assert til.count.tolist() == [4, 4, 4, 3] * 3
    assert til.start.tolist() == [0, 4, 8, 12, 15, 19, 23, 27, 30, 34, 38, 42]
    assert tiling((1, 2, 2, 2), 100).count.tolist() == [4]


def test_fixed_layout_by_hand(rng):
    p, q, shape = small_case(rng, "fixed")
    enc = encode_q(q, shape, p)
    slot = 1 + p.raw_words(p.tile_pixels)
    assert enc.slot_words == slot and enc.image_words == enc.n_tiles * slot
    assert enc.tile_offset.tolist() == [t * slot for t in range(enc.n_tiles)]
    assert enc.footprint == 8 * enc.n_tiles * slot
    assert enc.bytes_moved == 8 * int((1 + enc.tile_payload_words).sum())
    v, nb = tokens(q, p)
    for t in range(enc.n_tiles):
        h = parse_tile_header(enc.image[t * slot])
        assert h.payload_words == enc.tile_payload_words[t] and h.tile_no == t
        payload = enc.image[t * slot + 1:t * slot + 1 + h.payload_words]
        assert h.check == zlib.crc32(payload.tobytes() + (int(enc.image[t * slot]) & 0xFFFFFFFF)
                                     .to_bytes(4, "little"))
        assert not enc.image[t * slot + 1 + h.payload_words:(t + 1) * slot].any()
        if h.mode == 0:                                     # the tile's tokens, back to back
            rows = slice(int(enc.tile_start[t]), int(enc.tile_start[t] + enc.tile_count[t]))
            bits = int(nb[rows].sum())
            assert h.payload_words == -(-bits // 64)


def test_compacted_layout_by_hand(rng):
    p, q, shape = small_case(rng, "compacted", shape=(1, 4, 3, 3), tile_pixels=2)
    enc = encode_q(q, shape, p)
    n = enc.n_tiles                                         # 5 tiles: an odd count pads the table
    assert n == 5 and enc.table_words == 3
    table = enc.image[:3].view("<u4")
    ends = np.cumsum(1 + enc.tile_payload_words)
    assert table.tolist() == [0, *ends[:-1].tolist(), 0]
    assert enc.image_words == 3 + int(ends[-1]) and enc.footprint == enc.bytes_moved
    for t in range(n):
        h = parse_tile_header(enc.image[3 + table[t]])
        assert h.tile_no == t and h.payload_words == enc.tile_payload_words[t]


def test_file_header_by_hand(rng):
    p, q, shape = small_case(rng, "compacted", shape=(3, 5, 4))
    p.relu = True
    enc = encode_q(q, shape, p)
    data = to_file_bytes(enc, p, embed_profile=True)
    assert data[:8] == b"FMCODEC\0"
    assert struct.unpack_from("<HHI", data, 8) == (1, 0, 0b1111)   # int8; compacted, ReLU,
    assert struct.unpack_from("<4I", data, 16) == (1, 3, 5, 4)    # profile, (C, H, W)
    assert struct.unpack_from("<4I", data, 32) == (p.tile_pixels, enc.n_tiles, 0, enc.image_words)
    assert struct.unpack_from("<I", data, 48)[0] == p.profile_id
    assert data[52:60] == bytes(8)
    assert struct.unpack_from("<I", data, 60)[0] == zlib.crc32(data[:60])
    assert data[64:64 + enc.footprint] == enc.image.tobytes()
    end = 64 + enc.footprint
    (plen,) = struct.unpack_from("<I", data, end)
    js = data[end + 4:end + 4 + plen]
    assert json.loads(js)["checksum"] == p.checksum
    assert struct.unpack_from("<I", data, end + 4 + plen)[0] == zlib.crc32(js)
    assert len(data) == end + 8 + plen
    hdr, _, q2 = read_file_bytes(data)
    assert hdr.relu and hdr.layout == "compacted" and not hdr.batched and (q2 == q).all()


def test_no_profile_section_without_the_flag(rng):
    p, q, shape = small_case(rng)
    enc = encode_q(q, shape, p)
    data = to_file_bytes(enc, p, embed_profile=False)
    assert struct.unpack_from("<I", data, 12)[0] & 4 == 0 and len(data) == 64 + enc.footprint
    with pytest.raises(ContainerError, match="does not embed its profile"):
        read_file_bytes(data)


# -- malformed input -------------------------------------------------------------------------------
def _reseal_header(data: bytes) -> bytes:
    return data[:60] + struct.pack("<I", zlib.crc32(data[:60])) + data[64:]


def _set_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value) + data[at + 4:]


def _reseal_tile(image: np.ndarray, off: int, payload_words: int | None = None,
                 mode: int | None = None) -> np.ndarray:
    """Rewrite a tile header's fields and give it a valid CRC over what now follows it."""
    image = image.copy()
    h = parse_tile_header(image[off])
    pw = h.payload_words if payload_words is None else payload_words
    low = pw | (h.mode if mode is None else mode) << 20 | h.tile_no << 22
    crc = tile_check(image[off + 1:off + 1 + pw], low)
    image[off] = np.uint64(low | crc << 32)
    return image


@pytest.mark.parametrize("layout", ["fixed", "compacted"])
@pytest.mark.parametrize("embed", [False, True])
def test_every_truncation(layout, embed, rng):
    p, q, shape = small_case(rng, layout)
    data = to_file_bytes(encode_q(q, shape, p), p, embed_profile=embed)
    for n in range(len(data)):
        with pytest.raises(ContainerError, match="truncated"):
            read_file_bytes(data[:n], p)
    with pytest.raises(ContainerError, match="trailing bytes"):
        read_file_bytes(data + b"\0", p)


@pytest.mark.parametrize("layout", ["fixed", "compacted"])
@pytest.mark.parametrize("embed", [False, True])
def test_every_single_bit_flip(layout, embed, rng):
    p, q, shape = small_case(rng, layout)
    enc = encode_q(q, shape, p)
    data = to_file_bytes(enc, p, embed_profile=embed)
    end = 64 + enc.footprint
    bits = list(range(8 * end))
    if embed:                                               # the profile section, sampled
        bits += [8 * end + b for b in range(64)]
        bits += sorted(rng.choice(np.arange(8 * end + 64, 8 * len(data)), 400, replace=False))
        bits += list(range(8 * len(data) - 32, 8 * len(data)))
    for b in bits:
        bad = bytearray(data)
        bad[b // 8] ^= 1 << (b % 8)
        with pytest.raises(ContainerError):
            read_file_bytes(bytes(bad), None if embed else p)


@pytest.mark.parametrize("layout", ["fixed", "compacted"])
def test_dram_image_bit_flips(layout, rng):
    p, q, shape = small_case(rng, layout, shape=(6, 4, 4), tile_pixels=3)
    enc = encode_q(q, shape, p)
    for b in range(64 * enc.image_words):
        bad = enc.image.copy()
        bad[b // 64] ^= np.uint64(1) << np.uint64(b % 64)
        with pytest.raises(ContainerError):
            decode_q(bad, shape, p)


def test_unused_slot_words(rng):
    p, q, shape = small_case(rng, "fixed")
    enc = encode_q(q, shape, p)
    spare = [t for t in range(enc.n_tiles) if 1 + enc.tile_payload_words[t] < enc.slot_words]
    assert spare, "the case needs a coded tile that leaves slot words unused"
    t = spare[0]
    bad = enc.image.copy()
    bad[t * enc.slot_words + enc.slot_words - 1] = np.uint64(0xDEAD)
    with pytest.raises(ContainerError, match=f"tile {t}: slot words after the tile"):
        decode_q(bad, shape, p)
    assert (decode_q(bad, shape, p, check_unused=False) == q).all()   # DRAM never wrote them


def test_wrong_profile(rng):
    p, q, shape = small_case(rng)
    other, _, _ = small_case(np.random.default_rng(99))
    data = to_file_bytes(encode_q(q, shape, p), p, embed_profile=False)
    with pytest.raises(ContainerError, match="profile mismatch"):
        read_file_bytes(data, other)
    data = to_file_bytes(encode_q(q, shape, p), p, embed_profile=True)
    with pytest.raises(ContainerError, match="profile mismatch"):
        read_file_bytes(data, other)


def test_bad_magic_version_header_crc(rng):
    p, q, shape = small_case(rng)
    data = to_file_bytes(encode_q(q, shape, p), p)
    with pytest.raises(ContainerError, match="bad magic"):
        read_file_bytes(b"PNG\0" + data[4:])
    with pytest.raises(ContainerError, match="unsupported version 2"):
        read_file_bytes(_reseal_header(data[:8] + struct.pack("<H", 2) + data[10:]))
    with pytest.raises(ContainerError, match="header CRC mismatch"):
        read_file_bytes(data[:20] + bytes([data[20] ^ 1]) + data[21:])
    with pytest.raises(ContainerError, match="unknown flags"):
        read_file_bytes(_reseal_header(_set_u32(data, 12, 0x104)))
    with pytest.raises(ContainerError, match="unknown dtype"):
        read_file_bytes(_reseal_header(data[:10] + struct.pack("<H", 7) + data[12:]))


def test_header_disagrees_with_profile(rng):
    p, q, shape = small_case(rng)
    data = to_file_bytes(encode_q(q, shape, p), p)
    with pytest.raises(ContainerError, match="shape mismatch"):
        read_file_bytes(_reseal_header(_set_u32(data, 28, 4)))     # W 5 -> 4: tile count
    with pytest.raises(ContainerError, match="shape mismatch"):
        read_file_bytes(_reseal_header(_set_u32(data, 20, 5)))     # C
    with pytest.raises(ContainerError, match="profile mismatch"):
        read_file_bytes(_reseal_header(_set_u32(data, 12, 4 | 1)))  # compacted flag
    with pytest.raises(ContainerError, match="profile mismatch"):
        read_file_bytes(_reseal_header(_set_u32(data, 32, 5)))     # tile_pixels


def test_decode_q_shape_mismatch(rng):
    p, q, shape = small_case(rng)
    enc = encode_q(q, shape, p)
    with pytest.raises(ContainerError, match="shape mismatch"):
        decode_q(enc.image, (2, 4, 3, 5), p)
    with pytest.raises(ContainerError, match="DRAM image"):
        decode_q(enc.image, (1, 3, 3, 5), p)
    with pytest.raises(ContainerError, match="shape mismatch"):
        encode_q(q[:-1], shape, p)


@pytest.mark.parametrize("layout", ["fixed", "compacted"])
def test_bad_mode_and_lengths_with_valid_crc(layout, rng):
    p, q, shape = coded_case(rng, layout)
    enc = encode_q(q, shape, p)
    off = int(enc.tile_offset[1])
    with pytest.raises(ContainerError, match="tile 1: bad mode 2"):
        decode_q(_reseal_tile(enc.image, off, mode=2), shape, p)
    raw_need = p.raw_words(p.tile_pixels)
    if layout == "fixed":
        with pytest.raises(ContainerError, match="tile 1: length .* exceeds its slot"):
            decode_q(_reseal_tile(enc.image, off, payload_words=raw_need + 1), shape, p)
    long = _reseal_tile(enc.image, int(enc.tile_offset[-1]), payload_words=5000)
    with pytest.raises(ContainerError, match="exceeds"):
        decode_q(long, shape, p)
    pw = int(enc.tile_payload_words[1])
    assert enc.tile_mode[1] == 0 and pw > 1
    # One word fewer, resealed: the CRC holds, the code runs past the shorter payload.
    img = _reseal_tile(enc.image, off, payload_words=pw - 1)
    if layout == "fixed":
        img[off + pw] = 0
        with pytest.raises(ContainerError, match="tile 1: code runs past"):
            decode_q(img, shape, p)
    else:
        with pytest.raises(ContainerError, match="tile 2: index entry"):
            decode_q(img, shape, p)
        # ... and with the index table and the tiles after it moved up to match.
        img = np.delete(img, off + pw)
        img[:2] = (img[:2].view("<u4") - np.array([0, 0, 1, 1], dtype="<u4")
                   * (np.arange(4) >= 2)).view(np.uint64)
        with pytest.raises(ContainerError, match="tile 1: code runs past"):
            decode_q(img, shape, p)
    # One word more (a zero word): the code ends a word early.
    if layout == "compacted":
        img = np.insert(enc.image, off + 1 + pw, np.uint64(0))
        img = _reseal_tile(img, off, payload_words=pw + 1)
        img[:2] = (img[:2].view("<u4") + np.array([0, 0, 1, 1], dtype="<u4")
                   * (np.arange(4) >= 2)).view(np.uint64)
        with pytest.raises(ContainerError, match="tile 1: .*too many words"):
            decode_q(img, shape, p)
    with pytest.raises(ContainerError, match="tile 1: CRC mismatch"):
        bad = enc.image.copy()
        bad[off + 1] ^= np.uint64(1 << 40)
        decode_q(bad, shape, p)


def test_raw_and_coded_length_rules(rng):
    p, q, shape = coded_case(rng, "fixed")
    enc = encode_q(q, shape, p)
    raw_need = p.raw_words(p.tile_pixels)
    assert (enc.tile_mode == 0).all()
    off = int(enc.tile_offset[2])
    # Claiming raw mode for a coded tile: wrong raw length.
    with pytest.raises(ContainerError, match="raw payload of"):
        decode_q(_reseal_tile(enc.image, off, mode=1), shape, p)
    # A coded payload as long as raw is never written: refused.
    img = _reseal_tile(enc.image, off, payload_words=raw_need)
    with pytest.raises(ContainerError, match="not smaller than raw"):
        decode_q(img, shape, p)


def test_embedded_profile_damage(rng):
    p, q, shape = small_case(rng)
    enc = encode_q(q, shape, p)
    data = to_file_bytes(enc, p)
    end = 64 + enc.footprint
    js = p.to_json().encode()
    # A profile section that is intact as a section (CRC over the new bytes) but not a profile.
    for body, msg in ((b"{not json", "not valid JSON"),
                      (json.dumps({"format": "x"}).encode(), "embedded profile is invalid"),
                      (js.replace(b'"relu":false', b'"relu":true'), "invalid")):
        section = struct.pack("<I", len(body)) + body + struct.pack("<I", zlib.crc32(body))
        with pytest.raises(ContainerError, match=msg):
            read_file_bytes(data[:end] + section)


def test_tile_numbers_wrap_at_1024():
    p = make_profile([ClassParams("raw", bits=2)], [0], tile_pixels=1)
    shape = (1, 1, 1030)
    q = np.zeros((1030, 1), dtype=np.int64)
    enc = encode_q(q, shape, p)
    assert [parse_tile_header(enc.image[o]).tile_no for o in enc.tile_offset[1022:1027]] == \
        [1022, 1023, 0, 1, 2]
    assert (decode_q(enc.image, shape, p) == q).all()
    swapped = enc.image.copy()
    swapped[[2 * 2, 3 * 2]] = swapped[[3 * 2, 2 * 2]]       # tiles 2 and 3 exchange headers
    swapped[[2 * 2 + 1, 3 * 2 + 1]] = swapped[[3 * 2 + 1, 2 * 2 + 1]]
    with pytest.raises(ContainerError, match="tile 2: header carries tile number 3"):
        decode_q(swapped, shape, p)


def test_parse_image_describes_the_tiles(rng):
    p, q, shape = small_case(rng, "compacted")
    enc = encode_q(q, shape, p)
    got = parse_image(enc.image, shape, p)
    for f in ("tile_start", "tile_count", "tile_mode", "tile_payload_words", "tile_offset"):
        assert (getattr(got, f) == getattr(enc, f)).all()
    assert got.bytes_moved == enc.bytes_moved and got.footprint == enc.footprint


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["fixed", "compacted"])
def test_full_size_tensor(layout, rng):
    p = random_profile(rng, channels=64, n_classes=6, tile_pixels=56, layout=layout)
    shape = (64, 56, 56)
    q = _q_for(rng, p, shape, zero_frac=0.6)
    enc = encode_q(q, shape, p)
    assert (decode_q(enc.image, shape, p) == q).all()
    assert (read_file_bytes(to_file_bytes(enc, p))[2] == q).all()


# -- the whole codec and the calibration cost model ------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 6, 9), (2, 16, 5, 7)])
@pytest.mark.parametrize("layout", ["fixed", "compacted"])
def test_codec_roundtrip(shape, layout):
    from golden import codec
    from golden.calibrate import calibrate
    from golden.synthetic import correlated_tensor

    c, h, w = shape[-3:]
    n = shape[0] if len(shape) == 4 else 1
    x = correlated_tensor(c, h, w, batch=n, seed=3)
    x = x.reshape(shape)
    p = calibrate(x, transform="pca", group=8, bits=6, layout=layout, tile_pixels=10)
    q = codec.quantize_tensor(x, p)
    want = codec.reconstruct(q, shape, p)
    for embed in (True, False):
        data = codec.encode(x, p, embed_profile=embed)
        got = codec.decode(data, None if embed else p)
        assert got.shape == x.shape and got.dtype == x.dtype
        assert (got == want).all()
        assert codec.container_bytes(data) == 64 + encode_q(q, shape, p).footprint
    with pytest.raises(ValueError, match="dtype"):
        codec.encode(x.astype(np.int16), p)


def test_calibration_cost_model_matches_the_coder(rng):
    """golden.calibrate predicts coded sizes; they must be the sizes the container writes."""
    from golden.calibrate import payload_bits, tile_words

    for layout in ("fixed", "compacted"):
        p = random_profile(rng, channels=8, tile_pixels=6, layout=layout)
        shape = (3, 8, 4, 5)
        q = _q_for(rng, p, shape)
        enc = encode_q(q, shape, p)
        assert (payload_bits(q, p) == tokens(q, p)[1].sum(axis=1)).all()
        assert (tile_words(q, p, 20) == 1 + enc.tile_payload_words).all()
