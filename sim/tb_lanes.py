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
    await snk.receive(n_out, timeout_cycles=64 * 1000 + 40 * max(n_out, params["values"]))
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
