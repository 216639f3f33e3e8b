#!/usr/bin/env bash
# `make bench`: builds, makes sure Postgres and NATS answer, runs bench/http.ts (arguments pass
# through BENCH_ARGS, e.g. BENCH_ARGS="--duration 20" or "--url http://127.0.0.1:8080").
# `scripts/bench.sh exec` (`make bench-exec`) runs bench/exec.ts instead (BENCH_ARGS="--rounds 2").
# `scripts/bench.sh floor` (`make bench-floor`) runs bench/floor.ts (BENCH_ARGS="--jobs 3000 --messages single").
# `scripts/bench.sh pipelines` runs bench/pipelines.ts (BENCH_ARGS="--chain 40 --fanout 200 --slots 8").
# `scripts/bench.sh failure` (`make bench-failure`) runs bench/cron-lateness.ts and bench/failover.ts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
"$ROOT/scripts/ensure-infra.sh"
script=http.ts
[[ "${1:-}" == exec ]] && script=exec.ts
[[ "${1:-}" == pipelines ]] && script=pipelines.ts
[[ "${1:-}" == floor ]] && script=floor.ts
if [[ "${1:-}" == failure ]]; then
  # `make bench-failure`: cron lateness, then failover (kill -9 of a worker, retry elsewhere)
  cd bench
  "$ROOT/node_modules/.bin/tsx" cron-lateness.ts
  exec "$ROOT/node_modules/.bin/tsx" failover.ts ${BENCH_ARGS:-}
fi
say "bench/$script ${BENCH_ARGS:-}"
cd bench
# shellcheck disable=SC2086
exec "$ROOT/node_modules/.bin/tsx" "$script" ${BENCH_ARGS:-}
