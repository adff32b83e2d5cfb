"""int8 feature maps at every DRAM boundary of ResNet-18, captured or replaced through hooks.

A *boundary* is a tensor the accelerator writes to DRAM: the output of every conv+BN. ResNet-18
has 20 of them, named after the conv that makes them, in forward order:

    conv1, layer1.0.conv1, layer1.0.conv2, layer1.1.conv1, ..., layer2.0.conv2,
    layer2.0.downsample, ..., layer4.1.conv2

Each boundary has two *placements*:

- ``pre``: the conv+BN output before ReLU and before the residual add (the paper's placement).
  The ReLU, the residual add and the stem max pool run on the decoded values.
- ``post``: what the next layer reads (EBPC's placement): ``relu(bn1(conv1(x)))`` for
  ``layerX.Y.conv1``; the block output ``relu(bn2(conv2(.)) + identity)`` for ``layerX.Y.conv2``;
  ``maxpool(relu(bn1(conv1(x))))`` for the stem ``conv1`` (the pool is an identity with the
  small stem). ``layerX.0.downsample`` has no ReLU after it (the add reads it), so in ``post`` it
  is the same signed conv+BN output as in ``pre``; its values differ only through the
  quantization upstream. All other ``post`` tensors are non-negative.

Quantization is symmetric int8 with one float scale per boundary and placement:
``q = clamp(round_half_even(x / scale), -128, 127)``, ``x_hat = q * scale``. Scales are calibrated
on training images (``calibrate_scales``).

The codec is applied with a *replace function*

    fn(layer_name: str, q: int8 ndarray (N, C, H, W), scale: float) -> int8 ndarray, same shape

called once per batch and boundary, in execution order, with the quantized tensor; its output
is dequantized and continues through the network. ``layer_name`` is the boundary name without
a placement suffix. The identity function gives exactly the int8-quantized network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

PLACEMENTS = ("pre", "post")
QMIN, QMAX = -128, 127

ReplaceFn = Callable[[str, np.ndarray, float], np.ndarray]


def boundaries(model: nn.Module) -> list[tuple[str, str, str]]:
    """``(name, pre_module, post_module)`` for every DRAM boundary, in forward order.

    The module names are those of ``model.named_modules()`` whose forward output is the
    boundary tensor in that placement.
    """
    out = [("conv1", "bn1", "maxpool")]
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, layer)):
            p = f"{layer}.{i}"
            out.append((f"{p}.conv1", f"{p}.bn1", f"{p}.relu1"))
            out.append((f"{p}.conv2", f"{p}.bn2", f"{p}.relu2"))
            if block.downsample is not None:
                out.append((f"{p}.downsample", f"{p}.downsample", f"{p}.downsample"))
    return out


def boundary_names(model: nn.Module) -> list[str]:
    return [name for name, _, _ in boundaries(model)]


def quantize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """float -> int8 tensor, symmetric, round half to even, saturating."""
    return torch.clamp(torch.round(x / scale), QMIN, QMAX).to(torch.int8)


def dequantize(q: torch.Tensor, scale: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return q.to(dtype) * scale


def _modules(model: nn.Module, placement: str,
             layers: Iterable[str] | None) -> dict[str, nn.Module]:
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, not {placement!r}")
    named = dict(model.named_modules())
    table = {name: named[pre if placement == "pre" else post]
             for name, pre, post in boundaries(model)}
    if layers is None:
        return table
    layers = list(layers)
    unknown = [name for name in layers if name not in table]
    if unknown:
        raise KeyError(f"not a boundary: {unknown}; boundaries are {list(table)}")
    return {name: table[name] for name in layers}


class Int8Boundaries:
    """Context manager: while active, the model's boundaries run through int8.

    ``layers`` (default: all) are quantized with ``scales[name]``; boundaries not in ``layers``
    stay float. ``capture`` (``True`` for all of ``layers``, or an iterable of names) keeps the
    int8 tensors in ``self.captured[name]`` (a list of per-batch arrays). With ``replace`` each
    quantized tensor is passed through ``replace(name, q, scale)`` before dequantization.
    """

    def __init__(self, model: nn.Module, placement: str, scales: dict[str, float], *,
                 layers: Iterable[str] | None = None, capture: bool | Iterable[str] = False,
                 replace: ReplaceFn | None = None):
        self.modules = _modules(model, placement, layers)
        missing = [name for name in self.modules if name not in scales]
        if missing:
            raise KeyError(f"no scale for {missing}")
        self.placement = placement
        self.scales = {name: float(scales[name]) for name in self.modules}
        if capture is True:
            capture = list(self.modules)
        self.capture = set(capture or ())
        unknown = self.capture - set(self.modules)
        if unknown:
            raise KeyError(f"cannot capture {sorted(unknown)}: not quantized boundaries")
        self.replace = replace
        self.captured: dict[str, list[np.ndarray]] = {
            name: [] for name in self.modules if name in self.capture}
        self._handles: list = []

    def _hook(self, name: str):
        scale = self.scales[name]

        def hook(module, inputs, output):
            q = quantize(output, scale)
            if name in self.capture or self.replace is not None:
                a = q.contiguous().numpy()
                if name in self.capture:
                    self.captured[name].append(a.copy())
                if self.replace is not None:
                    r = self.replace(name, a.copy(), scale)
                    if not isinstance(r, np.ndarray) or r.dtype != np.int8 or r.shape != a.shape:
                        raise TypeError(
                            f"replace function for {name} must return an int8 array of shape "
                            f"{a.shape}, got {getattr(r, 'dtype', type(r))} "
                            f"{getattr(r, 'shape', '')}")
                    q = torch.from_numpy(np.ascontiguousarray(r))
            return dequantize(q, scale, output.dtype)

        return hook

    def __enter__(self) -> Int8Boundaries:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def tensors(self) -> dict[str, np.ndarray]:
        """The captured int8 tensors, batches concatenated: name -> (N, C, H, W)."""
        return {name: np.concatenate(parts) for name, parts in self.captured.items() if parts}


@torch.no_grad()
def calibrate_scales(model: nn.Module, images: torch.Tensor, placement: str, *,
                     method: str = "percentile", percentile: float = 99.99,
                     batch_size: int = 128) -> dict[str, float]:
    """Per-boundary int8 scale from the float network's activations on ``images``.

    ``method="max"``: ``max|x| / 127``; ``method="percentile"``: the given percentile of ``|x|``
    over all values of the calibration images, divided by 127 (clips rare outliers).
    """
    if method not in ("max", "percentile"):
        raise ValueError(f"method must be 'max' or 'percentile', not {method!r}")
    modules = _modules(model, placement, None)
    values: dict[str, list[np.ndarray]] = {name: [] for name in modules}

    def tap(name):
        def hook(module, inputs, output):
            values[name].append(output.detach().abs().flatten().numpy().copy())
        return hook

    handles = [m.register_forward_hook(tap(name)) for name, m in modules.items()]
    try:
        model.eval()
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
    scales = {}
    for name, parts in values.items():
        v = np.concatenate(parts)
        top = float(v.max()) if method == "max" else float(np.percentile(v, percentile))
        scales[name] = max(top, 1e-8) / QMAX
    return scales


@torch.no_grad()
def run(model: nn.Module, images: torch.Tensor, placement: str | None = None,
        scales: dict[str, float] | None = None, *, layers: Iterable[str] | None = None,
        replace: ReplaceFn | None = None, capture: bool | Iterable[str] = False,
        batch_size: int = 128) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Logits of ``images`` (float network when ``placement`` is None, else int8 boundaries of
    that placement, optionally replaced) and, with ``capture``, the int8 tensors."""
    model.eval()
    if placement is None:
        logits = torch.cat([model(images[i:i + batch_size])
                            for i in range(0, len(images), batch_size)])
        return logits, {}
    with Int8Boundaries(model, placement, scales, layers=layers, capture=capture,
                        replace=replace) as b:
        logits = torch.cat([model(images[i:i + batch_size])
                            for i in range(0, len(images), batch_size)])
    return logits, b.tensors()


def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
         placement: str | None = None, scales: dict[str, float] | None = None, *,
         layers: Iterable[str] | None = None, replace: ReplaceFn | None = None,
         batch_size: int = 128) -> float:
    """Top-1 accuracy: float network, int8 network, or int8 with a replace function."""
    logits, _ = run(model, images, placement, scales, layers=layers, replace=replace,
                    batch_size=batch_size)
    return float((logits.argmax(1) == labels).float().mean())


def capture(model: nn.Module, images: torch.Tensor, placement: str, scales: dict[str, float],
            *, layers: Iterable[str] | None = None,
            batch_size: int = 128) -> dict[str, np.ndarray]:
    """The int8 boundary tensors of ``images``: name -> (N, C, H, W) int8.

    Every boundary in the network is quantized while capturing (so later boundaries see
    the int8 earlier ones, as in the accelerator); ``layers`` only selects what is returned.
    """
    _, tensors = run(model, images, placement, scales, capture=True if layers is None else layers,
                     batch_size=batch_size)
    return tensors
