"""cocotb testbench of hw/framer.py.

The pytest side (tests/test_hw_framer.py) hands over raw channel values and the golden framed
stream (component index and tile ends from the golden container's tiling); this test drives the
generated Verilog through the shared framed-value bench (sim/tb_framed.py), a commit write in
the middle of a pixel being a segment of its own, and hands the received stream back for the
comparison.

Params: `block`, `test`, `width`, `segments`, `raw_input` (true).
"""

from __future__ import annotations

import cocotb
from amaranth.hdl import signed

from hw.framing import framed
from sim.runner import load_data, load_params
from sim.tb_framed import run_framed


@cocotb.test()
async def framer_stream(dut):
    """Raw values in, framed values out; every output back to pytest."""
    params, data = load_params(), load_data()
    await run_framed(dut, in_shape=signed(params["width"]), out_shape=framed(params["width"]),
                     data=data, params=params, block=params["block"])
