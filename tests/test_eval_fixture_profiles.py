"""Calibrated profiles next to the feature-map fixture (python -m fmcodec.eval.fixtures)."""

import json
from pathlib import Path

import numpy as np
import pytest

from golden import codec
from golden.profile import Profile

FIXTURES = Path(__file__).parent / "fixtures"
NPZ = FIXTURES / "featuremaps.npz"
PROFILES = FIXTURES / "profiles"


def _keys():
    if not NPZ.exists():
        return []
    with np.load(NPZ) as f:
        return [k for k in f.files if k.endswith((".pre", ".post"))]


def test_every_tensor_has_a_profile():
    keys = _keys()
    assert keys, "regenerate with: python -m fmcodec.eval.fixtures"
    assert sorted(p.stem for p in PROFILES.glob("*.json")) == sorted(keys)
    assert sum(p.stat().st_size for p in PROFILES.glob("*.json")) < 2_000_000


@pytest.mark.parametrize("key", [k for k in _keys() if k.startswith(("conv1", "layer4.1"))])
def test_profile_fits_its_tensor(key):
    with np.load(NPZ) as f:
        x = f[key]
    prof = Profile.load(PROFILES / f"{key}.json")     # checks the checksum
    assert prof.channels == x.shape[1] and prof.group == 8 and prof.transform == "pca"
    assert prof.relu == (key.endswith(".post") and "downsample" not in key)
    cal = prof.calibration
    assert cal["bits"] == 8 and cal["pixels"] == x.shape[0] * x.shape[2] * x.shape[3]
    xh = codec.decode(codec.encode(x[:1], prof), prof)
    assert xh.shape == x[:1].shape and xh.dtype == np.int8
    assert np.abs(xh.astype(int) - x[:1]).max() <= 16
    json.loads((PROFILES / f"{key}.json").read_text())
