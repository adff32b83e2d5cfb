"""hw/bit_unpacker.py against the golden container, in generated Verilog under cocotb.

Tensors are encoded with golden.container.encode_q (both layouts, coded and raw tiles, short
last tiles, an all-drop profile whose tiles have no payload), cut into the word stream a DRAM
reader delivers (header, payload, `last` on the tile's final word), and streamed through the
unpacker with random valid gaps and ready stalls. Well-formed tiles must come out as exactly the
golden payload words with the tile's mode and a clean status; damaged tiles (every header field,
payload bits, truncation, extra words, random garbage) as `sim.tb_bit_unpacker.unpacker_model`
predicts from the module's documented rules, with exactly the predicted status bits and
bad-tile count. At full rate the unpacker takes one word per clock. A commit in the middle of a
tile (Amaranth's simulator) flushes it, as the module docstring says, clock by clock.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from golden.container import encode_q
from golden.profile import ClassParams, config_writes
from hw.bit_unpacker import BitUnpacker
from sim.runner import run_cocotb
from sim.tb_bit_unpacker import status_fields, unpacker_model
from sim.tb_framed import verilog_for
from sim.tb_vlc_decoder import (
    CORRUPTIONS,
    corrupt,
    corrupt_tiles,
    payload_stream,
    reader_stream,
    tile_words,
)
from sim.tb_vlc_encoder import every_mode_profile, identity_profile, random_q

pytestmark = pytest.mark.hw

RATES = {"stalls": (0.7, 0.6), "full_rate": (1.0, 1.0)}
FIELDS = ("data", "last", "raw", "empty")


@functools.cache
def _verilog():
    return verilog_for(BitUnpacker(), "BitUnpacker")


def _case(prof, q, image_pixels, layout="compacted"):
    prof.layout = layout
    images = q.shape[0] // image_pixels
    enc = encode_q(q, (images, prof.channels, 1, image_pixels), prof)
    return prof, image_pixels, tile_words(enc)


def _run(name, cases, rate="stalls", seed=1):
    """cases: (profile, image_pixels, tiles); returns (expected per case, outputs)."""
    valid_prob, ready_prob = RATES[rate]
    data, expected = {}, []
    for i, (prof, hw, tiles) in enumerate(cases):
        exp, status = unpacker_model(tiles, prof, hw)
        expected.append((exp, status))
        stream = reader_stream(tiles)
        data[f"c{i}_writes"] = config_writes(prof, image_pixels=hw).astype(np.int64)
        data[f"c{i}_in_data"], data[f"c{i}_in_last"] = stream["data"], stream["last"]
        for k in FIELDS:
            data[f"c{i}_exp_{k}"] = exp[k]
    params = {"test": f"bit_unpacker-{name}", "cases": len(cases), "valid_prob": valid_prob,
              "ready_prob": ready_prob}
    result = run_cocotb(_verilog(), "sim.tb_bit_unpacker", data=data, params=params, seed=seed)
    return data, expected, result.outputs


def _check(expected, out, i):
    exp, status = expected[i]
    for k in FIELDS:
        assert np.array_equal(out[f"c{i}_{k}"], exp[k]), f"case {i}: field {k} differs"
    assert status_fields(out[f"c{i}_status"]) == status, f"case {i}: status differs"


def _every_mode(seed, n, images=2, pixels=(5, 30)):
    rng = np.random.default_rng(seed)
    cases = []
    for j in range(n):
        prof = every_mode_profile(rng, channels=int(rng.integers(16, 40)),
                                  tile_pixels=int(rng.integers(1, 9)))
        hw = int(rng.integers(*pixels))
        q = random_q(prof, rng, images * hw)
        q[: hw // 2] = 0                     # some coded tiles besides the raw fallbacks
        cases.append(_case(prof, q, hw, ("fixed", "compacted")[j % 2]))
    return cases


@pytest.mark.parametrize("rate", list(RATES))
def test_well_formed(rate):
    """Golden containers of every-mode profiles, both layouts: exactly the golden payloads."""
    cases = _every_mode(5, 4)
    data, expected, out = _run(f"well_formed-{rate}", cases, rate)
    for i, (_, _, tiles) in enumerate(cases):
        _check(expected, out, i)
        golden = payload_stream(tiles)
        for k in FIELDS:
            assert np.array_equal(out[f"c{i}_{k}"], golden[k])
        assert out[f"c{i}_status"] == 0
        if rate == "full_rate":
            words = data[f"c{i}_in_data"].size
            assert int(out[f"c{i}_cycles"]) <= words + 2, "not one word per clock"


def test_no_payload():
    """All-drop profile: raw tiles of zero words, one `empty` word each, header after header."""
    prof = identity_profile([ClassParams("drop", bits=3)], np.zeros(5, np.int64), tile_pixels=3)
    q = np.zeros((2 * 7, 5), np.int64)
    cases = [_case(prof, q, 7)]
    data, expected, out = _run("no_payload", cases)
    _check(expected, out, 0)
    assert out["c0_empty"].all() and out["c0_raw"].all() and out["c0_status"] == 0


def test_each_corruption():
    """One damaged tile per case, one case per kind: exactly the predicted output words, the
    predicted status bits and a bad-tile count of one."""
    rng = np.random.default_rng(8)
    base = _every_mode(9, 1, images=3, pixels=(12, 20))[0]
    prof, hw, tiles = base
    cases = []
    for kind in CORRUPTIONS:
        for _ in range(2):
            t = int(rng.integers(1, len(tiles) - 1))
            damaged = list(tiles)
            damaged[t] = corrupt(tiles[t], kind, rng)
            cases.append((prof, hw, damaged))
    data, expected, out = _run("each_corruption", cases)
    for i in range(len(cases)):
        _check(expected, out, i)
        s = status_fields(out[f"c{i}_status"])
        assert s["error"] == 1 and s["bad_tiles"] == 1, f"case {i}: {s}"


@pytest.mark.parametrize("rate", list(RATES))
def test_many_corruptions(rate):
    """Every third tile damaged, all kinds mixed, plus a tile of garbage words: the model's words
    and status exactly; the tiles after each damaged one pass unchanged."""
    rng = np.random.default_rng(10)
    cases = []
    for prof, hw, tiles in _every_mode(11, 3, images=3, pixels=(15, 40)):
        tiles, _ = corrupt_tiles(tiles, rng)
        garbage = rng.integers(0, 1 << 62, size=int(rng.integers(1, 6))).astype(np.uint64)
        tiles[-1] = garbage
        cases.append((prof, hw, tiles))
    data, expected, out = _run(f"many_corruptions-{rate}", cases, rate)
    for i in range(len(cases)):
        _check(expected, out, i)
        assert status_fields(out[f"c{i}_status"])["bad_tiles"] >= 1


def test_commit_mid_tile():
    """A commit in the middle of a tile, in Amaranth's simulator: the word taken in the commit's
    clock is dropped, in the clock after none is taken and none leaves (though the word before
    had filled the output register), and the next tile starts clean: tile number 0 again, its
    payload words out exactly, status clear."""
    from amaranth.sim import Simulator

    from golden.bit_packer import tile_header
    from hw.config import (
        GLOBAL_COMMIT,
        GLOBAL_IMAGE_PIXELS,
        GLOBAL_TILE_PIXELS,
        REGION_GLOBAL,
    )

    dut = BitUnpacker()
    glob = lambda i, v: {"addr": (REGION_GLOBAL << 16) | i, "data": v}  # noqa: E731
    # 4-pixel tiles of 8-pixel images at 64 raw bits per pixel: a raw tile is 4 words.
    writes = [glob(GLOBAL_TILE_PIXELS, 4), glob(GLOBAL_IMAGE_PIXELS, 8), glob(GLOBAL_COMMIT, 64)]
    payload = np.arange(1, 5, dtype=np.uint64) * 0x0101_0101_0101_0101
    good = [int(tile_header(4, 1, 0, payload))] + [int(w) for w in payload]
    log = {}

    async def bench(ctx):
        async def write(w):
            ctx.set(dut.cfg.valid, 1)
            ctx.set(dut.cfg.payload, w)
            await ctx.tick()
            ctx.set(dut.cfg.valid, 0)

        async def send(word, last=False):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"data": word, "last": last})
            for _ in range(20):
                if ctx.get(dut.i.ready):
                    break
                await ctx.tick()
            else:
                raise AssertionError("word not taken in 20 clocks")
            await ctx.tick()
            ctx.set(dut.i.valid, 0)

        ctx.set(dut.o.ready, 1)
        for w in writes:
            await write(w)
        await send(good[0])                 # a header, then two of its payload words
        await send(good[1])
        ctx.set(dut.i.valid, 1)             # a third word waits while the commit is written
        ctx.set(dut.i.payload, {"data": good[2], "last": 0})
        ctx.set(dut.cfg.valid, 1)
        ctx.set(dut.cfg.payload, writes[-1])
        log["ready_at_commit"] = ctx.get(dut.i.ready)
        await ctx.tick()
        ctx.set(dut.cfg.valid, 0)
        log["after"] = (ctx.get(dut.i.ready), ctx.get(dut.o.valid))
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(8):
            await ctx.tick()
        for k, word in enumerate(good):
            await send(word, last=k == len(good) - 1)
        for _ in range(4):
            await ctx.tick()
        log["status"] = ctx.get(dut.status)

    outputs = []

    async def sink(ctx):
        async for _clk, _rst, o_valid, payload in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if o_valid:
                outputs.append(int(payload.data))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(sink)
    sim.run_until(200e-6)
    assert log["ready_at_commit"] == 1
    assert log["after"] == (0, 0), "a word taken or given in the clock after the commit"
    # Before the commit: the first payload word (the second was taken in the commit's clock,
    # with the third offered: dropped); after it: the new tile's four words.
    assert outputs == good[1:2] + good[1:], [hex(w) for w in outputs]
    status = log["status"]
    assert int(status.error) == 0 and int(status.bad_tiles) == 0, status
