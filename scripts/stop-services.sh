#!/usr/bin/env bash
# `make stop-services`: SIGTERM each service (SIGKILL after HODEI_STOP_GRACE seconds, default 15),
# then the NATS / embedded PostgreSQL that start-services started itself. Removes the pid files.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GRACE="${HODEI_STOP_GRACE:-15}"

pids=()
for svc in "${SERVICES[@]}"; do
  # Stop the three in parallel: each drains on its own.
  stop_pid_file "$svc" "$(pid_file "$svc")" "$GRACE" &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for infra in nats postgres; do
  [[ -f "$STATE_DIR/$infra.pid" ]] && stop_pid_file "$infra (started by start-services)" "$STATE_DIR/$infra.pid" "$GRACE"
done
exit 0
