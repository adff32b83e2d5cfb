"""cocotb testbench of the board top (hw/board_top.py) with a UART model on its serial pins.

The host side is the project's own: requests are built and replies parsed by fmcodec/protocol.py,
and the codec check is fmcodec/board.py's `board_session`, the generator `fmcodec board` drives
over a real serial port. Here `UartHost` drives it bit by bit on the simulated `rx`/`tx` pins,
so the board check is tested without a board.

Tests (run from tests/test_hw_board.py through sim/runner.py):

- `loopback_echo`: LoopbackCore sends back every byte (the UART blocks against the model).
- `link_protocol`: BoardCore without lanes: INFO, ECHO, CONFIG (every write checked on
  `cfg_tap`), and every error path (checksum, length, unknown command, TILE without lanes, a
  stalled frame, garbage before a frame), each followed by a good request.
- `board_check`: BoardCore with the codec lanes: `board_session` on a real feature map; every
  container word and reconstructed value must equal the golden model.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import Event, FallingEdge, First, ReadOnly, Timer

from fmcodec import protocol as P
from sim.runner import load_data, load_params, save_outputs
from sim.streams import reset, start_clock

PERIOD_NS = 10


class UartHost:
    """The host's serial port on the DUT's pins: 8N1 at `divisor` clock periods per bit."""

    def __init__(self, dut, divisor: int, period_ns: int = PERIOD_NS):
        self.dut = dut
        self.bit_ns = divisor * period_ns
        self.parser = P.FrameParser()
        self.frames: list[P.Frame] = []
        self.received = bytearray()
        self.framing_errors = 0
        self.sent_bytes = 0
        self._got = Event()
        dut.rx.value = 1
        self._task = cocotb.start_soon(self._receive())

    async def send(self, data: bytes) -> None:
        for byte in data:
            for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
                self.dut.rx.value = bit
                await Timer(self.bit_ns, unit="ns")
        self.sent_bytes += len(data)

    async def _receive(self) -> None:
        while True:
            await FallingEdge(self.dut.tx)
            await Timer(self.bit_ns // 2, unit="ns")
            if int(self.dut.tx.value) != 0:
                continue        # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(self.dut.tx.value) << i
            await Timer(self.bit_ns, unit="ns")
            if int(self.dut.tx.value) != 1:
                self.framing_errors += 1
                continue
            self.received.append(byte)
            self.frames += self.parser.feed(bytes([byte]))
            if self.frames:
                self._got.set()

    async def reply(self, timeout_ns: float) -> P.Frame:
        if not self.frames:
            self._got.clear()
            await First(self._got.wait(), Timer(int(timeout_ns), unit="ns"))
        if not self.frames:
            raise AssertionError(f"no reply frame within {timeout_ns / 1e3:.0f} us "
                                 f"({len(self.received)} bytes received so far)")
        return self.frames.pop(0)

    def reply_time_ns(self, request: bytes, reply_bytes: int, extra_cycles: int = 0) -> float:
        return (10 * (len(request) + reply_bytes + 16)) * self.bit_ns \
            + (extra_cycles + 1000) * PERIOD_NS

    async def transact(self, request: bytes, reply_bytes: int = 64,
                       extra_cycles: int = 0) -> P.Frame:
        await self.send(request)
        return await self.reply(self.reply_time_ns(b"", reply_bytes, extra_cycles))


async def _start(dut, params) -> UartHost:
    dut.rx.value = 1
    await start_clock(dut, PERIOD_NS)
    await reset(dut)
    return UartHost(dut, params["divisor"])


@cocotb.test()
async def loopback_echo(dut):
    params = load_params()
    host = await _start(dut, params)
    data = bytes(np.random.default_rng(params.get("seed", 1)).integers(0, 256, 300,
                                                                       dtype=np.uint8))
    await host.send(data)
    # The transmitter keeps pace with the receiver, so the last byte is one character behind.
    await Timer(25 * host.bit_ns, unit="ns")
    assert bytes(host.received) == data, "loopback returned different bytes"
    assert host.framing_errors == 0
    assert int(dut.error.value) == 0


class ConfigMonitor:
    """Collects the configuration writes shown on `cfg_tap` (valid bit 0, addr 1..20,
    data 21..52), sampled after each falling clock edge."""

    def __init__(self, dut):
        self.dut = dut
        self.writes: list[tuple[int, int]] = []
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        while True:
            await FallingEdge(self.dut.clk)
            await ReadOnly()
            tap = self.dut.cfg_tap.value.to_unsigned()
            if tap & 1:
                self.writes.append(((tap >> 1) & 0xFFFFF, (tap >> 21) & 0xFFFFFFFF))

    def stop(self):
        self._task.cancel()


async def _expect_error(host: UartHost, request: bytes, code: int, what: str, dut=None):
    frame = await host.transact(request)
    assert frame.code == P.ERROR, f"{what}: expected ERROR, got reply {frame.code:#04x}"
    assert frame.payload[0] == code, \
        f"{what}: expected error {P.ERROR_NAMES[code]!r}, got {frame.payload[0]}"
    if dut is not None:
        await Timer(2 * host.bit_ns, unit="ns")
        assert int(dut.error.value) == 1, f"{what}: error pin not set"


@cocotb.test()
async def link_protocol(dut):
    params = load_params()
    host = await _start(dut, params)
    rng = np.random.default_rng(params.get("seed", 1))
    vdepth, wdepth = params["value_depth"], params["word_depth"]

    info = P.Info.unpack(P.expect_reply(await host.transact(P.info_request()), P.INFO))
    assert info == P.Info(**params["info"]), f"INFO {info} != {params['info']}"

    # ECHO: a full buffer (sync bytes inside the payload), then an empty one.
    data = bytes(rng.integers(0, 256, vdepth, dtype=np.uint8))
    data = bytes([P.SYNC]) + data[1:]
    got = P.expect_reply(await host.transact(P.echo_request(data), vdepth + 8), P.ECHO)
    assert got == data, "ECHO payload differs"
    assert P.expect_reply(await host.transact(P.echo_request(b"")), P.ECHO) == b""

    # CONFIG: more writes than one frame holds; every write reaches the configuration port.
    writes = np.stack([rng.integers(0, 1 << 20, wdepth + 5), rng.integers(0, 1 << 32, wdepth + 5)],
                      axis=1).astype(np.uint64)
    monitor = ConfigMonitor(dut)
    for req in P.config_requests(writes, wdepth):
        n = (len(req) - P.HEADER_BYTES - P.CRC_BYTES) // P.CONFIG_WRITE_BYTES
        got = P.expect_reply(await host.transact(req), P.CONFIG)
        assert int.from_bytes(got, "little") == n
    monitor.stop()
    expect = [(int(a), int(d)) for a, d in writes]
    assert monitor.writes == expect, \
        f"configuration writes differ: {len(monitor.writes)} seen, {len(expect)} sent"
    assert int(dut.error.value) == 0

    # Errors, each followed by a good request.
    await _expect_error(host, P.tile_request(np.zeros(8, np.int64), params["dtype"], 1),
                        P.ERR_NO_CODEC, "TILE without lanes", dut)
    good = P.echo_request(b"after an error")
    assert P.expect_reply(await host.transact(good), P.ECHO) == b"after an error"
    assert int(dut.error.value) == 0, "error pin still set after a good reply"

    bad = bytearray(P.echo_request(b"checksum"))
    bad[-1] ^= 0x40
    await _expect_error(host, bytes(bad), P.ERR_CHECKSUM, "bad checksum", dut)
    await _expect_error(host, P.encode_frame(0x33, b"xyz"), P.ERR_COMMAND, "unknown command")
    await _expect_error(host, P.echo_request(bytes(vdepth + 1)), P.ERR_LENGTH, "ECHO too long")
    await _expect_error(host, P.encode_frame(P.CONFIG, bytes(7)), P.ERR_LENGTH,
                        "CONFIG not whole writes")
    await _expect_error(host, P.encode_frame(P.INFO, b"\x00"), P.ERR_LENGTH, "INFO with payload")

    # Garbage before a frame is skipped.
    await host.send(bytes([0x00, 0x13, 0xFF, 0x5A]))
    info2 = P.Info.unpack(P.expect_reply(await host.transact(P.info_request()), P.INFO))
    assert info2 == info

    # A frame that stalls is abandoned after the frame timeout, then the link works again.
    stalled = P.echo_request(b"0123456789")[:8]
    await host.send(stalled)
    timeout_ns = params["frame_timeout_s"] * 1e9 * 1.5 + 100 * host.bit_ns
    frame = await host.reply(timeout_ns)
    assert frame.code == P.ERROR and frame.payload[0] == P.ERR_TIMEOUT, \
        f"stalled frame: got {frame}"
    assert P.expect_reply(await host.transact(good), P.ECHO) == b"after an error"
    assert host.framing_errors == 0
    assert host.parser.bad_crc == 0, "a reply frame had a bad CRC"


@cocotb.test()
async def board_check(dut):
    import json

    from fmcodec.board import board_session
    from golden.profile import Profile

    params = load_params()
    data = load_data()
    host = await _start(dut, params)
    x = data["x"]
    profile = Profile.from_dict(json.loads(params["profile"])) if "profile" in params else None
    session = board_session(x, profile, max_tiles=params.get("max_tiles"),
                            echo_bytes=params.get("echo_bytes", 64))
    request = next(session)
    try:
        while True:
            # Generous: the reply's size is unknown before it comes; the lanes run first.
            frame = await host.transact(request, reply_bytes=1 << 14,
                                        extra_cycles=1 << 17)
            dut._log.info(f"request {request[1]:#04x} ({len(request)} bytes): reply "
                          f"{frame.code:#04x} ({len(frame.payload)} bytes)")
            request = session.send(frame)
    except StopIteration as stop:
        report = stop.value
    save_outputs(ok=report.ok, word_mismatches=report.word_mismatches,
                 value_mismatches=report.value_mismatches, status_errors=report.status_errors,
                 tiles=report.tiles, requests=report.requests, values=report.values,
                 coded_bits=report.coded_bits,
                 enc_cycles=report.enc_cycles, dec_cycles=report.dec_cycles,
                 lines=np.array(report.lines()))
    assert report.ok, "\n".join(report.lines())
