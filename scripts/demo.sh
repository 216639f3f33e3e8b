#!/usr/bin/env bash
# `make demo`: start the services if they are not up, make sure a worker runs, then run every
# example in examples/ through the hodei CLI and print one verdict line per example.
# Output of each run: $HODEI_STATE_DIR/demo/<example>.log (.hodei/demo by default)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
HODEI=(node "$ROOT/packages/cli/dist/main.js")
LOGS="${HODEI_STATE_DIR:-$ROOT/.hodei}/demo"
mkdir -p "$LOGS"

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then G=$'\e[32m' R=$'\e[31m' Y=$'\e[33m' D=$'\e[2m' N=$'\e[0m'; else G='' R='' Y='' D='' N=''; fi

status=2
[[ -f packages/cli/dist/main.js ]] && { "${HODEI[@]}" status >/dev/null 2>"$LOGS/status.err"; status=$?; }
if [[ $status -eq 1 ]]; then # up, but they refuse the token (HODEI_API_TOKEN): starting them again would not help
  echo "${R}$(cat "$LOGS/status.err")${N}"
  exit 1
elif [[ $status -ne 0 ]]; then
  echo "services are not all up: starting them (scripts/start-services.sh)"
  "$ROOT/scripts/start-services.sh" || { echo "${R}could not start the services${N}"; exit 1; }
fi

running_workers="$("${HODEI[@]}" workers list --status running --json 2>/dev/null || echo '[]')"
if [[ "$running_workers" == "[]" || -z "$running_workers" ]]; then
  echo "no worker running: starting one"
  "${HODEI[@]}" workers start --name demo --slots 4 --cpu 2 --memory 2GiB || exit 1
fi

failures=0
verdict() { # name expected actual seconds [note]
  local name="$1" expected="$2" actual="$3" secs="$4" note="${5:-}"
  if [[ "$expected" == "$actual" ]]; then
    printf '%s✔%s %-22s exit %-3s %s(expected %s, %ss)%s %s\n' "$G" "$N" "$name" "$actual" "$D" "$expected" "$secs" "$N" "$note"
  else
    failures=$((failures + 1))
    printf '%s✘%s %-22s exit %-3s (expected %s, %ss) see %s\n' "$R" "$N" "$name" "$actual" "$expected" "$secs" "$LOGS/$name.log"
  fi
}

run_example() { # name expected-exit hodei-args...
  local name="$1" expected="$2"
  shift 2
  local start=$SECONDS
  "${HODEI[@]}" run "$@" --no-color >"$LOGS/$name.log" 2>&1
  local code=$?
  verdict "$name" "$expected" "$code" "$((SECONDS - start))"
}

echo "running the examples (timeouts and failures are expected where noted)"
run_example hello 0 -f examples/jobs/hello.yaml
run_example inline-script 0 -f examples/jobs/script.yaml
run_example script-file 0 --script examples/scripts/report.sh --arg demo --env GREETING=hola
run_example data-processing 0 --script examples/scripts/process-data.sh --name data-processing
if [[ -f "$LOGS/data-processing.log" ]]; then
  job="$(sed -n 's/^job *//p' "$LOGS/data-processing.log" | head -1)"
  if [[ -n "$job" ]] && "${HODEI[@]}" jobs results "$job" >"$LOGS/data-processing.result.json" 2>&1; then
    verdict data-processing-result 0 0 0 "$(tr -d '\n ' <"$LOGS/data-processing.result.json")"
  else
    verdict data-processing-result 0 1 0
  fi
fi
run_example long-running 0 -f examples/jobs/long-running.yaml
run_example resource-heavy 0 -f examples/jobs/resource-heavy.yaml
run_example failing 3 -f examples/jobs/failing.yaml
run_example custom-timeout 124 -f examples/jobs/custom-timeout.yaml

# each pipeline: apply the file, run it to the end with --follow (exit 0 only when every job completed)
for file in examples/pipelines/*.yaml; do
  base="$(basename "$file" .yaml)"
  name="pipeline:$base"
  start=$SECONDS
  if ! "${HODEI[@]}" apply -f "$file" --no-color >"$LOGS/$base.apply.log" 2>&1; then
    verdict "$name" 0 1 "$((SECONDS - start))"
    continue
  fi
  pname="$(sed -n 's/^name: *//p' "$file" | head -1)"
  "${HODEI[@]}" pipelines run "$pname" --follow --no-color >"$LOGS/$base.log" 2>&1
  code=$?
  verdict "$name" 0 "$code" "$((SECONDS - start))" "$(grep -c ' completed (exit 0)$' "$LOGS/$base.log") jobs completed"
done

if [[ $failures -eq 0 ]]; then echo "${G}all examples behaved as expected${N}"; else echo "${R}$failures example(s) did not${N}"; fi
exit $(( failures > 0 ))
