#!/usr/bin/env bash
# `make status`: each service's pid (alive?) and its /health answer.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
rc=0
printf '%-16s %-14s %-8s %s\n' SERVICE PID HEALTH URL
for svc in "${SERVICES[@]}"; do
  u="$(service_url "$svc")"
  if pid="$(live_pid "$(pid_file "$svc")")"; then p="$pid"; elif [[ -f "$(pid_file "$svc")" ]]; then p="dead"; rc=1; else p="-"; fi
  code="$(http_status "$u/health")"
  [[ "$code" == 200 ]] || rc=1
  body="$(curl -s --max-time 2 "$u/health" 2>/dev/null | head -c 200)"
  printf '%-16s %-14s %-8s %s %s\n' "$svc" "$p" "$code" "$u" "$body"
done
for infra in nats postgres; do
  if pid="$(live_pid "$STATE_DIR/$infra.pid")"; then echo "$infra: started by start-services, pid $pid"; fi
done
exit $rc
