"""Network-level evaluation of ResNet-18: bits/value, top-1 and DRAM energy per method.

    python -m fmcodec.eval [--quick] [--images N] [--code-images K] [--threads T]
    python -m fmcodec.eval --weights resnet18-f37072fd.pth --imagenet DIR [--images N]
    fmcodec eval ...                                  (the same options)

The network is the digits ResNet-18 of ``fmcodec.eval.train`` (trained and cached when missing)
or, with ``--weights`` and ``--imagenet``, torchvision's ImageNet ResNet-18 on an image folder.
Every DRAM boundary (20 conv+BN outputs) is quantized to int8 with a per-boundary scale, in one
placement at a time: ``pre`` (before ReLU / residual add, the paper's) or ``post`` (what the next
layer reads, EBPC's). Then, on the same int8 tensors:

- lossless: raw int8, ZVC, EBPC (``fmcodec.eval.baselines``; real encoded bytes);
- lossy: this project's codec (``golden``) per operating point: transform (identity = no
  transform, PCA, DCT, WHT), group size N, bit width B (the strongest component's width; lower is
  coarser) and coder (``auto``; ``pooled-huffman`` with PCA over all C channels is the paper's
  method, whose pooled entropy is what the paper reported).

Per layer and operating point a profile is calibrated on calibration images, and the held-out
*code* images are coded by the golden encoder: bits/value are real container bytes (tile
headers and padding included) over values. Top-1 substitutes, at every boundary of every held-out
image, the decoder's reconstruction (``fmcodec.eval.fastpath``, checked against a real golden
decode at run time). DRAM traffic and energy per inference come from ``fmcodec.eval.energy``.

Writes ``build/reports/eval.json`` and the plots ``eval_top1_vs_bits.png``,
``eval_bits_per_layer.png`` and ``eval_bits_vs_group.png`` next to it.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "build" / "reports"
FULL = 0            # group size placeholder: all C channels in one group
DROP_PP = 0.5       # the accuracy budget of the targets, in percentage points of top-1
CURVE_BITS = 6      # bit width of the group-size curve


class EvalError(Exception):
    """Bad input: printed as one line, exit status 2."""


@dataclass(frozen=True)
class Point:
    """One lossy operating point of the golden codec."""

    transform: str
    group: int          # FULL: all channels
    bits: int
    coder: str = "auto"
    top1: bool = True   # False: bits/value only (the group-size curve)
    drop: bool = True   # False: classes all zero in calibration are kept (``calibrate(drop=)``)

    @property
    def method(self) -> str:
        if self.coder == "pooled-huffman":
            return "paper: PCA full C, pooled Huffman"
        keep = "" if self.drop else ", no drop"
        if self.transform == "identity":
            return f"fmcodec: no transform{keep}"
        n = "C" if self.group == FULL else self.group
        return f"fmcodec: {self.transform.upper()} N={n}{keep}"

    @property
    def key(self) -> str:
        n = "C" if self.group == FULL else str(self.group)
        return f"{self.transform}-N{n}-B{self.bits}-{self.coder}" + ("" if self.drop else "-keep")


def sweep(quick: bool) -> list[Point]:
    """The default operating points; group-size curve points carry ``top1=False``.

    B below 5 (N = 8) or 6 (N = C) costs several points of top-1 on the digits network, so the
    default sweep spends its time around the 0.5 pp budget. The ``drop=False`` points keep the
    components that were all zero in the calibration images (coded behind a zero flag): at the
    same step they reconstruct exactly what the paper's method does, whereas a dropped
    component that a held-out image does use is lost.
    """
    if quick:
        pts = [Point("identity", 8, 8)]
        pts += [Point("pca", 8, b) for b in (5, 6)]
        pts += [Point("pca", FULL, b) for b in (6, 7)]
        pts += [Point("pca", FULL, 6, drop=False)]
        pts += [Point("pca", FULL, b, "pooled-huffman") for b in (6, 7)]
        curve_b, curve_t = CURVE_BITS, ("pca",)
    else:
        pts = [Point("identity", 8, 8)]
        pts += [Point(t, 8, 6) for t in ("dct", "wht")]
        pts += [Point("pca", 8, b) for b in (5, 6, 7)]
        pts += [Point("pca", FULL, b) for b in (6, 7, 8)]
        pts += [Point("pca", FULL, b, drop=False) for b in (5, 6)]
        pts += [Point("pca", FULL, b, "pooled-huffman") for b in (6, 7, 8)]
        curve_b, curve_t = CURVE_BITS, ("pca",)
    have = {(p.transform, p.group, p.bits, p.coder) for p in pts}
    for t in curve_t:
        for n in (8, 16, 32, 64, FULL):
            if (t, n, curve_b, "auto") not in have:
                pts.append(Point(t, n, curve_b, top1=False))
    return pts


def parse_point(spec: str) -> Point:
    """``TRANSFORM:N:B[:CODER][:keep]`` (N a number or C) -> Point, e.g. ``pca:8:6``,
    ``pca:C:7:pooled-huffman``, ``pca:C:6:auto:keep`` (no class dropped)."""
    from golden.calibrate import CODERS
    from golden.profile import TRANSFORMS

    parts = spec.split(":")
    keep = len(parts) == 5 and parts[4] == "keep"
    if len(parts) not in (3, 4) and not keep:
        raise EvalError(f"--points {spec!r}: expected TRANSFORM:N:B[:CODER][:keep], "
                        f"e.g. pca:8:6 or pca:C:6:auto:keep")
    t, n, b = parts[:3]
    coder = parts[3] if len(parts) >= 4 else "auto"
    if t not in TRANSFORMS:
        raise EvalError(f"--points {spec!r}: transform must be one of {', '.join(TRANSFORMS)}")
    if coder not in CODERS:
        raise EvalError(f"--points {spec!r}: coder must be one of {', '.join(CODERS)}")
    try:
        group = FULL if n.upper() == "C" else int(n)
        bits = int(b)
    except ValueError:
        raise EvalError(f"--points {spec!r}: N and B must be numbers (N may be C)") from None
    if group < 0 or group == 0 and n.upper() != "C" or not 2 <= bits <= 16:
        raise EvalError(f"--points {spec!r}: N must be positive (or C), B in 2..16")
    if t == "wht" and group != FULL and group & (group - 1):
        raise EvalError(f"--points {spec!r}: WHT needs a power-of-two N")
    if keep and coder == "pooled-huffman":
        raise EvalError(f"--points {spec!r}: the paper's method never drops (no :keep)")
    return Point(t, group, bits, coder, drop=not keep)


def profile_images(shape, budget: int = 1024) -> int:
    """Calibration images for a layer's profile: enough for ``budget`` pixels and for at least
    C pixels (a full-rank covariance for PCA over all channels)."""
    c, h, w = shape[-3:]
    return max(1, -(-max(budget, c) // (h * w)))


# -- setup -------------------------------------------------------------------------------------
def _digits(args, log):
    from . import train

    model, ckpt = train.load_or_train(log=log)
    data = train.load_digits_split()
    n = len(data.y_test) if args.images is None else min(args.images, len(data.y_test))
    info = {"name": "ResNet-18, small stem (3x3 s1 conv1, no max pool), 10 classes, 3x32x32",
            "data": "scikit-learn digits upscaled to 32x32 (fmcodec.eval.train)",
            "held_out_top1_float_cached": ckpt["test_top1"], "recipe": ckpt["recipe"],
            "calibration_set": "training split", "evaluation_set": "held-out split"}
    return model, data.x_train[:args.calib_images], data.x_test[:n], data.y_test[:n], info


def _imagenet(args, log):
    import torch

    from .imagenet import DataError, load_split
    from .network import load_torchvision

    wpath = Path(args.weights)
    if not wpath.is_file():
        raise EvalError(f"{args.weights}: no such weights file")
    try:
        model = load_torchvision(str(wpath))
    except (RuntimeError, KeyError, ValueError, OSError, EOFError, TypeError,
            AttributeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalError(f"{args.weights}: not a torchvision ResNet-18 state_dict ({msg})") from None
    except Exception as e:  # torch's unpickler raises its own types for foreign files
        raise EvalError(f"{args.weights}: cannot load ({type(e).__name__})") from None
    try:
        xc, xe, ye, classes = load_split(args.imagenet, args.calib_images, args.images,
                                         size=args.image_size, resize=args.resize)
    except DataError as e:
        raise EvalError(str(e)) from None
    n_out = model.fc.out_features
    if len(classes) > n_out:
        raise EvalError(f"{args.imagenet}: {len(classes)} classes, but the network has "
                        f"{n_out} outputs")
    if len(ye) == 0:
        raise EvalError(f"{args.imagenet}: no images left for evaluation after calibration")
    log(f"ImageNet folder: {len(classes)} classes, {len(xc)} calibration and {len(xe)} "
        f"evaluation images, {args.image_size}x{args.image_size}")
    torch.manual_seed(0)
    info = {"name": "torchvision ResNet-18 (ImageNet stem), weights " + wpath.name,
            "data": f"image folder {args.imagenet}", "classes": len(classes),
            "calibration_set": "random images of the folder", "evaluation_set": "the rest"}
    return model, xc, xe, ye, info


# -- measurement -------------------------------------------------------------------------------
def _relu(name: str, placement: str) -> bool:
    """Decode with ReLU where the tensor is non-negative (post placement, not downsample)."""
    return placement == "post" and not name.endswith("downsample")


def _layer_stats(x: np.ndarray, profile) -> dict:
    """Real coded size of ``x`` (golden encoder), entropies and SQNR of the reconstruction."""
    from golden import codec
    from golden.huffman import entropy_bits
    from golden.profile import MODE_ID
    from golden.stats import class_entropy_bits, sqnr_db

    from . import fastpath

    q = fastpath.quantize_tensor(x, profile)
    enc = codec.encode_q(q, x.shape, profile)
    xh = fastpath.reconstruct_q(q, x.shape, profile)
    coded = profile.class_array("mode") != MODE_ID["drop"]
    pooled = q[:, coded].ravel()
    return {
        "bits": 8.0 * enc.bytes_moved,
        "entropy_bits": class_entropy_bits(q, profile),
        "pooled_entropy_bits": entropy_bits(np.unique(pooled, return_counts=True)[1]),
        "sqnr_db": sqnr_db(x, xh),
        "raw_tiles": int((enc.tile_mode == 1).sum()),
        "tiles": int(enc.n_tiles),
    }, (q, enc, xh)


def _golden_decode_check(x, profile, enc, xh) -> None:
    """The fast reconstruction must be exactly what the golden decoder gives from the bytes."""
    from golden import codec

    data = codec.to_file_bytes(enc, profile, embed_profile=False)
    if not np.array_equal(codec.decode(data, profile), xh):
        raise RuntimeError("fast reconstruction differs from the golden decoder")


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def evaluate(args, log=None) -> dict:
    import torch
    from tqdm import tqdm

    from golden.calibrate import calibrate

    from . import activations, baselines, energy

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    torch.set_num_threads(args.threads)
    model, x_cal, x_eval, y_eval, netinfo = (_imagenet if args.weights else _digits)(args, log)
    x_code = x_eval[:args.code_images]
    x_prof = x_cal[:args.profile_images]
    names = activations.boundary_names(model)
    reads = energy.consumers(names)
    points = [parse_point(p) for p in args.points] if args.points else sweep(args.quick)
    if args.placements:
        placements = args.placements
    else:
        placements = list(activations.PLACEMENTS)
    n_top1 = sum(p.top1 for p in points)
    total = len(placements) * (len(points) * len(names) + n_top1 + 2)
    bar = tqdm(total=total, desc="eval", unit="step", file=sys.stderr,
               disable=args.no_progress, dynamic_ncols=True)

    float_top1 = activations.top1(model, x_eval, y_eval, batch_size=args.batch_size)
    result = {
        "network": netinfo,
        "images": {"calibration_scales": len(x_cal), "calibration_profiles": len(x_prof),
                   "evaluation_top1": len(y_eval), "coded_for_size": len(x_code)},
        "float_top1": float_top1,
        "drop_budget_pp": DROP_PP,
        "energy_models": {m.name: {"read_pj_per_bit": m.read_pj_per_bit,
                                   "write_pj_per_bit": m.write_pj_per_bit, "source": m.source}
                          for m in energy.MODELS},
        "traffic_model": "each boundary tensor written once, read once per consumer",
        "placements": {},
    }
    checks = 0
    for placement in placements:
        bar.set_postfix_str(f"{placement}: int8 scales")
        scales = activations.calibrate_scales(model, x_cal, placement, method="percentile",
                                              percentile=99.99, batch_size=args.batch_size)
        cal = activations.capture(model, x_prof, placement, scales, batch_size=args.batch_size)
        code = activations.capture(model, x_code, placement, scales, batch_size=args.batch_size)
        int8_top1 = activations.top1(model, x_eval, y_eval, placement, scales,
                                     batch_size=args.batch_size)
        bar.update(1)
        layers = []
        for name in names:
            x = code[name]
            values = x.size
            zvc = baselines.coded_bytes(baselines.zvc_encode(x)) * 8
            ebpc = baselines.coded_bytes(baselines.ebpc_encode(x)) * 8
            layers.append({"name": name, "shape": list(x.shape[1:]),
                           "values_per_image": int(values // x.shape[0]),
                           "reads_per_inference": reads[name], "scale": scales[name],
                           "zeros": float(np.mean(x == 0)), "raw_bits_per_value": 8.0,
                           "bits_per_value": {"zvc": zvc / values, "ebpc": ebpc / values},
                           "sqnr_db": {}, "entropy_bits_per_value": {},
                           "pooled_entropy_bits_per_value": {}})
        # one EBPC decode per placement proves the sizes are of decodable streams
        small = code[names[-1]][:1]
        if not np.array_equal(baselines.ebpc_decode(baselines.ebpc_encode(small), small.shape),
                              small):
            raise RuntimeError("EBPC round trip failed")
        bar.update(1)
        lossless = {m: {"method": m, "lossless": True, "top1": int8_top1} for m in
                    ("int8", "zvc", "ebpc")}
        ops = []
        for pt in points:
            bar.set_postfix_str(f"{placement}: {pt.key}")
            profiles = {}
            for lay, name in zip(layers, names, strict=True):
                x = code[name]
                c = x.shape[1]
                xc = cal[name][:profile_images(x.shape)]
                prof = calibrate(xc, transform=pt.transform,
                                 group=c if pt.group == FULL else pt.group, bits=pt.bits,
                                 coder=pt.coder, relu=_relu(name, placement), drop=pt.drop)
                profiles[name] = prof
                s, (q, enc, xh) = _layer_stats(x, prof)
                if name == names[-1]:
                    _golden_decode_check(x, prof, enc, xh)
                    checks += 1
                v = x.size
                lay["bits_per_value"][pt.key] = s["bits"] / v
                lay["sqnr_db"][pt.key] = s["sqnr_db"]
                lay["entropy_bits_per_value"][pt.key] = s["entropy_bits"] / v
                lay["pooled_entropy_bits_per_value"][pt.key] = s["pooled_entropy_bits"] / v
                bar.update(1)
            op = {"method": pt.method, "key": pt.key, "transform": pt.transform,
                  "group": "C" if pt.group == FULL else pt.group, "bits": pt.bits,
                  "coder": pt.coder, "drop": pt.drop, "lossless": False, "top1": None}
            if pt.top1:
                def replace(name, q8, scale, profiles=profiles):
                    from . import fastpath
                    return fastpath.roundtrip(q8, profiles[name])

                op["top1"] = activations.top1(model, x_eval, y_eval, placement, scales,
                                              replace=replace, batch_size=args.batch_size)
                bar.update(1)
            ops.append(op)

        all_ops = summarize(layers, [lossless[m] for m in ("int8", "zvc", "ebpc")] + ops,
                            reads, int8_top1)
        result["placements"][placement] = {
            "int8_top1": int8_top1,
            "values_per_inference": sum(lay["values_per_image"] for lay in layers),
            "layers": layers, "operating_points": all_ops,
            "targets": targets(all_ops),
        }
    bar.close()
    result["golden_decode_checks"] = checks
    result["seconds"] = time.perf_counter() - t_start
    result["machine"] = {"python": platform.python_version(), "numpy": np.__version__,
                         "torch": str(torch.__version__), "threads": args.threads}
    return result


def summarize(layers: list[dict], ops: list[dict], reads: dict[str, int],
              int8_top1: float) -> list[dict]:
    """Per operating point: size-weighted average bits/value (and entropies), top-1 drop, DRAM
    traffic and energy per inference. Lossless ops have keys "int8", "zvc", "ebpc"."""
    from . import energy

    per_image = {lay["name"]: lay["values_per_image"] for lay in layers}
    total = sum(per_image.values())
    int8_bits = {n: 8.0 * v for n, v in per_image.items()}
    for lay in layers:
        lay["bits_per_value"]["int8"] = 8.0

    def avg(field, key):
        return sum(lay[field][key] * per_image[lay["name"]] for lay in layers) / total

    for op in ops:
        key = op.get("key", op["method"])
        bits = {lay["name"]: lay["bits_per_value"][key] * per_image[lay["name"]]
                for lay in layers}
        op["avg_bits_per_value"] = sum(bits.values()) / total
        if not op["lossless"]:
            op["avg_entropy_bits_per_value"] = avg("entropy_bits_per_value", key)
            op["avg_pooled_entropy_bits_per_value"] = avg("pooled_entropy_bits_per_value", key)
            op["min_sqnr_db"] = min(lay["sqnr_db"][key] for lay in layers)
        op["top1_drop_pp"] = None if op["top1"] is None else 100 * (int8_top1 - op["top1"])
        op.update(energy.report(bits, reads, int8_bits))
    return ops


def targets(ops: list[dict]) -> dict:
    """The issue's targets at <= DROP_PP top-1 drop, from the measured operating points."""
    ok = [o for o in ops if o["top1_drop_pp"] is not None and o["top1_drop_pp"] <= DROP_PP]
    ours = [o for o in ok if o["method"].startswith("fmcodec") and not o["lossless"]]
    paper = [o for o in ok if o["method"].startswith("paper")]
    ebpc = next((o for o in ops if o["method"] == "ebpc"), None)
    best = min(ours, key=lambda o: o["avg_bits_per_value"], default=None)
    best_hw = min((o for o in ours if o["group"] == 8), key=lambda o: o["avg_bits_per_value"],
                  default=None)
    p_ent = min(paper, key=lambda o: o["avg_pooled_entropy_bits_per_value"], default=None)
    p_cod = min(paper, key=lambda o: o["avg_bits_per_value"], default=None)
    out = {"drop_budget_pp": DROP_PP,
           "fmcodec_best": best and {k: best[k] for k in ("key", "avg_bits_per_value",
                                                          "top1", "top1_drop_pp")},
           "fmcodec_best_n8": best_hw and {k: best_hw[k] for k in ("key", "avg_bits_per_value",
                                                                   "top1", "top1_drop_pp")},
           "paper_entropy": p_ent and p_ent["avg_pooled_entropy_bits_per_value"],
           "paper_entropy_key": p_ent and p_ent["key"],
           "paper_coded": p_cod and p_cod["avg_bits_per_value"],
           "ebpc": ebpc and ebpc["avg_bits_per_value"]}
    b = best and best["avg_bits_per_value"]
    out["ratio_vs_paper_entropy"] = _ratio(b, out["paper_entropy"])
    out["ratio_vs_ebpc"] = _ratio(b, out["ebpc"])
    out["met_vs_paper_entropy"] = (out["ratio_vs_paper_entropy"] is not None
                                   and out["ratio_vs_paper_entropy"] <= 0.85)
    out["met_vs_ebpc"] = out["ratio_vs_ebpc"] is not None and out["ratio_vs_ebpc"] <= 0.75
    for m in ("ddr3", "lpddr4"):
        out[f"energy_reduction_{m}"] = best and best[f"energy_reduction_{m}"]
    out["met_energy"] = bool(best) and best["energy_reduction_ddr3"] >= 0.5
    return out


# -- plots -------------------------------------------------------------------------------------
def plot(result: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    placements = list(result["placements"])
    paths = []

    fig, axes = plt.subplots(1, len(placements), figsize=(6.5 * len(placements), 5),
                             squeeze=False)
    for ax, pl in zip(axes[0], placements, strict=True):
        r = result["placements"][pl]
        ops = [o for o in r["operating_points"] if o["top1"] is not None]
        methods = list(dict.fromkeys(o["method"] for o in ops))
        for m in methods:
            pts = sorted((o["avg_bits_per_value"], 100 * o["top1"]) for o in ops
                         if o["method"] == m)
            style = "s" if m in ("int8", "zvc", "ebpc") else "o-"
            ax.plot(*zip(*pts, strict=True), style, label=m, ms=5)
            if m.startswith("paper"):
                ent = sorted((o["avg_pooled_entropy_bits_per_value"], 100 * o["top1"])
                             for o in ops if o["method"] == m)
                ax.plot(*zip(*ent, strict=True), "x--", label="paper: pooled entropy (reported)")
        ax.axhline(100 * (r["int8_top1"]) - DROP_PP, color="grey", lw=0.8, ls=":",
                   label=f"int8 - {DROP_PP} pp")
        ax.set_xlabel("average bits/value (real coded bytes; entropy where marked)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"{pl}: top-1 against bits/value")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "eval_top1_vs_bits.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(len(placements), 1, figsize=(12, 4.2 * len(placements)),
                             squeeze=False)
    for ax, pl in zip(axes[:, 0], placements, strict=True):
        r = result["placements"][pl]
        t = r["targets"]
        series = [("ZVC", "zvc"), ("EBPC", "ebpc")]
        if t["paper_entropy_key"]:
            series.append((f"paper coded ({t['paper_entropy_key']})", t["paper_entropy_key"]))
        if t["fmcodec_best"]:
            series.append((f"fmcodec best ({t['fmcodec_best']['key']})",
                           t["fmcodec_best"]["key"]))
        if t["fmcodec_best_n8"]:
            series.append((f"fmcodec N=8 ({t['fmcodec_best_n8']['key']})",
                           t["fmcodec_best_n8"]["key"]))
        names = [lay["name"] for lay in r["layers"]]
        xs = np.arange(len(names))
        for label, key in series:
            ax.plot(xs, [lay["bits_per_value"][key] for lay in r["layers"]], "o-", ms=3,
                    label=label)
        if t["paper_entropy_key"]:
            ax.plot(xs, [lay["pooled_entropy_bits_per_value"][t["paper_entropy_key"]]
                         for lay in r["layers"]], "x--", ms=4, label="paper pooled entropy")
        ax.set_xticks(xs, names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("bits/value")
        ax.set_title(f"{pl}: bits/value per layer (points with <= {DROP_PP} pp top-1 drop)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "eval_bits_per_layer.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    curve = group_curve(result)
    if curve:
        fig, axes = plt.subplots(1, len(placements), figsize=(6 * len(placements), 4.5),
                                 squeeze=False)
        for ax, pl in zip(axes[0], placements, strict=True):
            rows = [c for c in curve if c["placement"] == pl]
            for t in dict.fromkeys(c["transform"] for c in rows):
                pts = [c for c in rows if c["transform"] == t]
                ax.plot([str(c["group"]) for c in pts], [c["avg_bits_per_value"] for c in pts],
                        "o-", label=f"{t.upper()} (B={pts[0]['bits']})")
            ax.set_xlabel("group size N (C = all channels of the layer)")
            ax.set_ylabel("average bits/value")
            ax.set_title(f"{pl}: bits/value against group size")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        p = out / "eval_bits_vs_group.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def group_curve(result: dict) -> list[dict]:
    """Bits/value and worst-layer SQNR against group size N at the curve's bit width."""
    rows = []
    for pl, r in result["placements"].items():
        ops = [o for o in r["operating_points"] if not o["lossless"] and o["coder"] == "auto"
               and o["transform"] != "identity"]
        widths = {}
        for o in ops:
            widths.setdefault((o["transform"], o["bits"]), set()).add(str(o["group"]))
        for (t, b), groups in widths.items():
            if len(groups) < 3:
                continue
            order = {"8": 0, "16": 1, "32": 2, "64": 3, "C": 4}
            for o in sorted((o for o in ops if o["transform"] == t and o["bits"] == b),
                            key=lambda o: order.get(str(o["group"]), 9)):
                rows.append({"placement": pl, "transform": t, "group": o["group"], "bits": b,
                             "avg_bits_per_value": o["avg_bits_per_value"],
                             "min_sqnr_db": o["min_sqnr_db"], "top1": o["top1"]})
    return rows


def summary_lines(result: dict) -> list[str]:
    lines = [f"float top-1 {100 * result['float_top1']:.2f} % on "
             f"{result['images']['evaluation_top1']} images"]
    for pl, r in result["placements"].items():
        lines.append(f"[{pl}] int8 top-1 {100 * r['int8_top1']:.2f} %")
        for o in r["operating_points"]:
            top = "   -   " if o["top1"] is None else f"{100 * o['top1']:6.2f}%"
            ent = o.get("avg_pooled_entropy_bits_per_value")
            extra = f" pooled entropy {ent:5.3f}" if o["method"].startswith("paper") else ""
            lines.append(f"  {o.get('key', o['method']):32s} {o['avg_bits_per_value']:6.3f} b/v "
                         f"top-1 {top}  DDR3 -{100 * o['energy_reduction_ddr3']:5.1f} %{extra}")
        t = r["targets"]
        lines.append(f"  targets: {json.dumps(t)}")
    return lines


# -- command line ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fmcodec.eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="fewer operating points, 120 evaluation and 2 coded images")
    ap.add_argument("--images", type=int, help="held-out images for top-1 (default: all "
                    "360 digits; 500 for --imagenet; 120 with --quick)")
    ap.add_argument("--code-images", type=int,
                    help="held-out images whose tensors are coded for bits/value (default 4, "
                         "2 with --quick)")
    ap.add_argument("--calib-images", type=int,
                    help="images that calibrate the int8 scales (default 512 digits training "
                         "images; 64 folder images with --imagenet)")
    ap.add_argument("--profile-images", type=int, default=128,
                    help="of those, at most this many calibrate the codec profiles")
    ap.add_argument("--points", nargs="+", metavar="T:N:B[:CODER][:keep]",
                    help="operating points instead of the default sweep, e.g. pca:8:6 "
                         "pca:C:7:pooled-huffman identity:8:8 pca:C:6:auto:keep (keep: no "
                         "class dropped)")
    ap.add_argument("--placements", nargs="+", choices=("pre", "post"),
                    help="default: both")
    ap.add_argument("--weights", help="torchvision ResNet-18 ImageNet state_dict (.pth)")
    ap.add_argument("--imagenet", metavar="DIR", help="ImageNet-style folder (class sub-folders)")
    ap.add_argument("--image-size", type=int, default=224, help="--imagenet crop size")
    ap.add_argument("--resize", type=int, help="--imagenet shorter side before the crop "
                    "(default: 256/224 of the crop size)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default=str(OUT), help="report folder (default: %(default)s)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _check_args(args) -> None:
    if bool(args.weights) != bool(args.imagenet):
        raise EvalError("--weights and --imagenet go together (the ImageNet evaluation needs both)")
    for opt in ("images", "code_images", "calib_images", "profile_images", "threads",
                "batch_size", "image_size", "resize"):
        v = getattr(args, opt)
        if v is not None and v < 1:
            raise EvalError(f"--{opt.replace('_', '-')} must be at least 1, got {v}")
    if args.points:
        for p in args.points:
            parse_point(p)
    if args.images is None:
        args.images = 120 if args.quick else (500 if args.imagenet else None)
    if args.code_images is None:
        args.code_images = 2 if args.quick else 4
    if args.calib_images is None:
        args.calib_images = 64 if args.imagenet else 512
    if args.resize is None:
        args.resize = max(args.image_size, round(args.image_size * 256 / 224))
    if args.imagenet and args.images is not None:
        args.code_images = min(args.code_images, args.images)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvalError(f"{args.out}: exists and is not a folder")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
        try:
            import torch  # noqa: F401
        except ImportError:
            raise EvalError("torch is not installed: pip install -e '.[eval]'") from None
        result = evaluate(args)
    except EvalError as e:
        print(f"fmcodec eval: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fmcodec eval: interrupted", file=sys.stderr)
        return 130
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result["group_curve"] = group_curve(result)
    result["command"] = "python -m fmcodec.eval " + " ".join(sys.argv[1:] if argv is None
                                                             else argv)
    path = out / "eval.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_finite(result), indent=1, allow_nan=False, default=_json_default))
    tmp.replace(path)
    plots = [] if args.no_plots else plot(result, out)
    for line in summary_lines(result):
        print(line)
    print(f"wrote {path}" + "".join(f", {p}" for p in plots)
          + f" ({result['seconds']:.0f} s)")
    return 0


def _finite(o):
    """JSON has no infinities: a lossless SQNR (inf) is written as the string "inf"."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)) and not math.isfinite(o):
        return str(float(o))
    return o


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o) if math.isfinite(o) else str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
