#!/usr/bin/env bash
# `make bench`: builds, makes sure Postgres and NATS answer, runs bench/http.ts (arguments pass
# through BENCH_ARGS, e.g. BENCH_ARGS="--duration 20" or "--url http://127.0.0.1:8080").
# `scripts/bench.sh exec` (`make bench-exec`) runs bench/exec.ts instead (BENCH_ARGS="--rounds 2").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
"$ROOT/scripts/ensure-infra.sh"
script=http.ts
[[ "${1:-}" == exec ]] && script=exec.ts
say "bench/$script ${BENCH_ARGS:-}"
cd bench
# shellcheck disable=SC2086
exec "$ROOT/node_modules/.bin/tsx" "$script" ${BENCH_ARGS:-}
