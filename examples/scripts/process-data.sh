#!/usr/bin/env bash
# Data processing with a result: counts words of a generated data set and writes a JSON summary
# to $HODEI_RESULT_FILE, which `hodei jobs results ID` prints afterwards.
#   hodei run --script examples/scripts/process-data.sh && hodei jobs results <job id>
set -euo pipefail
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 2000); do echo "record $i $((i % 7)) alpha beta gamma"; done > "$work/data.txt"
lines=$(wc -l < "$work/data.txt")
words=$(wc -w < "$work/data.txt")
sevens=$(awk '$3 == 0' "$work/data.txt" | wc -l)
checksum=$(sha256sum "$work/data.txt" | cut -c1-16)
echo "processed $lines records, $words words"
printf '{"records": %d, "words": %d, "multiples_of_7": %d, "sha256_prefix": "%s"}\n' \
  "$lines" "$words" "$sevens" "$checksum" > "${HODEI_RESULT_FILE:-/dev/stdout}"
echo "result written"
