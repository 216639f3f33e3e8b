#!/usr/bin/env bash
# `make logs`: follows the three services' logs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
files=()
for svc in "${SERVICES[@]}"; do
  f="$(log_file "$svc")"
  [[ -f "$f" ]] && files+=("$f")
done
((${#files[@]})) || die "no logs under $LOG_DIR yet: run make start-services"
exec tail -n "${LINES:-50}" -F "${files[@]}"
