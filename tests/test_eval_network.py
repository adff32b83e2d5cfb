"""ResNet-18 topology, int8 boundary hooks and the feature-map fixture (fmcodec.eval)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed (optional extra)")

FIXTURE = Path(__file__).parent / "fixtures" / "featuremaps.npz"

BOUNDARIES = [
    ("conv1", 64, 1),
    ("layer1.0.conv1", 64, 1), ("layer1.0.conv2", 64, 1),
    ("layer1.1.conv1", 64, 1), ("layer1.1.conv2", 64, 1),
    ("layer2.0.conv1", 128, 2), ("layer2.0.conv2", 128, 2), ("layer2.0.downsample", 128, 2),
    ("layer2.1.conv1", 128, 2), ("layer2.1.conv2", 128, 2),
    ("layer3.0.conv1", 256, 4), ("layer3.0.conv2", 256, 4), ("layer3.0.downsample", 256, 4),
    ("layer3.1.conv1", 256, 4), ("layer3.1.conv2", 256, 4),
    ("layer4.0.conv1", 512, 8), ("layer4.0.conv2", 512, 8), ("layer4.0.downsample", 512, 8),
    ("layer4.1.conv1", 512, 8), ("layer4.1.conv2", 512, 8),
]


def torchvision_keys():
    """torchvision.models.resnet18().state_dict() key order, restated from its naming rules."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            keys += [f"{p}.conv1.weight"] + [f"{p}.bn1.{k}" for k in bn]
            keys += [f"{p}.conv2.weight"] + [f"{p}.bn2.{k}" for k in bn]
            if layer > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{k}" for k in bn]
    return keys + ["fc.weight", "fc.bias"]


@needs_torch
def test_imagenet_variant_matches_torchvision():
    from fmcodec.eval.network import resnet18

    model = resnet18()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    state = model.state_dict()
    assert list(state) == torchvision_keys()
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert state["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert state["fc.weight"].shape == (1000, 512)


@needs_torch
def test_load_torchvision_state_dict(tmp_path):
    import torch

    from fmcodec.eval.network import load_torchvision, resnet18

    torch.manual_seed(1)
    ref = resnet18().eval()
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model = load_torchvision(tmp_path / "resnet18.pth")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


@needs_torch
def test_small_stem():
    import torch

    from fmcodec.eval.network import resnet18

    model = resnet18(num_classes=10, stem="small").eval()
    assert model.state_dict()["conv1.weight"].shape == (64, 3, 3, 3)
    assert list(model.state_dict())[:-2] == torchvision_keys()[:-2]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.fixture(scope="module")
def small_net():
    torch = pytest.importorskip("torch", reason="torch not installed (optional extra)")
    from fmcodec.eval.network import resnet18

    torch.manual_seed(0)
    model = resnet18(num_classes=10, stem="small").eval()
    # non-trivial BN statistics, so the boundaries are not all near zero
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 16, 16))
    model.eval()
    return model, torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(2))


@needs_torch
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_capture_shapes(small_net, placement):
    from fmcodec.eval import activations

    model, x = small_net
    assert activations.boundary_names(model) == [name for name, _, _ in BOUNDARIES]
    scales = activations.calibrate_scales(model, x, placement)
    tensors = activations.capture(model, x[:3], placement, scales)
    assert list(tensors) == [name for name, _, _ in BOUNDARIES]
    for name, c, stride in BOUNDARIES:
        t = tensors[name]
        assert t.dtype == np.int8 and t.shape == (3, c, 16 // stride, 16 // stride), name
        assert np.any(t != 0), name
        if placement == "post":
            assert t.min() >= 0 or name.endswith("downsample"), name
        else:
            assert t.min() < 0, name
    sub = activations.capture(model, x[:3], placement, scales, layers=["layer3.0.conv1"])
    assert list(sub) == ["layer3.0.conv1"]
    np.testing.assert_array_equal(sub["layer3.0.conv1"], tensors["layer3.0.conv1"])


@needs_torch
@pytest.mark.parametrize("placement", ["pre", "post"])
def test_identity_replace_is_int8_network(small_net, placement):
    import torch

    from fmcodec.eval import activations

    model, x = small_net
    scales = activations.calibrate_scales(model, x, placement, method="max")
    calls = []

    def identity(name, q, scale):
        assert q.dtype == np.int8 and q.ndim == 4 and scale == scales[name]
        calls.append(name)
        return q

    ref, _ = activations.run(model, x, placement, scales)
    out, _ = activations.run(model, x, placement, scales, replace=identity, batch_size=8)
    assert torch.equal(out, ref)
    # two batches of 8; in execution order, which for "post" puts downsample before conv2
    assert sorted(calls) == sorted(activations.boundary_names(model) * 2)
    flt, _ = activations.run(model, x)
    assert not torch.equal(flt, ref)  # quantization did happen
    zero, _ = activations.run(model, x, placement, scales,
                              replace=lambda n, q, s: np.zeros_like(q))
    assert not torch.equal(zero, ref)


@needs_torch
def test_replace_must_return_int8_same_shape(small_net):
    from fmcodec.eval import activations

    model, x = small_net
    scales = activations.calibrate_scales(model, x, "pre")
    with pytest.raises(TypeError, match="int8"):
        activations.run(model, x, "pre", scales, replace=lambda n, q, s: q.astype(np.int16))
    with pytest.raises(KeyError):
        activations.run(model, x, "pre", scales, layers=["layer9.0.conv1"])


def test_fixture_file():
    assert FIXTURE.exists(), "regenerate with: python -m fmcodec.eval.fixtures"
    assert FIXTURE.stat().st_size < 3_000_000
    with np.load(FIXTURE, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    meta = json.loads(str(data["meta"]))
    n = len(data["labels"])
    assert n >= 1 and data["image_index"].shape == (n,)
    channels = set()
    for layer in meta["layers"]:
        for placement in ("pre", "post"):
            t = data[f"{layer}.{placement}"]
            assert t.dtype == np.int8 and t.ndim == 4 and t.shape[0] == n
            assert float(data[f"{layer}.{placement}.scale"]) > 0
            if placement == "post":
                assert t.min() >= 0 or layer.endswith("downsample")
            channels.add(t.shape[1])
        if layer.endswith("downsample"):  # no ReLU after it: signed in both placements
            assert data[f"{layer}.post"].min() < 0
    assert channels == {64, 128, 256, 512}
    assert data["layer1.0.conv1.pre"].shape == (n, 64, 32, 32)
    assert data["layer4.1.conv2.post"].shape == (n, 512, 4, 4)


@needs_torch
def test_fixture_matches_cached_network():
    """With the cached weights the fixture was made from, capturing the fixture's images with
    its scales gives the fixture's tensors (full regeneration: python -m fmcodec.eval.fixtures)."""
    import torch

    from fmcodec.eval import activations, fixtures, train

    if not train.CACHE.exists():
        pytest.skip(f"{train.CACHE} missing (python -m fmcodec.eval.train)")
    ckpt = torch.load(train.CACHE, map_location="cpu", weights_only=True)
    data = fixtures.load_featuremaps(FIXTURE)
    meta = json.loads(str(data["meta"]))
    if (ckpt.get("recipe") != train.RECIPE
            or fixtures.weights_sha256(ckpt["state_dict"]) != meta["weights_sha256"]):
        pytest.skip("cached weights differ from the ones the fixture was made from")
    model, _ = train.load_or_train()
    digits = train.load_digits_split()
    pos = [int(np.flatnonzero(digits.idx_test == i)[0]) for i in data["image_index"]]
    np.testing.assert_array_equal(digits.y_test[pos].numpy(), data["labels"])
    for placement in ("pre", "post"):
        scales = meta["scales"][placement]
        assert list(scales) == activations.boundary_names(model)
        got = activations.capture(model, digits.x_test[pos], placement, scales,
                                  layers=meta["layers"])
        for layer in meta["layers"]:
            assert scales[layer] == float(data[f"{layer}.{placement}.scale"]), layer
            np.testing.assert_array_equal(got[layer], data[f"{layer}.{placement}"], err_msg=layer)
