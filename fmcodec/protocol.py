"""The host link's framed protocol, host side (the board side is hw/host_link.py).

Pure Python and free of I/O: requests are built as bytes, replies are parsed from bytes, so the
same code drives a real board over a serial port (fmcodec/board.py) and the simulated board top
through a UART model (sim/tb_board.py). hw/host_link.py takes its numbers from here.

Frame (both directions)::

    0xA5 | code u8 | length u16 | payload (length bytes) | crc u16

Multi-byte fields are little endian. `crc` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial
value 0xFFFF, no reflection, no final XOR; Python's `binascii.crc_hqx(data, 0xFFFF)`) over
`code`, `length` and `payload`.

Requests and their replies (reply code = request code | 0x80; any failure answers ERROR):

=========  =========================================  ==========================================
request    payload                                    reply payload
=========  =========================================  ==========================================
INFO       (none)                                     `Info` (INFO_BYTES bytes)
ECHO       up to `value_depth` bytes                  the same bytes
CONFIG     k x (address u32, data u32), k <= words    writes applied u16
TILE       tiles u16, values (dtype: 1 or 2 bytes)    status u8, words u16, encoder cycles u32,
                                                      decoder cycles u32, the container words
                                                      (u64 each), the reconstruction (dtype)
ERROR      (board to host only)                       error code u8, request code u8
=========  =========================================  ==========================================

A request is checked whole (length, checksum) before the board acts on it: configuration writes
are held in the board's word buffer and reach the codec only after their frame checked good. A
TILE request carries `tiles` whole codec tiles (the profile's tile_pixels pixels each, the last
tile of an image shorter); the encoder's words for them come back, then the decoder's
reconstruction of those words. A frame that stalls for FRAME_TIMEOUT_S is abandoned (ERROR
TIMEOUT) and the board hunts for the next 0xA5.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np

SYNC = 0xA5
VERSION = 1
HEADER_BYTES = 4            # sync, code, length
CRC_BYTES = 2
MAX_PAYLOAD = 0xFFFF
FRAME_TIMEOUT_S = 0.05      # a frame whose next byte takes longer than this is abandoned
DEFAULT_BAUD = 1_000_000

# Request codes; the reply to a good request is `code | REPLY`.
INFO, ECHO, CONFIG, TILE = 0x01, 0x02, 0x03, 0x04
REPLY = 0x80
ERROR = 0xFF
REQUESTS = (INFO, ECHO, CONFIG, TILE)

# Error codes (first payload byte of ERROR).
ERR_CHECKSUM = 1    # the frame's CRC did not match
ERR_LENGTH = 2      # length not allowed for the request (too long for a buffer, not a multiple)
ERR_COMMAND = 3     # unknown request code
ERR_TIMEOUT = 4     # the frame stalled before its end
ERR_NO_CODEC = 5    # TILE sent to a build without codec lanes
ERR_STALL = 6       # a codec lane did not finish within its cycle limit
ERROR_NAMES = {
    ERR_CHECKSUM: "checksum mismatch", ERR_LENGTH: "bad length", ERR_COMMAND: "unknown command",
    ERR_TIMEOUT: "frame timeout", ERR_NO_CODEC: "no codec lanes in this bitstream",
    ERR_STALL: "codec lane stalled",
}

# TILE reply status bits.
STATUS_DECODE_ERROR = 1 << 0    # the decoder lane flagged a malformed tile
STATUS_WORD_OVERFLOW = 1 << 1   # the encoder produced more words than the word buffer holds

# Designs a bitstream can carry (Info.design).
DESIGN_LINK, DESIGN_CODEC = 1, 2
DESIGN_NAMES = {DESIGN_LINK: "link (no codec lanes)", DESIGN_CODEC: "codec"}

# Value encodings on the link, by the container's dtype code (docs/FORMAT.md).
DTYPES = ("int8", "uint8", "int16")
_DTYPE_NP = {"int8": "<i1", "uint8": "<u1", "int16": "<i2"}

CRC16_POLY = 0x1021
CONFIG_WRITE_BYTES = 8
TILE_HEADER_BYTES = 2       # tiles u16
RESULT_HEADER_BYTES = 11    # status u8, words u16, encoder cycles u32, decoder cycles u32
WORD_BYTES = 8

_INFO = struct.Struct("<BBBBHHIIBHH")


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data` (continue a running CRC by passing it as `crc`)."""
    return binascii.crc_hqx(bytes(data), crc)


def value_bytes(dtype: str) -> int:
    return np.dtype(_DTYPE_NP[dtype]).itemsize


class ProtocolError(RuntimeError):
    """A reply that is malformed, unexpected, or an ERROR reply from the board."""


class BoardErrorReply(ProtocolError):
    """The board answered ERROR."""

    def __init__(self, code: int, request: int):
        self.code, self.request = code, request
        name = ERROR_NAMES.get(code, f"error {code}")
        super().__init__(f"board answered ERROR to request {request:#04x}: {name}")


@dataclass(frozen=True)
class Frame:
    code: int
    payload: bytes


def encode_frame(code: int, payload: bytes = b"") -> bytes:
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    body = struct.pack("<BH", code, len(payload)) + payload
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


KNOWN_CODES = frozenset((*REQUESTS, *(c | REPLY for c in REQUESTS), ERROR))


class FrameParser:
    """Bytes in, whole frames out. Bytes before a sync byte are skipped; a sync byte followed by
    an unknown code, or starting a frame whose CRC fails, is taken for data and skipped too, and
    the search goes on from the next byte (`skipped`, `bad_crc` count them)."""

    def __init__(self, codes=KNOWN_CODES):
        self._buf = bytearray()
        self.codes = frozenset(codes)
        self.skipped = 0
        self.bad_crc = 0

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while True:
            start = self._buf.find(SYNC)
            if start < 0:
                self.skipped += len(self._buf)
                self._buf.clear()
                return frames
            if start:
                self.skipped += start
                del self._buf[:start]
            if len(self._buf) >= 2 and self._buf[1] not in self.codes:
                self.skipped += 1
                del self._buf[:1]
                continue
            if len(self._buf) < HEADER_BYTES:
                return frames
            code, length = struct.unpack_from("<BH", self._buf, 1)
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self._buf) < end:
                return frames
            (crc,) = struct.unpack_from("<H", self._buf, end - CRC_BYTES)
            if crc16(self._buf[1:end - CRC_BYTES]) != crc:
                # Not a frame after all (or a damaged one): resynchronize after this sync byte.
                self.bad_crc += 1
                self.skipped += 1
                del self._buf[:1]
                continue
            frames.append(Frame(code, bytes(self._buf[HEADER_BYTES:end - CRC_BYTES])))
            del self._buf[:end]

    @property
    def pending(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)


# -- requests ------------------------------------------------------------------------------------

def info_request() -> bytes:
    return encode_frame(INFO)


def echo_request(data: bytes) -> bytes:
    return encode_frame(ECHO, data)


def config_payload(writes) -> bytes:
    w = np.asarray(writes, dtype=np.uint64).reshape(-1, 2)
    if w.size and (w[:, 0].max() >= 1 << 20 or w[:, 1].max() >= 1 << 32):
        raise ValueError("a configuration write has a 20-bit address and 32-bit data")
    return w.astype("<u4").tobytes()


def config_requests(writes, max_writes: int) -> list[bytes]:
    """The CONFIG frames for `(address, data)` pairs, at most `max_writes` to a frame, in order."""
    w = np.asarray(writes, dtype=np.uint64).reshape(-1, 2)
    max_writes = min(max_writes, MAX_PAYLOAD // CONFIG_WRITE_BYTES)
    if max_writes < 1:
        raise ValueError("max_writes must be at least 1")
    return [encode_frame(CONFIG, config_payload(w[i:i + max_writes]))
            for i in range(0, len(w), max_writes)]


def encode_values(values, dtype: str) -> bytes:
    v = np.asarray(values).reshape(-1)
    info = np.iinfo(_DTYPE_NP[dtype])
    if v.size and (v.min() < info.min or v.max() > info.max):
        raise ValueError(f"values outside the {dtype} range")
    return v.astype(_DTYPE_NP[dtype]).tobytes()


def decode_values(data: bytes, dtype: str) -> np.ndarray:
    return np.frombuffer(data, dtype=_DTYPE_NP[dtype]).astype(np.int64)


def tile_request(values, dtype: str, tiles: int) -> bytes:
    """A TILE frame: `values` (the pixels of `tiles` whole tiles, channel order) in `dtype`."""
    if not 1 <= tiles < 1 << 16:
        raise ValueError(f"tiles {tiles} outside 1..65535")
    return encode_frame(TILE, struct.pack("<H", tiles) + encode_values(values, dtype))


# -- replies -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Info:
    """What a bitstream tells about itself (the INFO reply)."""
    version: int
    design: int
    lanes: int
    dtype: str
    value_depth: int    # values a TILE request may carry (ECHO: bytes)
    word_depth: int     # container words a TILE reply may carry; CONFIG writes per frame
    clk_hz: int
    baud: int
    group: int          # transform group N of the lanes (0 in a link-only design)
    max_channels: int   # widest layer the lanes take (0 in a link-only design)
    max_tile_words: int  # largest raw tile payload the encoder lane buffers (0: no lanes)

    def pack(self) -> bytes:
        return _INFO.pack(self.version, self.design, self.lanes, DTYPES.index(self.dtype),
                          self.value_depth, self.word_depth, self.clk_hz, self.baud, self.group,
                          self.max_channels, self.max_tile_words)

    @classmethod
    def unpack(cls, payload: bytes) -> Info:
        if len(payload) != _INFO.size:
            raise ProtocolError(f"INFO reply of {len(payload)} bytes, expected {_INFO.size}")
        version, design, lanes, dt, vdepth, wdepth, clk, baud, group, maxc, maxw = \
            _INFO.unpack(payload)
        if dt >= len(DTYPES):
            raise ProtocolError(f"INFO reply names unknown dtype code {dt}")
        return cls(version, design, lanes, DTYPES[dt], vdepth, wdepth, clk, baud, group, maxc,
                   maxw)

    @property
    def max_tile_payload(self) -> int:
        return TILE_HEADER_BYTES + self.value_depth * value_bytes(self.dtype)


INFO_BYTES = _INFO.size


@dataclass
class TileResult:
    status: int
    words: np.ndarray           # uint64 container words: each tile's header and payload
    enc_cycles: int
    dec_cycles: int
    recon: np.ndarray           # int64 reconstruction, channel order, as sent


def parse_tile_result(payload: bytes, dtype: str, n_values: int) -> TileResult:
    if len(payload) < RESULT_HEADER_BYTES:
        raise ProtocolError(f"TILE reply of {len(payload)} bytes is shorter than its header")
    status, nwords, enc, dec = struct.unpack_from("<BHII", payload)
    vb = value_bytes(dtype)
    expect = RESULT_HEADER_BYTES + WORD_BYTES * nwords + vb * n_values
    if len(payload) != expect:
        raise ProtocolError(f"TILE reply of {len(payload)} bytes, expected {expect} "
                            f"({nwords} words, {n_values} values)")
    w0 = RESULT_HEADER_BYTES
    w1 = w0 + WORD_BYTES * nwords
    words = np.frombuffer(payload[w0:w1], dtype="<u8").astype(np.uint64)
    return TileResult(status, words, enc, dec, decode_values(payload[w1:], dtype))


def expect_reply(frame: Frame, request: int) -> bytes:
    """The payload of the reply to `request`; BoardErrorReply for ERROR, ProtocolError else."""
    if frame.code == ERROR:
        if len(frame.payload) != 2:
            raise ProtocolError(f"ERROR reply of {len(frame.payload)} bytes, expected 2")
        raise BoardErrorReply(frame.payload[0], frame.payload[1])
    if frame.code != request | REPLY:
        raise ProtocolError(f"reply code {frame.code:#04x} to request {request:#04x}, "
                            f"expected {request | REPLY:#04x}")
    return frame.payload


def link_bytes(frame_payload_bytes: int) -> int:
    """Bytes on the wire for a frame with this payload."""
    return HEADER_BYTES + frame_payload_bytes + CRC_BYTES
