# leadstream — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/leadstream
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: help deps build run test lint vet fmt-check unit e2e bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## install the Debian packages leadstream runs on (redis, clickhouse, kcat) when missing
	@bash deploy/install-deps.sh

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

test: deps lint ## the whole test suite against real Redis (single + cluster), ClickHouse and kfake, race detector on
	$(GO) run ./internal/localsvc/cmd/withsvc -cluster -- $(GO) test -race -count=1 -timeout 20m ./...

e2e: deps ## only the end-to-end tests (collector -> Kafka -> processor/sink -> Redis/ClickHouse, kcat)
	$(GO) run ./internal/localsvc/cmd/withsvc -- $(GO) test -race -count=1 -run 'E2E' -v ./cmd/...

bench: deps ## benchmarks of the pure hot paths (scoring) and the stages against real services
	$(GO) run ./internal/localsvc/cmd/withsvc -- $(GO) test -run '^$$' -bench . -benchmem ./...

clean: ## remove build output and the dev data dir
	rm -rf bin .data
