"""`fmcodec board`: send a real feature map through a board's codec lanes and check every word.

The board runs the bitstream of `make bitstream BOARD=...` (hw/board_top.py); this tool programs
nothing. It asks the board what it carries (INFO), checks the serial link (ECHO), calibrates a
profile for the tensor that fits the board's buffers, writes the configuration (CONFIG), then
sends the tensor tile by tile (TILE) and compares each reply with the golden model word for
word: the container words (tile header and payload) and the decoder's reconstruction. It prints
a verdict with bits/value and the link's throughput.

The check itself, `board_session`, does no I/O: it is a generator that yields request frames and
is sent the reply frames. `run_board` drives it over a serial port (pyserial); sim/tb_board.py
drives the same generator through a UART model on the simulated board top's pins.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmcodec import protocol as P

DEFAULT_LAYER = "layer1.0.conv1.pre"    # (N, 64, 32, 32) int8, from tests/fixtures
REPLY_MARGIN_S = 1.0


class BoardCheckError(RuntimeError):
    """The board cannot run the check (wrong bitstream, tensor does not fit, link broken)."""


@dataclass
class BoardReport:
    info: P.Info
    tiles: int = 0
    values: int = 0
    requests: int = 0
    word_mismatches: int = 0        # container words that differ from the golden model
    value_mismatches: int = 0       # reconstructed values that differ
    status_errors: int = 0          # TILE replies with a status bit set
    first_mismatch: str = ""
    coded_bits: int = 0             # container words received x 64
    enc_cycles: int = 0
    dec_cycles: int = 0
    link_bytes: int = 0             # both directions, framing included
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.tiles > 0 and self.word_mismatches == 0 and self.value_mismatches == 0
                and self.status_errors == 0)

    @property
    def bits_per_value(self) -> float:
        return self.coded_bits / self.values if self.values else float("nan")

    def lines(self) -> list[str]:
        i = self.info
        out = [f"board: {P.DESIGN_NAMES.get(i.design, i.design)}, {i.lanes} lane(s), N = {i.group},"
               f" {i.dtype}, clock {i.clk_hz / 1e6:g} MHz, link {i.baud} baud",
               f"tensor: {self.values} values in {self.tiles} tiles, {self.requests} requests"]
        out.append(f"container: {self.coded_bits // 64} words, {self.bits_per_value:.3f} bits/value"
                   f" (headers included)")
        if self.values:
            out.append(f"lanes: encoder {self.enc_cycles / self.values:.3f} cycles/value, "
                       f"decoder {self.dec_cycles / self.values:.3f} cycles/value "
                       f"(on the board, from the first value in to the last word/value out)")
        if self.seconds > 0:
            out.append(f"link: {self.link_bytes} bytes in {self.seconds:.2f} s = "
                       f"{self.link_bytes / self.seconds / 1e3:.1f} kB/s, "
                       f"{self.values / self.seconds / 1e3:.1f} kvalues/s round trip")
        out += self.notes
        if self.ok:
            out.append("verdict: PASS (every container word and every reconstructed value equals "
                       "the golden model)")
        else:
            out.append(f"verdict: FAIL ({self.word_mismatches} words, {self.value_mismatches} "
                       f"values differ, {self.status_errors} replies flagged errors)"
                       + (f"; first: {self.first_mismatch}" if self.first_mismatch else ""))
        return out


@dataclass
class Golden:
    """What the golden model says for a tensor under a profile."""
    profile: object
    pixels: np.ndarray          # (P, C) input values, raster order
    words: list[np.ndarray]     # per tile: header word and payload words
    recon: np.ndarray           # (P, C) reconstruction
    tile_start: np.ndarray
    tile_count: np.ndarray


def golden_reference(x: np.ndarray, profile) -> Golden:
    from golden.container import encode_q
    from golden.quantizer import dequantize, quantize
    from golden.transform import forward, inverse, to_pixels

    pixels = to_pixels(x)
    q = quantize(forward(pixels, profile), profile)
    enc = encode_q(q, x.shape, profile)
    words = [enc.image[o:o + 1 + n] for o, n in zip(enc.tile_offset.tolist(),
                                                    enc.tile_payload_words.tolist(), strict=True)]
    recon = inverse(dequantize(q, profile), profile)
    return Golden(profile, pixels, words, recon, enc.tile_start, enc.tile_count)


def _check_dtype(x: np.ndarray, info: P.Info) -> None:
    if x.dtype.name != info.dtype:
        raise BoardCheckError(f"the tensor is {x.dtype}; this bitstream's lanes take {info.dtype}")


def check_board_profile(x: np.ndarray, profile, info: P.Info) -> None:
    """A given profile against the tensor and the board's lanes (fmcodec/capacity.py's check,
    with the build the board reports): BoardCheckError naming every mismatch."""
    from fmcodec.capacity import LaneBuild, problems

    _check_dtype(x, info)
    C = x.shape[-3]
    found = []
    if profile.channels != C:
        found.append(f"it is for {profile.channels} channels, the tensor has {C}")
    build = LaneBuild(group=info.group, max_channels=info.max_channels,
                      max_tile_words=info.max_tile_words, dtype=info.dtype)
    found += problems(profile, build, image_pixels=x.shape[-2] * x.shape[-1])
    if found:
        raise BoardCheckError("the profile does not suit this tensor and board: "
                              + "; ".join(found))


def calibrate_for_board(x: np.ndarray, info: P.Info, coder: str = "auto"):
    """A profile for `x` (PCA, the board's group N) whose tiles fit the board's buffers: at most
    one image row, at most `value_depth` values and `word_depth` words (header + raw payload)."""
    import dataclasses

    from golden.calibrate import calibrate

    _check_dtype(x, info)
    C, W = x.shape[-3], x.shape[-1]
    if info.max_channels and C > info.max_channels:
        raise BoardCheckError(f"the tensor has {C} channels; the board's lanes take at most "
                              f"{info.max_channels}")
    if C % info.group:
        raise BoardCheckError(f"the board's group N = {info.group} does not divide C = {C}")
    tp = min(W, info.value_depth // C)
    if tp < 1:
        raise BoardCheckError(f"one pixel of {C} channels does not fit the board's value buffer "
                              f"({info.value_depth} values)")
    profile = calibrate(x, transform="pca", group=info.group, coder=coder, tile_pixels=tp)
    max_raw = min(info.word_depth - 1, info.max_tile_words or info.word_depth)
    while tp > 1 and profile.raw_words(tp) > max_raw:
        tp -= 1
    if profile.raw_words(tp) > max_raw:
        raise BoardCheckError(f"a raw tile of one pixel ({profile.raw_words(1)} words) does not "
                              f"fit the board ({info.word_depth} words buffered, "
                              f"{info.max_tile_words} words a tile)")
    return dataclasses.replace(profile, tile_pixels=tp)


def requests_for(golden: Golden, info: P.Info, max_tiles: int | None = None) -> list[range]:
    """Consecutive tiles grouped into TILE requests that fit the board's buffers."""
    p = golden.profile
    C = p.channels
    groups, start, values, words = [], 0, 0, 0
    n = len(golden.words)
    for t in range(n):
        tv = int(golden.tile_count[t]) * C
        tw = 1 + p.raw_words(int(golden.tile_count[t]))   # worst case: the tile goes raw
        if info.max_tile_words and tw - 1 > info.max_tile_words:
            raise BoardCheckError(f"tile {t} needs up to {tw - 1} payload words; the board's "
                                  f"encoder lane buffers {info.max_tile_words}")
        if tv > info.value_depth or tw > info.word_depth:
            raise BoardCheckError(f"tile {t} ({tv} values, up to {tw} words) does not fit the "
                                  f"board's buffers ({info.value_depth} values, "
                                  f"{info.word_depth} words)")
        full = (values + tv > info.value_depth or words + tw > info.word_depth
                or (max_tiles is not None and t - start >= max_tiles))
        if full:
            groups.append(range(start, t))
            start, values, words = t, 0, 0
        values += tv
        words += tw
    if n:
        groups.append(range(start, n))
    return groups


def board_session(x: np.ndarray, profile=None, *, coder: str = "auto",
                  max_tiles: int | None = None, echo_bytes: int = 64, seed: int = 0,
                  expect_info: Callable[[P.Info], None] | None = None,
                  ) -> Generator[bytes, P.Frame, BoardReport]:
    """The board check as a generator: yields request frames, is sent their reply frames.

    `x` is a (C, H, W) or (N, C, H, W) integer tensor; `profile` defaults to one calibrated on
    `x` to fit the board. Raises BoardCheckError when the board cannot run it, ProtocolError on
    a broken reply; returns the BoardReport.
    """
    info = P.Info.unpack(P.expect_reply((yield P.info_request()), P.INFO))
    if expect_info is not None:
        expect_info(info)
    report = BoardReport(info)
    if info.version != P.VERSION:
        raise BoardCheckError(f"board speaks protocol version {info.version}, this tool "
                              f"{P.VERSION}")

    data = np.random.default_rng(seed).integers(0, 256, min(echo_bytes, info.value_depth),
                                                dtype=np.uint8).tobytes()
    echoed = P.expect_reply((yield P.echo_request(data)), P.ECHO)
    if echoed != data:
        raise BoardCheckError("the link's ECHO came back different: check the baud rate and "
                              "wiring")
    if info.design != P.DESIGN_CODEC:
        raise BoardCheckError(f"the board runs the {P.DESIGN_NAMES.get(info.design, '?')} "
                              f"bitstream; build and program the codec design "
                              f"(make bitstream BOARD=...)")

    x = np.asarray(x)
    if x.ndim == 3:
        x = x[None]
    if profile is None:
        profile = calibrate_for_board(x, info, coder)
    else:
        check_board_profile(x, profile, info)
    golden = golden_reference(x, profile)
    groups = requests_for(golden, info, max_tiles)

    from golden.profile import config_writes

    writes = config_writes(profile, image_pixels=x.shape[2] * x.shape[3])
    for req in P.config_requests(writes, info.word_depth):
        got = P.expect_reply((yield req), P.CONFIG)
        sent = (len(req) - P.HEADER_BYTES - P.CRC_BYTES) // P.CONFIG_WRITE_BYTES
        if len(got) != 2 or int.from_bytes(got, "little") != sent:
            raise P.ProtocolError(f"CONFIG reply counts {int.from_bytes(got, 'little')} "
                                  f"writes, {sent} were sent")

    C = profile.channels
    for tiles in groups:
        rows = slice(int(golden.tile_start[tiles.start]),
                     int(golden.tile_start[tiles.stop - 1] + golden.tile_count[tiles.stop - 1]))
        values = golden.pixels[rows].reshape(-1)
        req = P.tile_request(values, info.dtype, len(tiles))
        reply = yield req
        res = P.parse_tile_result(P.expect_reply(reply, P.TILE), info.dtype, values.size)
        report.link_bytes += len(req) + P.link_bytes(len(reply.payload))
        report.requests += 1
        report.tiles += len(tiles)
        report.values += values.size
        report.enc_cycles += res.enc_cycles
        report.dec_cycles += res.dec_cycles
        report.coded_bits += 64 * res.words.size
        if res.status:
            report.status_errors += 1
            report.first_mismatch = report.first_mismatch or \
                f"tiles {tiles.start}..{tiles.stop - 1}: status {res.status:#04x}"
        want = np.concatenate([golden.words[t] for t in tiles]).astype(np.uint64)
        n = min(want.size, res.words.size)
        bad = int(np.count_nonzero(want[:n] != res.words[:n])) + abs(want.size - res.words.size)
        if bad and not report.first_mismatch:
            i = int(np.flatnonzero(want[:n] != res.words[:n])[0]) if n and \
                (want[:n] != res.words[:n]).any() else n
            got_w = f"{int(res.words[i]):#018x}" if i < res.words.size else "nothing"
            want_w = f"{int(want[i]):#018x}" if i < want.size else "nothing"
            report.first_mismatch = (f"tiles {tiles.start}..{tiles.stop - 1}, word {i}: board "
                                     f"{got_w}, golden {want_w}")
        report.word_mismatches += bad
        want_v = golden.recon[rows].reshape(-1)
        bad_v = want_v != res.recon
        if bad_v.any() and not report.first_mismatch:
            i = int(np.flatnonzero(bad_v)[0])
            report.first_mismatch = (f"tiles {tiles.start}..{tiles.stop - 1}, value {i} "
                                     f"(pixel {rows.start + i // C}, channel {i % C}): board "
                                     f"{int(res.recon[i])}, golden {int(want_v[i])}")
        report.value_mismatches += int(np.count_nonzero(bad_v))
    return report


def drive(session: Generator, transact: Callable[[bytes], P.Frame]) -> BoardReport:
    """Run a session with a blocking `transact(request) -> reply frame`."""
    try:
        request = next(session)
        while True:
            request = session.send(transact(request))
    except StopIteration as stop:
        return stop.value


class SerialLink:
    """Requests and replies over a serial port (pyserial)."""

    def __init__(self, port: str, baud: int):
        try:
            import serial
        except ImportError:
            raise BoardCheckError("fmcodec board needs pyserial (pip install pyserial)") from None
        try:
            self.port = serial.Serial(port, baud, timeout=0.05)
        except (serial.SerialException, OSError) as e:
            raise BoardCheckError(f"cannot open {port}: {e}") from None
        self.baud = baud
        self.parser = P.FrameParser()
        self.port.reset_input_buffer()

    def transact(self, request: bytes, reply_bytes: int = 1 << 16) -> P.Frame:
        self.port.write(request)
        # Time to send the request and the largest reply, 10 bits a byte, plus a margin.
        deadline = time.monotonic() + 10 * (len(request) + reply_bytes) / self.baud \
            + REPLY_MARGIN_S
        while time.monotonic() < deadline:
            frames = self.parser.feed(self.port.read(max(1, self.port.in_waiting)))
            if frames:
                return frames[0]
        raise BoardCheckError("no reply from the board: is the bitstream loaded, are the port "
                              "and the baud rate right?")

    def close(self):
        self.port.close()


def load_default_tensor(images: int = 1) -> np.ndarray:
    from fmcodec.eval.fixtures import FIXTURE

    if not Path(FIXTURE).is_file():
        raise BoardCheckError(f"the bundled feature maps ({FIXTURE}) are missing; pass "
                              f"--tensor FILE")
    with np.load(FIXTURE, allow_pickle=False) as f:
        return np.asarray(f[DEFAULT_LAYER][:images])


def board_baud(board: str) -> int:
    """The host-link rate a board's bitstream is built with (constraints/<board>.py)."""
    try:
        from hw.build import BuildError, load_board
    except ImportError:
        return P.DEFAULT_BAUD
    try:
        return int(load_board(board).BAUD)
    except BuildError as e:
        raise BoardCheckError(str(e)) from None


def run_board(board: str = "icebreaker", port: str | None = None, tensor: str | None = None,
              baud: int | None = None, key: str | None = None, profile: str | None = None,
              coder: str = "auto", out=sys.stdout) -> int:
    """`fmcodec board`: 0 when the board's results equal the golden model, 1 when they differ,
    2 when the check cannot run (with a one-line reason on stderr)."""
    try:
        if port is None:
            raise BoardCheckError("--port is required (the board's serial port)")
        baud = baud or board_baud(board)
        if tensor is None:
            x = load_default_tensor()
            what = f"{DEFAULT_LAYER} (bundled, image 0)"
        else:
            from fmcodec.cli import CliError, load_tensor

            try:
                x = load_tensor(tensor, key)
            except CliError as e:
                raise BoardCheckError(str(e)) from None
            what = tensor
        prof = None
        if profile is not None:
            from golden.profile import Profile, ProfileError

            try:
                prof = Profile.load(profile)
            except ProfileError as e:
                raise BoardCheckError(str(e)) from None
        print(f"fmcodec board: {board} on {port} at {baud} baud, tensor {what} "
              f"{tuple(x.shape)}", file=out)
        link = SerialLink(port, baud)
        try:
            t0 = time.monotonic()
            report = drive(board_session(x, prof, coder=coder), link.transact)
            report.seconds = time.monotonic() - t0
        finally:
            link.close()
    except (BoardCheckError, P.ProtocolError) as e:
        print(f"fmcodec: error: {e}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, file=out)
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_board(port=os.environ.get("FMCODEC_PORT")))
