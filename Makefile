# VoxScriber Webhooks. `make run` starts the suite; `make test` runs every test.
SHELL := /bin/bash
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
SERVICES := registry ingestion delivery gateway
MODULES := ./gen/... ./pkg/... ./services/registry/... ./services/ingestion/... ./services/delivery/... ./services/gateway/... ./e2e/...

.PHONY: all build tools generate check-generated lint fmt vet test test-short bench run clean

all: build

build:
	@mkdir -p $(BIN)
	go build -o $(BIN)/ $(foreach s,$(SERVICES),./services/$(s)/cmd/$(s))

# buf and the protoc plugins, pinned in tools/go.mod, built into bin/.
tools: $(BIN)/buf
$(BIN)/buf: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && GOWORK=off go build -o $(BIN)/ tool

generate: tools
	buf format -w
	buf lint
	buf generate

# CI: regenerating must leave gen/ unchanged.
check-generated: generate
	@git diff --exit-code --stat -- gen proto || (echo "gen/ or proto/ is stale: run make generate and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- gen)" || (git status --porcelain -- gen; echo "untracked generated files: run make generate and commit" >&2; exit 1)

fmt:
	gofmt -w $$(git ls-files '*.go' | grep -v '^gen/')

lint: tools
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'); echo "gofmt needed" >&2; exit 1)
	go vet $(MODULES)
	buf lint
	buf format -d --exit-code

vet:
	go vet $(MODULES)

# Every test: unit, service and end-to-end (each starts its own redis-server).
test: build
	go test -count=1 -timeout 20m $(MODULES)

test-short: build
	go test -count=1 -short -timeout 10m $(MODULES)

# Fuzz targets, briefly each (FUZZTIME=30s for longer).
FUZZTIME ?= 10s
fuzz:
	go test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./pkg/signing
	go test -run '^$$' -fuzz '^FuzzParseSchedule$$' -fuzztime $(FUZZTIME) ./pkg/config
	go test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./pkg/events
	go test -run '^$$' -fuzz '^FuzzValidateURL$$' -fuzztime $(FUZZTIME) ./pkg/ssrf

# Benchmarks: the end-to-end suite benchmark writes bench/RESULTS.md.
bench: build
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./e2e/ -args -results $(CURDIR)/bench/RESULTS.md

run: build
	./scripts/run.sh

clean:
	rm -rf $(BIN)
