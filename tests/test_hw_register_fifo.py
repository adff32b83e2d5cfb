"""hw/register_fifo.py in Amaranth's simulator (no Verilog needed).

The VLC decoder's cocotb tests run every word, tile size and value through its register FIFOs;
this one checks the FIFO alone: random valid and ready, everything out in order exactly once,
one entry per clock when both sides are always willing, `i.ready` and `o.valid` from the count
only, a flush, and a payload of a plain width.
"""

from __future__ import annotations

import gc
import warnings

import pytest
from amaranth.lib import data
from amaranth.sim import Simulator

from hw.register_fifo import RegisterFifo

SHAPE = data.StructLayout({"value": 12, "last": 1})


def _run(depth, items, valid_prob, ready_prob, rng, flush_at=None, shape=SHAPE):
    """Push `items` through with random gaps and stalls; returns (received, clocks, flushed)."""
    dut = RegisterFifo(shape, depth)
    plain = not isinstance(shape, data.Layout)
    got, state = [], {"clocks": 0, "flushed": []}

    async def bench(ctx):
        sent = 0
        while len(got) + len(state["flushed"]) < len(items) and state["clocks"] < 20 * len(items):
            flush = flush_at is not None and state["clocks"] == flush_at
            offer = sent < len(items) and rng.random() < valid_prob
            take = rng.random() < ready_prob
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, items[sent] % 4096 if plain else
                        {"value": items[sent] % 4096, "last": items[sent] & 1})
            ctx.set(dut.o.ready, take)
            ctx.set(dut.flush, flush)
            # The handshake is decided before the edge; ready/valid depend on registers only.
            count = ctx.get(dut.count)
            assert ctx.get(dut.i.ready) == (count != depth)
            assert ctx.get(dut.o.valid) == (count != 0)
            pushed = offer and ctx.get(dut.i.ready)
            if take and ctx.get(dut.o.valid):
                got.append(ctx.get(dut.o.payload if plain else dut.o.payload.value))
            await ctx.tick()
            if flush:
                # What was in the FIFO (minus what left at this edge) is gone.
                state["flushed"] = items[len(got):sent + pushed]
            sent += pushed
            state["clocks"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, state["clocks"], state["flushed"]


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_order_under_stalls(depth, rng):
    items = [int(v) for v in rng.integers(0, 4096, size=300)]
    got, _, _ = _run(depth, items, 0.7, 0.6, rng)
    assert got == items


def test_plain_width(rng):
    """A payload that is a plain width, not a layout (the decoder's tile sizes)."""
    items = [int(v) for v in rng.integers(0, 4096, size=200)]
    got, _, _ = _run(2, items, 0.7, 0.6, rng, shape=12)
    assert got == items


@pytest.mark.parametrize("depth", [2, 5])
def test_full_rate(depth, rng):
    """Both sides always willing: one entry per clock after one clock of latency."""
    items = list(range(200))
    got, clocks, _ = _run(depth, items, 1.0, 1.0, rng)
    assert got == items
    assert clocks == len(items) + 1


def test_flush(rng):
    """A flush drops what is held; what comes after it passes in order."""
    items = list(range(100))
    got, _, flushed = _run(3, items, 1.0, 0.3, rng, flush_at=20)
    assert flushed, "the FIFO held entries at the flush"
    kept = [v for v in items if v not in flushed]
    assert got == kept


def test_depth_checked():
    with warnings.catch_warnings():
        # The half-built component would warn, when collected, that it was never elaborated.
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="depth"):
            RegisterFifo(SHAPE, 0)
        gc.collect()
