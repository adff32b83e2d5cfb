"""Correlated synthetic feature maps, for tests and benchmarks when real ones are not at hand.

Channels are a random mix of a few smooth spatial fields plus noise, like conv outputs whose
channels share structure; `relu=True` clips at zero like a post-ReLU map. Deterministic per seed.
"""

from __future__ import annotations

import numpy as np


def _smooth_field(rng: np.random.Generator, n: int, h: int, w: int, passes: int) -> np.ndarray:
    f = rng.standard_normal((n, h, w))
    for _ in range(passes):  # separable [1 2 1] blur, edges wrap
        f = (np.roll(f, 1, -1) + 2 * f + np.roll(f, -1, -1)) / 4
        f = (np.roll(f, 1, -2) + 2 * f + np.roll(f, -1, -2)) / 4
    return f / f.std()


def correlated_tensor(channels: int = 64, height: int = 56, width: int = 56, batch: int = 1,
                      rank: int = 6, noise: float = 0.15, relu: bool = False, seed: int = 0,
                      dtype=np.int8) -> np.ndarray:
    """An (N, C, H, W) integer tensor whose channels are strongly correlated."""
    rng = np.random.default_rng(seed)
    fields = np.stack([_smooth_field(rng, batch, height, width, 3 + 2 * r) for r in range(rank)],
                      axis=1)                                      # (N, rank, H, W)
    gains = 1.0 / (1 + np.arange(rank))                            # decaying energy
    mix = rng.standard_normal((channels, rank)) * gains
    x = np.einsum("cr,nrhw->nchw", mix, fields)
    x += noise * rng.standard_normal(x.shape)
    if relu:
        x = np.maximum(x, 0)
    info = np.iinfo(dtype)
    scale = (info.max - 1) / max(np.abs(x).max(), 1e-9)
    return np.clip(np.rint(x * scale), info.min, info.max).astype(dtype)
