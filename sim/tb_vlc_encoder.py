"""cocotb testbench of hw/vlc_encoder.py: framed q values in, token pairs out.

The pytest side (tests/test_hw_vlc_encoder.py) builds the profile, the q stream and the golden
tokens (golden.vlc_encoder.tokens / raw_tokens); this bench programs the block with the profile's
configuration writes, streams q through `StreamSource` with random valid gaps, takes the tokens
through `StreamSink` with random ready stalls (its `HandshakeChecker` fails the test on any change
while not ready), and hands every received token back to pytest, where the one comparison sits.

`run_stream` is the generic part (program, stream, collect, count cycles, record); the bit
packer's bench (sim/tb_bit_packer.py) uses it too.

Data: `writes`, `in_<field>` per input payload field, `exp_<field>` per output field (flat
names, `coded_value` for `coded.value`). Params: `block`, `test`, `valid_prob`, `ready_prob`,
`q_width`; `abort_after` for the reset test; `repeat` (stream the input that many times, with
the configuration writes, commit included, before each repetition).
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge

from hw.framing import framed
from hw.vlc_encoder import token_pair
from sim.runner import load_data, load_params, save_outputs
from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock
from sim.tb_framed import CLOCK_NS, program, write_record


# -- pytest side: stimulus ------------------------------------------------------------------------
def identity_profile(classes, class_map, tile_pixels: int, layout: str = "compacted"):
    """A profile around hand-built classes (the transform and quantizer do not matter here)."""
    from golden.profile import Profile
    from golden.transform import identity_matrix

    class_map = np.asarray(class_map, dtype=np.int64)
    c = class_map.size
    return Profile(channels=c, group=1, transform="identity", frac_bits=12,
                   matrix=np.tile(identity_matrix(1, 12), (c, 1, 1)),
                   offsets=np.zeros(c, dtype=np.int64), class_map=class_map,
                   classes=list(classes), tile_pixels=tile_pixels, layout=layout)


def fixture_map(key: str, channels: int, height: int, width: int, relu: bool) -> np.ndarray:
    """A (1, C, H, W) int8 crop of the bundled ResNet-18 feature map `key`, or a correlated
    synthetic tensor (post-ReLU when `relu`) when the fixture does not hold it."""
    from golden.synthetic import correlated_tensor
    from sim.tb_framed import FIXTURE

    if FIXTURE.is_file():
        with np.load(FIXTURE) as f:
            if key in f.files:
                x = f[key]
                if x.shape[1] >= channels and x.shape[2] >= height and x.shape[3] >= width:
                    return np.ascontiguousarray(x[:1, :channels, :height, :width])
    return correlated_tensor(channels, height, width, relu=relu, seed=2)


def huffman_lengths(rng, used: int, skew: float = 1.0) -> list[int]:
    """Lengths of a limited Huffman code over `used` random symbols plus ESC; a steep `skew`
    gives codes up to the 16-bit limit, symbols left out go through ESC."""
    from golden.huffman import limited_lengths

    counts = np.zeros(64, dtype=np.int64)
    syms = rng.choice(63, size=min(used, 63), replace=False)
    counts[syms] = np.maximum(1, (1e6 * np.exp(-skew * np.arange(syms.size))).astype(np.int64))
    counts[63] = 1
    return limited_lengths(counts)


def every_mode_classes(rng):
    """16 classes: every mode with and without the zero flag, widths from 1 to 16 bits, Rice
    k and esc at both ends, Huffman codes up to 16 bits, one with nothing but ESC."""
    from golden.profile import ClassParams as K

    esc_only = [0] * 64
    esc_only[63] = 1
    return [
        K("drop", bits=4),
        K("raw", bits=8), K("raw", zflag=True, bits=1), K("raw", zflag=True, bits=16),
        K("rice", bits=9, k=2, esc=5), K("rice", zflag=True, bits=16, k=0, esc=16),
        K("rice", zflag=True, bits=3, k=15, esc=1), K("rice", bits=16, k=15, esc=16),
        K("rice", zflag=True, bits=1, k=0, esc=1),
        K("huffman", bits=12, lengths=huffman_lengths(rng, 20)),
        K("huffman", zflag=True, bits=16, lengths=huffman_lengths(rng, 5)),
        K("huffman", zflag=True, bits=6, lengths=huffman_lengths(rng, 63, skew=0.9)),
        K("huffman", bits=16, lengths=huffman_lengths(rng, 63, skew=0.2)),
        K("huffman", zflag=True, bits=1, lengths=esc_only),
        K("huffman", bits=4, lengths=esc_only),
        K("raw", zflag=True, bits=7),
    ]


def every_mode_profile(rng, channels: int = 48, tile_pixels: int = 3):
    """Every class of `every_mode_classes` on at least one component (some on exactly one, so a
    zero flag covers a single component), the rest of the class map random."""
    classes = every_mode_classes(rng)
    cmap = rng.integers(0, len(classes), size=channels)
    cmap[rng.permutation(channels)[:len(classes)]] = np.arange(len(classes))
    return identity_profile(classes, cmap, tile_pixels)


def random_q(profile, rng, pixels: int) -> np.ndarray:
    """(P, C) symbols in each class's range: small Laplacian values, uniform ones, the extremes,
    zeros, all-zero pixels and one all-zero run of pixels long enough to cover a tile."""
    bits = profile.class_array("bits")
    drop = profile.class_array("mode") == 0
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    shape = (pixels, profile.channels)
    small = np.clip(np.rint(rng.laplace(0, 2.0, size=shape)).astype(np.int64), lo, hi)
    uniform = rng.integers(lo, hi + 1, size=shape)
    q = np.where(rng.random((pixels, 1)) < 0.6, small, uniform)
    q = np.where(rng.random(shape) < 0.3, 0, q)
    ext = rng.random(shape)
    q = np.where(ext < 0.04, lo, np.where(ext > 0.96, hi, q))
    q[rng.random(pixels) < 0.15] = 0
    run = 2 * profile.tile_pixels
    if pixels > 2 * run:
        start = int(rng.integers(0, pixels - run))
        q[start:start + run] = 0
    q[0] = hi
    q[1 % pixels] = lo
    q[:, drop] = 0
    return q


def encoder_data(profile, q, image_pixels: int | None = None) -> dict[str, np.ndarray]:
    """Data file of an encoder run: writes, the framed q stream, the golden token pairs."""
    from golden.profile import config_writes
    from golden.vlc_encoder import raw_tokens, tokens
    from sim.tb_framed import framed_values, tile_ends

    pixels = q.shape[0]
    image_pixels = pixels if image_pixels is None else image_pixels
    ends = tile_ends(pixels, profile.tile_pixels, image_pixels)
    inp = framed_values(q, ends, profile.channels)
    cv, cn = tokens(q, profile)
    rv, rn = raw_tokens(q, profile)
    data = {"writes": config_writes(profile, image_pixels=image_pixels).astype(np.int64)}
    data.update({f"in_{k}": v for k, v in inp.items()})
    data.update({
        "exp_coded_value": cv.reshape(-1).astype(np.int64),
        "exp_coded_nbits": cn.reshape(-1),
        "exp_raw_value": rv.reshape(-1).astype(np.int64),
        "exp_raw_nbits": rn.reshape(-1),
        "exp_tile_last": inp["tile_last"],
    })
    return data


# -- flat field names <-> nested payload dicts ----------------------------------------------------
def flatten(item: dict, prefix: str = "") -> dict[str, int]:
    out = {}
    for k, v in item.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}_"))
        else:
            out[f"{prefix}{k}"] = int(v)
    return out


def items_from(data: dict, prefix: str, template: dict) -> list[dict]:
    """Rows of `data[prefix + flat field]` as nested dicts shaped like `template`."""
    cols = {}

    def build(t, path):
        node = {}
        for k, v in t.items():
            if isinstance(v, dict):
                node[k] = build(v, f"{path}{k}_")
            else:
                cols[f"{path}{k}"] = data[f"{prefix}{path}{k}"].tolist()
                node[k] = f"{path}{k}"
        return node

    shape = build(template, "")
    n = len(next(iter(cols.values())))

    def fill(node, i):
        return {k: fill(v, i) if isinstance(v, dict) else cols[v][i] for k, v in node.items()}

    return [fill(shape, i) for i in range(n)]


# -- the generic bench ----------------------------------------------------------------------------
async def run_stream(dut, *, in_shape, out_shape, in_template: dict, out_template: dict,
                     data: dict, params: dict, block: str, clock_running: bool = False) -> dict:
    """Program, stream, collect, compare (for the record only) and record one run.

    `cycles` runs from the clock that takes the first input to the clock that delivers the last
    output of the first repetition, so pipeline fill is included. Lost or extra outputs and
    handshake violations fail here; data mismatches are for pytest to judge.
    """
    seed = default_seed()
    if not clock_running:
        await start_clock(dut, CLOCK_NS)
    await reset(dut)
    inputs = items_from(data, "in_", in_template)
    n_exp = len(data[f"exp_{next(iter(flatten(out_template)))}"])
    repeat = int(params.get("repeat", 1))
    src = snk = None
    got: list[dict] = []
    cycles = 0
    for rep in range(repeat):
        await program(dut, data["writes"])
        if src is None:
            src = StreamSource(dut, "i", shape=in_shape, valid_prob=params.get("valid_prob", 1.0),
                               seed=seed)
            snk = StreamSink(dut, "o", shape=out_shape, ready_prob=params.get("ready_prob", 1.0),
                             seed=seed ^ 0x5EED)
        t_first = len(src.sent_times_ns)
        src.send(inputs)
        want = (rep + 1) * n_exp
        await snk.receive(want, timeout_cycles=64_000 + 40 * n_exp)
        await src.wait_idle(timeout_cycles=1000)
        if rep == 0:
            cycles = int(round((snk.received_times_ns[want - 1] - src.sent_times_ns[t_first])
                               / CLOCK_NS)) + 1
    # Anything beyond the expected count is a duplicated value.
    await ClockCycles(dut.clk, 64)
    extra = len(snk.received) - repeat * n_exp
    snk.stop()
    src.stop()
    assert extra == 0, f"{block}: {extra} outputs more than expected"
    got = [flatten(g) for g in snk.received]

    keys = list(flatten(out_template))
    arr = {k: np.asarray([g[k] for g in got], dtype=np.uint64).astype(np.int64) for k in keys}
    exp = {k: np.tile(data[f"exp_{k}"].astype(np.int64), repeat) for k in keys}
    bad = np.zeros(len(got), dtype=bool)
    for k in keys:
        bad |= arr[k] != exp[k]
    mismatches = int(bad.sum())
    record = {
        "test": params.get("test", block), "block": block, "lanes": 1,
        "values": int(params.get("values", len(inputs))), "cycles": cycles,
        "cycles_per_value": cycles / max(int(params.get("values", len(inputs))), 1),
        "mismatches": mismatches, "outputs": n_exp,
        "valid_prob": params.get("valid_prob", 1.0), "ready_prob": params.get("ready_prob", 1.0),
        "seed": seed,
    }
    ports = {}
    if hasattr(dut, "error"):
        ports["error"] = int(dut.error.value)
        record["error"] = ports["error"]
    save_outputs(**arr, cycles=cycles, mismatches=mismatches, **ports)
    write_record(record)
    return record


async def reset_mid_stream(dut, *, in_shape, out_shape, in_template, data, params):
    """Stream the first `abort_after` inputs against a stalling sink, then reset in the middle
    of a pixel / tile with the output held; returns with the clock running."""
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    await program(dut, data["writes"])
    inputs = items_from(data, "in_", in_template)
    n = int(params["abort_after"])
    src = StreamSource(dut, "i", shape=in_shape, valid_prob=0.9, seed=default_seed() + 1)
    snk = StreamSink(dut, "o", shape=out_shape, ready_prob=0.3, seed=default_seed() + 2)
    src.send(inputs[:n])
    await src.wait_idle(timeout_cycles=100 * n + 1000)
    await ClockCycles(dut.clk, 3)
    src.stop()
    snk.stop()
    await FallingEdge(dut.clk)
    dut.i__valid.value = 0
    dut.o__ready.value = 0


# -- the encoder ----------------------------------------------------------------------------------
IN_TEMPLATE = {"data": 0, "comp": 0, "tile_last": 0}
OUT_TEMPLATE = {"coded": {"value": 0, "nbits": 0}, "raw": {"value": 0, "nbits": 0},
                "tile_last": 0}


def _shapes(params):
    return framed(int(params.get("q_width", 16))), token_pair()


@cocotb.test()
async def vlc_encoder_stream(dut):
    """The whole q stream through the encoder; every token pair back to pytest."""
    params, data = load_params(), load_data()
    in_shape, out_shape = _shapes(params)
    await run_stream(dut, in_shape=in_shape, out_shape=out_shape, in_template=IN_TEMPLATE,
                     out_template=OUT_TEMPLATE, data=data, params=params, block="VlcEncoder")


@cocotb.test()
async def vlc_encoder_reset_mid_stream(dut):
    """Reset with a pixel half buffered and the output stalled, then the whole stream: nothing
    caught in flight (buffered pixel, per-class flags, held token) may leak into it."""
    params, data = load_params(), load_data()
    in_shape, out_shape = _shapes(params)
    await reset_mid_stream(dut, in_shape=in_shape, out_shape=out_shape, in_template=IN_TEMPLATE,
                           data=data, params=params)
    await run_stream(dut, in_shape=in_shape, out_shape=out_shape, in_template=IN_TEMPLATE,
                     out_template=OUT_TEMPLATE, data=data, params=params, block="VlcEncoder",
                     clock_running=True)


@cocotb.test()
async def vlc_encoder_error_flag(dut):
    """`error` is high while the configured C is 0 or above `max_channels`, low otherwise."""
    from hw.config import GLOBAL_CHANNELS, REGION_GLOBAL

    params, data = load_params(), load_data()
    await start_clock(dut, CLOCK_NS)
    await reset(dut)
    await program(dut, data["writes"])
    await ClockCycles(dut.clk, 2)
    assert int(dut.error.value) == 0, "error set after a fitting configuration"
    c, cmax = int(params["channels"]), int(params["max_channels"])
    for value, want in ((0, 1), (c, 0), (cmax + 1, 1), (cmax, 0), (1, 0)):
        await program(dut, [((REGION_GLOBAL << 16) | GLOBAL_CHANNELS, value)])
        await ClockCycles(dut.clk, 3)          # the encoder takes writes one clock late
        assert int(dut.error.value) == want, f"C = {value}: error {dut.error.value} != {want}"
