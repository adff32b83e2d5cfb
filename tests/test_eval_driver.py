"""The evaluation driver (fmcodec.eval.evaluate): a tiny ImageNet-path run on a generated
state_dict and image folder, a tiny digits run, and the command-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (optional extra)")
pytest.importorskip("PIL", reason="Pillow not installed (comes with matplotlib)")
pytest.importorskip("tqdm", reason="tqdm not installed (optional extra)")

from fmcodec.eval import evaluate, imagenet  # noqa: E402


@pytest.fixture(scope="module")
def imagenet_setup(tmp_path_factory):
    from PIL import Image

    from fmcodec.eval.network import resnet18

    root = tmp_path_factory.mktemp("imagenet")
    folder = root / "val"
    rng = np.random.default_rng(0)
    for cls in ("n01440764", "n01443537"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, (40 + 4 * i, 48, 3), dtype=np.uint8)
            Image.fromarray(a).save(folder / cls / f"img{i}.png")
    (folder / "n01443537" / "notes.txt").write_text("not an image")
    torch.manual_seed(0)
    model = resnet18()
    weights = root / "resnet18.pth"
    torch.save(model.state_dict(), weights)
    return folder, weights


def test_image_folder(imagenet_setup):
    folder, _ = imagenet_setup
    items, classes = imagenet.list_images(folder)
    assert classes == ["n01440764", "n01443537"]
    assert len(items) == 6 and [lab for _, lab in items] == [0, 0, 0, 1, 1, 1]
    x = imagenet.load_image(items[0][0], size=32, resize=36)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    xc, xe, ye, _ = imagenet.load_split(folder, calib=2, images=None, size=32, resize=36)
    assert len(xc) == 2 and len(xe) == 4 and set(ye.tolist()) <= {0, 1}


def _run(args):
    return evaluate.main(args + ["--no-progress", "--threads", "1"])


@pytest.mark.slow
def test_imagenet_path(imagenet_setup, tmp_path, capsys):
    folder, weights = imagenet_setup
    out = tmp_path / "reports"
    rc = _run(["--weights", str(weights), "--imagenet", str(folder), "--image-size", "32",
               "--calib-images", "2", "--images", "4", "--code-images", "1",
               "--points", "pca:8:6", "pca:C:6:pooled-huffman",
               "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    r = json.loads((out / "eval.json").read_text())
    assert r["images"]["evaluation_top1"] == 4 and r["golden_decode_checks"] == 2 * 2
    for placement in ("pre", "post"):
        p = r["placements"][placement]
        assert len(p["layers"]) == 20
        # 32x32 input: conv1 has stride 2, the max pool (post only) another 2
        assert p["layers"][0]["shape"] == [64, 16 if placement == "pre" else 8] * 1 + [
            16 if placement == "pre" else 8]
        assert p["layers"][-1]["shape"] == [512, 1, 1]
        ops = {o.get("key", o["method"]): o for o in p["operating_points"]}
        assert ops["int8"]["avg_bits_per_value"] == 8.0
        assert ops["int8"]["energy_reduction_ddr3"] == pytest.approx(0.0)
        for m in ("zvc", "ebpc"):
            assert ops[m]["top1"] == p["int8_top1"] and ops[m]["avg_bits_per_value"] > 0
        paper = ops["pca-NC-B6-pooled-huffman"]
        assert paper["avg_pooled_entropy_bits_per_value"] <= paper["avg_bits_per_value"]
        assert 0 <= ops["pca-N8-B6-auto"]["top1"] <= 1
        # energy follows the bits: fewer bits moved, less energy
        e = sorted((o["avg_bits_per_value"], o["energy_uj_ddr3"]) for o in ops.values())
        assert e == sorted(e, key=lambda t: t[1])
    for name in ("eval_top1_vs_bits.png", "eval_bits_per_layer.png"):
        assert (out / name).stat().st_size > 1000


@pytest.mark.slow
def test_digits_path(tmp_path, capsys):
    from fmcodec.eval import train

    if not train.CACHE.exists():
        pytest.skip(f"{train.CACHE} missing (python -m fmcodec.eval.train trains it)")
    out = tmp_path / "r"
    rc = _run(["--images", "24", "--code-images", "1", "--calib-images", "16",
               "--profile-images", "16", "--placements", "post", "--points", "pca:8:7",
               "--no-plots", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    r = json.loads((out / "eval.json").read_text())
    p = r["placements"]["post"]
    assert p["layers"][0]["shape"] == [64, 32, 32] and p["layers"][-1]["shape"] == [512, 4, 4]
    assert list(r["placements"]) == ["post"]
    op = p["operating_points"][-1]
    assert op["key"] == "pca-N8-B7-auto" and 0 < op["avg_bits_per_value"] < 8
    assert op["top1_drop_pp"] == pytest.approx(100 * (p["int8_top1"] - op["top1"]))


@pytest.mark.parametrize("args,msg", [
    (["--weights", "/nonexistent/w.pth", "--imagenet", "."], "no such weights file"),
    (["--weights", "W"], "go together"),
    (["--images", "0"], "at least 1"),
    (["--points", "pca:7"], "TRANSFORM:N:B"),
    (["--points", "wht:12:6"], "power-of-two"),
    (["--points", "pca:C:6:auto:drop"], "TRANSFORM:N:B"),
    (["--points", "pca:C:6:pooled-huffman:keep"], "never drops"),
])
def test_errors(args, msg, capsys):
    assert evaluate.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and msg in err and err.startswith("fmcodec eval: error:")


def test_bad_inputs(imagenet_setup, tmp_path, capsys):
    folder, weights = imagenet_setup
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    assert evaluate.main(["--weights", str(junk), "--imagenet", str(folder)]) == 2
    assert "junk.pth" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    assert evaluate.main(["--weights", str(wrong), "--imagenet", str(folder)]) == 2
    assert "state_dict" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert evaluate.main(["--weights", str(weights), "--imagenet", str(empty)]) == 2
    assert "no images" in capsys.readouterr().err
    assert evaluate.main(["--weights", str(weights), "--imagenet", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_cli_forwards(capsys):
    from fmcodec.cli import main

    assert main(["eval", "--weights", "/nonexistent.pth", "--imagenet", "/tmp"]) == 2
    assert "no such weights file" in capsys.readouterr().err
    assert Path(evaluate.OUT).name == "reports"


def test_keep_point():
    """`:keep` calibrates without dropping classes and is its own method and key."""
    pt = evaluate.parse_point("pca:C:6:auto:keep")
    assert (pt.transform, pt.group, pt.bits, pt.coder, pt.drop) == ("pca", evaluate.FULL, 6,
                                                                    "auto", False)
    assert pt.key == "pca-NC-B6-auto-keep" and pt.method == "fmcodec: PCA N=C, no drop"
    plain = evaluate.parse_point("pca:C:6")
    assert plain.drop and plain.key == "pca-NC-B6-auto" and plain.method == "fmcodec: PCA N=C"
    assert any(not p.drop for p in evaluate.sweep(quick=True))
