"""cocotb testbench of hw/bit_unpacker.py: container words in, payload words and status out.

The pytest side (tests/test_hw_bit_unpacker.py) encodes tensors with the golden container, cuts
the DRAM image into the word stream a reader delivers (sim/tb_vlc_decoder.py `tile_words`),
optionally damages tiles, and predicts the unpacker's output with `unpacker_model`: for
well-formed tiles exactly the golden payloads, for damaged ones what the module docstring of
hw/bit_unpacker.py promises. This bench programs the unpacker, streams the words through
`StreamSource` with random valid gaps, takes the payload words through `StreamSink` with random
ready stalls and hands them back, with the status after each case.

Data per case `c<i>_`: `writes`, `in_data` (uint64), `in_last`, and the expected words
`exp_data`, `exp_last`, `exp_raw`, `exp_empty` (for the run record's mismatch count; pytest makes
the real comparison). Params: `test`, `cases`, `valid_prob`, `ready_prob`. Outputs per case:
`c<i>_data`, `c<i>_last`, `c<i>_raw`, `c<i>_empty`, `c<i>_status`, `c<i>_cycles` (first word
taken to last word out).
"""

from __future__ import annotations

import zlib

import numpy as np

CLOCK_NS = 10


# -- pytest side ------------------------------------------------------------------------------


def unpacker_model(tiles, profile, image_pixels: int) -> tuple[dict[str, np.ndarray], dict]:
    """What hw/bit_unpacker.py emits for the reader's tiles (each: header, payload words), and
    its status afterwards: `{crc, mode, length, tile, framing, error, bad_tiles}`."""
    tp, rbpp = profile.tile_pixels, profile.raw_bits_per_pixel
    left = image_pixels
    out = {"data": [], "last": [], "raw": [], "empty": []}
    status = dict.fromkeys(("crc", "mode", "length", "tile", "framing", "error"), 0)
    status["bad_tiles"] = 0
    for t, words in enumerate(tiles):
        words = [int(w) for w in words]
        hdr, payload = words[0], words[1:]
        npix = min(tp, left)
        left = image_pixels if left <= npix else left - npix
        max_words = -(-npix * rbpp // 64)
        length, mode, tile_no, check = hdr & 0xFFFFF, (hdr >> 20) & 3, (hdr >> 22) & 1023, \
            hdr >> 32
        body = b"".join(w.to_bytes(8, "little") for w in payload)
        low = (hdr & 0xFFFFFFFF).to_bytes(4, "little")
        errs = {
            "crc": zlib.crc32(low, zlib.crc32(body)) != check,
            "mode": mode >= 2,
            "length": length > max_words or (mode == 1 and length != max_words),
            "tile": tile_no != t % 1024,
            "framing": len(payload) != length,
        }
        for k, v in errs.items():
            status[k] |= int(v)
        if any(errs.values()):
            status["error"] = 1
            status["bad_tiles"] = min(status["bad_tiles"] + 1, (1 << 16) - 1)
        limit = min(length, max_words)
        passed = payload[:limit]
        empty = not passed
        if empty:
            passed = [0]
        out["data"] += passed
        out["last"] += [0] * (len(passed) - 1) + [1]
        out["raw"] += [int(mode == 1)] * len(passed)
        out["empty"] += [int(empty)] * len(passed)
    arrays = {k: np.asarray(v, np.uint64 if k == "data" else np.int64) for k, v in out.items()}
    return arrays, status


def status_fields(value: int) -> dict:
    from hw.bit_unpacker import unpacker_status
    from sim.streams import Payload

    return Payload(unpacker_status()).unpack(int(value))


# -- cocotb side ------------------------------------------------------------------------------


async def _unpacker_tb(dut) -> None:
    from cocotb.triggers import ClockCycles

    from hw.bit_unpacker import container_word, payload_word
    from sim.runner import load_data, load_params, save_outputs
    from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock
    from sim.tb_framed import program, write_record

    data, params = load_data(), load_params()
    seed = default_seed()
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    src = StreamSource(dut, "i", shape=container_word(),
                       valid_prob=params.get("valid_prob", 1.0), seed=seed)
    snk = StreamSink(dut, "o", shape=payload_word(), ready_prob=params.get("ready_prob", 1.0),
                     seed=seed ^ 0x5EED)
    outputs = {}
    total = 0
    for i in range(int(params["cases"])):
        await program(dut, data[f"c{i}_writes"])
        words = [{"data": int(d), "last": int(la)}
                 for d, la in zip(data[f"c{i}_in_data"].astype(np.uint64).tolist(),
                                  data[f"c{i}_in_last"].tolist(), strict=True)]
        n = len(data[f"c{i}_exp_last"])
        sent0 = len(src.sent_times_ns)
        src.send(words)
        budget = 2000 + 20 * len(words)
        await src.wait_idle(timeout_cycles=budget)
        got = await snk.receive(total + n, timeout_cycles=budget)
        await ClockCycles(dut.clk, 16)
        extra = len(snk.received) - total - n
        assert extra == 0, f"case {i}: {extra} words more than expected"
        got = got[total:]
        for k in ("data", "last", "raw", "empty"):
            outputs[f"c{i}_{k}"] = np.asarray([g[k] for g in got],
                                              np.uint64 if k == "data" else np.int64)
        cycles = int(round((snk.received_times_ns[total + n - 1] - src.sent_times_ns[sent0])
                           / CLOCK_NS)) + 1
        outputs[f"c{i}_cycles"] = cycles
        outputs[f"c{i}_status"] = int(dut.status.value.to_unsigned())
        mismatches = sum(int(np.count_nonzero(outputs[f"c{i}_{k}"] != data[f"c{i}_exp_{k}"]))
                         for k in ("data", "last", "raw", "empty"))
        write_record({
            "test": f"{params.get('test', 'bit_unpacker')}-case{i}", "block": "BitUnpacker",
            "lanes": 1, "values": len(words), "cycles": cycles,
            "cycles_per_value": cycles / max(len(words), 1), "mismatches": mismatches,
            "valid_prob": params.get("valid_prob", 1.0),
            "ready_prob": params.get("ready_prob", 1.0), "seed": seed,
        })
        total += n
    save_outputs(**outputs)


try:
    import cocotb as _cocotb
except ImportError:  # pragma: no cover
    pass
else:
    @_cocotb.test()
    async def bit_unpacker_stream(dut):
        """Program, stream every case's container words, collect the payload words."""
        await _unpacker_tb(dut)
