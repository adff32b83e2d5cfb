"""Train ResNet-18 (small-input stem) on scikit-learn's bundled handwritten digits.

The data set (``sklearn.datasets.load_digits``: 1,797 8x8 images, 16 grey levels, 10 classes)
ships inside scikit-learn, so nothing is downloaded. Images are scaled to [0, 1], upscaled
bilinearly to 32x32, normalised with the training set's mean and standard deviation and replicated
to 3 channels. Split: 20 % held out, stratified, ``random_state = seed``.

Training is on the CPU with a fixed seed and ``torch.set_num_threads(2)``: SGD with Nesterov
momentum, one-cycle learning rate, random +-2 pixel shifts. The weights are cached in
``build/cache/resnet18_digits.pt`` (outside git) and rebuilt when the file is missing or was made
by a different recipe.

    python -m fmcodec.eval.train            # train if needed, print held-out top-1
    python -m fmcodec.eval.train --force    # retrain
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .network import ResNet18, resnet18

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "cache" / "resnet18_digits.pt"

RECIPE = {
    "data": "sklearn.load_digits",
    "size": 32,
    "test_fraction": 0.2,
    "seed": 0,
    "stem": "small",
    "epochs": 6,
    "batch_size": 64,
    "max_lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "shift": 2,
    "threads": 2,
}


@dataclass
class Digits:
    """The split, preprocessed: float32 (N, 3, size, size) tensors, int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    idx_train: np.ndarray  # indices into load_digits()
    idx_test: np.ndarray
    mean: float
    std: float


def upscale(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, 64) digits in 0..16 -> (N, 1, size, size) float32 in [0, 1], bilinear."""
    x = torch.from_numpy(images.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def load_digits_split(size: int = RECIPE["size"], test_fraction: float = RECIPE["test_fraction"],
                      seed: int = RECIPE["seed"]) -> Digits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    idx = np.arange(len(data.target))
    idx_train, idx_test = train_test_split(idx, test_size=test_fraction, stratify=data.target,
                                           random_state=seed)
    x = upscale(data.data, size)
    mean = float(x[idx_train].mean())
    std = float(x[idx_train].std())
    x = ((x - mean) / std).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(data.target.astype(np.int64))
    return Digits(x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                  idx_train, idx_test, mean, std)


def random_shift(x: torch.Tensor, shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to +-shift pixels, filling with the background value."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    background = float(x.amin())
    padded = F.pad(x, (shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w]
                        for i, (dy, dx) in enumerate(offsets.tolist())])


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 200) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def top1(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x) == y).float().mean())


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(recipe: dict = RECIPE, data: Digits | None = None, log=_log) -> dict:
    """Train from scratch; returns the checkpoint dict (not saved)."""
    torch.set_num_threads(recipe["threads"])
    torch.manual_seed(recipe["seed"])
    torch.use_deterministic_algorithms(True)
    data = data or load_digits_split(recipe["size"], recipe["test_fraction"], recipe["seed"])
    model = resnet18(num_classes=10, stem=recipe["stem"]).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=recipe["max_lr"], momentum=recipe["momentum"],
                          nesterov=True, weight_decay=recipe["weight_decay"])
    n = len(data.y_train)
    steps = recipe["epochs"] * -(-n // recipe["batch_size"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["max_lr"], total_steps=steps)
    gen = torch.Generator().manual_seed(recipe["seed"])
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(recipe["epochs"]):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, n, recipe["batch_size"]):
            b = perm[i:i + recipe["batch_size"]]
            x = random_shift(data.x_train[b], recipe["shift"], gen)
            x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            loss = F.cross_entropy(logits, data.y_train[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += len(b)
            correct += int((logits.argmax(1) == data.y_train[b]).sum())
            loss_sum += float(loss.detach()) * len(b)
        log(f"epoch {epoch + 1}/{recipe['epochs']}: loss {loss_sum / total:.4f} "
            f"train top-1 {correct / total:.4f} ({time.perf_counter() - t0:.0f} s)")
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    model = model.to(memory_format=torch.contiguous_format)
    acc = top1(model, data.x_test, data.y_test)
    log(f"held-out top-1 {acc:.4f} ({int(round(acc * len(data.y_test)))}/{len(data.y_test)}), "
        f"training {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU")
    return {
        "state_dict": model.state_dict(),
        "recipe": dict(recipe),
        "mean": data.mean,
        "std": data.std,
        "test_top1": acc,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "torch_version": str(torch.__version__),
    }


def load_or_train(path: Path | str = CACHE, recipe: dict = RECIPE, force: bool = False,
                  log=_log) -> tuple[ResNet18, dict]:
    """The trained model (eval mode) and its checkpoint; trains and caches when needed."""
    path = Path(path)
    ckpt = {}
    if path.exists() and not force:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated or foreign file: rebuild it
            log(f"{path}: unreadable ({type(e).__name__}), retraining")
            ckpt = {}
        if ckpt and ckpt.get("recipe") != recipe:
            log(f"{path}: made by another recipe, retraining")
            ckpt = {}
    if not ckpt:
        ckpt = train(recipe, log=log)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)
    model = resnet18(num_classes=10, stem=recipe["stem"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fmcodec.eval.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=str(CACHE), help="checkpoint path (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="retrain even if the cache is valid")
    args = ap.parse_args(argv)
    model, ckpt = load_or_train(args.cache, force=args.force)
    torch.set_num_threads(RECIPE["threads"])
    data = load_digits_split()
    acc = top1(model, data.x_test, data.y_test)
    print(f"{args.cache}: held-out top-1 {acc:.4f} "
          f"({int(round(acc * len(data.y_test)))}/{len(data.y_test)}); "
          f"trained in {ckpt['train_seconds']:.0f} s wall "
          f"({ckpt.get('train_cpu_seconds', float('nan')):.0f} s CPU) "
          f"with torch {ckpt['torch_version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
