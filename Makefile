# vmcore-gdbserver. `make test` installs what the tests need (Debian
# packages, the real vmcore fixtures) and runs them; CI calls exactly that.

SHELL    := /bin/bash
GO       ?= go
# The gdb sessions on real dumps take minutes on two cores; go test's
# default 10 minutes per package is too close.
TESTFLAGS ?= -count=1 -timeout 45m
BIN      := bin/vmcore-gdbserver
FIXTURES := testdata/fixtures/mkfixtures.sh
# A smoke run is a count of inputs, not a duration: Go 1.26's coordinator can
# fail a duration-bounded run with a bare "context deadline exceeded" when
# the deadline fires (go.dev/issue/75804), which reddened CI with no crasher.
FUZZEXECS ?= 20000
FUZZTIME ?= $(FUZZEXECS)x
# Fuzz targets as package:target pairs.
FUZZ_TARGETS := \
	./vmcore:FuzzOpen ./vmcore:FuzzVMCOREINFO ./vmcore:FuzzNotes \
	./vmcore:FuzzFlattened ./vmcore:FuzzDecompress ./vmcore:FuzzPageTableWalk \
	./symbols:FuzzBTF ./symbols:FuzzBTFTypes ./symbols:FuzzBTFDWARF ./symbols:FuzzDWARF ./symbols:FuzzKallsyms ./symbols:FuzzBuildID ./gdbstub:FuzzSession ./gdbstub:FuzzDecodePayload ./gdbstub:FuzzVFile ./gdbfiles:FuzzPerCPUView \
	./unwind:FuzzORC ./unwind:FuzzCFI ./unwind:FuzzCFIObject ./unwind:FuzzDerive

.PHONY: all build sample fixtures dap-adapter test race types-dwarf unit fuzz-smoke fuzz bench bench-tools clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/vmcore-gdbserver

# The main job on the default sample: build, make the sample vmcore if it
# is not cached, describe it, serve it and run a short gdb session.
sample: build fixtures
	@dir=$$(bash $(FIXTURES) | tail -n 1) && sh examples/sample.sh $(BIN) $$dir

# Real vmcores from Debian's cloud kernels (6.1, 6.12) and the RHEL 8.1-family
# 4.18.0-147.el8 kernel in ../shared/kernels (in that order), QEMU and
# makedumpfile, cached outside git (see testdata/fixtures/README.md). A guest kernel under TCG
# now and then dies while booting (6.12 was seen to Oops on an int3 in
# sched_clock_cpu); the generator keeps what it finished, so a failed run
# is retried and only redoes the missing scenario.
fixtures:
	@for try in 1 2 3; do \
	  bash $(FIXTURES) >/dev/null && exit 0; \
	  echo "fixtures: attempt $$try failed; retrying what is missing" >&2; \
	done; exit 1

# The IDE debug adapter the DAP test drives (cdt-gdb-adapter from npm),
# cached beside the fixtures (testdata/dap/adapter.sh).
dap-adapter:
	@bash testdata/dap/adapter.sh >/dev/null

# Tests where goroutines meet, again under the race detector: the
# protocol server, the kernel model, the debuginfod client (shared
# downloads) and the server binary (built with
# -race) under several clients at once.
RACE_CMD_TESTS := TestGDBTwoClients|TestGDBMonitor|TestGDBMI

test: fixtures dap-adapter
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...
	$(MAKE) race
	$(MAKE) types-dwarf
	$(MAKE) fuzz-smoke

race:
	$(GO) test -race $(TESTFLAGS) ./gdbstub ./kernel ./debuginfod
	VMCORE_TEST_RACE=1 $(GO) test -race $(TESTFLAGS) -run '^($(RACE_CMD_TESTS))$$' ./cmd/vmcore-gdbserver

# The kernel model, triage and the main gdb sessions again with types from
# the vmlinux's DWARF instead of its .BTF (symbols.TypesEnv), as on a
# kernel built without CONFIG_DEBUG_INFO_BTF, on the 6.1 and 6.12 fixtures.
DWARF_CMD_TESTS := TestGDBSession|TestGDBMonitor|TestGDBModuleCrash|TestGDBNoTypes|TestGDBThreadFilters

types-dwarf:
	VMCORE_GDBSERVER_TYPES=dwarf $(GO) test $(TESTFLAGS) ./kernel ./triage
	VMCORE_GDBSERVER_TYPES=dwarf $(GO) test $(TESTFLAGS) -run '^($(DWARF_CMD_TESTS))$$' ./cmd/vmcore-gdbserver

unit:
	$(GO) test $(TESTFLAGS) ./...

fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
	  log=$$(mktemp); \
	  if ! $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1; then \
	    tail -n 40 $$log; rm -f $$log; exit 1; fi; \
	  rm -f $$log; \
	done

fuzz:
	$(MAKE) fuzz-smoke FUZZTIME=5m

# Go benchmarks (page reads, translation, open, DWARF index, server start,
# gdb runs, gdb's index cache cold and warm in the gdb subcommand and the IDE
# adapter: dap-adapter installs it), then the same jobs with gdb+server, crash and drgn side by side
# (bench-tools installs Debian's crash and python3-drgn when missing), and
# the types table: BTF against DWARF on the same vmlinux and dump.
# BENCH_OUT is where the output is kept (tee).
BENCH_OUT ?= bench.txt

bench-tools:
	@bash testdata/bench/tools.sh

bench: build fixtures bench-tools dap-adapter
	@set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 60m ./vmcore ./symbols ./kernel ./cmd/vmcore-gdbserver | tee $(BENCH_OUT)
	@set -o pipefail; dir=$$(bash $(FIXTURES) | tail -n 1) && $(GO) run ./testdata/bench/driver $(BIN) $$dir $$(ls -d $$dir/../current-* 2>/dev/null) | tee -a $(BENCH_OUT)

clean:
	rm -rf bin bench.txt
