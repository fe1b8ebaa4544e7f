# pktpath: every target sets up what it needs itself (apt and pip), so each
# works on a fresh Debian/Ubuntu machine as root.  `make` alone lists them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?=

# Debian/Ubuntu packages, by what needs them.
APT_BUILD := clang libbpf-dev make
APT_RUN := libbpf1 python3 python3-venv
APT_TEST := iproute2 iptables nftables iputils-ping procps util-linux bpftool prometheus systemd
APT_BENCH := iperf3 bpftrace

.DEFAULT_GOAL := help
.PHONY: help deps deps-bench build venv run check test test-unit test-kernel lint bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install the system packages the build, the agent and the tests need (apt)
	@./scripts/apt-ensure $(APT_BUILD) $(APT_RUN) $(APT_TEST)

deps-bench: deps ## also install the benchmark tools (iperf3, bpftrace)
	@./scripts/apt-ensure $(APT_BENCH)

build: ## compile the BPF CO-RE objects (exporter/bpf/*.bpf.o)
	@$(MAKE) --no-print-directory -C exporter/bpf

$(BIN)/pktpath: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

venv: $(BIN)/pktpath ## create .venv with pktpath and the test tools (pip)

run: deps build venv ## set up and run the agent with built-in defaults (CONFIG=file to use one)
	$(BIN)/pktpath run $(if $(CONFIG),-c $(CONFIG))

check: deps build venv ## what this kernel supports and which hops attach
	$(BIN)/pktpath check

lint: venv ## ruff (lint and format) and mypy
	$(BIN)/ruff check exporter tests bench
	$(BIN)/ruff format --check exporter tests bench
	$(BIN)/mypy

test-unit: venv build ## unit tests only (no root needed)
	$(BIN)/pytest -q tests/unit

test-kernel: deps venv build ## kernel tests only: real BPF, namespaces, traffic (root)
	$(BIN)/pytest -q tests/kernel

test: deps build venv lint ## set up and run the whole test suite (root)
	$(BIN)/pytest -q tests --ignore=tests/vm
	@$(MAKE) --no-print-directory test-kernels

# tests/vm boots stock kernels under QEMU and runs a subset of tests/kernel in
# each (docs/kernels.md).  virtme-ng comes from the `vm` extra.
.PHONY: test-kernels
$(BIN)/vng: $(BIN)/pktpath pyproject.toml
	$(BIN)/pip install --quiet -e '.[vm]'
	@touch $@

test-kernels: deps venv build $(BIN)/vng ## kernel tests on stock Debian 5.10, 6.1 and 6.12 under QEMU (root; docs/kernels.md)
	./scripts/vm/fetch-kernels
	$(BIN)/pytest -q tests/vm

.PHONY: test-deploy
test-deploy: deps build venv ## deploy artifacts only: chart, alerts, dashboard, systemd unit, Dockerfile (root)
	$(BIN)/pytest -q tests/deploy

# ONLY=part runs one part (`make bench ONLY=hops`: python -m bench --only hops); BENCH_ARGS adds options.
ONLY ?=
BENCH_ARGS ?=
# hops and attach also boot a 6.12 guest (virtme-ng from the vm extra; the kernel from scripts/vm/fetch-kernels 6.12).
bench: deps-bench build venv $(if $(or $(filter hops attach,$(ONLY)),$(findstring --in-guest,$(BENCH_ARGS))),$(BIN)/vng) ## benchmarks: start-up, memory, scrape storm, throughput overhead (root); ONLY=scrape|hops|paths|...
	@$(MAKE) --no-print-directory -C bench/bpf $(if $(filter attach,$(ONLY)),attach.bpf.o)
	$(BIN)/python -m bench $(if $(ONLY),--only $(ONLY)) $(BENCH_ARGS)

clean: ## remove build outputs and the venv
	$(MAKE) -C exporter/bpf clean
	$(MAKE) -C bench/bpf clean
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
