"""cocotb testbench of hw/bit_packer.py: token pairs in, tiles of 64-bit words out.

The pytest side (tests/test_hw_bit_packer.py) builds the token pairs (golden.vlc_encoder.tokens
and raw_tokens) and the golden word stream (golden.container.encode_q: every tile's header word
and chosen payload, raw fallback included, in container order); this bench drives the tokens
with random valid gaps, takes the words with random ready stalls and hands every word with its
`first` / `last` flags back to pytest. The generic part is `run_stream` of sim/tb_vlc_encoder.py.

Data: `writes`, `in_coded_value`, `in_coded_nbits`, `in_raw_value`, `in_raw_nbits`,
`in_tile_last`, `exp_data`, `exp_first`, `exp_last`. Params as in sim/tb_vlc_encoder.py, plus
`values` (values the tokens stand for, for cycles per value).
"""

from __future__ import annotations

import cocotb

from hw.bit_packer import packed_word
from hw.vlc_encoder import token_pair
from sim.runner import load_data, load_params
from sim.tb_vlc_encoder import reset_mid_stream, run_stream

IN_TEMPLATE = {"coded": {"value": 0, "nbits": 0}, "raw": {"value": 0, "nbits": 0},
               "tile_last": 0}
OUT_TEMPLATE = {"data": 0, "first": 0, "last": 0}


@cocotb.test()
async def bit_packer_stream(dut):
    """Every token pair through the packer; every output word back to pytest."""
    params, data = load_params(), load_data()
    await run_stream(dut, in_shape=token_pair(), out_shape=packed_word(),
                     in_template=IN_TEMPLATE, out_template=OUT_TEMPLATE, data=data,
                     params=params, block="BitPacker")


@cocotb.test()
async def bit_packer_reset_mid_tile(dut):
    """Reset with a tile half packed, another waiting to be sent and the output stalled, then
    the whole stream: no word of the aborted tiles, and tile numbers start again."""
    params, data = load_params(), load_data()
    await reset_mid_stream(dut, in_shape=token_pair(), out_shape=packed_word(),
                           in_template=IN_TEMPLATE, data=data, params=params)
    await run_stream(dut, in_shape=token_pair(), out_shape=packed_word(),
                     in_template=IN_TEMPLATE, out_template=OUT_TEMPLATE, data=data,
                     params=params, block="BitPacker", clock_running=True)
