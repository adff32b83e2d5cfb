"""cocotb testbench of hw/quantizer.py: `Quantizer` and `Dequantizer`.

The pytest side (tests/test_hw_quantizer.py) builds the profile, the input stream and the golden
output stream; this test drives the generated Verilog through the shared framed-value bench
(sim/tb_framed.py) and hands the received stream back for the comparison.

Params: `block`, `test`, `in_width`, `out_width`, `segments`.
"""

from __future__ import annotations

import cocotb

from hw.framing import framed
from sim.runner import load_data, load_params
from sim.tb_framed import run_framed


@cocotb.test()
async def quantizer_stream(dut):
    """The whole input stream through the block; every output value back to pytest."""
    params, data = load_params(), load_data()
    await run_framed(dut, in_shape=framed(params["in_width"]),
                     out_shape=framed(params["out_width"]), data=data, params=params,
                     block=params["block"])
