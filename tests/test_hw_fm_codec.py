"""The feature-map codec top (AXI4 writer and reader, AXI4-Lite control) against the golden model.

One Verilog build serves every case; each test runs a sequence of jobs on one simulation (as
software would: program, write, read back, read ranges) with cocotbext-axi's AxiRam as DRAM and
AxiLiteMaster as host. After a write the RAM holds exactly the golden DRAM image, word for word,
at the golden addresses, and nothing else changed (the RAM starts filled with a pattern); a
read delivers exactly the golden reconstruction. Bad configurations and corrupted DRAM end in
an error status, never a hang, never a write outside the tensor's region.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from golden import codec
from golden.calibrate import calibrate
from golden.synthetic import correlated_tensor
from sim.tb_fm_codec import (
    FILL,
    GUARD,
    STALL_PROB,
    codec_verilog,
    golden_dump,
    preload_dump,
    read_step,
    records,
    region_bytes,
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


def _run_case(design, x, profile, name, *, stall=False, extra_reads=(), lanes=1):
    recs, encs = _run_cases(design, [(x, profile, name, stall, extra_reads)], lanes=lanes)
    return recs, encs[0]


def _run_cases(design, cases, lanes=1):
    """Each case (x, profile, name, stall, extra_reads): program, write at BASE, read all, the
    extra range reads; all cases on one simulation. Checks every step against the golden
    model; returns the records and the golden encodings."""
    steps, owner, encs = [], [], []
    for c, (x, profile, name, stall, extra_reads) in enumerate(cases):
        encs.append(codec.encode_tensor(x, profile))
        base = BASE + c * 0x10000       # each case its own region (the RAM is never cleared)
        steps += [write_step(f"{name}/write", x, profile, base, stall=stall),
                  read_step(f"{name}/read", x, profile, base, stall=stall)]
        steps += [read_step(f"{name}/read{k}", x, profile, base, stall=stall, **kw)
                  for k, kw in enumerate(extra_reads)]
        owner += [c] * (len(steps) - len(owner))
    outs, res = run_steps(design, steps)
    goldens = []
    for (step, data), out, c in zip(steps, outs, owner, strict=True):
        x, profile, enc = cases[c][0], cases[c][1], encs[c]
        assert out, f"{step['name']}: no outputs (an earlier step hung?)"
        assert int(out["hung"]) == 0, f"{step['name']}: no done (status {int(out['status']):#x})"
        status = int(out["status"])
        assert status & STATUS_DONE and not status & STATUS_ERROR, \
            f"{step['name']}: status {status:#x}"
        assert int(out["outside"]) == 0, f"{step['name']}: bytes changed outside the region"
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
    assert int(res.outputs["late_values"]) == 0
    recs = records(steps, outs, goldens, lanes=lanes)
    for r in recs:
        write_record(r)
    return recs, encs


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


# -- bad configuration and corrupted DRAM ----------------------------------------------------------

# STATUS cause bits (hw/fm_control.py `control_errors`, from bit 8)
CAUSE = {name: 1 << (8 + k) for k, name in enumerate(
    ("uncommitted", "zero", "mismatch", "layout", "align", "range", "region", "_pad",
     "wr_lane", "wr_resp", "wr_framing", "wr_bounds",
     "rd_lane", "rd_resp", "rd_length", "rd_table"))}


FILL_WORD = np.uint64(int.from_bytes(bytes([FILL]) * 8, "little"))   # a DRAM word never written


def _step_adder(steps: list, expect: dict):
    """`add(step, causes, dump_expect=None)` for the error tests: queue a job and the STATUS
    causes it must end with (and, optionally, the DRAM region expected after it)."""
    def add(step, causes, dump_expect=None):
        if dump_expect is not None:
            step[1]["dump_expect"] = dump_expect
        steps.append(step)
        expect[step[0]["name"]] = causes
    return add


def _check_error_steps(steps, outs, expect):
    """Every step: done, never hung, nothing changed outside its region, and the outcome in
    `expect[name]`: None (success) or a set of cause names of which at least one is set and no
    other is."""
    for (step, data), out in zip(steps, outs, strict=True):
        name = step["name"]
        assert out, f"{name}: no outputs (an earlier step hung?)"
        status = int(out["status"])
        assert int(out["hung"]) == 0, f"{name}: no done (status {status:#x})"
        assert status & STATUS_DONE, f"{name}: status {status:#x}"
        assert int(out["outside"]) == 0, f"{name}: {int(out['outside'])} bytes changed outside " \
                                         "the tensor's region"
        causes = expect[name]
        if causes is None:
            assert not status & STATUS_ERROR, f"{name}: status {status:#x}"
        else:
            must, also = causes if isinstance(causes, tuple) else (causes, set())
            need = sum(CAUSE[c] for c in must)
            mask = need | sum(CAUSE[c] for c in also)
            assert status & STATUS_ERROR, f"{name}: no error (status {status:#x})"
            assert status & need, f"{name}: status {status:#x}, expected one of {must}"
            assert not status & ~mask & ~0xFF, \
                f"{name}: status {status:#x}, expected {must} (or also {also})"
        if step["kind"] == "read":
            # exactly the range's values, whatever DRAM holds
            got = out["o_data"]
            assert got.size == step["n_out"], f"{name}: {got.size} values for {step['n_out']}"
            assert int(out["RD_VALUES"]) == step["n_out"]
            c = step["shape"][1]
            assert np.array_equal(out["o_comp"], np.tile(np.arange(c), got.size // c))
            if causes is None:
                assert np.array_equal(got, data["expect"]), f"{name}: values differ"
        elif isinstance(causes, set) and causes <= {"uncommitted", "zero", "mismatch", "layout",
                                               "align", "range", "region"}:
            assert int(out["WR_BYTES"]) == 0 and int(out["RAW_BYTES"]) == 0, name
        if out.get("dump") is not None and "dump_expect" in data:
            bad = np.flatnonzero(out["dump"] != data["dump_expect"])
            assert bad.size == 0, f"{name}: {bad.size} bytes differ in the region"


def test_errors_config_and_corrupt_fixed(design):
    """Bad configurations (before any programming, shape, zero size, alignment, layout, range,
    address space) and corrupted fixed-layout DRAM (header length, payload bit flip, truncated
    image): each ends done + error with its cause, no hang, no write outside the region, and a
    read delivers exactly its range's values; then a good write and read still work."""
    x = _fixture("layer1.0.conv1.pre", 64, 4, 8)
    p = calibrate(x, transform="pca", group=8, bits=8, layout="fixed")
    enc = codec.encode_tensor(x, p)
    img = enc.image.copy()
    slot = enc.slot_words
    n, c, h, w = x.shape
    fill = FILL_WORD
    size = region_bytes(enc, p)
    bases = iter(range(0x20000, 0xF0000, (size + 2 * GUARD + 0xFFF) & ~0xFFF))
    steps, expect = [], {}
    add = _step_adder(steps, expect)


    empty = np.full(size + 2 * GUARD, FILL, dtype=np.uint8)
    b = next(bases)
    add(write_step("uncommitted", x, p, b, program=False, send=False), {"uncommitted"}, empty)
    good = next(bases)
    add(write_step("write", x, p, good), None, golden_dump(enc, p, good))
    b = next(bases)
    for name, shape in (("c_mismatch", (n, c // 2, h, w)), ("hw_mismatch", (n, c, h, w + 1)),
                        ("n_zero", (0, c, h, w))):
        add(write_step(name, x, p, b, program=False, send=False, shape=shape),
            {"zero"} if name == "n_zero" else {"mismatch"}, empty)
    add(write_step("h_zero", x, p, b, program=False, send=False, shape=(n, c, 0, w)),
        {"zero", "mismatch"}, empty)
    add(write_step("misaligned", x, p, b + 4, program=False, send=False), {"align"})
    add(write_step("layout", x, p, b, program=False, send=False, layout=1), {"layout"}, empty)
    add(write_step("address_space", x, p, 0x1_0000_0000 - (size // 2 & ~7), program=False,
                   send=False, dump=False),
        {"region"})
    add(read_step("rd_misaligned", x, p, good + 2, expect=[]), {"align"})
    add(read_step("rd_count0", x, p, good, count=0, expect=[]), {"range"})
    add(read_step("rd_tile_out", x, p, good, tile=h, count=1, expect=[]), {"range"})
    add(read_step("rd_image_out", x, p, good, image=1, count=1, expect=[]), {"range"})
    add(read_step("rd_past_end", x, p, good, tile=1, count=h, expect=[]), {"range"})

    def corrupt(name, words, causes, **kw):
        b = next(bases)
        add(read_step(name, x, p, b, preload=words, **kw), causes,
            preload_dump(words, x, p, b))

    bad = img.copy()
    bad[1 * slot] = (bad[1 * slot] & ~np.uint64(0xFFFFF)) | np.uint64(slot)   # > slot payload
    # the reader passes the header on alone, so the lane flags the tile too
    corrupt("hdr_length_over_slot", bad, ({"rd_length"}, {"rd_lane"}))
    bad = img.copy()
    bad[1 * slot] = bad[1 * slot] + np.uint64(1) if int(bad[1 * slot]) & 0xFFFFF > 1 \
        else bad[1 * slot] - np.uint64(1)                                    # CRC no longer fits
    corrupt("hdr_length_changed", bad, {"rd_lane"})
    bad = img.copy()
    bad[2 * slot + 1] ^= np.uint64(1 << 37)
    corrupt("payload_bit_flip", bad, {"rd_lane"})
    corrupt("payload_bit_flip_range", bad, {"rd_lane"}, tile=2, count=1)
    bad = img.copy()
    bad[int(2.5 * slot):] = 0
    corrupt("truncated_zero", bad, {"rd_lane"})
    bad = img.copy()
    bad[int(2.5 * slot):] = fill
    corrupt("truncated_fill", bad, ({"rd_length"}, {"rd_lane"}))
    add(read_step("read_after_errors", x, p, good, dump=True), None, golden_dump(enc, p, good))
    b = next(bases)
    add(write_step("write_after_errors", x, p, b, program=False), None, golden_dump(enc, p, b))

    outs, res = run_steps(design, steps)
    _check_error_steps(steps, outs, expect)
    assert int(res.outputs["late_values"]) == 0


def test_errors_corrupt_compacted(design):
    """Corrupted compacted-layout DRAM: bad index entries (outside the region, off by one word,
    for a full and a range read), a changed header length (the chain breaks), a payload bit flip
    and an image cut short (the rest never written: FILL): done + error with the cause, no hang,
    exactly the range's values; then a good read of the intact copy."""
    x = _fixture("layer1.0.conv1.pre", 64, 4, 8)
    p = calibrate(x, transform="pca", group=8, bits=8, layout="compacted")
    enc = codec.encode_tensor(x, p)
    img = enc.image.copy()
    tw = enc.table_words
    off = [int(o) for o in enc.tile_offset]                # header word of each tile in `img`
    fill = FILL_WORD
    size = region_bytes(enc, p)
    bases = iter(range(0x20000, 0xF0000, (size + 2 * GUARD + 0xFFF) & ~0xFFF))
    steps, expect = [], {}
    add = _step_adder(steps, expect)


    def corrupt(name, words, causes, **kw):
        b = next(bases)
        add(read_step(name, x, p, b, preload=words, **kw), causes,
            preload_dump(words, x, p, b))

    good = next(bases)
    add(write_step("write", x, p, good), None, golden_dump(enc, p, good))

    def entry(words, t, value):
        w = int(words[t // 2])
        sh = 32 * (t % 2)
        words[t // 2] = np.uint64((w & ~(0xFFFFFFFF << sh)) | ((value & 0xFFFFFFFF) << sh))

    bad = img.copy()
    entry(bad, 0, 0x00FFFFFF)
    # the rest of the range is fed as empty tiles, which the lane flags too
    corrupt("index_outside", bad, ({"rd_table"}, {"rd_lane"}))
    bad = img.copy()
    entry(bad, 2, int(enc.tile_offset[2]) - tw + 1)
    corrupt("index_off_by_one_range", bad, ({"rd_lane", "rd_length"}, {"rd_lane", "rd_length"}),
            tile=2, count=2)
    bad = img.copy()
    entry(bad, 3, 0xFFFFFFFF)
    corrupt("index_outside_range", bad, ({"rd_table"}, {"rd_lane"}), tile=3, count=1)
    bad = img.copy()
    h1 = off[1]
    bad[h1] = bad[h1] + np.uint64(1)                       # payload one word longer: CRC fails
    corrupt("hdr_length_changed", bad, ({"rd_lane"}, {"rd_length"}))
    bad = img.copy()
    bad[off[2] + 1] ^= np.uint64(1 << 11)
    corrupt("payload_bit_flip", bad, {"rd_lane"})
    bad = img.copy()
    bad[off[2] + 1:] = fill
    corrupt("truncated_fill", bad, ({"rd_lane", "rd_length"}, {"rd_lane", "rd_length"}))
    add(read_step("read_after_errors", x, p, good), None, golden_dump(enc, p, good))

    outs, res = run_steps(design, steps)
    _check_error_steps(steps, outs, expect)
    assert int(res.outputs["late_values"]) == 0


# -- more shapes -----------------------------------------------------------------------------------


def test_layer3_256ch_fixed(design):
    """ResNet-18 layer3 channel count (256 x 4 x 4 of the real 256 x 8 x 8 feature map), two
    pixels per tile."""
    x = _fixture("layer3.0.conv1.pre", 256, 4, 4)
    p = calibrate(x, transform="pca", group=8, bits=8, layout="fixed", tile_pixels=2)
    assert p.raw_words(p.tile_pixels) <= MAX_TILE_WORDS
    _run_case(design, x, p, "fm_codec/l3_256x4x4/fixed",
              extra_reads=[{"image": 0, "tile": 3, "count": 4}])


def test_layer4_512ch_compacted_stalls(design):
    """ResNet-18 layer4 channel count (512 x 2 x 4 of the real 512 x 4 x 4), one pixel per tile,
    compacted, every AXI channel stalled and the conv engine's ready too."""
    x = _fixture("layer4.0.conv1.pre", 512, 2, 4)
    p = calibrate(x, transform="pca", group=8, bits=8, layout="compacted", tile_pixels=1)
    assert p.raw_words(p.tile_pixels) <= MAX_TILE_WORDS
    _run_case(design, x, p, "fm_codec/l4_512x2x4/compacted", stall=True,
              extra_reads=[{"image": 0, "tile": 5, "count": 3, "ready_prob": 0.6}])


@pytest.mark.parametrize("layout", ["fixed", "compacted"])
def test_short_last_tile(design, layout):
    """Tile size not dividing H*W (correlated synthetic 64 x 3 x 3, two images, 2 pixels per
    tile: 2, 2, 2, 2, 1 per image): tiles never cross images; ranges that end in the short
    tile, cross into the next image, and the short tile alone."""
    x = correlated_tensor(64, 3, 3, batch=2, seed=11)
    p = calibrate(x, transform="pca", group=8, bits=8, layout=layout, tile_pixels=2)
    _run_case(design, x, p, f"fm_codec/synth_64x3x3x2/{layout}", stall=layout == "compacted",
              extra_reads=[{"image": 1, "tile": 2, "count": 3},
                           {"image": 0, "tile": 0, "count": 7},
                           {"image": 0, "tile": 4, "count": 1}])


# -- P = 2 and 4 lanes -----------------------------------------------------------------------------

LANES_MAX_C = 64
# P = 2 runs by default (its model is about half the P = 4 one, which `make test` could not
# afford next to the compact lanes' tests); P = 4 goes through the same merge and split and runs
# with FMCODEC_SLOW=1 (and `make sim` runs P = 2 and 4 lane blocks against the golden model).
LANE_COUNTS = [
    2,
    pytest.param(4, marks=[pytest.mark.slow, pytest.mark.skipif(
        os.environ.get("FMCODEC_SLOW") != "1", reason="P = 4 on the DRAM side: FMCODEC_SLOW=1")]),
]


@pytest.mark.parametrize("lanes", LANE_COUNTS)
def test_lanes(lanes):
    """P lanes (hw/multi_lane.py): conv stream p carries the tiles p, p + P, ...; the DRAM
    image is the golden one for every P, both layouts (compacted with AXI stalls), full reads
    and ranges that start on every lane (a short last tile over two images: the test below)."""
    design = codec_verilog(LANES_MAX_C, MAX_TILE_WORDS, lanes=lanes)
    x = _fixture("layer1.0.conv1.pre", 64, 4, 8)
    pf = calibrate(x, transform="pca", group=8, bits=8, layout="fixed")
    pc = calibrate(x, transform="pca", group=8, bits=8, layout="compacted", tile_pixels=4)
    cases = [
        (x, pf, f"fm_codec/p{lanes}/l1_64x4x8/fixed", False,
         [{"image": 0, "tile": 1, "count": 3}, {"image": 0, "tile": 3, "count": 1}]),
        (x, pc, f"fm_codec/p{lanes}/l1_64x4x8/compacted", True,
         [{"image": 0, "tile": 3, "count": 4, "ready_prob": 0.5}]),
    ]
    _run_cases(design, cases, lanes=lanes)


@pytest.mark.parametrize("lanes", LANE_COUNTS)
def test_lanes_short_last_tile(lanes):
    """P lanes with a short last tile over three images (64 x 3 x 3, three images, 2-pixel
    tiles: 2, 2, 2, 2, 1 per image; 15 tiles, so lanes get different tile counts at P = 2 and 4,
    and the 1-pixel tiles land on lanes 0 and 1 at P = 2, on 0, 1 and 2 at P = 4), compacted
    under AXI stalls, then fixed with DRAM free: a step
    without stalls after one with them (this once hung: cocotbext-axi's
    `clear_pause_generator` left a channel paused, sim/tb_fm_codec.py)."""
    design = codec_verilog(LANES_MAX_C, MAX_TILE_WORDS, lanes=lanes)
    y = correlated_tensor(64, 3, 3, batch=3, seed=5)
    pc = calibrate(y, transform="pca", group=8, bits=8, layout="compacted", tile_pixels=2)
    pf = calibrate(y, transform="pca", group=8, bits=8, layout="fixed", tile_pixels=2)
    _run_cases(design, [
        (y, pc, f"fm_codec/p{lanes}/synth_64x3x3x3/compacted", True,
         [{"image": 0, "tile": 3, "count": 2}, {"image": 0, "tile": 0, "count": 7}]),
        (y, pf, f"fm_codec/p{lanes}/synth_64x3x3x3/fixed", False,
         [{"image": 1, "tile": 1, "count": 4}, {"image": 0, "tile": 4, "count": 1},
          {"image": 2, "tile": 3, "count": 2}]),
    ], lanes=lanes)


# -- measurement (FMCODEC_SLOW=1) ------------------------------------------------------------------
#
# The per-shape figures of the DRAM side (one command, about 10 minutes on a loaded 2-core
# machine once the models are built; the table is build/reports/fm_codec_measure/table.md):
#
#   FMCODEC_SLOW=1 .venv/bin/python -m pytest -q -s tests/test_hw_fm_codec.py -k measure

RESNET18_SHAPES = [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
BAND_ROWS = 2
MEASURE_DIR = Path(__file__).resolve().parent.parent / "build" / "reports" / "fm_codec_measure"


def _measure(design, x_full, x, profile, name, lanes):
    """Write and read `x` (a band of `x_full`) free and with AXI stalls; check the hardware's
    bytes moved against the golden container of the band (_run_cases: WR_BYTES equal, a full
    read's RD_BYTES too in the fixed layout); print one line per job and leave a JSON file per
    case under MEASURE_DIR, from which `measure_table` makes MEASURE_DIR/table.md (so the table
    holds whatever cases have run)."""
    cases = [(x, profile, f"{name}/free", False, []), (x, profile, f"{name}/stall", True, [])]
    recs, encs = _run_cases(design, cases, lanes=lanes)
    full = codec.encode_tensor(x_full, profile)
    lines = []
    for r in recs:
        assert r["golden_bytes"] == encs[0].bytes_moved
        if r["block"] == "fm_writer" or profile.layout == "fixed":
            assert r["bytes_moved"] == r["golden_bytes"], r["test"]
        lines.append(f"{r['test']:<44} P={lanes} {r['block']:<9} values {r['values']:>6} "
                     f"cycles {r['cycles']:>6} c/v {r['cycles_per_value']:.3f} "
                     f"bytes {r['bytes_moved']:>6} golden {r['golden_bytes']:>6} "
                     f"raw {r['raw_bytes']:>6} | whole tensor golden {full.bytes_moved} "
                     f"raw {x_full.size} ({8 * full.bytes_moved / x_full.size:.2f} b/v)")
    print("\n" + "\n".join(lines))
    MEASURE_DIR.mkdir(parents=True, exist_ok=True)
    (MEASURE_DIR / (name.replace("/", "_") + ".json")).write_text(json.dumps({
        "name": name, "lanes": lanes, "layout": profile.layout,
        "shape": list(x_full.shape[1:]), "band_shape": list(x.shape),
        "tile_pixels": int(profile.tile_pixels), "records": recs,
        "whole_golden_bytes": int(full.bytes_moved), "whole_raw_bytes": int(x_full.size)},
        indent=1))
    measure_table()
    return recs


def measure_table() -> str:
    """MEASURE_DIR/table.md from the cases' JSON files: per case, write and read cycles/value
    (WR_/RD_CYCLES over the band's values) free and with DRAM stalls, the band's bytes moved by
    the hardware (write; = golden container bytes, checked) against raw int8, and the whole
    tensor's golden container bytes against raw int8."""
    rows = []
    for f in sorted(MEASURE_DIR.glob("*.json")):
        d = json.loads(f.read_text())
        cpv = {}
        for r in d["records"]:
            kind = "wr" if r["block"] == "fm_writer" else "rd"
            cpv[kind, r["test"].rsplit("/", 2)[-2]] = r
        w = cpv["wr", "free"]
        c, h, wd = d["shape"]
        rows.append(
            f"| {c}x{h}x{wd} | {d['layout']} | {d['lanes']} | {d['tile_pixels']} | "
            f"{'x'.join(map(str, d['band_shape']))} | "
            + " | ".join(f"{cpv[k, s]['cycles_per_value']:.3f}"
                         for k in ("wr", "rd") for s in ("free", "stall"))
            + f" | {w['bytes_moved']} | {w['golden_bytes']} | {w['raw_bytes']} | "
            f"{8 * w['bytes_moved'] / w['raw_bytes']:.2f} | {d['whole_golden_bytes']} | "
            f"{d['whole_raw_bytes']} | {d['whole_raw_bytes'] / d['whole_golden_bytes']:.2f}x |")
    head = ("| shape CxHxW | layout | P | tile px | band NxCxHxW | write c/v | write c/v "
            "stalled | read c/v | read c/v stalled | band bytes (hw) | band golden | band raw "
            "| band bits/value | tensor golden bytes | tensor raw int8 | tensor ratio |\n"
            "|" + "---|" * 16)
    text = (f"DRAM stalls: every AXI channel paused with probability {STALL_PROB} per clock "
            "(sim/tb_fm_codec.py); c/v = hardware WR_CYCLES or RD_CYCLES / band values.\n\n"
            + head + "\n" + "\n".join(rows) + "\n")
    (MEASURE_DIR / "table.md").write_text(text)
    return text


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FMCODEC_SLOW") != "1", reason="measurement: FMCODEC_SLOW=1")
@pytest.mark.parametrize("shape", RESNET18_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ["fixed", "compacted"])
def test_measure_p1(shape, layout):
    """P = 1, each ResNet-18 shape (correlated synthetic, calibrated on the whole tensor): a
    band of BAND_ROWS image rows (tile = one row) written and read back, free and stalled."""
    c, h, w = shape
    design = codec_verilog(512, 512)
    x_full = correlated_tensor(c, h, w, seed=1)
    p = calibrate(x_full, transform="pca", group=8, bits=8, layout=layout)
    x = np.ascontiguousarray(x_full[:, :, :BAND_ROWS, :])
    _measure(design, x_full, x, p, f"measure/{c}x{h}x{w}/{layout}", 1)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("FMCODEC_SLOW") != "1", reason="measurement: FMCODEC_SLOW=1")
@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_measure_lanes(lanes):
    """P = 1, 2, 4 on the lanes build (64 channels): a 2-row band of 64 x 56 x 56, 8-pixel
    tiles (so a tile fits the build's 64 words), free and stalled."""
    design = codec_verilog(LANES_MAX_C, MAX_TILE_WORDS, lanes=lanes) if lanes > 1 \
        else codec_verilog(MAX_C, MAX_TILE_WORDS)
    x_full = correlated_tensor(64, 56, 56, seed=1)
    p = calibrate(x_full, transform="pca", group=8, bits=8, layout="fixed", tile_pixels=8)
    x = np.ascontiguousarray(x_full[:, :, :BAND_ROWS, :])
    _measure(design, x_full, x, p, f"measure/p{lanes}/64x56x56/fixed", lanes)
