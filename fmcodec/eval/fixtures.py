"""Real int8 ResNet-18 feature maps for the golden-model and hardware tests.

    python -m fmcodec.eval.fixtures          # writes tests/fixtures/featuremaps.npz and
                                             # tests/fixtures/profiles/*.json
    python -m fmcodec.eval.fixtures --profiles-only    # only the profiles, from the .npz

Trains the digits network first if ``build/cache/resnet18_digits.pt`` is missing (see
``fmcodec.eval.train``), calibrates per-boundary int8 scales on the first ``CALIBRATION_IMAGES``
training images (see ``fmcodec.eval.activations``) and captures, for the first ``IMAGES`` held-out
images, the int8 tensors of ``LAYERS`` in both placements. With 32x32 inputs and the small stem:

    conv1, layer1.0.conv1, layer1.1.conv2   (N, 64, 32, 32)
    layer2.0.conv1, layer2.0.downsample     (N, 128, 16, 16)
    layer3.0.conv1, layer3.1.conv2          (N, 256, 8, 8)
    layer4.0.conv1, layer4.1.conv2          (N, 512, 4, 4)

Keys of the .npz (all loadable without pickle, and without torch):

    "<layer>.<placement>"        int8 (N, C, H, W)   placement: "pre" (conv+BN output, signed)
                                                     or "post" (after ReLU / residual add,
                                                     >= 0; downsample stays signed)
    "<layer>.<placement>.scale"  float64 ()          x ~= q * scale
    "labels"                     int64 (N,)          digit classes of the images
    "image_index"                int64 (N,)          indices into sklearn.datasets.load_digits()
    "meta"                       str ()              JSON: recipe, weights sha256, layers,
                                                     scales of all 20 boundaries, ...

The file is byte-for-byte deterministic for given weights (fixed zip timestamps). The weights
themselves are deterministic for a given machine and torch build; on another CPU the trained
weights, and so the fixture, may differ in the last bits, which is why the file is committed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "featuremaps.npz"

LAYERS = (
    "conv1", "layer1.0.conv1", "layer1.1.conv2",
    "layer2.0.conv1", "layer2.0.downsample",
    "layer3.0.conv1", "layer3.1.conv2",
    "layer4.0.conv1", "layer4.1.conv2",
)
PLACEMENTS = ("pre", "post")
IMAGES = 4
CALIBRATION_IMAGES = 512
CALIBRATION = {"method": "percentile", "percentile": 99.99}


PROFILES = FIXTURE.parent / "profiles"
# The calibration the hardware tests and `make sim` use: PCA, N = 8, B = 8, automatic coder,
# one tile per image row, calibrated on all images of the fixture tensor; ReLU on decode for
# the non-negative post tensors.
PROFILE_RECIPE = {"transform": "pca", "group": 8, "bits": 8, "coder": "auto"}


def write_profiles(npz: Path | str = FIXTURE, out: Path | str = PROFILES) -> list[Path]:
    """A calibrated profile next to every fixture tensor: ``<out>/<layer>.<placement>.json``.

    Needs only NumPy and the golden model (no torch)."""
    from golden.calibrate import calibrate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_featuremaps(npz)
    paths = []
    for key, x in data.items():
        if not (isinstance(x, np.ndarray) and x.dtype == np.int8 and x.ndim == 4):
            continue
        relu = key.endswith(".post") and not key.endswith("downsample.post")
        prof = calibrate(x, relu=relu, **PROFILE_RECIPE)
        path = out / f"{key}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(prof.to_json())
        tmp.replace(path)
        paths.append(path)
    return paths


def load_featuremaps(path: Path | str = FIXTURE) -> dict[str, np.ndarray]:
    """The fixture as a dict of arrays (``meta`` stays a 0-d str array: ``json.loads(str(a))``)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_npz(path: Path | str, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` with fixed zip timestamps, so equal arrays give equal bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def weights_sha256(state_dict) -> str:
    """SHA-256 over the names and raw bytes of a torch state_dict, in order."""
    h = hashlib.sha256()
    for k, v in state_dict.items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def generate(path: Path | str = FIXTURE, log=None) -> dict[str, np.ndarray]:
    import torch

    from . import activations, train

    model, ckpt = train.load_or_train(**({"log": log} if log else {}))
    torch.set_num_threads(train.RECIPE["threads"])
    data = train.load_digits_split()
    images = data.x_test[:IMAGES]
    arrays: dict[str, np.ndarray] = {}
    scales_all = {}
    for placement in PLACEMENTS:
        scales = activations.calibrate_scales(model, data.x_train[:CALIBRATION_IMAGES], placement,
                                              **CALIBRATION)
        scales_all[placement] = scales
        tensors = activations.capture(model, images, placement, scales, layers=LAYERS)
        for layer in LAYERS:
            arrays[f"{layer}.{placement}"] = tensors[layer]
            arrays[f"{layer}.{placement}.scale"] = np.float64(scales[layer])
    arrays["labels"] = data.y_test[:IMAGES].numpy().astype(np.int64)
    arrays["image_index"] = data.idx_test[:IMAGES].astype(np.int64)
    meta = {
        "generator": "python -m fmcodec.eval.fixtures",
        "network": "ResNet-18, small stem (3x3 s1 conv1, no max pool), 10 classes, 3x32x32 input",
        "recipe": ckpt["recipe"],
        "weights_sha256": weights_sha256(ckpt["state_dict"]),
        "held_out_top1": ckpt["test_top1"],
        "torch_version": ckpt["torch_version"],
        "layers": list(LAYERS),
        "placements": {
            "pre": "conv+BN output before ReLU and residual add (signed)",
            "post": "after ReLU (conv1 of a block, stem) or residual add + ReLU (conv2 of a "
                    "block); downsample has no ReLU, so it stays signed",
        },
        "quantization": "q = clamp(round_half_even(x / scale), -128, 127)",
        "calibration": {**CALIBRATION, "images": CALIBRATION_IMAGES, "set": "training split"},
        "scales": scales_all,  # every boundary, both placements (later layers depend on them)
        "images": "first held-out images of the stratified 80/20 split",
    }
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    save_npz(path, arrays)
    return arrays


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fmcodec.eval.fixtures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=str(FIXTURE), help="default: %(default)s")
    ap.add_argument("--profiles", default=str(PROFILES),
                    help="folder for the calibrated profiles (default: %(default)s)")
    ap.add_argument("--profiles-only", action="store_true",
                    help="only (re)write the profiles from the existing .npz (no torch needed)")
    args = ap.parse_args(argv)
    if args.profiles_only:
        paths = write_profiles(args.output, args.profiles)
        print(f"{len(paths)} profiles in {args.profiles}: "
              f"{sum(p.stat().st_size for p in paths)} bytes")
        return 0
    arrays = generate(args.output)
    write_profiles(args.output, args.profiles)
    for key, a in arrays.items():
        if a.dtype == np.int8:
            print(f"{key:28s} {str(a.shape):20s} zeros {np.mean(a == 0):6.1%}  "
                  f"scale {float(arrays[key + '.scale']):.5g}")
    print(f"{args.output}: {Path(args.output).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
