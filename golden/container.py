"""Tiles, layouts, the DRAM image and the .fmc container file (docs/FORMAT.md, "Tiles",
"Layouts", "Container file").

The golden twin of the DRAM writer and reader: `encode_q` turns quantized symbols into the DRAM
image the hardware writes (tile headers, coded or raw payloads, fixed slots or an index table),
`decode_q` reads one back with every check, and `to_file_bytes` / `read_file_bytes` wrap the image
in the 64-byte .fmc header (optionally followed by the profile). The transform and quantizer stay
outside: this module sees only the (P, C) symbols q, pixels in raster order (n, h, w).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from golden.bit_packer import (
    LEN_BITS,
    MAX_PAYLOAD_WORDS,
    MODE_CODED,
    MODE_RAW,
    TILE_NO_MOD,
    WORD,
    pack_into,
    parse_tile_header,
)
from golden.errors import ContainerError
from golden.profile import DTYPE_CODE, LAYOUTS, Profile, ProfileError
from golden.vlc_decoder import decode_coded, decode_raw
from golden.vlc_encoder import check_symbols, raw_tokens, tokens_i64

__all__ = ["ContainerError", "EncodedTensor", "FileHeader", "Tiling", "container_bytes", "decode_q",
           "decode_tensor", "encode_q",
           "file_header_bytes", "parse_file_header", "parse_image", "read_file_bytes", "tiling",
           "to_file_bytes"]

MAGIC = b"FMCODEC\0"
VERSION = 1
HEADER_BYTES = 64
FLAG_COMPACTED = 1 << 0     # layout: 0 fixed, 1 compacted
FLAG_RELU = 1 << 1          # ReLU on decode
FLAG_PROFILE = 1 << 2       # the profile follows the DRAM image
FLAG_UNBATCHED = 1 << 3     # the tensor was (C, H, W): decode drops the N = 1 axis
FLAGS_KNOWN = FLAG_COMPACTED | FLAG_RELU | FLAG_PROFILE | FLAG_UNBATCHED
U32_MAX = (1 << 32) - 1
_HEADER = struct.Struct("<8sHHI4IIIIII8sI")     # 64 bytes, FORMAT.md "Container file"
_DTYPE_NAME = {v: k for k, v in DTYPE_CODE.items()}
assert _HEADER.size == HEADER_BYTES


# -- tiles ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tiling:
    """Tiles of a tensor: tile t covers rows `start[t] : start[t] + count[t]` of the (P, C) q."""
    shape: tuple[int, int, int, int]    # (N, C, H, W)
    tile_pixels: int
    start: np.ndarray
    count: np.ndarray

    @property
    def n_tiles(self) -> int:
        return int(self.start.size)

    @property
    def pixels(self) -> int:
        n, _, h, w = self.shape
        return n * h * w


def shape4(shape) -> tuple[tuple[int, int, int, int], bool]:
    """`((N, C, H, W), batched)` from a (C, H, W) or (N, C, H, W) shape."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4) or min(shape) < 0:
        raise ValueError(f"expected a (C, H, W) or (N, C, H, W) shape, got {shape}")
    return (shape if len(shape) == 4 else (1, *shape)), len(shape) == 4


def tiles_per_image(h: int, w: int, tile_pixels: int) -> int:
    return -(-(h * w) // tile_pixels)


def tiling(shape, tile_pixels: int) -> Tiling:
    """Tiles of `tile_pixels` consecutive pixels of one image; the last of an image may be short."""
    (n, c, h, w), _ = shape4(shape)
    hw = h * w
    per = tiles_per_image(h, w, tile_pixels)
    first = np.arange(per, dtype=np.int64) * tile_pixels
    count = np.minimum(tile_pixels, hw - first)
    start = (np.arange(n, dtype=np.int64)[:, None] * hw + first[None, :]).reshape(-1)
    return Tiling((n, c, h, w), int(tile_pixels), start, np.tile(count, n))


def _rows(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenated `arange(start[i], start[i] + count[i])`."""
    if not count.size:
        return np.zeros(0, dtype=np.int64)
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    return np.repeat(start - first, count) + np.arange(int(count.sum()))


def _check_profile(profile: Profile, shape) -> tuple[tuple[int, int, int, int], bool]:
    profile.validate()
    s4, batched = shape4(shape)
    if s4[1] != profile.channels:
        raise ContainerError(f"shape mismatch: shape {tuple(shape)} has {s4[1]} channels, the "
                             f"profile {profile.channels}")
    return s4, batched


# -- the DRAM image ------------------------------------------------------------------------------
@dataclass
class EncodedTensor:
    """A DRAM image and what is known about each of its tiles."""
    image: np.ndarray           # uint64 words, little endian
    shape: tuple[int, int, int, int]
    batched: bool               # False: the tensor was (C, H, W)
    layout: str
    tile_pixels: int
    slot_words: int             # fixed layout: words per slot; 0 when compacted
    table_words: int            # compacted layout: index table words; 0 when fixed
    tile_start: np.ndarray      # first pixel (row of q) of each tile
    tile_count: np.ndarray      # pixels of each tile
    tile_mode: np.ndarray       # 0 coded, 1 raw
    tile_payload_words: np.ndarray
    tile_offset: np.ndarray     # word index of each tile's header in the image
    profile_id: int
    tile_coded_bits: np.ndarray | None = None   # encoder only: coded stream bits of each tile

    @property
    def n_tiles(self) -> int:
        return int(self.tile_start.size)

    @property
    def image_words(self) -> int:
        return int(self.image.size)

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        return self.shape if self.batched else self.shape[1:]

    @property
    def words_written(self) -> int:
        """Words the writer actually stores: index table, tile headers and payloads."""
        return self.table_words + int(self.n_tiles + self.tile_payload_words.sum())

    @property
    def bytes_moved(self) -> int:
        """DRAM traffic of writing (or reading back) the tensor, in bytes."""
        return 8 * self.words_written

    @property
    def footprint(self) -> int:
        """DRAM bytes the tensor occupies (fixed slots count whole)."""
        return 8 * self.image_words


def encode_q(q, shape, profile: Profile) -> EncodedTensor:
    """Quantized symbols (P, C), pixels in raster order of `shape`, -> the DRAM image."""
    s4, batched = _check_profile(profile, shape)
    q = check_symbols(q, profile)
    til = tiling(s4, profile.tile_pixels)
    if q.shape != (til.pixels, profile.channels):
        raise ContainerError(f"shape mismatch: q of shape {q.shape} for a tensor of shape "
                             f"{tuple(shape)} ({til.pixels} pixels)")
    n, C = til.n_tiles, profile.channels
    value, nbits = tokens_i64(q, profile)
    csum = np.concatenate(([0], np.cumsum(nbits.sum(axis=1))))
    coded_bits = csum[til.start + til.count] - csum[til.start]
    coded_words = -(-coded_bits // 64)
    raw_words = -(-til.count * profile.raw_bits_per_pixel // 64)
    mode = np.where(coded_words >= raw_words, MODE_RAW, MODE_CODED)
    payload = np.where(mode == MODE_RAW, raw_words, coded_words)
    if n and payload.max() > MAX_PAYLOAD_WORDS:
        raise ContainerError(f"a tile payload of {payload.max()} words does not fit the header")

    if profile.layout == "fixed":
        slot = 1 + profile.raw_words(profile.tile_pixels)
        table_words = 0
        offset = np.arange(n, dtype=np.int64) * slot
        image_words = n * slot
    else:
        slot = 0
        table_words = -(-n // 2)
        ends = np.cumsum(1 + payload)
        offset = table_words + np.concatenate(([0], ends[:-1])).astype(np.int64)
        image_words = table_words + (int(ends[-1]) if n else 0)
    if image_words > U32_MAX:
        raise ContainerError(f"a DRAM image of {image_words} words is too large")

    # Payloads: each tile's tokens (coded or raw) from bit 0 of the word after its header.
    raw_px = np.repeat(mode == MODE_RAW, til.count)
    if raw_px.any():
        rv, rn = raw_tokens(q, profile)
        value = np.where(raw_px[:, None], rv.view(np.int64), value)
        nbits = np.where(raw_px[:, None], rn, nbits)
    value, nbits = value.reshape(-1), nbits.reshape(-1)
    start = np.cumsum(nbits)
    start -= nbits
    start += np.repeat(64 * (offset + 1) - start[til.start * C], til.count * C)
    image = np.zeros(image_words, dtype=WORD)
    pack_into(value, nbits, start, image)

    # Headers: length, mode, tile number, CRC over payload bytes then header bits 0..31.
    low = payload | mode << LEN_BITS | (np.arange(n) % TILE_NO_MOD) << 22
    low_bytes = low.astype("<u4").tobytes()
    ib = image.view(np.uint8)
    crc = np.empty(n, dtype=np.uint64)
    spans = zip((8 * (offset + 1)).tolist(), (8 * payload).tolist(), strict=True)
    for t, (o, pw) in enumerate(spans):
        crc[t] = zlib.crc32(low_bytes[4 * t:4 * t + 4], zlib.crc32(ib[o:o + pw]))
    image[offset] = low.astype(np.uint64) | (crc << np.uint64(32))
    if table_words:
        table = np.zeros(2 * table_words, dtype="<u4")
        table[:n] = offset - table_words
        image[:table_words] = table.view(WORD)

    return EncodedTensor(image, s4, batched, profile.layout, profile.tile_pixels, slot,
                         table_words, til.start, til.count, mode, payload, offset,
                         profile.profile_id, coded_bits)


def parse_image(image, shape, profile: Profile, *, check_unused: bool = True) -> EncodedTensor:
    """Check a DRAM image against `shape` and `profile` and locate its tiles.

    Every tile header's CRC, mode, tile number and length are checked, the index table of a
    compacted image must chain the tiles back to back, and the image must have exactly the words
    its tiles need. With `check_unused` the words of a fixed slot after its tile and the padding
    entry of the index table must be zero (they are in files; in a real DRAM they are never
    written, so a reader of hardware memory passes False).
    """
    s4, batched = _check_profile(profile, shape)
    image = np.asarray(image)
    if image.ndim != 1 or image.dtype.kind not in "ui" or image.dtype.itemsize != 8:
        raise ValueError(f"a DRAM image is a 1-D array of 64-bit words, got {image.dtype} "
                         f"{image.shape}")
    image = image.astype(WORD, copy=False)
    til = tiling(s4, profile.tile_pixels)
    n, size = til.n_tiles, int(image.size)
    raw_need = -(-til.count * profile.raw_bits_per_pixel // 64)
    fixed = profile.layout == "fixed"
    if fixed:
        slot = 1 + profile.raw_words(profile.tile_pixels)
        table_words = 0
        expect = n * slot
        if size != expect:
            what = "truncated" if size < expect else "too long"
            raise ContainerError(f"DRAM image {what} (expected {expect} words, got {size})")
        offset = np.arange(n, dtype=np.int64) * slot
    else:
        slot = 0
        table_words = -(-n // 2)
        if size < table_words:
            raise ContainerError(f"DRAM image truncated (expected at least {table_words} words "
                                 f"of index table, got {size})")
        table = image[:table_words].view("<u4")
        if check_unused and table[n:].any():
            raise ContainerError("index table padding entry is not zero")
        offset = table_words + table[:n].astype(np.int64)

    ib = image.view(np.uint8)
    headers = image.take(offset, mode="clip").tolist() if size else [0] * n
    mode = np.zeros(n, dtype=np.int64)
    payload = np.zeros(n, dtype=np.int64)
    expect_off = table_words
    offs, needs, counts = offset.tolist(), raw_need.tolist(), til.count.tolist()
    for t in range(n):
        off = offs[t]
        if not fixed:
            if off != expect_off:
                raise ContainerError(f"tile {t}: index entry {off - table_words} does not follow "
                                     f"the tile before (expected {expect_off - table_words}); "
                                     f"index table corrupt")
            if off >= size:
                raise ContainerError(f"DRAM image truncated (tile {t} header at word {off}, "
                                     f"image has {size} words)")
        word = headers[t]
        h = parse_tile_header(word)
        end = off + 1 + h.payload_words
        if fixed and end > off + slot:
            raise ContainerError(f"tile {t}: length {h.payload_words} words exceeds its slot "
                                 f"({slot - 1} payload words)")
        if end > size:
            raise ContainerError(f"tile {t}: length {h.payload_words} words exceeds the image "
                                 f"(ends at word {end}, image has {size})")
        low = word & 0xFFFFFFFF
        crc = zlib.crc32(low.to_bytes(4, "little"), zlib.crc32(ib[8 * (off + 1):8 * end]))
        if crc != h.check:
            raise ContainerError(f"tile {t}: CRC mismatch (header says {h.check:#010x}, payload "
                                 f"gives {crc:#010x})")
        if h.mode not in (MODE_CODED, MODE_RAW):
            raise ContainerError(f"tile {t}: bad mode {h.mode} (0 coded, 1 raw)")
        if h.tile_no != t % TILE_NO_MOD:
            raise ContainerError(f"tile {t}: header carries tile number {h.tile_no}, expected "
                                 f"{t % TILE_NO_MOD}")
        need = needs[t]
        if h.mode == MODE_RAW and h.payload_words != need:
            raise ContainerError(f"tile {t}: raw payload of {h.payload_words} words, its "
                                 f"{counts[t]} pixels need {need}")
        if h.mode == MODE_CODED and h.payload_words >= need:
            raise ContainerError(f"tile {t}: coded payload of {h.payload_words} words is not "
                                 f"smaller than raw ({need} words)")
        mode[t], payload[t] = h.mode, h.payload_words
        expect_off = end
    if not fixed and size != expect_off:
        raise ContainerError(f"DRAM image too long (expected {expect_off} words, got {size})")
    if fixed and check_unused and n:
        used = np.zeros((n, slot), dtype=bool)
        used[np.arange(slot)[None, :] < (1 + payload)[:, None]] = True
        if image.reshape(n, slot)[~used].any():
            t = int(np.flatnonzero((image.reshape(n, slot) * ~used).any(axis=1))[0])
            raise ContainerError(f"tile {t}: slot words after the tile are not zero")
    return EncodedTensor(image, s4, batched, profile.layout, profile.tile_pixels, slot,
                         table_words, til.start, til.count, mode, payload, offset,
                         profile.profile_id)


def decode_tensor(enc: EncodedTensor, profile: Profile) -> np.ndarray:
    """Symbols (P, C) of a parsed image (see `parse_image`)."""
    P = enc.shape[0] * enc.shape[2] * enc.shape[3]
    q = np.zeros((P, profile.channels), dtype=np.int64)
    ids = np.arange(enc.n_tiles)
    for m, decode in ((MODE_RAW, decode_raw), (MODE_CODED, decode_coded)):
        sel = enc.tile_mode == m
        if sel.any():
            q[_rows(enc.tile_start[sel], enc.tile_count[sel])] = decode(
                enc.image, enc.tile_offset[sel] + 1, enc.tile_payload_words[sel],
                enc.tile_count[sel], profile, ids[sel])
    return q


def decode_q(image_words, shape, profile: Profile, *, check_unused: bool = True) -> np.ndarray:
    """DRAM image -> quantized symbols (P, C) int64, pixels in raster order of `shape`."""
    return decode_tensor(parse_image(image_words, shape, profile, check_unused=check_unused),
                         profile)


# -- the .fmc file -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileHeader:
    version: int
    dtype: str
    layout: str
    relu: bool
    profile_embedded: bool
    batched: bool
    shape: tuple[int, int, int, int]     # (N, C, H, W)
    tile_pixels: int
    n_tiles: int
    slot_words: int
    image_words: int
    profile_id: int

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        return self.shape if self.batched else self.shape[1:]

    @property
    def image_bytes(self) -> int:
        return 8 * self.image_words


def file_header_bytes(enc: EncodedTensor, profile: Profile, embed_profile: bool) -> bytes:
    flags = ((FLAG_COMPACTED if enc.layout == "compacted" else 0)
             | (FLAG_RELU if profile.relu else 0)
             | (FLAG_PROFILE if embed_profile else 0)
             | (0 if enc.batched else FLAG_UNBATCHED))
    for name, v in zip("NCHW", enc.shape, strict=True):
        if v > U32_MAX:
            raise ContainerError(f"tensor dimension {name} = {v} does not fit the header")
    head = _HEADER.pack(MAGIC, VERSION, DTYPE_CODE[profile.dtype], flags, *enc.shape,
                        enc.tile_pixels, enc.n_tiles, enc.slot_words, enc.image_words,
                        enc.profile_id, bytes(8), 0)
    return head[:60] + struct.pack("<I", zlib.crc32(head[:60]))


def to_file_bytes(enc: EncodedTensor, profile: Profile, embed_profile: bool = True) -> bytes:
    """The .fmc file: 64-byte header, the DRAM image, and (flag bit 2) the profile:
    u32 length, the profile JSON (`Profile.to_json()`, UTF-8), u32 CRC-32 of the JSON bytes."""
    if enc.profile_id != profile.profile_id:
        raise ValueError("the tensor was encoded with another profile")
    parts = [file_header_bytes(enc, profile, embed_profile), enc.image.astype(WORD).tobytes()]
    if embed_profile:
        js = profile.to_json().encode()
        parts += [struct.pack("<I", len(js)), js, struct.pack("<I", zlib.crc32(js))]
    return b"".join(parts)


def parse_file_header(data) -> FileHeader:
    """Check and split the 64-byte header (magic, version, CRC, flags, reserved, dtype)."""
    data = bytes(data[:HEADER_BYTES])
    if len(data) < HEADER_BYTES:
        raise ContainerError(f"truncated (expected at least {HEADER_BYTES} bytes of header, got "
                             f"{len(data)})")
    (magic, version, dtype, flags, n, c, h, w, tile_pixels, n_tiles, slot_words, image_words,
     profile_id, reserved, crc) = _HEADER.unpack(data)
    if magic != MAGIC:
        raise ContainerError(f"bad magic {magic!r}: not an fmcodec container")
    if version != VERSION:
        raise ContainerError(f"unsupported version {version} (this fmcodec reads version "
                             f"{VERSION})")
    if zlib.crc32(data[:60]) != crc:
        raise ContainerError("header CRC mismatch: the file header is corrupt")
    if flags & ~FLAGS_KNOWN or any(reserved):
        raise ContainerError(f"header has unknown flags {flags:#x} or nonzero reserved bytes")
    if dtype not in _DTYPE_NAME:
        raise ContainerError(f"unknown dtype code {dtype}")
    if flags & FLAG_UNBATCHED and n != 1:
        raise ContainerError(f"header marks a (C, H, W) tensor but N = {n}")
    return FileHeader(version, _DTYPE_NAME[dtype], LAYOUTS[flags & FLAG_COMPACTED],
                      bool(flags & FLAG_RELU), bool(flags & FLAG_PROFILE),
                      not flags & FLAG_UNBATCHED, (n, c, h, w), tile_pixels, n_tiles, slot_words,
                      image_words, profile_id)


def _embedded_profile(js: bytes, crc: int) -> Profile:
    if zlib.crc32(js) != crc:
        raise ContainerError("embedded profile CRC mismatch: the profile is corrupt")
    try:
        return Profile.from_dict(json.loads(js.decode()))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ContainerError(f"embedded profile is not valid JSON: {e}") from None
    except ProfileError as e:
        raise ContainerError(f"embedded profile is invalid: {e}") from None


def read_file_bytes(data, profile: Profile | None = None) -> tuple[FileHeader, Profile, np.ndarray]:
    """Parse a .fmc file -> (header, profile, q (P, C) int64).

    Without `profile` the file must embed one. With `profile`, its id must be the container's.
    """
    data = memoryview(data).cast("B")
    hdr = parse_file_header(data)
    image_end = HEADER_BYTES + hdr.image_bytes
    total = image_end
    if hdr.profile_embedded:
        if len(data) < image_end + 4:
            raise ContainerError(f"truncated (expected at least {image_end + 4} bytes, got "
                                 f"{len(data)})")
        (plen,) = struct.unpack_from("<I", data, image_end)
        total = image_end + 4 + plen + 4
    if len(data) != total:
        what = "truncated" if len(data) < total else "trailing bytes"
        raise ContainerError(f"{what} (expected {total} bytes, got {len(data)})")
    if hdr.profile_embedded:
        js = bytes(data[image_end + 4:total - 4])
        (pcrc,) = struct.unpack_from("<I", data, total - 4)
        if profile is None:
            profile = _embedded_profile(js, pcrc)
            if profile.profile_id != hdr.profile_id:
                raise ContainerError(f"profile mismatch: embedded profile id "
                                     f"{profile.profile_id:#010x}, header says "
                                     f"{hdr.profile_id:#010x}")
        elif zlib.crc32(js) != pcrc:
            raise ContainerError("embedded profile CRC mismatch: the profile is corrupt")
    elif profile is None:
        raise ContainerError("the container does not embed its profile: give the profile it was "
                             "encoded with")
    if profile.profile_id != hdr.profile_id:
        raise ContainerError(f"profile mismatch: the container was encoded with profile id "
                             f"{hdr.profile_id:#010x}, the given profile has "
                             f"{profile.profile_id:#010x}")
    _check_header_against(hdr, profile)
    if hdr.n_tiles > hdr.image_words:
        raise ContainerError(f"header says {hdr.n_tiles} tiles in {hdr.image_words} words")
    image = np.frombuffer(data, dtype=WORD, count=hdr.image_words, offset=HEADER_BYTES)
    q = decode_q(image, hdr.shape, profile, check_unused=True)
    return hdr, profile, q


def _check_header_against(hdr: FileHeader, p: Profile) -> None:
    mism = []
    if hdr.dtype != p.dtype:
        mism.append(f"dtype {hdr.dtype} vs {p.dtype}")
    if hdr.layout != p.layout:
        mism.append(f"layout {hdr.layout} vs {p.layout}")
    if hdr.relu != bool(p.relu):
        mism.append(f"relu {hdr.relu} vs {p.relu}")
    if hdr.tile_pixels != p.tile_pixels:
        mism.append(f"tile_pixels {hdr.tile_pixels} vs {p.tile_pixels}")
    if mism:
        raise ContainerError("profile mismatch: header and profile disagree on " + ", ".join(mism))
    n, c, h, w = hdr.shape
    if c != p.channels:
        raise ContainerError(f"shape mismatch: header has {c} channels, the profile {p.channels}")
    tiles = n * tiles_per_image(h, w, p.tile_pixels)
    if tiles != hdr.n_tiles:
        raise ContainerError(f"shape mismatch: shape {hdr.shape} has {tiles} tiles, the header "
                             f"says {hdr.n_tiles}")
    slot = 1 + p.raw_words(p.tile_pixels) if p.layout == "fixed" else 0
    if hdr.slot_words != slot:
        raise ContainerError(f"header slot words {hdr.slot_words}, the profile gives {slot}")


def container_bytes(enc: EncodedTensor, profile: Profile | None = None) -> int:
    """Size of the .fmc file of `enc`: header and DRAM image, plus the profile when given."""
    extra = 8 + len(profile.to_json().encode()) if profile is not None else 0
    return HEADER_BYTES + 8 * enc.image_words + extra
