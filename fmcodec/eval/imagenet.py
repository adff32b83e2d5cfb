"""ImageNet-style image folders for the ResNet-18 evaluation, without torchvision.

A folder holds one sub-folder per class; classes are the sorted sub-folder names and get labels
0, 1, ... in that order (torchvision's ``ImageFolder`` rule, which for the ImageNet validation set
sorted into WordNet-id folders gives the standard class indices). Images are read with Pillow
(a matplotlib dependency), converted to RGB, resized so the shorter side is ``resize`` (bilinear),
center-cropped to ``size`` and normalized with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}


class DataError(ValueError):
    """Unusable input data (folder layout, image files, weights)."""


def list_images(root) -> tuple[list[tuple[Path, int]], list[str]]:
    """``([(path, label), ...], classes)`` of an image folder, paths sorted within each class."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for label, name in enumerate(classes):
        for p in sorted((root / name).iterdir()):
            if p.is_file() and p.suffix.lower() in EXTENSIONS:
                items.append((p, label))
    if not items:
        raise DataError(f"{root}: no images found (expected one sub-folder per class holding "
                        f"image files: {', '.join(sorted(EXTENSIONS))})")
    return items, classes


def load_image(path, size: int = 224, resize: int = 256) -> np.ndarray:
    """(3, size, size) float32, normalized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = resize / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
            a = np.asarray(im, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: cannot read as an image ({e})") from None
    return ((a - MEAN) / STD).transpose(2, 0, 1).copy()


def load_split(root, calib: int, images: int | None, size: int = 224, resize: int = 256,
               seed: int = 0):
    """Images of a folder, shuffled with a fixed seed and split into a calibration set and a
    held-out set: ``(x_calib, x_eval, y_eval, classes)`` as torch tensors.

    ``calib`` images (at most half of the folder) calibrate the int8 scales and codec profiles;
    up to ``images`` of the rest (all when None) measure top-1.
    """
    import torch

    items, classes = list_images(root)
    if len(items) < 2:
        raise DataError(f"{root}: needs at least 2 images (calibration and evaluation)")
    order = np.random.default_rng(seed).permutation(len(items))
    n_cal = max(1, min(calib, len(items) // 2))
    cal = [items[i] for i in order[:n_cal]]
    rest = [items[i] for i in order[n_cal:]]
    if images is not None:
        rest = rest[:images]

    def stack(sel):
        return torch.from_numpy(np.stack([load_image(p, size, resize) for p, _ in sel]))

    y = torch.tensor([label for _, label in rest], dtype=torch.int64)
    return stack(cal), stack(rest), y, classes
