#!/usr/bin/env bash
# `make test`: build (worker tests spawn packages/worker/dist/main.js), make sure Postgres and NATS
# answer, then the whole vitest suite.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
"$ROOT/scripts/ensure-infra.sh"
say "pnpm test"
pnpm test
