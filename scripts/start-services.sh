#!/usr/bin/env bash
# `make start-services`: from a fresh clone to three healthy services in the background.
# pnpm → dependencies → build → Postgres + NATS → orchestrator, scheduler, worker-manager
# (pid files .hodei/<svc>.pid, logs .hodei/logs/<svc>.log) → wait for every /health → URLs.
# Running it again leaves a live, healthy service alone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
HEALTH_TIMEOUT="${HODEI_START_TIMEOUT:-60}"
started_at=$SECONDS

if [[ "${HODEI_SKIP_BUILD:-}" == 1 ]]; then
  "$ROOT/scripts/ensure-pnpm.sh"
  echo "build: skipped (HODEI_SKIP_BUILD=1)"
else
  "$ROOT/scripts/build.sh"
fi
"$ROOT/scripts/ensure-infra.sh"
mkdir -p "$STATE_DIR" "$LOG_DIR"

healthy() { [[ "$(http_status "$(service_url "$1")/health")" == 200 ]]; }

to_wait=()
for svc in "${SERVICES[@]}"; do
  main="$ROOT/services/$svc/dist/main.js"
  pidf="$(pid_file "$svc")"
  port="$(service_port "$svc")"
  if pid="$(live_pid "$pidf")"; then
    if healthy "$svc"; then
      echo "$svc: already running (pid $pid) and healthy"
    else
      echo "$svc: running (pid $pid), waiting for /health"
      to_wait+=("$svc")
    fi
    continue
  fi
  rm -f "$pidf"
  [[ -f "$main" ]] || die "$svc: $main is missing after the build (is services/$svc built by 'pnpm build'?)"
  if port_open 127.0.0.1 "$port"; then
    die "$svc: port $port is already in use by a process this script did not start (see: ss -ltnp 'sport = :$port'); stop it or set HODEI_$(echo "${svc//-/_}" | tr a-z A-Z)_PORT"
  fi
  echo "--- $(date -u +%FT%TZ) start-services" >>"$(log_file "$svc")"
  # the telemetry preload traces over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, else does nothing
  spawn_bg "$pidf" "$(log_file "$svc")" node --import "$ROOT/packages/platform/dist/telemetry/register.js" "$main"
  echo "$svc: started (pid $(cat "$pidf")), log $(log_file "$svc")"
  to_wait+=("$svc")
done

for svc in "${to_wait[@]}"; do
  start=$SECONDS
  until healthy "$svc"; do
    if ! live_pid "$(pid_file "$svc")" >/dev/null; then
      rm -f "$(pid_file "$svc")"
      echo "--- last lines of $(log_file "$svc"):" >&2
      tail -n 20 "$(log_file "$svc")" >&2 || true
      die "$svc exited during start-up; see $(log_file "$svc")"
    fi
    if ((SECONDS - start >= HEALTH_TIMEOUT)); then
      echo "--- last lines of $(log_file "$svc"):" >&2
      tail -n 20 "$(log_file "$svc")" >&2 || true
      die "$svc did not answer 200 on $(service_url "$svc")/health within ${HEALTH_TIMEOUT}s (HODEI_START_TIMEOUT); see $(log_file "$svc")"
    fi
    sleep 0.3
  done
  echo "$svc: healthy"
done

say "Hodei Jobs is up ($((SECONDS - started_at))s)"
printf '%-16s %-30s %-34s %s\n' SERVICE API DOCS METRICS
for svc in "${SERVICES[@]}"; do
  u="$(service_url "$svc")"
  printf '%-16s %-30s %-34s %s\n' "$svc" "$u/api/v1" "$u/swagger-ui" "$u/metrics"
done
echo "logs: make logs   status: make status   stop: make stop-services"
