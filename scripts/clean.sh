#!/usr/bin/env bash
# `make clean`: build output and local state (refuses while services run).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
for svc in "${SERVICES[@]}" nats postgres; do
  if pid="$(live_pid "$STATE_DIR/$svc.pid")"; then die "$svc is running (pid $pid): make stop-services first"; fi
done
rm -rf packages/*/dist services/*/dist bench/dist e2e/dist packages/*/tsconfig.tsbuildinfo services/*/tsconfig.tsbuildinfo "$STATE_DIR/logs" "$STATE_DIR/demo" "$STATE_DIR/nats" "$STATE_DIR"/*.pid
echo "removed dist/, tsbuildinfo and .hodei state: service and demo logs, NATS store, pid files (node_modules kept; rm -rf node_modules to reinstall)"
