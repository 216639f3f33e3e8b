#!/usr/bin/env bash
# Installs dependencies when node_modules is missing or older than the lockfile, then builds all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

"$ROOT/scripts/ensure-pnpm.sh"
if [[ ! -f node_modules/.modules.yaml || pnpm-lock.yaml -nt node_modules/.modules.yaml ]]; then
  say "pnpm install --frozen-lockfile"
  pnpm install --frozen-lockfile
  touch node_modules/.modules.yaml
fi
say "pnpm build"
pnpm build
