"""Testbench for the encoder and decoder lanes: configuration, one stream in, one stream out.

Both lanes are driven the same way: program the profile's configuration writes, stream the input
through `StreamSource` with random valid gaps and collect the output through `StreamSink` with
random ready stalls (its handshake checker fails the run on any payload change while not ready).
Every received beat goes back to pytest, where the single comparison with the golden model sits.
Each run leaves a record `{test, block, lanes, values, cycles, mismatches, ...}` (see
sim/tb_framed.py `write_record`); `cycles` runs from the first input beat taken to the last
output beat delivered, pipeline fill included, and `values` counts tensor values either way, so
cycles/value is comparable between the encoder (values in) and the decoder (values out).

Pytest side: `encoder_case` and `decoder_case` turn a tensor and a profile into the data and
parameters of a run, with the golden expectation.
"""

from __future__ import annotations

import cocotb
import numpy as np

from sim.tb_framed import CLOCK_NS, program, write_record

# -- pytest side ---------------------------------------------------------------------------------


def golden_tiles(enc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The container words of every tile in tensor order (header, payload), with the `first`
    (header) and `last` (tile's final word) flags: the lanes' word streams."""
    words, first, last = [], [], []
    for off, n in zip(enc.tile_offset, enc.tile_payload_words, strict=True):
        off = int(enc.table_words + off) if enc.layout == "compacted" else int(off)
        w = enc.image[off: off + 1 + int(n)]
        words.append(w)
        f = np.zeros(w.size, dtype=np.int64)
        f[0] = 1
        e = np.zeros(w.size, dtype=np.int64)
        e[-1] = 1
        first.append(f)
        last.append(e)
    return (np.concatenate(words).view(np.int64), np.concatenate(first), np.concatenate(last))


def encoder_case(x: np.ndarray, profile, name: str, valid_prob=1.0, ready_prob=1.0):
    """(data, params, expected) for the encoder lane on tensor `x` (N, C, H, W)."""
    from golden import codec
    from golden.profile import config_writes
    from golden.transform import to_pixels

    enc = codec.encode_tensor(x, profile)
    words, first, last = golden_tiles(enc)
    data = {
        "writes": config_writes(profile, image_pixels=x.shape[2] * x.shape[3]).astype(np.int64),
        "in_data": to_pixels(x).reshape(-1),
    }
    expected = {"data": words, "first": first, "last": last}
    params = {"test": name, "block": "encoder_lane", "valid_prob": valid_prob,
              "ready_prob": ready_prob, "values": int(x.size), "n_out": int(words.size)}
    return data, params, expected, enc


def decoder_case(x: np.ndarray, profile, name: str, valid_prob=1.0, ready_prob=1.0,
                 words: np.ndarray | None = None):
    """(data, params, expected) for the decoder lane: the golden container of `x` in (or the
    given `words`, e.g. corrupted), the golden reconstruction out."""
    from golden import codec
    from golden.profile import config_writes
    from golden.transform import to_pixels

    enc = codec.encode_tensor(x, profile)
    gw, _, last = golden_tiles(enc)
    xh = codec.decode(codec.to_file_bytes(enc, profile, embed_profile=False), profile)
    pix = to_pixels(xh)
    c = profile.channels
    tile_last = np.zeros(pix.shape, dtype=np.int64)
    tile_last[(enc.tile_start + enc.tile_count - 1), c - 1] = 1
    data = {
        "writes": config_writes(profile, image_pixels=x.shape[2] * x.shape[3]).astype(np.int64),
        "in_data": gw if words is None else words,
        "in_last": last,
    }
    expected = {"data": pix.reshape(-1), "comp": np.tile(np.arange(c), pix.shape[0]),
                "tile_last": tile_last.reshape(-1)}
    params = {"test": name, "block": "decoder_lane", "valid_prob": valid_prob,
              "ready_prob": ready_prob, "values": int(x.size), "n_out": int(pix.size)}
    return data, params, expected, enc


def check_other_tiles_exact(out: dict, expected: dict, tile_values: int, bad_tile: int) -> None:
    """A decoder run over a container with tile `bad_tile` damaged (all tiles `tile_values`
    values): the error flag is up, every other tile's values are exact, and `comp` and
    `tile_last` are exact throughout (a bad tile still gives exactly its values)."""
    assert int(out["extra"]) == 0, f"{int(out['extra'])} beats more than expected"
    assert int(out["error"]) == 1
    good = np.ones(len(expected["data"]), dtype=bool)
    good[bad_tile * tile_values:(bad_tile + 1) * tile_values] = False
    assert np.array_equal(out["data"][good], np.asarray(expected["data"])[good])
    assert np.array_equal(out["comp"], expected["comp"])
    assert np.array_equal(out["tile_last"], expected["tile_last"])


# -- cocotb side ---------------------------------------------------------------------------------


async def _run_lane(dut, in_shape, out_shape, out_fields, inputs):
    from cocotb.triggers import ClockCycles

    from sim.runner import load_data, load_params, save_outputs
    from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock

    data, params = load_data(), load_params()
    seed = default_seed()
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    src = StreamSource(dut, "i", shape=in_shape, seed=seed, valid_prob=params["valid_prob"])
    snk = StreamSink(dut, "o", shape=out_shape, seed=seed ^ 0x5EED,
                     ready_prob=params["ready_prob"])
    await program(dut, data["writes"])
    n_out = params["n_out"]
    src.send(inputs(data))
    # A lane slower than one value per clock (hw/compact_encoder.py, hw/compact_decoder.py)
    # gives its clocks per value.
    per_value = params.get("timeout_cycles_per_value", 40)
    await snk.receive(n_out, timeout_cycles=64 * 1000 + per_value * max(n_out, params["values"]))
    await ClockCycles(dut.clk, 64)
    extra = len(snk.received) - n_out
    cycles = int(round((snk.received_times_ns[n_out - 1] - src.sent_times_ns[0]) / CLOCK_NS)) + 1
    snk.stop()
    src.stop()
    got = {f: np.asarray([g[f] if isinstance(g, dict) else g for g in snk.received[:n_out]],
                         dtype=np.uint64 if f == "data" and out_fields == ("data", "first", "last")
                         else np.int64) for f in out_fields}
    # The encoder lane has an `error` port; the decoder lane a `status` struct whose first
    # field (bit 0) is `error`.
    ports = {"error": int(dut.status.value) & 1 if params["block"] == "decoder_lane"
             else int(dut.error.value)}
    record = {"test": params["test"], "block": params["block"], "lanes": 1,
              "values": params["values"], "cycles": cycles,
              "cycles_per_value": cycles / params["values"], "valid_prob": params["valid_prob"],
              "ready_prob": params["ready_prob"], "seed": seed, "extra": extra, **ports}
    save_outputs(**got, cycles=cycles, extra=extra, **ports)
    return record


@cocotb.test()
async def encoder_lane(dut):
    """Raw channel values in, container words out."""
    from amaranth.hdl import signed

    from hw.bit_packer import packed_word

    width = len(dut.i__payload)
    rec = await _run_lane(dut, signed(width), packed_word(), ("data", "first", "last"),
                          lambda d: [int(v) for v in d["in_data"]])
    write_record(rec)


@cocotb.test()
async def decoder_lane(dut):
    """Container words in, reconstructed channel values out."""
    from hw.bit_unpacker import container_word
    from hw.framing import framed

    width = len(dut.o__payload) - 11   # framed: data, comp (10 bits), tile_last
    rec = await _run_lane(
        dut, container_word(), framed(width), ("data", "comp", "tile_last"),
        lambda d: [{"data": int(w) & (2**64 - 1), "last": int(e)}
                   for w, e in zip(d["in_data"], d["in_last"], strict=True)])
    write_record(rec)


# -- P lanes (hw/multi_lane.py) ------------------------------------------------------------------
#
# One run holds several segments (`s<k>_...` arrays), back to back on one simulator start: each
# programs the lanes (a layer change), streams its tensor and collects every output; a segment
# with `reset_after` = n instead streams only the first n inputs of its lanes (so it stops in the
# middle of a tile), waits, and resets the DUT: the segments after it must come out exact.
#
# EncoderLanes: inputs `s<k>_in<p>_data` (lane p's values), outputs `s<k>_out_{data,first,last}`.
# DecoderLanes: inputs `s<k>_in_{data,last}` (container words), outputs
# `s<k>_out<p>_{data,comp,tile_last}`. Also `s<k>_cycles` (first input taken to last output
# delivered, fill included) and `s<k>_error` (the error flag at the segment's end).


def fixture_tensor(key: str) -> np.ndarray:
    """Every image of one bundled real feature map (tests/fixtures/featuremaps.npz), or, when the
    fixture is absent, four correlated synthetic images of the same shape."""
    from sim.tb_framed import FIXTURE

    if FIXTURE.is_file():
        with np.load(FIXTURE) as f:
            if key in f.files:
                return np.ascontiguousarray(f[key])
    from golden.synthetic import correlated_tensor

    shapes = {"conv1.pre": (64, 32, 32), "layer1.0.conv1.pre": (64, 32, 32),
              "layer1.1.conv2.pre": (64, 32, 32)}
    return correlated_tensor(*shapes[key], batch=4, seed=1)


def lane_rows(shape, tile_pixels: int, lanes: int) -> list[np.ndarray]:
    """Per lane p of P: the tensor's pixel rows (raster order) of the tiles p, p + P, ..."""
    from golden.container import tiling

    t = tiling(shape, tile_pixels)
    out = []
    for p in range(lanes):
        starts, counts = t.start[p::lanes], t.count[p::lanes]
        out.append(np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts,
                                                                         strict=True)])
                   if starts.size else np.zeros(0, dtype=np.int64))
    return out


def lanes_encoder_segment(x, profile, name: str, lanes: int, valid_prob=1.0, ready_prob=1.0,
                          reset_after: int | None = None) -> dict:
    """A segment for EncoderLanes: lane p gets the values of tiles p, p + P, ... of `x`, the
    merged output must be the golden container's tile words."""
    from golden import codec
    from golden.profile import config_writes
    from golden.transform import to_pixels

    enc = codec.encode_tensor(x, profile)
    words, first, last = golden_tiles(enc)
    pix = to_pixels(x)
    rows = lane_rows(x.shape, profile.tile_pixels, lanes)
    return {
        "name": name, "valid_prob": valid_prob, "ready_prob": ready_prob,
        "reset_after": reset_after, "values": int(x.size),
        "writes": config_writes(profile, image_pixels=x.shape[2] * x.shape[3]),
        "inputs": {f"in{p}_data": pix[r].reshape(-1) for p, r in enumerate(rows)},
        "expected": {"out_data": words, "out_first": first, "out_last": last},
    }


def lanes_decoder_segment(x, profile, name: str, lanes: int, valid_prob=1.0, ready_prob=1.0,
                          reset_after: int | None = None) -> dict:
    """A segment for DecoderLanes: the golden container's tile words in, lane p must give the
    golden reconstruction of tiles p, p + P, ..."""
    from golden import codec
    from golden.profile import config_writes
    from golden.transform import to_pixels

    enc = codec.encode_tensor(x, profile)
    words, _, last = golden_tiles(enc)
    xh = codec.decode(codec.to_file_bytes(enc, profile, embed_profile=False), profile)
    pix = to_pixels(xh)
    c = profile.channels
    tile_last = np.zeros(pix.shape, dtype=np.int64)
    tile_last[(enc.tile_start + enc.tile_count - 1), c - 1] = 1
    expected = {}
    for p, r in enumerate(lane_rows(x.shape, profile.tile_pixels, lanes)):
        expected[f"out{p}_data"] = pix[r].reshape(-1)
        expected[f"out{p}_comp"] = np.tile(np.arange(c), r.size)
        expected[f"out{p}_tile_last"] = tile_last[r].reshape(-1)
    return {
        "name": name, "valid_prob": valid_prob, "ready_prob": ready_prob,
        "reset_after": reset_after, "values": int(x.size),
        "writes": config_writes(profile, image_pixels=x.shape[2] * x.shape[3]),
        "inputs": {"in_data": words, "in_last": last},
        "expected": expected,
    }


def lanes_data(segments: list[dict], block: str, lanes: int, test: str):
    """(data, params) of a multi-lane run of `segments`."""
    data: dict[str, np.ndarray] = {}
    info = []
    for k, seg in enumerate(segments):
        data[f"s{k}_writes"] = np.asarray(seg["writes"], dtype=np.int64).reshape(-1, 2)
        for key, v in {**seg["inputs"], **seg["expected"]}.items():
            v = np.asarray(v)
            data[f"s{k}_{key}"] = v.view(np.int64) if v.dtype == np.uint64 else \
                v.astype(np.int64)
        info.append({"name": seg["name"], "valid_prob": seg["valid_prob"],
                     "ready_prob": seg["ready_prob"], "reset_after": seg["reset_after"],
                     "values": seg["values"],
                     "n_out": {key: int(np.asarray(v).size) for key, v in seg["expected"].items()
                               if key.endswith("_data")}})
    params = {"test": test, "block": block, "lanes": lanes, "segments": info}
    return data, params


async def _run_lanes(dut, encoder: bool) -> None:
    from amaranth.hdl import signed
    from cocotb.triggers import ClockCycles

    from hw.bit_packer import packed_word
    from hw.bit_unpacker import container_word
    from hw.framing import framed
    from sim.runner import load_data, load_params, save_outputs
    from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock

    data, params = load_data(), load_params()
    lanes = int(params["lanes"])
    seed = default_seed()
    if encoder:
        in_ports = {f"in{p}": f"i__{p}" for p in range(lanes)}
        in_shape = {k: signed(len(getattr(dut, f"{port}__payload")))
                    for k, port in in_ports.items()}
        out_ports = {"out": "o"}
        out_shape = {"out": packed_word()}
        in_fields = ("data",)
    else:
        width = len(dut.o__0__payload) - 11       # framed: data, comp (10 bits), tile_last
        in_ports = {"in": "i"}
        in_shape = {"in": container_word()}
        out_ports = {f"out{p}": f"o__{p}" for p in range(lanes)}
        out_shape = {k: framed(width) for k in out_ports}
        in_fields = ("data", "last")
    out_fields = ("data", "first", "last") if encoder else ("data", "comp", "tile_last")

    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    gen = [0]

    def drivers(seg):
        gen[0] += 1
        s = seed + 7919 * gen[0]
        srcs = {k: StreamSource(dut, port, shape=in_shape[k], seed=s + n,
                                valid_prob=seg["valid_prob"])
                for n, (k, port) in enumerate(in_ports.items())}
        snks = {k: StreamSink(dut, port, shape=out_shape[k], seed=(s + n) ^ 0x5EED,
                              ready_prob=seg["ready_prob"])
                for n, (k, port) in enumerate(out_ports.items())}
        return srcs, snks

    def items(k, prefix):
        cols = [data[f"s{k}_{prefix}_{f}"] for f in in_fields]
        if len(in_fields) == 1:
            return [int(v) for v in cols[0]]
        return [{"data": int(d) & (2**64 - 1), "last": int(e)}
                for d, e in zip(*cols, strict=True)]

    srcs, snks = drivers(params["segments"][0])
    base = {k: 0 for k in out_ports}
    outputs = {}
    for k, seg in enumerate(params["segments"]):
        for s in srcs.values():
            s.valid_prob = seg["valid_prob"]
        for s in snks.values():
            s.ready_prob = seg["ready_prob"]
        await program(dut, data[f"s{k}_writes"])
        sent0 = {key: len(s.sent_times_ns) for key, s in srcs.items()}
        for key, s in srcs.items():
            vals = items(k, key)
            if seg["reset_after"] is not None:
                vals = vals[:int(seg["reset_after"])]
            s.send(vals)
        if seg["reset_after"] is not None:
            # Stop in the middle of a tile, with the lanes busy, and reset.
            for s in srcs.values():
                await s.wait_idle(timeout_cycles=100_000)
            await ClockCycles(dut.clk, 20)
            for s in (*srcs.values(), *snks.values()):
                s.stop()
            for port in in_ports.values():
                getattr(dut, f"{port}__valid").value = 0
            for port in out_ports.values():
                getattr(dut, f"{port}__ready").value = 0
            await reset(dut)
            srcs, snks = drivers(params["segments"][min(k + 1, len(params["segments"]) - 1)])
            base = {key: 0 for key in out_ports}
            continue
        n_out = {key: int(seg["n_out"][f"{key}_data"]) for key in out_ports}
        budget = 64 * 1000 + 40 * max(seg["values"] // lanes, *n_out.values())
        for key, s in snks.items():
            await s.receive(base[key] + n_out[key], timeout_cycles=budget)
        for s in srcs.values():
            await s.wait_idle(timeout_cycles=budget)
        first_in = min(s.sent_times_ns[sent0[key]] for key, s in srcs.items()
                       if len(s.sent_times_ns) > sent0[key])
        last_out = max(s.received_times_ns[base[key] + n_out[key] - 1]
                       for key, s in snks.items() if n_out[key])
        cycles = int(round((last_out - first_in) / CLOCK_NS)) + 1
        await ClockCycles(dut.clk, 2)
        error = int(dut.error.value) if encoder else int(dut.status.value.to_unsigned()) & 1
        mismatches = 0
        for key, s in snks.items():
            got = s.received[base[key]:base[key] + n_out[key]]
            for f in out_fields:
                arr = np.asarray([g[f] for g in got], dtype=np.uint64 if f == "data" and
                                 encoder else np.int64)
                if arr.dtype == np.uint64:
                    arr = arr.view(np.int64)
                outputs[f"s{k}_{key}_{f}"] = arr
                mismatches = max(mismatches, int(np.count_nonzero(
                    arr != data[f"s{k}_{key}_{f}"])))
            base[key] += n_out[key]
        outputs[f"s{k}_cycles"] = cycles
        outputs[f"s{k}_error"] = error
        write_record({
            "test": f"{params['test']}/{seg['name']}", "block": params["block"],
            "lanes": lanes, "values": seg["values"], "cycles": cycles,
            "cycles_per_value": cycles / seg["values"],
            "cycles_per_value_per_lane": cycles * lanes / seg["values"],
            "mismatches": mismatches, "error": error, "valid_prob": seg["valid_prob"],
            "ready_prob": seg["ready_prob"], "seed": seed,
        })
    # Anything beyond the expected counts is a duplicated beat.
    await ClockCycles(dut.clk, 64)
    outputs["extra"] = sum(len(s.received) - base[key] for key, s in snks.items())
    for s in (*srcs.values(), *snks.values()):
        s.stop()
    save_outputs(**outputs)


@cocotb.test()
async def encoder_lanes(dut):
    """P value streams in (lane p: tiles p, p + P, ...), one container word stream out."""
    await _run_lanes(dut, encoder=True)


@cocotb.test()
async def decoder_lanes(dut):
    """One container word stream in, P reconstructed value streams out."""
    await _run_lanes(dut, encoder=False)


def lanes_design(block: str, lanes: int, **overrides):
    """The Verilog of EncoderLanes (`block` "encoder") or DecoderLanes ("decoder") with P =
    `lanes`, built with the parameters the tests and `make sim` share (N = 8, 64 channels, tiles
    up to 256 words: 64-channel int8 layers with one 32-pixel row per tile), so that both use one
    compiled model per P."""
    from hw.multi_lane import DecoderLanes, EncoderLanes
    from sim.tb_framed import design_verilog

    classes = {"encoder": EncoderLanes, "decoder": DecoderLanes}
    if block not in classes:
        raise ValueError(f"block must be 'encoder' or 'decoder', not {block!r}")
    return design_verilog(classes[block], lanes=lanes, **{**MULTI_LANE_PARAMS, **overrides})


MULTI_LANE_PARAMS = {"group": 8, "max_channels": 64, "max_tile_words": 256}
