"""The `fmcodec` command line: round trips through files, stats, bench, and every bad input."""

import json
import subprocess
import sys
import zlib

import numpy as np
import pytest

from fmcodec.cli import main
from golden import codec
from golden.profile import Profile
from golden.stats import measure
from golden.synthetic import correlated_tensor


@pytest.fixture(scope="module")
def tensor():
    return correlated_tensor(32, 12, 10, batch=2, seed=3)


@pytest.fixture()
def files(tmp_path, tensor):
    np.save(tmp_path / "x.npy", tensor)
    assert main(["calibrate", str(tmp_path / "x.npy"), "--group", "8", "--bits", "7",
                 "-o", str(tmp_path / "p.json")]) == 0
    return tmp_path


def test_round_trip_matches_golden(files, tensor):
    p = files
    assert main(["encode", "--profile", str(p / "p.json"), str(p / "x.npy"),
                 "-o", str(p / "x.fmc")]) == 0
    assert main(["decode", str(p / "x.fmc"), "-o", str(p / "y.npy")]) == 0
    profile = Profile.load(p / "p.json")
    data = (p / "x.fmc").read_bytes()
    assert data == codec.encode(tensor, profile)
    y = np.load(p / "y.npy")
    ref = codec.decode(codec.encode(tensor, profile), profile)
    assert y.dtype == ref.dtype and y.shape == tensor.shape
    assert np.array_equal(y, ref)
    # decode with an explicit profile gives the same; the file without profile needs one
    assert main(["encode", "--no-embed-profile", "--profile", str(p / "p.json"),
                 str(p / "x.npy"), "-o", str(p / "n.fmc")]) == 0
    assert main(["decode", str(p / "n.fmc"), "-o", str(p / "z.npy")]) == 2
    assert not (p / "z.npy").exists()
    assert main(["decode", "--profile", str(p / "p.json"), str(p / "n.fmc"),
                 "-o", str(p / "z.npy")]) == 0
    assert np.array_equal(np.load(p / "z.npy"), ref)


def test_stats_json(files, tensor, capsys):
    capsys.readouterr()
    assert main(["stats", "--profile", str(files / "p.json"), str(files / "x.npy"),
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("values", "container_bytes", "bits_per_value", "entropy_bits_per_value",
                "sqnr_db", "max_abs_error", "raw_bits_per_value"):
        assert key in s
    profile = Profile.load(files / "p.json")
    enc = codec.encode_tensor(tensor, profile)
    assert s["values"] == tensor.size
    assert s["container_bytes"] == enc.bytes_moved
    assert s["bits_per_value"] == pytest.approx(8 * enc.bytes_moved / tensor.size)
    xh = codec.decode(codec.encode(tensor, profile), profile)
    assert s["max_abs_error"] == int(np.abs(xh.astype(int) - tensor).max())
    assert s == json.loads(json.dumps(measure(tensor, profile)))


def test_bench_reports_zlib_on_same_bytes(monkeypatch):
    from golden import bench

    r = bench.run_bench(repeats=1, shape=(16, 8, 8))
    assert r["values"] == 16 * 8 * 8
    for key in ("golden_encode_values_per_s", "golden_decode_values_per_s",
                "zlib6_compress_values_per_s", "zlib6_decompress_values_per_s"):
        assert r[key] > 0
    x = correlated_tensor(16, 8, 8, seed=0)
    assert r["zlib6_bits_per_value"] == 8 * len(zlib.compress(x.tobytes(), 6)) / x.size


@pytest.mark.parametrize("case", ["float", "nan", "shape", "dtype", "missing", "npz_many",
                                  "npz_key", "group", "empty"])
def test_bad_input_is_refused_without_output(tmp_path, case, capsys):
    x = correlated_tensor(16, 4, 4, seed=1)[0]
    src = tmp_path / "in.npy"
    args = []
    if case == "float":
        np.save(src, x.astype(np.float32))
    elif case == "nan":
        f = x.astype(np.float32)
        f[0, 0, 0] = np.nan
        np.save(src, f)
        args = ["--input-scale", "0.5"]
    elif case == "shape":
        np.save(src, x[0])
    elif case == "dtype":
        np.save(src, x.astype(np.int32))
    elif case == "missing":
        src = tmp_path / "nope.npy"
    elif case in ("npz_many", "npz_key"):
        src = tmp_path / "in.npz"
        np.savez(src, a=x, b=x)
        args = ["--key", "c"] if case == "npz_key" else []
    elif case == "group":
        np.save(src, x)
        args = ["--group", "5"]
    elif case == "empty":
        np.save(src, x[:, :0])
    out = tmp_path / "p.json"
    capsys.readouterr()
    assert main(["calibrate", str(src), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmcodec: error: ") and len(err.splitlines()) == 1
    assert not out.exists()
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []


def test_float_input_with_scale(tmp_path):
    x = correlated_tensor(16, 4, 4, seed=2)[0]
    np.save(tmp_path / "f.npy", x.astype(np.float32) * 0.25)
    assert main(["calibrate", str(tmp_path / "f.npy"), "--input-scale", "0.25",
                 "-o", str(tmp_path / "p.json")]) == 0
    assert Profile.load(tmp_path / "p.json").dtype == "int8"


def test_mismatched_profile_and_corrupt_container(files, tensor, capsys):
    p = files
    other = correlated_tensor(16, 6, 6, seed=5)
    np.save(p / "o.npy", other)
    assert main(["calibrate", str(p / "o.npy"), "-o", str(p / "o.json")]) == 0
    # tensor with a profile for another channel count
    assert main(["encode", "--profile", str(p / "o.json"), str(p / "x.npy"),
                 "-o", str(p / "bad.fmc")]) == 2
    assert not (p / "bad.fmc").exists()
    assert main(["encode", "--profile", str(p / "p.json"), str(p / "x.npy"),
                 "-o", str(p / "x.fmc")]) == 0
    data = bytearray((p / "x.fmc").read_bytes())
    # wrong profile for the container
    assert main(["decode", "--profile", str(p / "o.json"), str(p / "x.fmc"),
                 "-o", str(p / "y.npy")]) == 2
    # truncated and bit-flipped containers
    (p / "t.fmc").write_bytes(bytes(data[: len(data) // 2]))
    assert main(["decode", str(p / "t.fmc"), "-o", str(p / "y.npy")]) == 2
    data[200] ^= 0x10
    (p / "f.fmc").write_bytes(bytes(data))
    assert main(["decode", str(p / "f.fmc"), "-o", str(p / "y.npy")]) == 2
    assert not (p / "y.npy").exists()
    # a modified profile file fails its checksum
    js = json.loads((p / "p.json").read_text())
    js["offsets"][0] += 1
    (p / "m.json").write_text(json.dumps(js))
    capsys.readouterr()
    assert main(["encode", "--profile", str(p / "m.json"), str(p / "x.npy"),
                 "-o", str(p / "y.fmc")]) == 2
    assert "checksum" in capsys.readouterr().err


def test_console_entry_point_exit_status(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fmcodec.cli", "decode", str(tmp_path / "no.fmc"),
                        "-o", str(tmp_path / "o.npy")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "no such file" in r.stderr


def test_fits_checks_the_hardware_build(files, capsys):
    prof = str(files / "p.json")
    assert main(["fits", prof]) == 0
    assert "fits the hardware build" in capsys.readouterr().out
    assert main(["fits", prof, "--group", "16", "--max-channels", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fmcodec: error: profile does not fit")
    assert "N=16" in err and "at most 8" in err
    assert main(["fits", prof, "--lanes", "compact"]) == 0
    assert "coeff_width=16" in capsys.readouterr().out
