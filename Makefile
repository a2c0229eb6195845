# firewatch — see README.md. The two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
INFLUXD := $(BIN)/influxd
INFLUXD_VERSION := v1.8.10
PKGS := ./...
# FUZZTIME bounds each fuzz target of `make fuzz` (CI runs FUZZTIME=10s).
FUZZTIME ?= 30s

.PHONY: all run test bench build lint tools fuzz clean

all: build

## build: compile firewatch and firesim into bin/
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## run: the demo: local InfluxDB, firewatch with its embedded broker, a dispatch receiver and a simulated fleet
run: build tools
	./scripts/run.sh

## test: lint, then every test with the race detector (integration tests need `make tools`)
test: lint tools
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## bench: Go benchmarks of the hot path (5 runs, var/bench-go.txt), then the end-to-end bench through real
##        Mosquitto, InfluxDB and firewatch at rising loads (firesim bench), whose table goes into docs/performance.md
bench: build tools
	@mkdir -p var
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS) | tee var/bench-go.txt
	$(BIN)/firesim bench -out docs/performance.md

## fuzz: run each fuzz target for a bounded time
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./ingest/
	$(GO) test -run '^$$' -fuzz '^FuzzEval$$' -fuzztime $(FUZZTIME) ./rules/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./ingest/modbus/
	$(GO) test -run '^$$' -fuzz '^FuzzParseLedger$$' -fuzztime $(FUZZTIME) ./devices/
	$(GO) test -run '^$$' -fuzz '^FuzzIDIndex$$' -fuzztime $(FUZZTIME) ./devices/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./rules/
	$(GO) test -run '^$$' -fuzz '^FuzzFieldModel$$' -fuzztime $(FUZZTIME) ./cmd/firewatch/

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## tools: install the local InfluxDB $(INFLUXD_VERSION) into bin/ (about 3 minutes the first time) and check for mosquitto
tools: $(INFLUXD)
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
	  echo "note: mosquitto is not installed; integration tests skip without it (Debian: apt-get install mosquitto)"

$(INFLUXD):
	@echo "installing InfluxDB $(INFLUXD_VERSION) into bin/ (first time only, a few minutes)"
	GOBIN=$(BIN) $(GO) install github.com/influxdata/influxdb/cmd/influxd@$(INFLUXD_VERSION)

clean:
	rm -rf var/ dist/

## release: cross-compile firegate for gateway boxes into dist/ (linux/arm64, linux/arm v7, linux/amd64)
.PHONY: release
release:
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '-s -w' -o dist/firegate-linux-arm64 ./cmd/firegate
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '-s -w' -o dist/firegate-linux-armv7 ./cmd/firegate
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '-s -w' -o dist/firegate-linux-amd64 ./cmd/firegate

## plugin: the Grafana data source plugin into dashboards/plugin/dist/: front end (npm ci, tsc, esbuild) and backend for linux/amd64 and linux/arm64
PLUGIN := dashboards/plugin
.PHONY: plugin
plugin: $(PLUGIN)/node_modules/.installed
	cd $(PLUGIN) && npm run --silent build && node check-dist.mjs
	cd $(PLUGIN) && for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -mod=mod -trimpath -ldflags '-s -w' -o dist/gpx_firewatch_linux_$$arch ./pkg || exit 1; \
	done
	@ls -l $(PLUGIN)/dist

$(PLUGIN)/node_modules/.installed: $(PLUGIN)/package.json $(PLUGIN)/package-lock.json
	cd $(PLUGIN) && npm ci --no-audit --no-fund
	@touch $@
