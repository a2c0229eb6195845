# firewatch — see README.md. The two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
INFLUXD := $(BIN)/influxd
INFLUXD_VERSION := v1.8.10
# NATS with JetStream and MQTT for cluster mode's tests (issue 15, docs/cluster.md).
NATS_SERVER := $(BIN)/nats-server
NATS_SERVER_VERSION := v2.15.2
# Telegraf for the comparison of `make bench` (issue 19), built with only the plugins it uses.
TELEGRAF := $(BIN)/telegraf
TELEGRAF_VERSION := v1.37.2
PKGS := ./...
# FUZZTIME bounds each fuzz target of `make fuzz` (CI runs FUZZTIME=10s).
FUZZTIME ?= 30s
# The version stamped into the binaries (packaging/version.sh: the git tag, or
# git describe, or v0.0.0-<commits>-g<hash>) and the Debian package version made
# from it; both can be set on the command line (make package VERSION=v1.2.0 PKG_VERSION=1.2.0).
ifndef VERSION
VERSION := $(shell packaging/version.sh)
endif
ifndef PKG_VERSION
PKG_VERSION := $(shell packaging/version.sh deb)
endif
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell TZ=UTC git log -1 --date=iso-strict-local --format=%cd 2>/dev/null || echo unknown)
# The commit's time, not the clock's: the packages of one commit are the same bytes (nfpm's file times).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
BUILDINFO := github.com/firewatch-iot/firewatch/internal/buildinfo
STAMP := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).revision=$(REVISION) -X $(BUILDINFO).date=$(BUILD_DATE)
NFPM := $(BIN)/nfpm
NFPM_VERSION := v2.45.2
PLUGIN := dashboards/plugin
PLUGIN_DIST := $(PLUGIN)/dist/gpx_firewatch_linux_amd64

.PHONY: all run test bench build lint tools fuzz clean package package-test

all: build

## build: compile firewatch, firegate and firesim into bin/, stamped with the version
build:
	$(GO) build -ldflags '$(STAMP)' -o $(BIN)/ ./cmd/...

## run: the demo: local InfluxDB, firewatch with its embedded broker, a dispatch receiver and a simulated fleet
run: build tools
	./scripts/run.sh

## cluster: cluster mode on one machine (issue 15, docs/cluster.md): 3 NATS nodes, PostgreSQL, InfluxDB, two firewatch
##          instances, the receiver and a fleet; prints who owns which partitions and what to kill -9 to watch a failover
.PHONY: cluster
cluster: build tools
	./scripts/cluster.sh

## test: lint, then every test with the race detector (integration tests need `make tools`)
test: lint tools
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## bench: Go benchmarks of the hot path (5 runs, var/bench-go.txt; with the NB-IoT endpoints and the alarm latency
##        at 5,000 NB-IoT requests/s, and BenchmarkCluster: CPU-s per million readings of one instance in cluster
##        mode beside single-process mode, 5 interleaved rounds, and the takeover time; docs/performance.md), then the end-to-end bench through real
##        Mosquitto, InfluxDB and firewatch at rising loads (firesim bench), whose table goes into docs/performance.md,
##        then firewatch beside Telegraf (firesim bench -compare: same publisher, Mosquitto and InfluxDB, 3 interleaved rounds),
##        then memory per idle MQTT connection, Mosquitto and the embedded broker (firesim bench -idle),
##        then 10,000 GB/T 26875.3 UITDs with keep-alives and a burst of 20 fire alarms (firesim bench -uitd),
##        then firewatch started twice on a registry of 1,000,000 devices (firesim bench -registry; the Go
##        benchmarks BenchmarkBuildLedger1M and BenchmarkApply1M are in the first line)
bench: build tools $(TELEGRAF)
	@mkdir -p var
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS) | tee var/bench-go.txt
	$(BIN)/firesim bench -out docs/performance.md
	$(BIN)/firesim bench -compare 5000,10000,20000 -rounds 3 -duration 10s -out docs/performance.md
	$(BIN)/firesim bench -idle 10000 -out docs/performance.md
	$(BIN)/firesim bench -uitd 10000 -out docs/performance.md
	$(BIN)/firesim bench -registry 1000000 -out docs/performance.md

# Telegraf with only the plugins the comparison uses (a custom build: a few minutes the first time, not hundreds of modules).
$(TELEGRAF):
	@echo "building Telegraf $(TELEGRAF_VERSION) (mqtt_consumer, json_v2, influxdb_v2 only) into bin/"
	GOBIN=$(BIN) $(GO) install -tags custom,inputs.mqtt_consumer,outputs.influxdb_v2,parsers.json_v2 \
	  github.com/influxdata/telegraf/cmd/telegraf@$(TELEGRAF_VERSION)

## fuzz: run each fuzz target for a bounded time (scripts/fuzz1.sh: a bare deadline race of Go 1.26 is run again)
fuzz:
	GO=$(GO) scripts/fuzz1.sh FuzzDecode ./ingest/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzEval ./rules/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzDecode ./gateway/modbus/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzParseLedger ./devices/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzParseCSV ./registry/sheet/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzIDIndex ./devices/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzEntriesRoundTrip ./devices/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzChunkedParse ./devices/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzParse ./rules/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzCrash ./spool/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzVerifyFor ./alarms/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzModel ./alarms/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzParseCodec ./ingest/nbiot/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzApply ./ingest/nbiot/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzDecode ./ingest/nbiot/ctwing/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzDecode ./ingest/nbiot/onenet/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzDecodeStatus ./ingest/nbiot/gb45839/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzDecodeInstall ./ingest/nbiot/gb45839/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzParseSerial ./ingest/nbiot/gb45839/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzBridge ./ingest/nbiot/bridge/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzDecode ./ingest/gb26875/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzReassemble ./ingest/gb26875/stream/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzCommit ./ingest/gb26875/server/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzParseMap ./gateway/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzFieldModel ./pipeline/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzReplay ./durable/ $(FUZZTIME)
	GO=$(GO) scripts/fuzz1.sh FuzzDecodeRecord ./durable/ $(FUZZTIME)

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## tools: install the local InfluxDB $(INFLUXD_VERSION) and nats-server $(NATS_SERVER_VERSION) into bin/ (about 3 minutes the first time) and check for mosquitto
tools: $(INFLUXD) $(NATS_SERVER)
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
	  echo "note: mosquitto is not installed; integration tests skip without it (Debian: apt-get install mosquitto)"

$(INFLUXD):
	@echo "installing InfluxDB $(INFLUXD_VERSION) into bin/ (first time only, a few minutes)"
	GOBIN=$(BIN) $(GO) install github.com/influxdata/influxdb/cmd/influxd@$(INFLUXD_VERSION)

$(NATS_SERVER):
	@echo "installing nats-server $(NATS_SERVER_VERSION) into bin/ (first time only)"
	GOBIN=$(BIN) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)

clean:
	rm -rf var/ dist/

## package: Debian packages into dist/: firewatch (amd64, arm64) and firegate (amd64, arm64, armhf), binaries
##          stamped with $(VERSION), package version $(PKG_VERSION) (packaging/, docs/install.md); needs the plugin's dist/
PACKAGES := firewatch:amd64 firewatch:arm64 firegate:amd64 firegate:arm64 firegate:arm7
package: $(NFPM) $(PLUGIN_DIST)
	@mkdir -p dist
	@for p in $(PACKAGES); do \
	  cmd=$${p%%:*}; arch=$${p##*:}; goarch=$${arch%7}; out=dist/build/linux-$$arch; \
	  echo "--- $$cmd $(VERSION) linux/$$arch"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$goarch GOARM=7 $(GO) build -trimpath -ldflags '-s -w $(STAMP)' -o $$out/$$cmd ./cmd/$$cmd || exit 1; \
	  SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) ARCH=$$arch PKG_VERSION=$(PKG_VERSION) BUILD_DIR=$$out $(NFPM) package -f packaging/$$cmd/nfpm.yaml -p deb -t dist/ || exit 1; \
	done
	@ls -l dist/*_$(PKG_VERSION)_*.deb

## package-test: install the amd64 packages on this machine (root; dpkg), run them as their units would, upgrade from
##               the previous commit's package keeping every alarm, outbox entry and spooled reading, then purge;
##               then, where systemd-nspawn is, the same packages under a real systemd in a throw-away container
package-test: package tools
	FIREWATCH_DIST=$(CURDIR)/dist FIREWATCH_PKG_VERSION=$(PKG_VERSION) FIREWATCH_VERSION=$(VERSION) FIREWATCH_NFPM=$(NFPM) $(GO) test -count=1 -v -timeout 15m ./packaging/
	@if command -v systemd-nspawn >/dev/null; then packaging/systemd-test.sh $(CURDIR)/dist $(PKG_VERSION) $(VERSION); \
	  else echo "note: systemd-nspawn is not installed (Debian: systemd-container): the units were not run under systemd"; fi

## release: the packages, plus bare binaries for gateway boxes and servers without dpkg, and SHA256SUMS, into dist/
.PHONY: release
release: package
	@case "$(VERSION)" in *dirty*) [ -n "$(ALLOW_DIRTY)" ] || { echo "release: the tree has uncommitted changes ($(VERSION)); commit, or ALLOW_DIRTY=1"; exit 1; };; esac
	cp dist/build/linux-amd64/firegate dist/firegate-linux-amd64
	cp dist/build/linux-arm64/firegate dist/firegate-linux-arm64
	cp dist/build/linux-arm7/firegate dist/firegate-linux-armv7
	cp dist/build/linux-amd64/firewatch dist/firewatch-linux-amd64
	cp dist/build/linux-arm64/firewatch dist/firewatch-linux-arm64
	cd dist && sha256sum *_$(PKG_VERSION)_*.deb firegate-linux-* firewatch-linux-* > SHA256SUMS-$(VERSION)
	@cat dist/SHA256SUMS-$(VERSION)

$(NFPM):
	GOBIN=$(BIN) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

## plugin: the Grafana data source plugin into dashboards/plugin/dist/: front end (npm ci, tsc, esbuild) and backend for linux/amd64 and linux/arm64
.PHONY: plugin plugin-mod plugin-mod-check
plugin: plugin-mod-check $(PLUGIN)/node_modules/.installed
	cd $(PLUGIN) && npm run --silent build && node check-dist.mjs
	cd $(PLUGIN) && for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w' -o dist/gpx_firewatch_linux_$$arch ./pkg || exit 1; \
	done
	@ls -l $(PLUGIN)/dist

## plugin-mod-check: fail when dashboards/plugin/go.mod or go.sum is not what `go mod tidy` makes of them. The plugin's
##                   module replaces firewatch with ../.., so it must require (at least) what the main module needs;
##                   it is built and tested without -mod=mod, so a stale go.mod fails here, with the fix, not mid-build
plugin-mod-check:
	@out=$$(cd $(PLUGIN) && $(GO) mod tidy -diff 2>&1) && exit 0; \
	  echo "$$out"; \
	  if grep -q '^diff ' <<<"$$out"; then \
	    echo "$(PLUGIN)/go.mod or go.sum is stale (the diff above): the main module's requirements (go.mod) changed,"; \
	    echo "and the plugin's module, which replaces firewatch with ../.., has not followed them. Run \`make plugin-mod\`"; \
	    echo "(go mod tidy in $(PLUGIN)) and commit $(PLUGIN)/go.mod and go.sum."; \
	  else echo "plugin-mod-check: go mod tidy -diff failed in $(PLUGIN) (above)"; fi; \
	  exit 1

## plugin-mod: bring dashboards/plugin/go.mod and go.sum in step with the main module (go mod tidy)
plugin-mod:
	cd $(PLUGIN) && $(GO) mod tidy

$(PLUGIN)/node_modules/.installed: $(PLUGIN)/package.json $(PLUGIN)/package-lock.json
	cd $(PLUGIN) && npm ci --no-audit --no-fund
	@touch $@

# package needs the plugin built once; `make plugin` rebuilds it.
$(PLUGIN_DIST):
	$(MAKE) plugin
