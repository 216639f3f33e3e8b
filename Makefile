# Hodei Jobs: thin targets over scripts/*.sh (the logic lives there, shared with .ci/run).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

.PHONY: help build start-services stop-services restart-services status logs infra test test-e2e demo bench bench-exec bench-floor bench-failure clean

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

build: ## install dependencies if needed, then build every package
	@scripts/build.sh

start-services: ## install, build, make sure Postgres + NATS answer, start the three services, wait for /health
	@scripts/start-services.sh

stop-services: ## stop the services (and the NATS/Postgres start-services started)
	@scripts/stop-services.sh

restart-services: stop-services start-services ## stop, then start

status: ## pid and /health of each service
	@scripts/status.sh

logs: ## follow the three services' logs
	@scripts/logs.sh

infra: ## only make sure Postgres and NATS answer
	@scripts/ensure-infra.sh

test: ## build, then the whole vitest suite against real Postgres + NATS
	@scripts/test.sh

test-e2e: ## the end-to-end suite in e2e/: services as real processes (E2E_INFRA=testcontainers|local|auto)
	@scripts/test-e2e.sh

demo: ## start the services and a worker if needed, run every example in examples/ through the CLI, one verdict line each
	@scripts/demo.sh

bench: ## HTTP benchmark: orchestrator next to a bare Express hello-world
	@scripts/bench.sh

bench-exec: ## execution benchmarks: throughput, latency, live logs, cancel, ingest, fan-out (BENCH_ARGS="--rounds 2")
	@scripts/bench.sh exec

bench-floor: ## CPU floor of the mandated path of one execution (no services' code, no spawn) beside the bare spawn loop
	@scripts/bench.sh floor

bench-failure: ## time and failure: cron lateness (60 firings), failover after kill -9 of a worker (BENCH_ARGS="--rounds 3")
	@scripts/bench.sh failure

clean: ## remove build output and local state
	@scripts/clean.sh
