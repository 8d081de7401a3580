# leadstream — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/leadstream
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: help deps test-deps npm build run test lint vet fmt-check unit e2e bench bench-go beacon clean chart-test

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install the Debian packages leadstream runs on (redis, clickhouse, kcat) when missing
	@bash deploy/install-deps.sh

test-deps: ## deps plus what only the tests need (chromium, Node.js, npm)
	@bash deploy/install-deps.sh --test

# The real-client tests' Node.js packages (playwright-core, analytics-node,
# terser), pinned by e2e/package-lock.json; reinstalled when the lock changes.
NPM_STAMP := e2e/node_modules/.installed
$(NPM_STAMP): e2e/package-lock.json e2e/package.json
	cd e2e && npm ci --no-audit --no-fund
	@touch $@

npm: $(NPM_STAMP) ## install the e2e Node.js packages (npm ci in e2e/)

build: ## build bin/leadstream
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/leadstream

run: deps build ## run everything in one process (leadstream dev): embedded Kafka, local Redis and ClickHouse
	./$(BIN) dev

fmt-check: ## fail when a file is not gofmt-formatted
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "not gofmt-formatted:"; echo "$$out"; exit 1; fi

vet: ## go vet
	$(GO) vet ./...

lint: fmt-check vet ## gofmt check and go vet

test: test-deps npm lint chart-test ## the whole suite (real Redis single + cluster, ClickHouse, kfake, headless Chromium, analytics.js, analytics-node, analytics-go, the Helm chart), race detector on
	$(GO) run ./internal/localsvc/cmd/withsvc -cluster -- $(GO) test -race -count=1 -timeout 20m -bench . -benchtime 1x ./...

# The chart's test is a Go module of its own (deploy/helm/chart_test), so Helm
# and the Kubernetes libraries stay out of leadstream's go.mod; `./...` above
# does not enter it. It needs no service and no cluster.
# No -race here: the chart test is single-threaded rendering and parsing, and
# the race build of the Kubernetes libraries would double a fresh machine's
# compile time for nothing (vet already compiles them once).
chart-test: ## render the Helm chart deploy/helm/leadstream (Helm Go module) and check it against the binary's flags
	cd deploy/helm/chart_test && $(GO) vet ./... && $(GO) test -count=1 -timeout 15m ./...

e2e: test-deps npm ## only the end-to-end tests: pipeline (kcat, clickhouse-client), browser (chromium) and Segment SDK
	$(GO) run ./internal/localsvc/cmd/withsvc -- $(GO) test -race -count=1 -run 'E2E' -v ./cmd/... ./e2e/...

beacon: npm ## minify ingest/beacon/ls.js into ls.min.js (commit both) and print its size
	cd e2e && node minify.mjs

bench: ## the benchmark harness: every stage against its ceiling in one run, and the wrk scenarios (~5 min; BENCH_FLAGS=-quick for ~2)
	@bash deploy/install-deps.sh wrk
	$(GO) run ./bench/cmd/leadbench $(BENCH_FLAGS)

bench-go: deps ## Go micro-benchmarks (matching, encoding, decoding, Redis apply, ClickHouse insert) against real services
	$(GO) run ./internal/localsvc/cmd/withsvc -- $(GO) test -run '^$$' -bench . -benchmem ./...

clean: ## remove build output and the dev data dir
	rm -rf bin .data
