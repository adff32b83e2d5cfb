"""One small iCE40 build through the whole open flow, as `make bitstream` runs it.

The iCEBreaker loopback design (hw/board_top.py: the UART blocks and a FIFO) goes through Yosys,
nextpnr-ice40 and icepack from PyPI (YoWASP) via amaranth-boards; the test checks that a bitstream
comes out, that nextpnr's report was read and that the 12 MHz clock is met. Skipped, with the
reason, when a tool is missing. The first YoWASP run on a machine compiles the WebAssembly tools
once (a few minutes, cached in ~/.cache/YoWASP); later builds take about 20 s.
"""

from __future__ import annotations

import os

import pytest

from hw.build import board_family, build_bitstream, load_board, tools_missing

pytestmark = pytest.mark.synth


def test_icebreaker_loopback_bitstream(tmp_path):
    missing = tools_missing(board_family(load_board("icebreaker")))
    if missing:
        pytest.skip("; ".join(missing))
    lines = []
    summary = build_bitstream("icebreaker", design="loopback", build_root=tmp_path,
                              log=lines.append)
    bitstream = tmp_path / "bitstreams" / "icebreaker-loopback.bin"
    assert bitstream.is_file() and bitstream.stat().st_size > 100_000   # UP5K images are ~104 kB
    assert summary["device"] == "iCE40UP5K"
    assert summary["timing_driven"] is True     # iCE40 board builds place for timing
    assert 0 < summary["luts"] < summary["luts_available"]
    assert summary["ffs"] > 0
    (fmax,) = summary["fmax_mhz"].values()
    assert fmax >= 12.0, f"the 12 MHz board clock is not met ({fmax} MHz)"
    assert any("nextpnr place and route done" in line for line in lines)


def test_unknown_board_lists_the_supported_ones():
    from hw.build import BuildError, boards

    with pytest.raises(BuildError, match="supported boards: ") as e:
        load_board("no-such-board")
    for name in ("icebreaker", "ulx3s-85f", "ecpix5-85"):
        assert name in boards() and name in str(e.value)


def test_missing_tool_is_named(monkeypatch):
    from hw.build import BuildError, setup_tools

    monkeypatch.setenv("NEXTPNR_ICE40", "/nonexistent/nextpnr-ice40")
    with pytest.raises(BuildError, match="NEXTPNR_ICE40=/nonexistent/nextpnr-ice40"):
        setup_tools("ice40")


def test_every_board_names_its_default_design():
    from hw.board_top import DESIGNS, LANE_KINDS
    from hw.build import boards

    for name in boards():
        board = load_board(name)
        assert getattr(board, "DESIGN", "codec") in DESIGNS, name
        assert getattr(board, "LANES", "full") in LANE_KINDS, name
        for attr in ("PLATFORM", "BITSTREAM", "BAUD", "LINKS", "VALUE_DEPTH", "WORD_DEPTH",
                     "MAX_CHANNELS", "MAX_TILE_WORDS"):
            assert hasattr(board, attr), f"{name}: {attr}"


def test_lanes_override_names_its_products():
    """`make bitstream LANES=...`: the board's own lanes keep the design's name; other lanes
    build under `<design>-<lanes>` (so neither bitstream overwrites the other); unknown lanes,
    or lanes for a design without them, are refused."""
    from hw.build import BuildError, design_variant

    ice, ulx = load_board("icebreaker"), load_board("ulx3s-85f")
    assert design_variant(ice, "codec", None) == ("compact", "codec")
    assert design_variant(ice, "codec", "compact") == ("compact", "codec")
    assert design_variant(ice, "codec", "full") == ("full", "codec-full")
    assert design_variant(ulx, "codec", None) == ("full", "codec")
    assert design_variant(ulx, "codec", "compact") == ("compact", "codec-compact")
    assert design_variant(ulx, "link", None) == ("full", "link")
    with pytest.raises(BuildError, match="unknown lanes 'tiny'.*full, compact"):
        design_variant(ulx, "codec", "tiny")
    with pytest.raises(BuildError, match="applies to the codec design"):
        design_variant(ulx, "link", "compact")


def test_overfull_device_is_recognized():
    """A design too big for the device ends in a clear "does not fit" (`make bitstream` then
    names the cells), whether nextpnr's packer or its iCE40 placer gave up."""
    from hw.build import overfull_cell

    assert overfull_cell("ERROR: Failed to expand region (0, 0) |_> (25, 31) of 6036 "
                         "ICESTORM_LCs\n0 warnings, 1 error") == "ICESTORM_LC"
    assert overfull_cell("ERROR: no BELs remaining to implement cell type 'ICESTORM_RAM'\n") \
        == "ICESTORM_RAM"
    assert overfull_cell("ERROR: Max frequency for clock 'clk': 10 MHz\n") is None


def test_board_builds_place_for_timing_only_where_asked():
    """ECP5 board builds run nextpnr with --no-tmdriv (their 25 MHz clock is far below what the
    codec reaches; nextpnr still checks it after routing); report builds and iCE40 boards stay
    timing-driven. The seed and the JSON report are always there."""
    from hw.build import BOARD_TIMING_DRIVEN, tool_options

    assert BOARD_TIMING_DRIVEN == {"ice40": True, "ecp5": False}
    for family in ("ice40", "ecp5"):
        timed = tool_options(family, 3, "top")["nextpnr_opts"]
        fast = tool_options(family, 3, "top", timing_driven=False)["nextpnr_opts"]
        assert "--no-tmdriv" not in timed and "--no-tmdriv" in fast
        assert "--timing-allow-fail" not in fast
        for opts in (timed, fast):
            assert opts[opts.index("--seed") + 1] == "3"
            assert opts[opts.index("--report") + 1] == "top.report.json"


@pytest.mark.parametrize("board_name", ["ulx3s-85f", "ecpix5-85", "icebreaker"])
def test_compact_sequencers_start_from_a_reset(tmp_path, board_name):
    """The compact lanes' one-hot sequencers get a power-up reset in every board build.

    yosys re-encodes their state registers (`fsm_encoding`) and drops their initial values
    when it does ("Initialization value on FSM state register is ignored"), so they rely on the
    domain's reset. The ECP5 boards' sync domain is reset-less (the global set/reset restores
    initial values instead), where the state would come up with no state active; BoardTop gives
    the core a reset there. Checked in yosys' own log: each re-encoded state register must come
    with a reset state. Without BoardTop's reset the encoder's has none (its decoder finds one
    in the configuration commit's restart), and this test fails. yosys up to its FSM pass only
    (a few seconds a board)."""
    import re
    import subprocess

    from hw.build import board_top, setup_tools, tool_options

    board = load_board(board_name)
    family = board_family(board)
    missing = tools_missing(family)
    if missing:
        pytest.skip("; ".join(missing))
    yosys = setup_tools(family)["YOSYS"]
    platform, top = board_top(board, "codec", "compact")
    plan = platform.prepare(top, name="top", **tool_options(family, 1, "top"))
    (tmp_path / "top.il").write_text(plan.files["top.il"])
    # The build's own yosys script, stopped after its FSM and RAM passes.
    script = [line + " -run :map_ram" if "synth_" in line else line
              for line in plan.files["top.ys"].splitlines() if not line.startswith("write_")]
    (tmp_path / "fsm.ys").write_text("\n".join(script) + "\n")
    subprocess.run([yosys, "-q", "-l", "fsm.log", "fsm.ys"], cwd=tmp_path, check=True,
                   capture_output=True)
    log = (tmp_path / "fsm.log").read_text()
    fsms = re.split(r"\nExtracting FSM `", log)[1:]
    names = sorted(chunk.split("'", 1)[0] for chunk in fsms)
    assert names == ["\\core.decoder.state", "\\core.encoder.lane_state"], names
    for chunk in fsms:
        block = chunk.split("\n\n", 1)[0]
        assert "found reset state" in block, f"{board_name}: no reset for {block[:60]}"


# -- make program: the board's usual tool, found or refused ------------------------------------

def _fake_bitstream(root, board_name, lanes=None):
    """A stand-in bitstream where `build_bitstream` would put the board's codec."""
    from hw.build import board_products

    board = load_board(board_name)
    _, _, name, build_dir = board_products(board_name, board, "codec", lanes, root)
    path = build_dir / f"{name}.{board.BITSTREAM}"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _fake_tool(bin_dir, name, status=0):
    """A stand-in for the programmer: records its arguments and the file it was given."""
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{bin_dir}/args"\n'
                    f'for a; do last="$a"; done\ncp "$last" "{bin_dir}/loaded"\nexit {status}\n')
    tool.chmod(0o755)
    return tool


@pytest.mark.parametrize("board_name, lanes, tool, args", [
    ("icebreaker", None, "iceprog", []),
    ("ulx3s-85f", None, "openFPGALoader", ["-b", "ulx3s", "-m"]),
    ("ecpix5-85", "compact", "openFPGALoader", ["-c", "ft2232", "-m"]),
])
def test_program_runs_the_boards_tool_on_its_bitstream(tmp_path, monkeypatch, board_name,
                                                       lanes, tool, args):
    from hw.build import program_board

    bitstream = _fake_bitstream(tmp_path, board_name, lanes)
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, tool)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    var = load_board(board_name).PROGRAMMER[0]
    monkeypatch.setenv(var, "")                # unset, and put back after the test
    lines = []
    assert program_board(board_name, lanes=lanes, build_root=tmp_path,
                         log=lines.append) == bitstream
    given = (bin_dir / "args").read_text().splitlines()
    assert given[:-1] == args                  # amaranth-boards' command for the board
    assert (bin_dir / "loaded").read_bytes() == bitstream.read_bytes()
    assert any(str(bin_dir / tool) in line for line in lines)


def test_program_refuses_without_bitstream_or_tool(tmp_path, monkeypatch):
    from hw.build import BuildError, main, program_board

    with pytest.raises(BuildError, match=r"build it first: make bitstream BOARD=ulx3s-85f "
                                         r"LANES=compact"):
        program_board("ulx3s-85f", lanes="compact", build_root=tmp_path)
    _fake_bitstream(tmp_path, "ulx3s-85f")
    # The Makefile's stand-in for a missing openFPGALoader must not pass for a programmer.
    monkeypatch.setenv("OPENFPGALOADER", "true")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError, match="programmed with openFPGALoader, which is not installed"):
        program_board("ulx3s-85f", build_root=tmp_path)
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "nowhere"))
    with pytest.raises(BuildError, match="OPENFPGALOADER=.*nowhere is not a command"):
        program_board("ulx3s-85f", build_root=tmp_path)
    # A programmer that fails (no board on the cable) is an error with its exit status.
    _fake_tool(tmp_path / "bin", "openFPGALoader", status=3)
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "bin" / "openFPGALoader"))
    with pytest.raises(BuildError, match=r"openFPGALoader failed \(exit status 3\)"):
        program_board("ulx3s-85f", build_root=tmp_path)
    assert main(["program", "--board", "no-such-board"]) == 2


def test_report_refuses_bad_arguments_with_the_choices(capsys):
    from hw.build import main

    with pytest.raises(SystemExit) as e:
        main(["report", "--jobs", "0"])
    assert e.value.code == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["report", "--device", "ecp5", "--only", "no such build"]) == 2
    err = capsys.readouterr().err
    assert "no build's label contains 'no such build'" in err
    assert "ecp5 unit=enc+dec lane N=8 lanes=1" in err      # the labels --only can pick from
