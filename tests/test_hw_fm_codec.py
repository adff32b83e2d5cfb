"""The feature-map codec top (AXI4 writer and reader, AXI4-Lite control) against the golden model.

One Verilog build serves every case; each test runs a sequence of jobs on one simulation (as
software would: program, write, read back, read ranges) with cocotbext-axi's AxiRam as DRAM and
AxiLiteMaster as host. After a write the RAM holds exactly the golden DRAM image, word for word,
at the golden addresses, and nothing else changed (the RAM starts filled with a pattern); a
read delivers exactly the golden reconstruction. Bad configurations and corrupted DRAM end in
an error status, never a hang, never a write outside the tensor's region.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden import codec
from golden.calibrate import calibrate
from golden.synthetic import correlated_tensor
from sim.tb_fm_codec import (
    GUARD,
    codec_verilog,
    golden_dump,
    read_step,
    records,
    run_steps,
    write_step,
)
from sim.tb_framed import FIXTURE, write_record

pytestmark = pytest.mark.hw

MAX_C = 512
MAX_TILE_WORDS = 64     # raw words of the largest tile used here (512 ch x 1 px x 8 bit = 64)
BASE = 0x3F40           # tiles cross the 4 KB boundary at 0x4000
STATUS_DONE, STATUS_ERROR = 2, 4


def _fixture(key: str, c: int, h: int, w: int) -> np.ndarray:
    if FIXTURE.is_file():
        with np.load(FIXTURE) as f:
            if key in f.files:
                return np.ascontiguousarray(f[key][:1, :c, :h, :w])
    return correlated_tensor(c, h, w, seed=3)


@pytest.fixture(scope="module")
def design():
    return codec_verilog(MAX_C, MAX_TILE_WORDS)


def _run_case(design, x, profile, name, *, stall=False, extra_reads=()):
    enc = codec.encode_tensor(x, profile)
    steps = [write_step(f"{name}/write", x, profile, BASE, stall=stall),
             read_step(f"{name}/read", x, profile, BASE, stall=stall)]
    steps += [read_step(f"{name}/read{k}", x, profile, BASE, stall=stall, **kw)
              for k, kw in enumerate(extra_reads)]
    outs, _ = run_steps(design, steps)
    goldens = []
    for (step, data), out in zip(steps, outs, strict=True):
        assert out, f"{step['name']}: no outputs (an earlier step hung?)"
        assert int(out["hung"]) == 0, f"{step['name']}: no done (status {int(out['status']):#x})"
        status = int(out["status"])
        assert status & STATUS_DONE and not status & STATUS_ERROR, \
            f"{step['name']}: status {status:#x}"
        if step["kind"] == "write":
            exp = golden_dump(enc, profile, step["base"])
            bad = np.flatnonzero(out["dump"] != exp)
            assert bad.size == 0, f"{step['name']}: {bad.size} bytes differ, first at " \
                                  f"{step['base'] - GUARD + int(bad[0]):#x}"
            assert int(out["WR_BYTES"]) == enc.bytes_moved
            assert int(out["RAW_BYTES"]) == x.size
            goldens.append({"values": x.size, "mismatches": 0, "enc": enc})
        else:
            exp = data["expect"]
            got = out["o_data"]
            assert got.size == exp.size, f"{step['name']}: {got.size} values, expected " \
                                         f"{exp.size}"
            assert np.array_equal(got, exp), f"{step['name']}: {(got != exp).sum()} values differ"
            assert np.array_equal(out["o_comp"], np.tile(np.arange(x.shape[1]),
                                                         exp.size // x.shape[1]))
            assert int(out["RD_VALUES"]) == exp.size
            # DRAM dump after a read: untouched
            assert np.array_equal(out["dump"], golden_dump(enc, profile, step["base"]))
            goldens.append({"values": exp.size, "mismatches": 0, "enc": enc})
    recs = records(steps, outs, goldens)
    for r in recs:
        write_record(r)
    return recs, enc


def test_write_read_fixed(design):
    x = _fixture("layer1.0.conv1.pre", 64, 8, 8)
    p = calibrate(x, transform="pca", group=8, bits=8, layout="fixed")
    recs, enc = _run_case(design, x, p, "fm_codec/l1_64x8x8/fixed",
                          extra_reads=[{"image": 0, "tile": 3, "count": 3}])
    full = [r for r in recs if r["test"].endswith("/read")][0]
    assert full["bytes_moved"] == enc.bytes_moved


def test_write_read_compacted_stalls(design):
    """Compacted layout (index table), every AXI channel stalled at random, a 3-row halo read."""
    x = _fixture("layer2.0.conv1.pre", 128, 4, 8)
    p = calibrate(x, transform="pca", group=8, bits=8, layout="compacted", tile_pixels=4)
    recs, enc = _run_case(design, x, p, "fm_codec/l2_128x4x8/compacted", stall=True,
                          extra_reads=[{"image": 0, "tile": 1, "count": 3}])
    full = [r for r in recs if r["test"].endswith("/read")][0]
    assert full["bytes_moved"] <= enc.bytes_moved
