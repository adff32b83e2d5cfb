"""cocotb testbench of hw/transform.py: `Transform` and `InverseTransform`.

The pytest side (tests/test_hw_transform.py) builds the profile, the input stream and the golden
output stream; these tests drive the generated Verilog through the shared framed-value bench
(sim/tb_framed.py) and hand the received stream back for the comparison.

Params: `block`, `test`, `in_width`, `out_width`, `segments`, `group`, `channels`,
`max_channels`, `coeff_width`, `offset_width`; for `transform_reset_mid_tile` also
`abort_after` (values of the first segment sent before the reset).
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge

from hw.config import (
    GLOBAL_CHANNELS,
    GLOBAL_COMMIT,
    GLOBAL_GROUP,
    REGION_COEFF,
    REGION_GLOBAL,
    REGION_OFFSET,
)
from hw.framing import framed
from sim.runner import load_data, load_params
from sim.streams import StreamSink, StreamSource, reset, start_clock
from sim.tb_framed import CLOCK_NS, program, run_framed, stream_items


def _shapes(params):
    return framed(params["in_width"]), framed(params["out_width"])


@cocotb.test()
async def transform_stream(dut):
    """The whole input stream through the block; every output value back to pytest."""
    params, data = load_params(), load_data()
    in_shape, out_shape = _shapes(params)
    await run_framed(dut, in_shape=in_shape, out_shape=out_shape, data=data, params=params,
                     block=params["block"])


@cocotb.test()
async def transform_reset_mid_tile(dut):
    """Reset while groups are half accumulated and the output is stalled, then run in full.

    Whatever the reset caught in flight (partial sums, a full output buffer, a held output) must
    not leak into the stream that follows it.
    """
    params, data = load_params(), load_data()
    in_shape, out_shape = _shapes(params)
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    await program(dut, data["s0_writes"])
    items = stream_items(data, "s0_in")
    src = StreamSource(dut, "i", shape=in_shape, valid_prob=0.9)
    snk = StreamSink(dut, "o", shape=out_shape, ready_prob=0.3)
    src.send(items[:params["abort_after"]])
    await src.wait_idle(timeout_cycles=100 * params["abort_after"])
    await ClockCycles(dut.clk, 3)
    src.stop()
    snk.stop()
    await FallingEdge(dut.clk)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await run_framed(dut, in_shape=in_shape, out_shape=out_shape, data=data, params=params,
                     block=params["block"], clock_running=True)


@cocotb.test()
async def transform_error_flag(dut):
    """`error` rises when the configured N or C does not suit the instance, or after a commit of
    a table value that the instance cannot hold, and clears again once the cause is gone."""
    params, data = load_params(), load_data()
    n, c, max_c = params["group"], params["channels"], params["max_channels"]
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    await program(dut, data["s0_writes"])
    await ClockCycles(dut.clk, 2)
    assert int(dut.error.value) == 0, "error set after a matching configuration"

    def glob(index, value):
        return [((REGION_GLOBAL << 16) | index, value)]

    def table(region, index, value):
        return [((region << 16) | index, value & 0xFFFFFFFF)]

    commit = glob(GLOBAL_COMMIT, 0)
    cw, ow = params["coeff_width"], params["offset_width"]
    cases = [
        (glob(GLOBAL_GROUP, n * 2), 1), (glob(GLOBAL_GROUP, n), 0),
        (glob(GLOBAL_GROUP, n // 2), 1), (glob(GLOBAL_GROUP, n), 0),
        (glob(GLOBAL_CHANNELS, c + 1), 1), (glob(GLOBAL_CHANNELS, c), 0),
        (glob(GLOBAL_CHANNELS, 0), 1), (glob(GLOBAL_CHANNELS, c), 0),
        (glob(GLOBAL_CHANNELS, max_c + n), 1), (glob(GLOBAL_CHANNELS, c), 0),
        # Table values: reported at the commit, cleared by a commit without them.
        (table(REGION_COEFF, 3, 1 << (cw - 1)), 0), (commit, 1), (commit, 0),
        (table(REGION_COEFF, 5, -(1 << (cw - 1)) - 1) + commit, 1), (commit, 0),
        (table(REGION_COEFF, 5, -(1 << (cw - 1))) + commit, 0),
        (table(REGION_COEFF, max_c * n, 1) + commit, 1), (commit, 0),
        (table(REGION_OFFSET, 2, 1 << (ow - 1)) + commit, 1), (commit, 0),
        (table(REGION_OFFSET, max_c, 0) + commit, 1), (commit, 0),
        (table(REGION_OFFSET, 2, (1 << (ow - 1)) - 1) + commit, 0),
    ]
    for writes, want in cases:
        await program(dut, writes)
        await ClockCycles(dut.clk, 1)
        assert int(dut.error.value) == want, f"after {writes}: error {dut.error.value} != {want}"
