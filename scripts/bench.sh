#!/usr/bin/env bash
# `make bench`: builds, makes sure Postgres and NATS answer, runs bench/http.ts (arguments pass
# through BENCH_ARGS, e.g. BENCH_ARGS="--duration 20" or "--url http://127.0.0.1:8080").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
"$ROOT/scripts/ensure-infra.sh"
say "bench/http.ts ${BENCH_ARGS:-}"
cd bench
# shellcheck disable=SC2086
exec "$ROOT/node_modules/.bin/tsx" http.ts ${BENCH_ARGS:-}
