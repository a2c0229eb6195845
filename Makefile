# firewatch — see README.md. The two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
INFLUXD := $(BIN)/influxd
INFLUXD_VERSION := v1.8.10
PKGS := ./...

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

## bench: Go benchmarks of the hot path (medians over 5 runs go to docs/performance.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 $(PKGS)

## fuzz: run each fuzz target for a bounded time
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 30s ./ingest/
	$(GO) test -run '^$$' -fuzz '^FuzzEval$$' -fuzztime 30s ./rules/

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
