"""golden/calibrate.py: valid profiles, the documented choices (step, classes, widths, modes),
exact cost prediction, baselines, and clear errors."""

from pathlib import Path

import numpy as np
import pytest

from golden.arith import signed_width, zigzag
from golden.calibrate import calibrate, payload_bits, tile_words, token_bits
from golden.huffman import canonical_codes
from golden.profile import DTYPES, ClassParams, Profile
from golden.quantizer import dequantize, quantize
from golden.synthetic import correlated_tensor
from golden.transform import forward, inverse, to_pixels

FIXTURE = Path(__file__).parent / "fixtures" / "featuremaps.npz"


@pytest.fixture(scope="module")
def fmap():
    return correlated_tensor(32, 20, 24, seed=1)


def quantized(x, prof):
    return quantize(forward(to_pixels(x), prof), prof)


def sqnr_db(x, prof):
    px = to_pixels(x)
    xh = inverse(dequantize(quantize(forward(px, prof), prof), prof), prof)
    err = ((xh - px).astype(np.float64) ** 2).sum()
    return 10 * np.log10((px.astype(np.float64) ** 2).sum() / max(err, 1e-12))


# -- the stream FORMAT.md defines, written out bit by bit, to check the cost model -----------------
def _raw(v, b):
    return [(v >> i) & 1 for i in range(b)]


def reference_token(v, cp, codes=None):
    """The bits of one value's token (no flag), straight from FORMAT.md's table."""
    u = 2 * v if v >= 0 else -2 * v - 1
    if cp.mode == "raw":
        return _raw(v, cp.bits)
    if cp.mode == "rice":
        qq = u >> cp.k
        if qq < cp.esc:
            return [1] * qq + [0] + _raw(u, cp.k)
        return [1] * cp.esc + _raw(v, cp.bits)
    codes = codes or canonical_codes(cp.lengths)
    s = u if u < 63 and cp.lengths[u] > 0 else 63
    rev, ln = codes[s]
    return _raw(rev, ln) + (_raw(v, cp.bits) if s == 63 else [])


def reference_payload_bits(q, prof):
    cmap = prof.class_map.tolist()
    comps = {ci: [k for k in range(prof.channels) if cmap[k] == ci]
             for ci in range(len(prof.classes))}
    codes = {ci: canonical_codes(cp.lengths) for ci, cp in enumerate(prof.classes)
             if cp.mode == "huffman"}
    out = []
    for row in q.tolist():
        stream, flagged, silent = [], set(), set()
        for k, v in enumerate(row):
            ci = cmap[k]
            cp = prof.classes[ci]
            if cp.mode == "drop":
                continue
            if cp.zflag and ci not in flagged:
                flagged.add(ci)
                nz = any(row[j] != 0 for j in comps[ci])
                stream.append(int(nz))
                if not nz:
                    silent.add(ci)
            if ci not in silent:
                stream += reference_token(v, cp, codes.get(ci))
        out.append(len(stream))
    return np.array(out)


@pytest.mark.parametrize("bits", [1, 2, 5, 8, 16])
def test_token_bits_every_mode(bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = np.unique(np.r_[np.arange(max(lo, -300), min(hi, 300) + 1), lo, hi])
    lengths = [0] * 64
    for s, ln in ((0, 1), (1, 3), (2, 3), (5, 4), (63, 4), (7, 5), (30, 5)):
        lengths[s] = ln                        # symbols 3, 4, 6, ... go through ESC
    cases = [ClassParams(mode="raw", bits=bits), ClassParams(mode="huffman", bits=bits,
                                                             lengths=lengths)]
    for k in (0, 1, 3, 15):
        for esc in (1, 2, 7, 16):
            if esc + bits <= 32:
                cases.append(ClassParams(mode="rice", bits=bits, k=k, esc=esc))
    for cp in cases:
        got = token_bits(v, cp)
        assert got.tolist() == [len(reference_token(int(x), cp)) for x in v], cp
    assert token_bits(v, ClassParams(mode="drop")).tolist() == [0] * v.size


# -- profile validity ------------------------------------------------------------------------------
@pytest.mark.parametrize("transform", ["pca", "dct", "wht", "identity"])
@pytest.mark.parametrize("coder", ["auto", "golomb", "huffman", "pooled-huffman"])
def test_profile_valid_and_survives_save_load(fmap, tmp_path, transform, coder):
    prof = calibrate(fmap, transform=transform, coder=coder, bits=6)
    prof.validate()
    assert prof.channels == 32 and prof.group == 8 and prof.transform == transform
    assert prof.dtype == "int8" and prof.tile_pixels == 24 and len(prof.classes) == 16
    path = tmp_path / "p.json"
    prof.save(path)
    back = Profile.load(path)
    assert back.checksum == prof.checksum
    assert back.to_json() == prof.to_json()
    assert np.array_equal(quantized(fmap, back), quantized(fmap, prof))
    cal = prof.calibration
    for key in ("transform", "group", "bits", "coder", "step", "predicted_bits_per_value",
                "classes"):
        assert key in cal
    assert sum(c["components"] for c in cal["classes"]) == 32


def test_step_and_strongest_component(fmap):
    for b in (3, 6, 8, 12):
        prof = calibrate(fmap, bits=b)
        y = forward(to_pixels(fmap), prof)
        var = y.astype(np.float64).var(axis=0)
        s = prof.calibration["strongest_component"]
        assert s == int(np.argmax(var))
        assert prof.calibration["step"] == np.abs(y[:, s]).max() / (2 ** (b - 1) - 1)
        q = quantized(fmap, prof)
        assert np.abs(q[:, s]).max() == 2 ** (b - 1) - 1   # B bits for the strongest component


def test_classes_are_equal_variance_bands(fmap):
    prof = calibrate(fmap, bits=6, max_classes=5)
    y = forward(to_pixels(fmap), prof)
    var = y.astype(np.float64).var(axis=0)
    counts = np.bincount(prof.class_map, minlength=5)
    assert counts.tolist() == [7, 7, 6, 6, 6]
    # Every component of class c is at least as strong as every component of class c + 1.
    for c in range(4):
        assert var[prof.class_map == c].min() >= var[prof.class_map == c + 1].max()
    assert prof.class_map[prof.calibration["strongest_component"]] == 0
    assert len(calibrate(fmap[:, :4], group=4).classes) == 4    # K = min(max_classes, C)


def test_class_widths_and_drop(fmap):
    prof = calibrate(fmap, bits=4, group=32)
    q = quantized(fmap, prof)
    for ci, cp in enumerate(prof.classes):
        qc = q[:, prof.class_map == ci]
        assert cp.bits == max(1, min(16, int(signed_width(np.abs(qc).max()))))
        assert (cp.mode == "drop") == (not qc.any())
    assert any(cp.mode == "drop" for cp in prof.classes)


def test_cost_model_is_exact(fmap):
    x = fmap[:, :, :6, :]
    for coder in ("auto", "golomb", "huffman", "pooled-huffman"):
        for b in (2, 5, 9):
            prof = calibrate(x, bits=b, coder=coder, group=16)
            q = quantized(x, prof)
            ref = reference_payload_bits(q, prof)
            assert np.array_equal(payload_bits(q, prof), ref)
            costs = [c["cost_bits"] for c in prof.calibration["classes"]]
            assert sum(costs) == ref.sum()
            assert prof.calibration["predicted_bits_per_value"] == ref.sum() / q.size


def test_cost_model_escapes():
    """Values outside the Huffman alphabet and beyond the Rice escape threshold."""
    rng = np.random.default_rng(0)
    x = (rng.laplace(0, 3000, (8, 10, 10))).clip(-32768, 32767).astype(np.int16)
    x[:, 0, :] = 0
    for coder in ("golomb", "huffman", "auto"):
        prof = calibrate(x, transform="identity", group=1, bits=16, coder=coder)
        q = quantized(x, prof)
        assert np.array_equal(payload_bits(q, prof), reference_payload_bits(q, prof))


def test_chosen_mode_is_cheapest(fmap):
    for b in (2, 4, 8):
        prof = calibrate(fmap, bits=b, group=32)
        for cp, info in zip(prof.classes, prof.calibration["classes"], strict=True):
            if cp.mode == "drop":
                assert info["cost_bits"] == 0 and info["candidates"] == {}
                continue
            cand = info["candidates"]
            assert set(cand) == {"raw", "raw+zflag", "rice", "rice+zflag", "huffman",
                                 "huffman+zflag"}
            name = cp.mode + ("+zflag" if cp.zflag else "")
            assert cand[name] == min(cand.values()) == info["cost_bits"]


def test_zero_flag_goes_below_one_bit():
    x = correlated_tensor(64, 28, 28, seed=2)
    prof = calibrate(x, bits=4, group=64)
    gains = [(c["candidates"], c) for c in prof.calibration["classes"] if c["zflag"]]
    assert gains, "no class chose the zero flag"
    for cand, c in gains:
        best_plain = min(v for k, v in cand.items() if "zflag" not in k)
        assert c["cost_bits"] < best_plain
    values_per_class = 28 * 28 * 4
    assert any(c["cost_bits"] < values_per_class for _, c in gains)   # below 1 bit/value


def test_coder_restrictions(fmap):
    for coder, allowed in (("golomb", {"rice", "drop"}), ("huffman", {"huffman", "drop"})):
        for b in (2, 8):
            prof = calibrate(fmap, bits=b, coder=coder)
            assert {cp.mode for cp in prof.classes} <= allowed
    auto = calibrate(fmap, bits=6)
    for coder in ("golomb", "huffman", "pooled-huffman"):
        other = calibrate(fmap, bits=6, coder=coder)
        assert np.array_equal(quantized(fmap, auto), quantized(fmap, other)) or coder == \
            "pooled-huffman"
        assert (auto.calibration["predicted_bits_per_value"]
                <= other.calibration["predicted_bits_per_value"])


def test_pooled_huffman_baseline(fmap):
    for b in (2, 6):
        prof = calibrate(fmap, bits=b, coder="pooled-huffman")
        q = quantized(fmap, prof)
        first = prof.classes[0]
        assert first.mode == "huffman"
        for cp in prof.classes:
            assert cp.mode == "huffman" and not cp.zflag
            assert cp.lengths == first.lengths and cp.bits == first.bits
        assert first.bits == signed_width(np.abs(q).max())
        hist = np.bincount(zigzag(q).ravel(), minlength=64)
        assert all((first.lengths[s] > 0) == (hist[s] > 0) for s in range(63))
        assert first.lengths[63] > 0


def test_quality_follows_bits(fmap):
    s = [sqnr_db(fmap, calibrate(fmap, bits=b)) for b in (3, 5, 7, 9)]
    assert all(a < b for a, b in zip(s, s[1:], strict=False)), s


def test_identity_step_one_round_trips_exactly():
    for dtype in sorted(DTYPES):
        t, lo, hi = DTYPES[dtype]
        if dtype == "int16":   # x - mu over the full int16 range would need 17-bit symbols
            lo, hi = lo // 4, hi // 4
        x = np.random.default_rng(4).integers(lo, hi + 1, (2, 6, 5, 5)).astype(t)
        # B = 15 leaves headroom for components whose peak exceeds the strongest one's.
        prof = calibrate(x, transform="identity", group=6, bits=15, coder="auto")
        assert prof.calibration["step"] < 1
        px = to_pixels(x)
        xh = inverse(dequantize(quantize(forward(px, prof), prof), prof), prof)
        assert np.array_equal(xh, px), dtype


def test_constant_and_zero_tensors():
    for fill in (0, -7, 100):
        x = np.full((16, 4, 4), fill, dtype=np.int8)
        prof = calibrate(x, bits=8)
        assert all(cp.mode == "drop" for cp in prof.classes)
        assert prof.calibration["predicted_bits_per_value"] == 0
        px = to_pixels(x)
        assert np.array_equal(inverse(dequantize(quantized(x, prof), prof), prof), px)
        pooled = calibrate(x, coder="pooled-huffman")
        assert all(cp.mode == "huffman" for cp in pooled.classes)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_extreme_values(dtype):
    t, lo, hi = DTYPES[dtype]
    x = np.random.default_rng(9).choice([lo, hi], (1, 16, 6, 6)).astype(t)
    for transform in ("pca", "dct", "wht", "identity"):
        for b in (2, 16):
            prof = calibrate(x, transform=transform, bits=b)
            q = quantized(x, prof)
            assert np.array_equal(payload_bits(q, prof), reference_payload_bits(q, prof))


def test_single_pixel_and_uint8():
    x = np.arange(8, dtype=np.uint8).reshape(8, 1, 1)
    prof = calibrate(x, transform="pca", group=8, bits=4)
    assert prof.dtype == "uint8" and prof.tile_pixels == 1
    x = np.random.default_rng(2).integers(0, 256, (2, 8, 3, 3)).astype(np.uint8)
    prof = calibrate(x, transform="pca", group=4, tile_pixels=5, layout="compacted", relu=True)
    assert prof.relu and prof.layout == "compacted" and prof.tile_pixels == 5


def test_tile_words(fmap):
    prof = calibrate(fmap, bits=6, tile_pixels=7)
    q = quantized(fmap, prof)
    w = tile_words(q, prof, 20 * 24)
    assert w.size == 1 * -(-480 // 7)
    pb = payload_bits(q, prof)
    first = -(-pb[:7].sum() // 64)
    assert w[0] == 1 + min(first, prof.raw_words(7))
    assert w[-1] == 1 + min(-(-pb[476:].sum() // 64), prof.raw_words(4))


@pytest.mark.parametrize("kwargs,match", [
    ({"x": np.zeros((4, 4), np.int8)}, "dimensions"),
    ({"x": np.zeros((1, 1, 4, 4, 4), np.int8)}, "dimensions"),
    ({"x": np.zeros((4, 4, 4), np.float32)}, "scaled"),
    ({"x": np.zeros((4, 4, 4), np.int32)}, "unsupported dtype"),
    ({"x": np.zeros((4, 0, 4), np.int8)}, "empty"),
    ({"group": 3}, "divisor"),
    ({"group": 0}, "divisor"),
    ({"transform": "wht", "group": 6, "x": np.zeros((12, 2, 2), np.int8)}, "power-of-two"),
    ({"transform": "fft"}, "unknown transform"),
    ({"coder": "lz4"}, "unknown coder"),
    ({"layout": "sparse"}, "unknown layout"),
    ({"bits": 1}, "bits"),
    ({"bits": 17}, "bits"),
    ({"max_classes": 17}, "max_classes"),
    ({"frac_bits": 20}, "frac_bits"),
    ({"tile_pixels": 0}, "tile_pixels"),
    ({"tile_pixels": 70000}, "tile_pixels"),
])
def test_errors(kwargs, match):
    kw = {"x": np.zeros((8, 4, 4), np.int8)}
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        calibrate(**kw)


@pytest.mark.skipif(not FIXTURE.exists(), reason="tests/fixtures/featuremaps.npz not present")
def test_real_feature_maps(tmp_path):
    data = np.load(FIXTURE)
    keys = [k for k in data.files if data[k].ndim == 4 and data[k].dtype == np.int8]
    assert keys
    for key in keys[:4]:
        x = data[key]
        c = x.shape[-3]
        group = 8 if c % 8 == 0 else 1
        results = {}
        for transform in ("pca", "identity"):
            prof = calibrate(x, transform=transform, group=group, bits=8)
            q = quantized(x, prof)
            assert np.array_equal(payload_bits(q[:64], prof), reference_payload_bits(q[:64], prof))
            prof.save(tmp_path / "p.json")
            assert Profile.load(tmp_path / "p.json").checksum == prof.checksum
            results[transform] = (prof.calibration["predicted_bits_per_value"],
                                  sqnr_db(x, prof))
        assert results["pca"][0] < 8, (key, results)


@pytest.mark.parametrize("coder", ["auto", "golomb", "huffman", "pooled-huffman"])
@pytest.mark.parametrize("bits", [2, 5, 9])
def test_prediction_matches_encoder(fmap, coder, bits):
    """The cost model and the golden encoder/container count the same bits and words."""
    vlc = pytest.importorskip("golden.vlc_encoder", reason="golden/vlc_encoder.py not present")
    container = pytest.importorskip("golden.container", reason="golden/container.py not present")
    prof = calibrate(fmap, bits=bits, coder=coder, tile_pixels=37, layout="compacted")
    q = quantized(fmap, prof)
    assert np.array_equal(vlc.token_lengths(q, prof).sum(axis=1), payload_bits(q, prof))
    enc = container.encode_q(q, fmap.shape, prof)
    words = tile_words(q, prof, 20 * 24)
    assert np.array_equal(enc.tile_payload_words + 1, words)
    assert prof.calibration["predicted_tile_bits_per_value"] == (
        64 * (enc.words_written - enc.table_words) / q.size)


def test_no_drop_keeps_components_another_tensor_uses():
    """A channel that is constant in the calibration data but not in the tensor encoded later:
    dropped, its values are lost; with drop=False they come back within one quantizer step."""
    from golden import codec

    rng = np.random.default_rng(5)
    calib = rng.integers(-60, 60, size=(2, 8, 6, 6)).astype(np.int8)
    calib[:, 7] = 0
    later = calib.copy()
    later[:, 7] = rng.integers(-40, 40, size=later[:, 7].shape)
    dropped = calibrate(calib, transform="identity", group=8, bits=8, max_classes=8)
    kept = calibrate(calib, transform="identity", group=8, bits=8, max_classes=8, drop=False)
    assert "drop" in [c.mode for c in dropped.classes]
    assert "drop" not in [c.mode for c in kept.classes]
    step = kept.calibration["step"]
    for prof, ok in ((dropped, False), (kept, True)):
        xh = codec.decode(codec.encode(later, prof), prof)
        err = np.abs(xh[:, 7].astype(np.int64) - later[:, 7])
        assert bool(err.max() <= step) == ok, (prof.classes, err.max())
    # Where the tensor matches the calibration data, keeping costs at most the kept class's raw
    # width per pixel (these random values leave tiles raw) plus a word per tile of rounding.
    pixels, tiles = 2 * 36, 2 * 6
    extra = (len(codec.encode(calib, kept, embed_profile=False))
             - len(codec.encode(calib, dropped, embed_profile=False)))
    assert 0 <= extra * 8 <= pixels * 8 + 64 * tiles, extra
