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

import dataclasses

import cocotb
import numpy as np

from hw.bit_packer import packed_word
from hw.vlc_encoder import token_pair
from sim.runner import load_data, load_params
from sim.tb_vlc_encoder import reset_mid_stream, run_stream


# -- pytest side: stimulus and the golden word stream ----------------------------------------
def packer_data(profile, q, image_pixels: int | None = None, tile_first: int = 0,
                tile_step: int = 1) -> dict[str, np.ndarray]:
    """Data file of a packer run: writes, the golden token pairs of q, and the golden words.

    The words are the tiles of the compacted DRAM image (golden.container.encode_q) without its
    index table: every tile's header and chosen payload, back to back, as the packer sends them.
    Lane numbering (`tile_first`, `tile_step`) rewrites each header's tile number and CRC.
    """
    from golden.bit_packer import TILE_NO_MOD, tile_check
    from golden.container import encode_q
    from golden.profile import config_writes
    from golden.vlc_encoder import raw_tokens, tokens
    from sim.tb_framed import tile_ends

    pixels, channels = q.shape
    image_pixels = pixels if image_pixels is None else image_pixels
    assert pixels % image_pixels == 0
    compacted = dataclasses.replace(profile, layout="compacted")
    enc = encode_q(q, (pixels // image_pixels, channels, 1, image_pixels), compacted)
    words = enc.image[enc.table_words:].copy()
    offset = enc.tile_offset - enc.table_words
    first = np.zeros(words.size, dtype=np.int64)
    last = np.zeros(words.size, dtype=np.int64)
    first[offset] = 1
    last[offset + enc.tile_payload_words] = 1
    renumber = (tile_first, tile_step) != (0, 1)
    spans = zip(offset.tolist(), enc.tile_payload_words.tolist(), strict=True)
    for t, (off, pw) in enumerate(spans if renumber else ()):
        low = int(words[off]) & 0x003FFFFF | ((tile_first + tile_step * t) % TILE_NO_MOD) << 22
        words[off] = np.uint64(low | tile_check(words[off + 1:off + 1 + pw], low) << 32)

    ends = np.zeros((pixels, channels), dtype=np.int64)
    ends[:, -1] = tile_ends(pixels, profile.tile_pixels, image_pixels)
    cv, cn = tokens(q, profile)
    rv, rn = raw_tokens(q, profile)
    return {
        "writes": config_writes(profile, image_pixels=image_pixels).astype(np.int64),
        "in_coded_value": cv.reshape(-1).astype(np.int64),
        "in_coded_nbits": cn.reshape(-1),
        "in_raw_value": rv.reshape(-1).astype(np.int64),
        "in_raw_nbits": rn.reshape(-1),
        "in_tile_last": ends.reshape(-1),
        "exp_data": words.view(np.int64),
        "exp_first": first,
        "exp_last": last,
        "tile_mode": enc.tile_mode,
        "tile_payload_words": enc.tile_payload_words,
    }


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


@cocotb.test()
async def bit_packer_overflow_flag(dut):
    """Tiles whose raw payload overruns the buffer raise `error`, which holds until the next
    commit clears it; the packer keeps sending (cut-short) tiles and does not hang."""
    from cocotb.triggers import ClockCycles

    from sim.streams import StreamSink, StreamSource, reset, start_clock
    from sim.tb_framed import CLOCK_NS, program
    from sim.tb_vlc_encoder import items_from

    data = load_data()
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    await program(dut, data["writes"])
    assert int(dut.error.value) == 0, "error set before any tile"
    src = StreamSource(dut, "i", shape=token_pair(), valid_prob=0.8)
    snk = StreamSink(dut, "o", shape=packed_word(), ready_prob=0.8)
    src.send(items_from(data, "in_", IN_TEMPLATE))
    await src.wait_idle(timeout_cycles=100 * len(data["in_tile_last"]) + 1000)
    await ClockCycles(dut.clk, 200)
    tiles = sum(w["first"] for w in snk.received)
    assert tiles == int(data["in_tile_last"].sum()), f"{tiles} tiles sent"
    assert int(dut.error.value) == 1, "no error after a raw payload overran the buffer"
    src.stop()
    snk.stop()
    await program(dut, data["writes"])
    await ClockCycles(dut.clk, 2)
    assert int(dut.error.value) == 0, "commit did not clear error"
