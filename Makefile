# QanaEdge build entry points. `make run` and `make test` work on a fresh Debian 12 machine:
# they install what they need (apt packages, NuGet restore) before doing anything else.
SHELL := /bin/bash
CONFIG ?= Release
DOTNET ?= dotnet
APT_PACKAGES := mosquitto mosquitto-clients clang zlib1g-dev
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

.PHONY: deps deps-test deps-arm64 deps-qemu restore build test run publish publish-check akida-shim-check syscall-check bench bench-daemon bench-store learning-sim float-baseline model splits ablation clean

# $(call apt_install,PACKAGES[,FOREIGN_ARCH]): install the Debian packages not yet installed (idempotent); adds
# FOREIGN_ARCH to dpkg first when given (multiarch packages such as zlib1g-dev:arm64). Once a package is installed
# for two architectures a bare name is ambiguous to dpkg, hence the second look-up with the native architecture.
define apt_install
native=$$(dpkg --print-architecture); missing=""; \
for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || dpkg -s $$p:$$native >/dev/null 2>&1 || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then \
  echo "installing:$$missing"; \
  SUDO=""; if [ "$$(id -u)" != 0 ]; then command -v sudo >/dev/null || { echo "error: installing$$missing needs root or sudo" >&2; exit 1; }; SUDO=sudo; fi; \
  if [ -n "$(2)" ] && ! dpkg --print-foreign-architectures | grep -qx "$(2)"; then $$SUDO dpkg --add-architecture $(2); fi; \
  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
fi
endef

## deps: install the Debian packages the build, tests and daemon need (idempotent)
deps:
	@$(call apt_install,$(APT_PACKAGES))
	@command -v $(DOTNET) >/dev/null || { echo "error: the .NET 10 SDK is required (dotnet not on PATH)" >&2; exit 1; }

restore: deps
	$(DOTNET) restore QanaEdge.sln

build: restore
	$(DOTNET) build QanaEdge.sln -c $(CONFIG) --no-restore

## deps-test: Debian's ONNX and PyTorch, the offline oracles the ONNX export tests run the exported model with
## (without them those tests are skipped, with the reason)
TEST_APT_PACKAGES := python3-onnx python3-torch
deps-test: deps
	@$(call apt_install,$(TEST_APT_PACKAGES))

## test: the whole suite; prints `N passed, N failed[, N skipped]` and fails if any test failed
test: restore deps-test
	bash .ci/test-summary $(CONFIG)

## run: the daemon on embedded defaults (inbox ./inbox, state ./state, embedded broker, default model)
QANA_DEVICE ?= qana-dev
QANA_PORT ?= 1883
run: restore
	$(DOTNET) build src/QanaEdge.Daemon -c $(CONFIG) --no-restore -v q -nologo
	@mkdir -p $(CURDIR)/inbox
	@echo "qanad: drop images (JPEG, PNG, BMP or TIFF) into $(CURDIR)/inbox (write elsewhere or under a .tmp name, then move/rename in)"
	@echo "qanad: watch results:  mosquitto_sub -h 127.0.0.1 -p $(QANA_PORT) -i qana-watch -t 'qana/$(QANA_DEVICE)/#' -v"
	@echo "qanad: state (LiteDB, done/, quarantine/) in $(CURDIR)/state; Ctrl-C stops"
	@# A broker already listening on the port (e.g. Debian's mosquitto service) is used; otherwise qanad embeds one.
	@broker=""; if (exec 3<>/dev/tcp/127.0.0.1/$(QANA_PORT)) 2>/dev/null; then broker="--Qana:Mqtt:Host=127.0.0.1"; echo "qanad: using the broker already on 127.0.0.1:$(QANA_PORT)"; fi; \
	exec $(DOTNET) run --project src/QanaEdge.Daemon -c $(CONFIG) --no-build -- --Qana:Inbox=$(CURDIR)/inbox --Qana:StateDir=$(CURDIR)/state --Qana:DeviceId=$(QANA_DEVICE) --Qana:Mqtt:Port=$(QANA_PORT) $$broker

## publish: Native-AOT binaries qana and qanad in out/linux-x64 and out/linux-arm64 (arm64 cross-compiled)
PUBLISH_RIDS := linux-x64 linux-arm64
publish: restore deps-arm64
	@set -e; for rid in $(PUBLISH_RIDS); do \
	  $(DOTNET) publish src/QanaEdge.Cli -c Release -r $$rid -o out/$$rid; \
	  $(DOTNET) publish src/QanaEdge.Daemon -c Release -r $$rid -o out/$$rid; \
	done
	@# ONNX Runtime's package also copies its Windows DLLs into every output; a Linux board has no use for them.
	rm -f $(addsuffix /*.dll,$(addprefix out/,$(PUBLISH_RIDS)))
	@file $(foreach r,$(PUBLISH_RIDS),out/$(r)/qana out/$(r)/qanad)

## deps-arm64: the cross toolchain for linux-arm64 Native AOT (clang links with --target=aarch64-linux-gnu through
## binutils' aarch64 ld; crt objects, libgcc and glibc for arm64 from gcc-aarch64-linux-gnu; zlib from the arm64
## multiarch package; file to show what was built). Only publish needs it; build and test do not.
ARM64_APT_PACKAGES := clang llvm binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu zlib1g-dev:arm64 file
deps-arm64: deps
	@$(call apt_install,$(ARM64_APT_PACKAGES),arm64)

## deps-qemu: qemu-aarch64 (user mode) to run the arm64 binaries on this machine
deps-qemu: deps-arm64
	@$(call apt_install,qemu-user)

## publish-check: the arm64 binaries under qemu against the x64 ones: `qana inspect` and `qana classify --json` on
## PUBLISH_CHECK_IMAGES JPEGs must print the same (latency aside). Run `make publish` first. Not part of `make test`.
PUBLISH_CHECK_IMAGES ?= 5
PUBLISH_CHECK_MODEL ?= firmware-models/qana-paper8-64.qana
publish-check: deps-qemu
	@set -e; for r in $(PUBLISH_RIDS); do for b in qana qanad; do \
	  [ -x out/$$r/$$b ] || { echo "error: out/$$r/$$b missing: run make publish first" >&2; exit 1; }; done; done; \
	file -b out/linux-arm64/qana out/linux-arm64/qanad | grep -c 'ARM aarch64' | grep -qx 2 || { echo "error: out/linux-arm64 does not hold aarch64 binaries" >&2; exit 1; }; \
	images=$$(ls $(MODEL_DATA)/images/*.jpg | head -n $(PUBLISH_CHECK_IMAGES)); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	out/linux-x64/qana inspect $(PUBLISH_CHECK_MODEL) > $$tmp/inspect.x64; \
	qemu-aarch64 out/linux-arm64/qana inspect $(PUBLISH_CHECK_MODEL) > $$tmp/inspect.arm64; \
	cmp -s $$tmp/inspect.x64 $$tmp/inspect.arm64 || { diff $$tmp/inspect.x64 $$tmp/inspect.arm64 | head; echo "error: qana inspect differs between x64 and arm64" >&2; exit 1; }; \
	out/linux-x64/qana classify --model $(PUBLISH_CHECK_MODEL) --json $$images | sed 's/"latency_ms":[0-9.]*,//' > $$tmp/classify.x64; \
	qemu-aarch64 out/linux-arm64/qana classify --model $(PUBLISH_CHECK_MODEL) --json $$images | sed 's/"latency_ms":[0-9.]*,//' > $$tmp/classify.arm64; \
	n=$$(wc -l < $$tmp/classify.x64); \
	cmp -s $$tmp/classify.x64 $$tmp/classify.arm64 || { diff $$tmp/classify.x64 $$tmp/classify.arm64 | head; echo "error: qana classify differs between x64 and arm64" >&2; exit 1; }; \
	echo "publish-check: arm64 (qemu) and x64 agree: inspect, classify on $$n images"

## akida-shim-check: native/akida/qana_akida_engine.cpp compiled (-Wall -Wextra -Werror) against stand-ins for
## BrainChip's headers (native/akida/standin/) and its refusals run: each failing call sets its own message. The
## stand-ins are not the real headers, so this says nothing about the engine itself. Not part of `make test`.
akida-shim-check:
	mkdir -p out
	$(CXX) -std=c++17 -Wall -Wextra -Werror -I native/akida/standin -I native/akida native/akida/qana_akida_engine.cpp \
	  native/akida/standin/check.cpp -o out/akida-shim-check
	out/akida-shim-check

## syscall-check: qanad.service's system-call filter against the calls of the Native-AOT qanad (linux-x64), traced
## with strace through a short session on loopback (systemd/check-syscall-filter). Not part of `make test`.
syscall-check: restore
	@$(call apt_install,strace systemd)
	$(DOTNET) publish src/QanaEdge.Daemon -c Release -r linux-x64 -o out/linux-x64
	$(DOTNET) build src/QanaEdge.Cli -c Release --no-restore -v q -nologo
	systemd/check-syscall-filter out/linux-x64/qanad $(DOTNET) src/QanaEdge.Cli/bin/Release/net10.0/qana.dll

## bench: BenchmarkDotNet suite for kernels and the whole graph
bench: restore
	$(DOTNET) run --project tests/QanaEdge.Benchmarks -c Release -- --filter '*'

## bench-daemon: qanad (Native AOT) against mosquitto on real images: images/s, file-landed -> result latency at 50/s, RSS
## BENCH_ISA picks the instruction set the measured binary is compiled for: native (this machine's CPU, the default
## here) or x86-64-v3 (what `make publish` ships for linux-x64). BENCH_ARGS go to the harness: --embedded (the daemon's
## own broker, as shipped), --idle S (the phase at rest: context switches and CPU per second), --burst N, --rate N,
## --seconds S, and --Qana:Key=value for the daemon (e.g. --Qana:Done=Move).
BENCH_ISA ?= native
bench-daemon: restore
	$(DOTNET) publish src/QanaEdge.Daemon -c Release -r linux-x64 -p:IlcInstructionSet=$(BENCH_ISA) -o out/bench-linux-x64 -nologo -v q
	$(DOTNET) run --project tests/QanaEdge.Daemon.Bench -c Release -- out/bench-linux-x64/qanad $(BENCH_ARGS)

## bench-store: the daemon's result store on a real LiteDB file, in process: commit, outbox drain, pruning pass, and
## the image look-up with its value in the expression's text against a parameter, in one run (StoreBench)
bench-store: restore
	$(DOTNET) run --project tests/QanaEdge.Daemon.Bench -c Release -- --store

## learning-sim: the device's readout learning replayed on the validation split, figures on a held-out half of it
## (docs/daemon.md). LEARNING_SIM_ARGS="MIN_CASES NEW_CASES" (default 40 20, the daemon's).
learning-sim: restore
	$(DOTNET) run --project tests/QanaEdge.LearningSim -c Release -- $(LEARNING_SIM_ARGS)

## float-baseline: the brief's simply trained float network (PyTorch, an offline peer) on the shipped model's split,
## 45-60 min on 2 cores; prints the test figures at the best validation epoch and the last (report, "Against the simply
## trained float baseline"). BASELINE_SEED picks the seed (default 1).
BASELINE_SEED ?= 1
float-baseline: deps
	@$(call apt_install,python3-torch python3-pil)
	/usr/bin/python3 tests/oracles/float_baseline.py --data $(MODEL_DATA) --splits firmware-models/splits --seed $(BASELINE_SEED) --out float-baseline-seed$(BASELINE_SEED).json

## splits: the lesion-grouped, stratified 70/10/20 split (default seed) the shipped model trains on
splits: restore
	$(DOTNET) run --project src/QanaEdge.Cli -c $(CONFIG) -- split --images $(MODEL_DATA)/images --labels $(MODEL_DATA)/labels.csv --out firmware-models/splits

## model: retrain the shipped model (firmware-models/qana-paper8-64.qana, its log and test report) from ../shared/data/ham10000
MODEL_DATA ?= $(CURDIR)/../shared/data/ham10000
MODEL_EPOCHS ?= 48
model: restore
	$(DOTNET) build src/QanaEdge.Cli -c Release --no-restore -v q -nologo
	$(DOTNET) run --project src/QanaEdge.Cli -c Release --no-build -- train --data $(MODEL_DATA)/images --labels $(MODEL_DATA)/labels.csv \
	  --out firmware-models/qana-paper8-64.qana --epochs $(MODEL_EPOCHS) --patience $(MODEL_EPOCHS) --qat-epochs 1 --seed 1 --profile paper8 --input-size 64 --pooled-head

## ablation: the paper's Table IV rows on our split (docs/ablation.md, docs/ablation.json); ABLATION_EPOCHS float epochs per trained row
ABLATION_EPOCHS ?= 35
ABLATION_QAT_EPOCHS ?= 1
ablation: restore
	$(DOTNET) build src/QanaEdge.Cli -c Release --no-restore -v q -nologo
	$(DOTNET) run --project src/QanaEdge.Cli -c Release --no-build -- ablate --data $(MODEL_DATA)/images --labels $(MODEL_DATA)/labels.csv \
	  --out out/ablation --epochs $(ABLATION_EPOCHS) --qat-epochs $(ABLATION_QAT_EPOCHS) --seed 1 \
	  --pooled-head --table docs/ablation.md --json docs/ablation.json --commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

clean:
	$(DOTNET) clean QanaEdge.sln -v q; rm -rf out TestResults
