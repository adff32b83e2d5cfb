"""cocotb testbench of the read path's front: hw/vlc_decoder.py alone (payload words in), or
`ReadFront` = hw/bit_unpacker.py -> hw/vlc_decoder.py (container words in), quantized values out.

The pytest side (tests/test_hw_vlc_decoder.py) builds profiles and q, encodes them with the
golden container (golden.container.encode_q), optionally corrupts tiles, and hands this bench the
word streams. The bench programs the DUT with the profile's configuration writes, streams the
words through `StreamSource` with random valid gaps, takes the values through `StreamSink` with
random ready stalls (its `HandshakeChecker` fails the test on any change while not ready), and
hands every received value back to pytest, where the comparison with the golden q sits.

One run holds several cases (`c<i>_...` arrays), each programmed with its own writes (and
commit) before its words are sent, so many profiles share one simulator start.

Data per case: `writes`; `in_data` (uint64 words), `in_last`, and for the decoder alone
`in_raw`, `in_empty`; `exp_data`, `exp_comp`, `exp_tile_last` (golden q, components, tile ends)
and `exp_check` (1 where the value must match: tiles that were not corrupted). Params: `test`,
`front` (bool), `valid_prob`, `ready_prob`, `cases`; `abort` = {`how`: "reset" or "commit",
`words`: n}: first send case 0's first n words, then reset (or reprogram) mid-tile and run
every case from the start.

Outputs per case: `c<i>_data`, `c<i>_comp`, `c<i>_tile_last` (received), `c<i>_cycles` (from
the clock taking the first word to the clock delivering the last value: fill included),
`c<i>_latency` (clocks from taking the first word to delivering the first value),
`c<i>_status` (decoder status, and `c<i>_unpacker_status` for the front, at the end of the case),
`c<i>_bad_at_tile` (with param `watch_tiles`: the unpacker's bad-tile count as each tile's last
value leaves). Each case
also leaves a record `{test, block, lanes, values, cycles, mismatches, ...}` (sim/tb_framed.py).
"""

from __future__ import annotations

import numpy as np

CLOCK_NS = 10


# -- pytest side ------------------------------------------------------------------------------


def read_front(q_width: int = 16, max_channels: int = 1 << 10, max_classes: int = 16,
               **depths):
    """`ReadFront` (built here so the cocotb side need not import the gateware); `depths`
    (`in_depth`, `out_depth`) go to the decoder."""
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    from hw.bit_unpacker import BitUnpacker, container_word, unpacker_status
    from hw.config import config_signature
    from hw.framing import framed
    from hw.vlc_decoder import VlcDecoder, decoder_status

    class ReadFront(wiring.Component):
        """Unpacker into decoder, both on one configuration stream (a test harness; the lane
        with dequantizer and inverse transform is hw/decoder_lane.py)."""

        def __init__(self):
            super().__init__({
                "cfg": In(config_signature()),
                "i": In(stream.Signature(container_word())),
                "o": Out(stream.Signature(framed(q_width))),
                "unpacker_status": Out(unpacker_status()),
                "status": Out(decoder_status()),
            })

        def elaborate(self, platform):
            m = Module()
            m.submodules.unpacker = unpacker = BitUnpacker()
            m.submodules.decoder = decoder = VlcDecoder(q_width, max_channels, max_classes,
                                                        **depths)
            for block in (unpacker, decoder):    # the configuration is broadcast
                m.d.comb += [block.cfg.valid.eq(self.cfg.valid),
                             block.cfg.payload.eq(self.cfg.payload)]
            wiring.connect(m, wiring.flipped(self.i), unpacker.i)
            wiring.connect(m, unpacker.o, decoder.i)
            wiring.connect(m, decoder.o, wiring.flipped(self.o))
            m.d.comb += [self.unpacker_status.eq(unpacker.status),
                         self.status.eq(decoder.status)]
            return m

    return ReadFront()


def tile_words(enc) -> list[np.ndarray]:
    """Per tile of a golden `EncodedTensor`: its header and payload words, as a reader fetches
    them."""
    image = np.asarray(enc.image, dtype=np.uint64)
    return [image[o:o + 1 + p].copy()
            for o, p in zip(enc.tile_offset.tolist(), enc.tile_payload_words.tolist(),
                            strict=True)]


def reader_stream(tiles) -> dict[str, np.ndarray]:
    """Container words with `last` on each tile's final word (the reader's framing)."""
    data = np.concatenate(tiles) if tiles else np.zeros(0, np.uint64)
    last = np.concatenate([np.arange(t.size) == t.size - 1 for t in tiles]).astype(np.int64)
    return {"data": data.astype(np.uint64), "last": last}


def payload_stream(tiles) -> dict[str, np.ndarray]:
    """What the unpacker hands the decoder for well-formed tiles: payload words with the tile's
    mode, `last`, and one `empty` word for a tile without payload."""
    words, last, raw, empty = [], [], [], []
    for t in tiles:
        mode = (int(t[0]) >> 20) & 3
        payload = t[1:]
        if payload.size == 0:
            payload = np.zeros(1, np.uint64)
            empty += [1]
        else:
            empty += [0] * payload.size
        words.append(payload)
        last += [0] * (payload.size - 1) + [1]
        raw += [int(mode == 1)] * payload.size
    return {"data": np.concatenate(words).astype(np.uint64),
            "last": np.asarray(last, np.int64), "raw": np.asarray(raw, np.int64),
            "empty": np.asarray(empty, np.int64)}


# Ways to damage a tile as a reader delivers it (header word first). Header fields: length bits
# 0..19, mode 20..21, tile number 22..31, CRC 32..63.
CORRUPTIONS = ("payload_bit", "length_bit", "mode_bit", "tile_bit", "crc_bit", "truncate",
               "header_only", "extra_words", "random_word")
_HEADER_BITS = {"length_bit": (0, 20), "mode_bit": (20, 22), "tile_bit": (22, 32),
                "crc_bit": (32, 64)}


def corrupt(tile: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A damaged copy of one tile's words (header + payload); the reader's `last` stays on the
    final word it delivers, so truncation and extra words change the tile's extent."""
    t = np.asarray(tile, np.uint64).copy()
    payload = t.size - 1
    if kind in _HEADER_BITS:
        lo, hi = _HEADER_BITS[kind]
        t[0] ^= np.uint64(1) << np.uint64(rng.integers(lo, hi))
    elif kind == "payload_bit":
        t[1 + rng.integers(payload)] ^= np.uint64(1) << np.uint64(rng.integers(64))
    elif kind == "random_word":
        t[1 + rng.integers(payload)] = np.uint64(rng.integers(0, 1 << 63)) * np.uint64(2) + \
            np.uint64(1)
    elif kind == "truncate":
        t = t[:1 + rng.integers(payload)]
    elif kind == "header_only":
        t = t[:1]
    elif kind == "extra_words":
        extra = rng.integers(0, 1 << 62, size=int(rng.integers(1, 4)), dtype=np.int64)
        t = np.concatenate([t, extra.astype(np.uint64)])
    else:
        raise ValueError(f"unknown corruption {kind!r}")
    return t


def corrupt_tiles(tiles, rng, every: int = 3, kinds=CORRUPTIONS):
    """Damage every `every`-th tile with payload words (starting at tile 1), cycling through
    `kinds`; return the new tile list and {tile: kind}. Tiles after a damaged one stay good."""
    out, bad = list(tiles), {}
    for n, t in enumerate(range(1, len(tiles), every)):
        if tiles[t].size < 2:
            continue
        kind = kinds[n % len(kinds)]
        out[t] = corrupt(tiles[t], kind, rng)
        bad[t] = kind
    return out, bad


def expected_values(q, profile, tile_count, bad_tiles=()) -> dict[str, np.ndarray]:
    """The value stream the decoder must produce for (P, C) q in tiles of `tile_count` pixels;
    `check` is 0 on the values of the tiles in `bad_tiles` (their values are garbage)."""
    q = np.asarray(q, np.int64)
    p, c = q.shape
    ends = np.cumsum(tile_count)
    tile_last = np.zeros((p, c), np.int64)
    tile_last[ends - 1, c - 1] = 1
    tile_of_pixel = np.repeat(np.arange(len(tile_count)), tile_count)
    check = np.ones((p, c), np.int64)
    for t in bad_tiles:
        check[tile_of_pixel == t] = 0
    return {"data": q.reshape(-1), "comp": np.tile(np.arange(c), p),
            "tile_last": tile_last.reshape(-1), "check": check.reshape(-1)}


def case_data(i: int, profile, q, image_pixels: int, tiles, front: bool,
              bad_tiles=()) -> dict[str, np.ndarray]:
    """The `c<i>_` arrays of one case: its writes, input stream and expected values."""
    from golden.container import tiling
    from golden.profile import config_writes

    pixels = q.shape[0]
    til = tiling((pixels // image_pixels, profile.channels, 1, image_pixels),
                 profile.tile_pixels)
    out = {"writes": config_writes(profile, image_pixels=image_pixels).astype(np.int64)}
    stream = reader_stream(tiles) if front else payload_stream(tiles)
    out.update({f"in_{k}": v for k, v in stream.items()})
    exp = expected_values(q, profile, til.count, bad_tiles)
    out.update({f"exp_{k}": v for k, v in exp.items()})
    out["tile_words"] = np.asarray([t.size for t in tiles], np.int64)
    return {f"c{i}_{k}": v for k, v in out.items()}


# -- cocotb side ------------------------------------------------------------------------------


async def _watch_tile_ends(dut, log: list, front: bool) -> None:
    """Per value leaving with `tile_last`: the unpacker's bad-tile count at that clock."""
    from cocotb.triggers import FallingEdge, ReadOnly

    from hw.bit_unpacker import unpacker_status
    from hw.framing import framed
    from sim.streams import Payload

    out = Payload(framed(len(dut.o__payload) - 11))
    status = Payload(unpacker_status()) if front else None
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        if int(dut.o__valid.value) and int(dut.o__ready.value):
            if out.unpack(dut.o__payload.value.to_unsigned())["tile_last"]:
                bad = status.unpack(dut.unpacker_status.value.to_unsigned())["bad_tiles"] \
                    if front else 0
                log.append(bad)


async def _stream_tb(dut) -> None:
    import cocotb
    from cocotb.triggers import ClockCycles

    from hw.bit_unpacker import container_word, payload_word
    from hw.framing import framed
    from sim.runner import load_data, load_params, save_outputs
    from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock
    from sim.tb_framed import program, write_record

    data, params = load_data(), load_params()
    front = bool(params.get("front", False))
    q_width = len(dut.o__payload) - 11
    seed = default_seed()
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    src = StreamSource(dut, "i", shape=container_word() if front else payload_word(),
                       valid_prob=params.get("valid_prob", 1.0), seed=seed)
    snk = StreamSink(dut, "o", shape=framed(q_width), ready_prob=params.get("ready_prob", 1.0),
                     seed=seed ^ 0x5EED)
    ends: list[int] = []
    # The watcher costs a coroutine wake-up per clock: only where the test asks for it.
    watch = bool(params.get("watch_tiles", False))
    watcher = cocotb.start_soon(_watch_tile_ends(dut, ends, front)) if watch else None
    outputs = {}
    total = 0
    fields = ("data", "last") if front else ("data", "last", "raw", "empty")

    def case(i):
        d = {k[len(f"c{i}_"):]: v for k, v in data.items() if k.startswith(f"c{i}_")}
        cols = [d[f"in_{f}"].astype(np.uint64).tolist() for f in fields]
        return d, [dict(zip(fields, row, strict=True)) for row in zip(*cols, strict=True)]

    abort = params.get("abort")
    if abort:
        # Stop in the middle of case 0's tiles (the words sent, the values partly out), then
        # restart: by reset, or by programming again (the commit flushes everything in flight).
        d, words = case(0)
        await program(dut, d["writes"])
        src.send(words[:int(abort["words"])])
        await src.wait_idle(timeout_cycles=100_000)
        await ClockCycles(dut.clk, int(abort.get("cycles", 8)))
        if abort["how"] == "reset":
            src.stop()
            snk.stop()
            await reset(dut)
            src = StreamSource(dut, "i", shape=src.port.codec, valid_prob=src.valid_prob,
                               seed=seed + 1)
            snk = StreamSink(dut, "o", shape=snk.port.codec, ready_prob=snk.ready_prob,
                             seed=seed + 2)
    for i in range(int(params["cases"])):
        d, words = case(i)
        await program(dut, d["writes"])
        if abort and i == 0:
            await ClockCycles(dut.clk, 2)
            total = len(snk.received)       # values of the aborted stream are not compared
        n = len(d["exp_data"])
        sent0, ends0 = len(src.sent_times_ns), len(ends)
        src.send(words)
        budget = 2000 + 40 * (n + len(words))
        await snk.receive(total + n, timeout_cycles=budget)
        await src.wait_idle(timeout_cycles=budget)
        await ClockCycles(dut.clk, 40)
        extra = len(snk.received) - total - n
        assert extra == 0, f"case {i}: {extra} values more than the tiles hold"
        got = snk.received[total:total + n]
        arr = {k: np.asarray([g[k] for g in got], np.int64) for k in ("data", "comp",
                                                                       "tile_last")}
        cycles = int(round((snk.received_times_ns[total + n - 1] - src.sent_times_ns[sent0])
                           / CLOCK_NS)) + 1
        check = d["exp_check"].astype(bool)
        mismatches = int(np.count_nonzero((arr["data"] != d["exp_data"]) & check)
                         + np.count_nonzero(arr["comp"] != d["exp_comp"])
                         + np.count_nonzero(arr["tile_last"] != d["exp_tile_last"]))
        for k, v in arr.items():
            outputs[f"c{i}_{k}"] = v
        outputs[f"c{i}_cycles"] = cycles
        outputs[f"c{i}_latency"] = int(round((snk.received_times_ns[total]
                                              - src.sent_times_ns[sent0]) / CLOCK_NS))
        outputs[f"c{i}_status"] = int(dut.status.value.to_unsigned())
        if front:
            outputs[f"c{i}_unpacker_status"] = int(dut.unpacker_status.value.to_unsigned())
        outputs[f"c{i}_bad_at_tile"] = np.asarray(ends[ends0:], np.int64)
        write_record({
            "test": f"{params.get('test', 'vlc_decoder')}-case{i}",
            "block": "BitUnpacker+VlcDecoder" if front else "VlcDecoder", "lanes": 1,
            "values": n, "cycles": cycles, "cycles_per_value": cycles / max(n, 1),
            "mismatches": mismatches, "words": len(words),
            "valid_prob": params.get("valid_prob", 1.0),
            "ready_prob": params.get("ready_prob", 1.0), "seed": seed,
        })
        total += n
    if watcher is not None:
        watcher.cancel()
    save_outputs(**outputs)


try:
    import cocotb as _cocotb
except ImportError:  # pragma: no cover - the pytest side runs without cocotb too
    pass
else:
    @_cocotb.test()
    async def vlc_decoder_stream(dut):
        """Program, stream every case's words, collect every value (see the module doc)."""
        await _stream_tb(dut)
