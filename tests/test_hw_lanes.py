"""The encoder and decoder lanes against the golden codec, in generated Verilog under cocotb.

The encoder lane takes a real feature map's raw int8 values and must put out exactly the golden
container's tile words (headers included); the decoder lane takes the golden tile words and must
put out exactly the golden reconstruction. Runs at full rate (cycles per value measured) and with
random valid gaps and ready stalls; the decoder also meets corrupted words.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden.calibrate import calibrate
from golden.quantizer import quantize
from golden.transform import forward, to_pixels
from hw.decoder_lane import DecoderLane
from hw.encoder_lane import EncoderLane
from sim.runner import run_cocotb
from sim.tb_framed import design_verilog, feature_map
from sim.tb_lanes import decoder_case, encoder_case

pytestmark = pytest.mark.hw

C, H, W = 64, 16, 16
MAX_CYCLES_PER_VALUE = 1.02
STALLS = {"valid_prob": 0.7, "ready_prob": 0.6}


@pytest.fixture(scope="module")
def case():
    x = feature_map(channels=C, height=H, width=W)
    profile = calibrate(x, transform="pca", group=8, bits=8)
    return x, profile


def _max_tile_words(profile):
    return profile.raw_words(profile.tile_pixels)


def _encoder(profile, **kw):
    return design_verilog(EncoderLane, max_channels=C, max_tile_words=_max_tile_words(profile),
                          **kw)


def _run(design, tb, data, params, expected):
    out = run_cocotb(design, "sim.tb_lanes", testcase=tb, data=data, params=params).outputs
    assert int(out["extra"]) == 0, f"{int(out['extra'])} beats more than expected"
    for f, v in expected.items():
        got = out[f].astype(np.int64) if f == "data" else out[f]
        assert np.array_equal(got, np.asarray(v, dtype=np.int64)), \
            f"{f}: {int((got != v).sum())} of {len(v)} differ"
    return out


def test_encoder_lane_full_rate(case):
    x, profile = case
    data, params, expected, enc = encoder_case(x, profile, "encoder_lane/full_rate")
    out = _run(_encoder(profile), "encoder_lane", data, params, expected)
    assert int(out["error"]) == 0
    assert int(out["cycles"]) / x.size <= MAX_CYCLES_PER_VALUE


def test_encoder_lane_stalls(case):
    x, profile = case
    data, params, expected, _ = encoder_case(x, profile, "encoder_lane/stalls", **STALLS)
    _run(_encoder(profile), "encoder_lane", data, params, expected)


def test_encoder_lane_folded_placement(case):
    """Without the forward transform: the conv engine delivers y (weights carry T)."""
    x, profile = case
    y = forward(to_pixels(x), profile)
    data, params, expected, enc = encoder_case(x, profile, "encoder_lane/folded", **STALLS)
    data["in_data"] = y.reshape(-1)
    from golden.container import encode_q

    assert np.array_equal(encode_q(quantize(y, profile), x.shape, profile).image, enc.image)
    design = design_verilog(EncoderLane, max_channels=C, in_width=24, transform=False,
                            max_tile_words=_max_tile_words(profile))
    _run(design, "encoder_lane", data, params, expected)


def test_decoder_lane_full_rate(case):
    x, profile = case
    data, params, expected, _ = decoder_case(x, profile, "decoder_lane/full_rate")
    out = _run(design_verilog(DecoderLane, max_channels=C), "decoder_lane", data, params,
               expected)
    assert int(out["error"]) == 0
    assert int(out["cycles"]) / x.size <= MAX_CYCLES_PER_VALUE


def test_decoder_lane_stalls(case):
    x, profile = case
    data, params, expected, _ = decoder_case(x, profile, "decoder_lane/stalls", **STALLS)
    _run(design_verilog(DecoderLane, max_channels=C), "decoder_lane", data, params, expected)


def test_decoder_lane_corrupted_word(case):
    """A flipped payload bit: the error flag rises, exactly the tensor's value count comes out,
    and the tiles after the bad one decode exactly."""
    x, profile = case
    data, params, expected, enc = decoder_case(x, profile, "decoder_lane/corrupt")
    words = data["in_data"].copy()
    bad_tile = 3
    start = int(sum(1 + n for n in enc.tile_payload_words[:bad_tile]))
    words[start + 1] ^= 1 << 17
    data["in_data"] = words
    out = run_cocotb(design_verilog(DecoderLane, max_channels=C), "sim.tb_lanes",
                     testcase="decoder_lane", data=data, params=params).outputs
    assert int(out["extra"]) == 0
    assert int(out["error"]) == 1
    per_tile = profile.tile_pixels * C
    good = np.ones(x.size, dtype=bool)
    good[bad_tile * per_tile:(bad_tile + 1) * per_tile] = False
    assert np.array_equal(out["data"][good], expected["data"][good])
    assert np.array_equal(out["comp"], expected["comp"])
