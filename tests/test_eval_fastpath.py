"""The fast reconstruction path equals the golden transform and the golden decoder."""

from pathlib import Path

import numpy as np
import pytest

from fmcodec.eval import fastpath
from golden import codec, transform
from golden.calibrate import calibrate

FIXTURE = Path(__file__).parent / "fixtures" / "featuremaps.npz"


def _tensors():
    rng = np.random.default_rng(3)
    out = [("random", rng.integers(-128, 128, (2, 32, 4, 5)).astype(np.int8), False),
           ("extremes", rng.choice(np.array([-128, 127], np.int8), (1, 64, 3, 3)), False)]
    if FIXTURE.exists():
        with np.load(FIXTURE) as f:
            out.append(("layer2.0.conv1.post", f["layer2.0.conv1.post"][:2], True))
            out.append(("layer4.0.conv1.pre", f["layer4.0.conv1.pre"][:2], False))
    return out


@pytest.mark.parametrize("name,x,relu", _tensors(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("kind,group", [("pca", 8), ("dct", 16), ("wht", 32), ("pca", 0),
                                        ("identity", 8)])
def test_matches_golden(name, x, relu, kind, group):
    c = x.shape[1]
    p = calibrate(x, transform=kind, group=group or c, bits=5, relu=relu)
    px = transform.to_pixels(x)
    np.testing.assert_array_equal(fastpath.forward(px, p), transform.forward(px, p))
    q = fastpath.quantize_tensor(x, p)
    np.testing.assert_array_equal(q, codec.quantize_tensor(x, p))
    got = fastpath.roundtrip(x, p)
    np.testing.assert_array_equal(got, codec.decode(codec.encode(x, p), p))
