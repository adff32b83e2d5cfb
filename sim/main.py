"""`make sim`: the codec lanes in cycle-accurate simulation on bundled real feature maps.

For every layer in the fixture file (real int8 ResNet-18 feature maps, tests/fixtures/
featuremaps.npz) a profile is calibrated with the golden model, the profile's configuration
writes program ONE encoder lane and ONE decoder lane instance (built for the largest layer, as an
accelerator would), and the layer's tensor runs through both in Verilator under cocotb:

- the encoder lane's words are compared with the golden container (headers included),
- the decoder lane, fed the golden container, must give back the golden reconstruction,

word for word and value for value. Then P = 2 and 4 lanes side by side (hw/multi_lane.py:
EncoderLanes merges the lanes' tiles into the one container word stream, DecoderLanes splits it)
run on a few 64-channel layers (P images each, so every lane gets 65,536 values), with the same
comparisons. A table of
bits/value (real container bytes), cycles/value per lane (cycles x P / values, from the
simulation, pipeline fill included) and mismatches is printed and written with every run's
record (`lanes` = P) to build/reports/sim.json. Exit status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "featuremaps.npz"
REPORT = Path("build") / "reports" / "sim.json"


def _layers(path: Path, placement: str) -> list[tuple[str, np.ndarray]]:
    if not path.is_file():
        raise SystemExit(f"sim: fixture {path} not found; regenerate it with "
                         f"`python -m fmcodec.eval.fixtures` (needs the [eval] extra)")
    with np.load(path) as f:
        out = [(k, f[k]) for k in f.files
               if f[k].ndim == 4 and f[k].dtype == np.int8 and k.endswith(placement)]
    if not out:
        raise SystemExit(f"sim: no int8 (N,C,H,W) tensors ending in {placement!r} in {path}")
    return out


def _mismatches(got: dict, expected: dict) -> int:
    """Beats whose fields differ from the golden stream, plus beats missing at the end."""
    n = len(next(iter(expected.values())))
    m = len(next(iter(got.values())))
    bad = np.zeros(n, dtype=bool)
    for f, e in expected.items():
        g = np.asarray(got[f]).astype(np.int64)[:n]
        bad[: g.size] |= g != np.asarray(e, dtype=np.int64)[: g.size]
    return int(bad.sum()) + max(0, n - m)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.main", description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", type=Path, default=FIXTURE)
    ap.add_argument("--placement", default=".pre",
                    help="key suffix of the tensors to run (.pre: pre-ReLU conv output)")
    ap.add_argument("--images", type=int, default=1,
                    help="images of each layer to run (the bundled fixture holds 4: --images 4 "
                         "runs the whole tensors)")
    ap.add_argument("--layers", default="",
                    help="comma-separated layers (e.g. conv1,layer4.0.conv1) for the single "
                         "lanes (default all)")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--valid-prob", type=float, default=1.0,
                    help="input valid probability (1: full rate, cycles are then throughput)")
    ap.add_argument("--ready-prob", type=float, default=1.0)
    ap.add_argument("--report", type=Path, default=REPORT)
    ap.add_argument("--lanes", default="2,4",
                    help="comma-separated P > 1 to run besides the single lanes ('' for none)")
    ap.add_argument("--lane-layers", default="conv1",
                    help="layers for the P-lane runs (64-channel int8 layers)")
    ap.add_argument("--lane-images", type=int, default=0,
                    help="images of each P-lane run (default P: 65,536 values per lane)")
    args = ap.parse_args(argv)
    if args.images < 1:
        ap.error(f"--images must be at least 1, got {args.images}")

    from golden.calibrate import calibrate
    from golden.stats import measure
    from hw.decoder_lane import DecoderLane
    from hw.encoder_lane import EncoderLane
    from sim.runner import require_simulator, run_cocotb
    from sim.tb_framed import design_verilog
    from sim.tb_lanes import decoder_case, encoder_case

    require_simulator()
    layers = _layers(args.fixture, args.placement)
    all_layers = layers
    if args.layers:
        keep = set(_keys(args.layers, args.placement))
        layers = [(k, t) for k, t in layers if k in keep]
    rates = {"valid_prob": args.valid_prob, "ready_prob": args.ready_prob}
    cases = []
    for key, t in layers:
        if args.images > t.shape[0]:
            raise SystemExit(f"sim: --images {args.images}: {key} holds only {t.shape[0]} "
                             f"images")
        calib = t                                        # every image of the fixture
        profile = calibrate(calib, transform="pca", group=args.group, bits=args.bits)
        cases.append((key, t[: args.images], profile))
    max_c = max(p.channels for _, _, p in cases)
    max_words = max(p.raw_words(p.tile_pixels) for _, _, p in cases)
    print(f"sim: {len(cases)} layers from {args.fixture.name}; one encoder lane and one decoder "
          f"lane, N={args.group}, up to {max_c} channels, tile buffers {max_words} words",
          flush=True)
    t0 = time.monotonic()
    enc_design = design_verilog(EncoderLane, group=args.group, max_channels=max_c,
                                max_tile_words=max_words)
    dec_design = design_verilog(DecoderLane, group=args.group, max_channels=max_c)
    print(f"sim: Verilog generated in {time.monotonic() - t0:.0f} s; building the models "
          f"(first run only, cached in build/sim/_models)", flush=True)

    records, rows = [], []
    for i, (key, x, profile) in enumerate(cases, 1):
        stats = measure(x, profile)
        name = f"{key} {'x'.join(map(str, x.shape))}"
        print(f"[{i}/{len(cases)}] {name}: encoder lane ...", end="", flush=True)
        data, params, expected, _ = encoder_case(x, profile, f"sim/{key}/encoder", **rates)
        out = run_cocotb(enc_design, "sim.tb_lanes", testcase="encoder_lane",
                         name=f"sim-{key}-enc", data=data, params=params).outputs
        enc_mm = _mismatches(out, expected) + int(out["extra"])
        enc_cycles = int(out["cycles"])
        print(" decoder lane ...", end="", flush=True)
        data, params, expected, _ = decoder_case(x, profile, f"sim/{key}/decoder", **rates)
        out = run_cocotb(dec_design, "sim.tb_lanes", testcase="decoder_lane",
                         name=f"sim-{key}-dec", data=data, params=params).outputs
        dec_mm = _mismatches(out, expected) + int(out["extra"])
        dec_cycles = int(out["cycles"])
        print(" done", flush=True)
        for block, cycles, mm, err in (("encoder_lane", enc_cycles, enc_mm, 0),
                                       ("decoder_lane", dec_cycles, dec_mm, int(out["error"]))):
            records.append({"test": f"sim/{key}", "block": block, "lanes": 1,
                            "tensor": key, "shape": list(x.shape), "values": int(x.size),
                            "cycles": cycles, "cycles_per_value": cycles / x.size,
                            "mismatches": mm, "error_flag": err,
                            "bits_per_value": stats["bits_per_value"],
                            "entropy_bits_per_value": stats["entropy_bits_per_value"],
                            "sqnr_db": stats["sqnr_db"], **rates})
        rows.append((name, stats["bits_per_value"], stats["sqnr_db"], enc_cycles / x.size,
                     dec_cycles / x.size, enc_mm + dec_mm))

    rows = [(1, *r) for r in rows]
    multi = [int(v) for v in args.lanes.split(",") if v.strip()]
    lane_keys = _keys(args.lane_layers, args.placement)
    by_key = {k: t for k, t in all_layers}
    for lanes in multi:
        for key in lane_keys:
            if key not in by_key:
                print(f"sim: P={lanes}: no layer {key!r} in the fixture, skipped")
                continue
            rec, row = _run_multi(key, by_key[key], lanes, args, rates)
            if rec:
                records += rec
                rows.append(row)

    head = (f"{'tensor':40s} {'P':>2s} {'bits/value':>10s} {'SQNR dB':>8s} {'enc cyc/val':>11s} "
            f"{'dec cyc/val':>11s} {'mismatches':>10s}")
    print()
    print(head)
    print("-" * len(head))
    for lanes, name, bpv, sqnr, ec, dc, mm in rows:
        print(f"{name:40s} {lanes:2d} {bpv:10.3f} {sqnr:8.2f} {ec:11.4f} {dc:11.4f} {mm:10d}")
    print("(cycles/value per lane: cycles x P / values)")
    total_mm = sum(r[-1] for r in rows)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.report.with_suffix(".tmp")
    tmp.write_text(json.dumps({"records": records, "fixture": str(args.fixture),
                               "group": args.group, "bits": args.bits}, indent=1))
    tmp.replace(args.report)
    print(f"\n{len(rows)} tensors, {total_mm} mismatches; records in {args.report}")
    return 1 if total_mm else 0


def _run_multi(key: str, t: np.ndarray, lanes: int, args, rates: dict):
    """Every image of layer `key` through EncoderLanes and DecoderLanes with P = `lanes`:
    (records, table row), or ([], None) when the layer does not fit the P-lane build."""
    from golden.calibrate import calibrate
    from golden.stats import measure
    from sim.runner import run_cocotb
    from sim.tb_lanes import (
        MULTI_LANE_PARAMS,
        lanes_data,
        lanes_decoder_segment,
        lanes_design,
        lanes_encoder_segment,
    )

    profile = calibrate(t, transform="pca", group=args.group, bits=args.bits)
    if (args.group != MULTI_LANE_PARAMS["group"]
            or profile.channels > MULTI_LANE_PARAMS["max_channels"]
            or profile.raw_words(profile.tile_pixels) > MULTI_LANE_PARAMS["max_tile_words"]):
        print(f"sim: P={lanes}: {key} does not fit the P-lane build {MULTI_LANE_PARAMS}, skipped")
        return [], None
    x = t[: args.lane_images or lanes]
    stats = measure(x, profile)
    name = f"{key} {'x'.join(map(str, x.shape))}"
    print(f"[P={lanes}] {name}: encoder lanes ...", end="", flush=True)
    out_rec, per_lane, mism = [], {}, {}
    for n, (kind, block, make, tb) in enumerate((
            ("encoder", "encoder_lanes", lanes_encoder_segment, "encoder_lanes"),
            ("decoder", "decoder_lanes", lanes_decoder_segment, "decoder_lanes"))):
        if n:
            print(" decoder lanes ...", end="", flush=True)
        seg = make(x, profile, "tensor", lanes, **rates)
        data, params = lanes_data([seg], block, lanes, f"sim/{key}/P{lanes}")
        out = run_cocotb(lanes_design(kind, lanes), "sim.tb_lanes", testcase=tb, data=data,
                         params=params, name=f"sim-{key}-{block}{lanes}").outputs
        got = {k[3:]: v for k, v in out.items() if k.startswith("s0_out")}
        mm = sum(_mismatches({f: got[f"{key_}_{f}"] for f in fs},
                             {f: seg["expected"][f"{key_}_{f}"] for f in fs})
                 for key_, fs in _streams(seg["expected"]).items()) + int(out["extra"])
        cycles = int(out["s0_cycles"])
        per_lane[block], mism[block] = cycles * lanes / x.size, mm
        out_rec.append({"test": f"sim/{key}", "block": block, "lanes": lanes, "tensor": key,
                        "shape": list(x.shape), "values": int(x.size), "cycles": cycles,
                        "cycles_per_value": cycles / x.size,
                        "cycles_per_value_per_lane": per_lane[block], "mismatches": mm,
                        "error_flag": int(out["s0_error"]),
                        "bits_per_value": stats["bits_per_value"],
                        "entropy_bits_per_value": stats["entropy_bits_per_value"],
                        "sqnr_db": stats["sqnr_db"], **rates})
    print(" done", flush=True)
    return out_rec, (lanes, name, stats["bits_per_value"], stats["sqnr_db"],
                     per_lane["encoder_lanes"], per_lane["decoder_lanes"], sum(mism.values()))


def _keys(names: str, placement: str) -> list[str]:
    """Fixture keys of comma-separated layer names (the placement suffix may be left off)."""
    out = []
    for k in (k.strip() for k in names.split(",")):
        if k:
            out.append(k if k.endswith(placement) else k + placement)
    return out


def _streams(expected: dict) -> dict[str, list[str]]:
    """{'out0': ['data', 'comp', ...], ...}: the output streams of a segment and their fields."""
    out: dict[str, list[str]] = {}
    for k in expected:
        stream_, f = k.split("_", 1)
        out.setdefault(stream_, []).append(f)
    return out


if __name__ == "__main__":
    sys.exit(main())
