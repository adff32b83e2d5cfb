"""Shared testbench for the lane's value blocks: framed values in, framed values out.

The Framer, Transform, InverseTransform, Quantizer and Dequantizer all take a configuration
stream (`cfg`, always ready) and turn one stream of values into another, one value per clock.
One bench serves them all: it programs the block with the golden profile's configuration writes,
streams the input through `StreamSource` with random valid gaps, takes the output through
`StreamSink` with random ready stalls (its `HandshakeChecker` fails the test on any payload or
valid change while not ready), and hands every received value back to pytest, where the single
comparison with the golden model sits.

Each run also leaves a record `{test, block, lanes, values, cycles, mismatches, ...}`:
`record.json` next to the outputs, and one line appended to the JSON-lines file named by
`FMCODEC_RECORD` when that is set (what `make sim` collects into build/reports/sim.json).
`cycles` runs from the clock that takes the first input to the clock that delivers the last
output, so pipeline fill is included.

Pytest side: `verilog_for(component, name)` writes the Verilog that `run_cocotb` takes, and
`framed_data(...)` packs the arrays the bench reads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

RECORD_ENV = "FMCODEC_RECORD"
CLOCK_NS = 10


# -- pytest side ---------------------------------------------------------------------------------


def verilog_for(component: Any, name: str) -> Path:
    """Write `component` as Verilog `module top` under build/sim/_verilog/; return the path.

    The blocks' `cfg` port is `always_ready`, whose `ready` is a constant that
    `amaranth.back.verilog.convert` refuses as a port; the ports are therefore listed explicitly
    (every member that is a signal), which drops the constant and keeps Amaranth's flat names
    (`cfg__valid`, `cfg__payload`, `i__payload`, ...).
    """
    from amaranth.back import verilog
    from amaranth.hdl import Signal

    from sim.runner import _build_root

    ports = []
    for _, _, value in component.signature.flatten(component):
        value = value.as_value() if hasattr(value, "as_value") else value
        if isinstance(value, Signal):
            ports.append(value)
    path = _build_root() / "sim" / "_verilog" / f"{name}.v"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name="top", ports=ports)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


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
    """Per pixel: 1 when it closes a tile (docs/FORMAT.md, "Tiles")."""
    k = np.arange(pixels)
    in_image = k % image_pixels
    return ((in_image % tile_pixels == tile_pixels - 1) | (in_image == image_pixels - 1)).astype(
        np.int64)


def framed_data(writes, inputs: dict, expected: dict) -> dict[str, np.ndarray]:
    """The data file of one bench run: config writes, input stream, expected output stream."""
    out = {"writes": np.asarray(writes, dtype=np.int64).reshape(-1, 2)}
    out.update({f"in_{k}": np.asarray(v, dtype=np.int64) for k, v in inputs.items()})
    out.update({f"exp_{k}": np.asarray(v, dtype=np.int64) for k, v in expected.items()})
    return out


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


def _stream_items(data: dict, prefix: str) -> list[dict]:
    d, c, t = data[f"{prefix}_data"], data[f"{prefix}_comp"], data[f"{prefix}_tile_last"]
    return [{"data": int(a), "comp": int(b), "tile_last": int(e)} for a, b, e in zip(d, c, t,
                                                                                     strict=True)]


async def run_framed(dut, *, in_shape, out_shape, data: dict, params: dict, block: str,
                     clock_running: bool = False) -> dict:
    """Program, stream, collect, compare and record one run; return the record.

    `in_shape` is the payload shape of `i` (a framed layout, or a plain signed shape for the
    Framer, whose input carries only `data`). Data-path mismatches do not fail here: pytest owns
    that comparison. Lost or extra values and handshake violations do fail here.
    """
    from cocotb.triggers import ClockCycles

    from sim.runner import save_outputs
    from sim.streams import StreamSink, StreamSource, default_seed, reset, start_clock

    seed = default_seed()
    if not clock_running:
        await start_clock(dut, CLOCK_NS)
    await reset(dut)
    await program(dut, data["writes"])

    if params.get("raw_input"):
        inputs = [int(v) for v in data["in_data"]]
    else:
        inputs = _stream_items(data, "in")
    expected = _stream_items(data, "exp")
    src = StreamSource(dut, "i", shape=in_shape, valid_prob=params.get("valid_prob", 1.0),
                       seed=seed)
    snk = StreamSink(dut, "o", shape=out_shape, ready_prob=params.get("ready_prob", 1.0),
                     seed=seed ^ 0x5EED)
    src.send(inputs)
    slack = 64 * 1000
    got = await snk.receive(len(expected), timeout_cycles=slack + 20 * len(expected))
    # Anything beyond the expected count is a duplicated value.
    await ClockCycles(dut.clk, 32)
    extra = len(snk.received) - len(expected)
    snk.stop()
    src.stop()
    assert extra == 0, f"{block}: {extra} values more than sent"

    arr = {k: np.asarray([g[k] for g in got], dtype=np.int64) for k in ("data", "comp",
                                                                         "tile_last")}
    mismatches = int(sum(np.count_nonzero(arr[k] != data[f"exp_{k}"]) for k in arr))
    cycles = int(round((snk.received_times_ns[len(expected) - 1] - src.sent_times_ns[0])
                       / CLOCK_NS)) + 1
    record = {
        "test": params.get("test", block), "block": block, "lanes": 1,
        "values": len(expected), "cycles": cycles,
        "cycles_per_value": cycles / max(len(expected), 1), "mismatches": mismatches,
        "valid_prob": params.get("valid_prob", 1.0), "ready_prob": params.get("ready_prob", 1.0),
        "seed": seed,
    }
    extra_ports = {}
    if hasattr(dut, "error"):
        extra_ports["error"] = int(dut.error.value)
        record["error"] = extra_ports["error"]
    save_outputs(**arr, cycles=cycles, mismatches=mismatches, **extra_ports)
    write_record(record)
    return record


def write_record(record: dict) -> None:
    from sim.runner import OUT_ENV

    out = os.environ.get(OUT_ENV)
    if out:
        Path(out).with_name("record.json").write_text(json.dumps(record, indent=1) + "\n")
    path = os.environ.get(RECORD_ENV)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One short line per write: O_APPEND keeps parallel workers' lines whole.
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
