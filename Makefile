# VoxScriber Webhooks. `make run` starts the suite; `make test` runs every test.
SHELL := /bin/bash
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
SERVICES := registry ingestion delivery gateway
MODULES := ./gen/... ./pkg/... ./services/registry/... ./services/ingestion/... ./services/delivery/... ./services/gateway/... ./e2e ./deploy/... ./cmd/vxctl/...

.PHONY: all build tools generate check-generated lint eslint fmt vet staticcheck test test-prereqs test-short test-race breaking bench chaos fuzz run clean images jaeger

all: build

build:
	@mkdir -p $(BIN)
	go build -o $(BIN)/ $(foreach s,$(SERVICES),./services/$(s)/cmd/$(s))
	go build -o $(BIN)/ ./cmd/vxctl

# buf, the protoc plugins, staticcheck and gotestsum, pinned in
# tools/go.mod, built into bin/.
tools: $(BIN)/buf $(BIN)/staticcheck $(BIN)/gotestsum
$(BIN)/buf: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && GOWORK=off go build -o $(BIN)/ tool
# The two that make test and make lint need, alone (seconds, not buf's minutes).
$(BIN)/staticcheck: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && GOWORK=off go build -o $(BIN)/ honnef.co/go/tools/cmd/staticcheck
$(BIN)/gotestsum: tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && GOWORK=off go build -o $(BIN)/ gotest.tools/gotestsum

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

# gofmt, go vet and staticcheck over every module, buf lint and format, and
# eslint over the dashboard's JavaScript (web/) and its browser tests.
lint: tools
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))" || (gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'); echo "gofmt needed" >&2; exit 1)
	go vet $(MODULES)
	staticcheck $(MODULES)
	buf lint
	buf format -d --exit-code
	@$(MAKE) --no-print-directory eslint

vet:
	go vet $(MODULES)

staticcheck: $(BIN)/staticcheck
	staticcheck $(MODULES)

# eslint (pinned in e2e/browser/package.json; config e2e/browser/eslint.config.js,
# eslint's recommended rules) runs from the root, where its file patterns start.
eslint:
	./scripts/test-prereqs.sh node
	e2e/browser/node_modules/.bin/eslint --config e2e/browser/eslint.config.js services/gateway/internal/gateway/web e2e/browser

# Wire compatibility of proto/ with the previous commit (BREAKING_AGAINST=ref
# for another; buf.yaml's FILE rules). See scripts/breaking.sh.
breaking: tools
	./scripts/breaking.sh

# Every test: unit, service and end-to-end (each starts its own redis-server),
# the dashboard in chromium and the trace in Jaeger. It first checks the
# machine's programs (redis, chromium, node, PostgreSQL: a missing one stops
# the run naming the command that installs it), runs npm ci in e2e/browser
# when needed and builds .cache/jaeger once (≈ 6 min). A skipped test fails
# the run: skips are for make test-short. The JSON log is .cache/test.json.
TESTLOG := $(CURDIR)/.cache/test.json
test: build test-prereqs jaeger $(BIN)/gotestsum
	@mkdir -p $(dir $(TESTLOG))
	gotestsum --format standard-quiet --jsonfile $(TESTLOG) -- -count=1 -timeout 20m $(MODULES); \
		rc=$$?; GOWORK=off go run ./scripts/noskip.go $(TESTLOG) || rc=1; exit $$rc

test-prereqs:
	./scripts/test-prereqs.sh

# The quick run: -short skips the browser, Jaeger, scale and long e2e tests.
test-short: build
	go test -count=1 -short -timeout 10m $(MODULES)

# The race detector over every module, with -short: the unit and service
# tests all run (none of them look at -short); e2e runs what -short keeps,
# with its four services built with -race too (a race report in a service's
# log fails the test). -short leaves out what make test alone covers: the
# browser and Jaeger tests and the throughput, scale and long e2e runs,
# whose timing bounds the race detector's slowdown would break. ≈ 3 min
# on 2 cores with a warm build cache.
test-race: build
	go test -race -count=1 -short -timeout 30m $(MODULES)

# Fuzz targets, briefly each: a count of inputs, not a duration. With a
# duration, Go's fuzzing coordinator can race its own deadline on a busy
# machine and fail with a bare "context deadline exceeded" and no failing
# input (golang/go#75804); a count has no deadline (FUZZTIME=500000x, or a
# duration such as 30s, for longer).
FUZZTIME ?= 50000x
fuzz:
	go test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./pkg/signing
	go test -run '^$$' -fuzz '^FuzzParseSchedule$$' -fuzztime $(FUZZTIME) ./pkg/config
	go test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./pkg/events
	go test -run '^$$' -fuzz '^FuzzValidateURL$$' -fuzztime $(FUZZTIME) ./pkg/ssrf
	go test -run '^$$' -fuzz '^FuzzAttemptCodec$$' -fuzztime $(FUZZTIME) ./services/delivery/internal/redisqueue

# Jaeger v2 all-in-one for the trace tests (STYLE.md recipe, ≈ 6 min once;
# kept in .cache/). make test builds it first; TestTraceInJaeger fails
# without it (skips only under -short).
jaeger: .cache/jaeger
.cache/jaeger:
	./scripts/jaeger.sh

# Benchmarks: the end-to-end suite benchmark writes bench/RESULTS.md.
bench: build
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./e2e/ -args -results $(CURDIR)/bench/RESULTS.md $(if $(PROFILE),-profile $(abspath $(PROFILE)))
	go test -run '^$$' -bench MillionPending -benchtime 1x -timeout 15m ./services/delivery/internal/redisqueue/ -args -results $(CURDIR)/bench/RESULTS.md
	go test -run '^$$' -bench Ordered -benchtime 20000x -count 2 -timeout 15m ./services/delivery/internal/servicetest/

# Chaos: SIGKILL every service, restart Redis and restart PostgreSQL (fast,
# and kill -9 then start) under load for CHAOS, reviving delivered
# deliveries meanwhile; then 0 acknowledged events lost and every delivery
# listed once with its whole history (make test runs 12s: ≈ 40 s in all,
# the archive waiting out a killed delivery process's 30 s shard lease).
CHAOS ?= 90s
chaos: build
	go test -count=1 -run '^TestChaos$$' -v -timeout 20m ./e2e/ -args -chaos-duration $(CHAOS)

run: build
	./scripts/run.sh

# Container images, one per service plus the compose demo receiver; each is
# built from the repository root so the go.work workspace resolves. Needs a
# Docker engine (BuildKit). IMAGE_PREFIX and IMAGE_TAG name them.
IMAGE_PREFIX ?= voxscriber/webhooks-
IMAGE_TAG ?= dev
images:
	@for s in $(SERVICES); do \
		echo "docker build $(IMAGE_PREFIX)$$s:$(IMAGE_TAG)"; \
		DOCKER_BUILDKIT=1 docker build -f services/$$s/Dockerfile -t $(IMAGE_PREFIX)$$s:$(IMAGE_TAG) . || exit 1; \
	done
	DOCKER_BUILDKIT=1 docker build -f deploy/demo-receiver/Dockerfile -t $(IMAGE_PREFIX)demo-receiver:$(IMAGE_TAG) .

clean:
	rm -rf $(BIN)
