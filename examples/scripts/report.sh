#!/usr/bin/env bash
# A script file run as a job: its shebang picks the interpreter, --arg values arrive as "$@".
#   hodei run --script examples/scripts/report.sh --arg "$USER" --env GREETING=hola
set -euo pipefail
who="${1:-world}"
echo "${GREETING:-hello}, ${who}"
echo "running as $(id -un) in $(pwd) with bash ${BASH_VERSION}"
files=(/etc/*.conf)
echo "there are ${#files[@]} .conf files in /etc"
