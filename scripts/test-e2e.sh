#!/usr/bin/env bash
# `make test-e2e`: the end-to-end suite in e2e/ — the three services as real processes against
# testcontainers (when a Docker engine answers) or the local Postgres + NATS (E2E_INFRA=testcontainers|local|auto).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
# containers bring their own servers; otherwise make sure the local ones answer
if [[ "${E2E_INFRA:-auto}" != testcontainers ]]; then
  "$ROOT/scripts/ensure-infra.sh"
fi
say "pnpm --filter @hodei/e2e test (E2E_INFRA=${E2E_INFRA:-auto})"
E2E_SKIP_BUILD=1 pnpm --filter @hodei/e2e test
