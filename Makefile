# QanaEdge build entry points. `make run` and `make test` work on a fresh Debian 12 machine:
# they install what they need (apt packages, NuGet restore) before doing anything else.
SHELL := /bin/bash
CONFIG ?= Release
DOTNET ?= dotnet
APT_PACKAGES := mosquitto mosquitto-clients clang zlib1g-dev
export DOTNET_CLI_TELEMETRY_OPTOUT := 1
export DOTNET_NOLOGO := 1
export DOTNET_SKIP_FIRST_TIME_EXPERIENCE := 1

.PHONY: deps restore build test run publish bench bench-daemon model splits ablation clean

## deps: install the Debian packages the build, tests and daemon need (idempotent)
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@command -v $(DOTNET) >/dev/null || { echo "error: the .NET 10 SDK is required (dotnet not on PATH)" >&2; exit 1; }

restore: deps
	$(DOTNET) restore QanaEdge.sln

build: restore
	$(DOTNET) build QanaEdge.sln -c $(CONFIG) --no-restore

## test: the whole suite; prints `N passed, N failed[, N skipped]` and fails if any test failed
test: restore
	bash .ci/test-summary $(CONFIG)

## run: the daemon on embedded defaults (inbox ./inbox, state ./state, embedded broker, default model)
QANA_DEVICE ?= qana-dev
QANA_PORT ?= 1883
run: restore
	$(DOTNET) build src/QanaEdge.Daemon -c $(CONFIG) --no-restore -v q -nologo
	@mkdir -p $(CURDIR)/inbox
	@echo "qanad: drop images (JPEG/PNG) into $(CURDIR)/inbox (write elsewhere or under a .tmp name, then move/rename in)"
	@echo "qanad: watch results:  mosquitto_sub -h 127.0.0.1 -p $(QANA_PORT) -i qana-watch -t 'qana/$(QANA_DEVICE)/#' -v"
	@echo "qanad: state (LiteDB, done/, quarantine/) in $(CURDIR)/state; Ctrl-C stops"
	@# A broker already listening on the port (e.g. Debian's mosquitto service) is used; otherwise qanad embeds one.
	@broker=""; if (exec 3<>/dev/tcp/127.0.0.1/$(QANA_PORT)) 2>/dev/null; then broker="--Qana:Mqtt:Host=127.0.0.1"; echo "qanad: using the broker already on 127.0.0.1:$(QANA_PORT)"; fi; \
	exec $(DOTNET) run --project src/QanaEdge.Daemon -c $(CONFIG) --no-build -- --Qana:Inbox=$(CURDIR)/inbox --Qana:StateDir=$(CURDIR)/state --Qana:DeviceId=$(QANA_DEVICE) --Qana:Mqtt:Port=$(QANA_PORT) $$broker

## publish: Native-AOT binaries qana and qanad in out/linux-x64 (and out/linux-arm64 where a cross toolchain exists)
publish: restore
	$(DOTNET) publish src/QanaEdge.Cli -c Release -r linux-x64 -o out/linux-x64
	$(DOTNET) publish src/QanaEdge.Daemon -c Release -r linux-x64 -o out/linux-x64

## bench: BenchmarkDotNet suite for kernels and the whole graph
bench: restore
	$(DOTNET) run --project tests/QanaEdge.Benchmarks -c Release -- --filter '*'

## bench-daemon: qanad (Native AOT) against mosquitto on real images: images/s, file-landed -> result latency at 50/s, RSS
## BENCH_ISA picks the instruction set the measured binary is compiled for: native (this machine's CPU, the default
## here) or x86-64-v3 (what `make publish` ships for linux-x64).
BENCH_ISA ?= native
bench-daemon: restore
	$(DOTNET) publish src/QanaEdge.Daemon -c Release -r linux-x64 -p:IlcInstructionSet=$(BENCH_ISA) -o out/bench-linux-x64 -nologo -v q
	$(DOTNET) run --project tests/QanaEdge.Daemon.Bench -c Release -- out/bench-linux-x64/qanad $(BENCH_ARGS)

## splits: the lesion-grouped, stratified 70/10/20 split (default seed) the shipped model trains on
splits: restore
	$(DOTNET) run --project src/QanaEdge.Cli -c $(CONFIG) -- split --images $(MODEL_DATA)/images --labels $(MODEL_DATA)/labels.csv --out firmware-models/splits

## model: retrain the shipped model (firmware-models/qana-paper8-64.qana, its log and test report) from ../shared/data/ham10000
MODEL_DATA ?= $(CURDIR)/../shared/data/ham10000
MODEL_EPOCHS ?= 48
model: restore
	$(DOTNET) build src/QanaEdge.Cli -c Release --no-restore -v q -nologo
	$(DOTNET) run --project src/QanaEdge.Cli -c Release --no-build -- train --data $(MODEL_DATA)/images --labels $(MODEL_DATA)/labels.csv \
	  --out firmware-models/qana-paper8-64.qana --epochs $(MODEL_EPOCHS) --patience $(MODEL_EPOCHS) --qat-epochs 1 --seed 1 --profile paper8 --input-size 64

## ablation: the paper's Table IV rows on our split (docs/ablation.md, docs/ablation.json); ABLATION_EPOCHS float epochs per trained row
ABLATION_EPOCHS ?= 35
ABLATION_QAT_EPOCHS ?= 1
ablation: restore
	$(DOTNET) build src/QanaEdge.Cli -c Release --no-restore -v q -nologo
	$(DOTNET) run --project src/QanaEdge.Cli -c Release --no-build -- ablate --data $(MODEL_DATA)/images --labels $(MODEL_DATA)/labels.csv \
	  --out out/ablation --epochs $(ABLATION_EPOCHS) --qat-epochs $(ABLATION_QAT_EPOCHS) --seed 1 \
	  --table docs/ablation.md --json docs/ablation.json --commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

clean:
	$(DOTNET) clean QanaEdge.sln -v q; rm -rf out TestResults
