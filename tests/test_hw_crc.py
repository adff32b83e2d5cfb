"""hw/crc.py against zlib.crc32, in Amaranth's simulator (no Verilog needed).

The bit packer's and the bit unpacker's tile checks both rest on `crc32_next`; their cocotb tests
compare whole headers with the golden model, this one the CRC step alone at several widths.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.crc import Crc32, crc32_matrix, crc32_serial


@pytest.mark.parametrize("width", [64, 32, 8])
def test_crc32_matches_zlib(width, rng):
    """`Crc32` (and so `crc32_next`) against zlib.crc32 over little-endian words, restarts and
    a restart in the same clock as a word included; in Amaranth's simulator (no Verilog)."""
    dut = Crc32(width)
    runs = [[int(w) for w in rng.integers(0, 1 << width, size=n, dtype=np.uint64)]
            for n in (0, 1, 5, 17)]
    got = []

    async def bench(ctx):
        for k, words in enumerate(runs):
            # Odd runs restart in the clock of their first word, even runs a clock before.
            if k % 2 == 0 or not words:
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
            for j, w in enumerate(words):
                ctx.set(dut.clear, int(k % 2 == 1 and j == 0))
                ctx.set(dut.valid, 1)
                ctx.set(dut.data, w)
                await ctx.tick()
            ctx.set(dut.clear, 0)
            ctx.set(dut.valid, 0)
            got.append(ctx.get(dut.crc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = [zlib.crc32(b"".join(w.to_bytes(width // 8, "little") for w in words))
            for words in runs]
    assert got == want


def test_matrix_is_the_serial_update(rng):
    """The XOR matrix reproduces the bit-serial definition on random states and words."""
    for width in (1, 7, 32, 64):
        rows = crc32_matrix(width)
        for _ in range(20):
            state = int(rng.integers(0, 1 << 32))
            word = int(rng.integers(0, 1 << width, dtype=np.uint64))
            want = crc32_serial(state, word, width)
            got = sum(((bin(state & sm).count("1") + bin(word & dm).count("1")) & 1) << i
                      for i, (sm, dm) in enumerate(rows))
            assert got == want
