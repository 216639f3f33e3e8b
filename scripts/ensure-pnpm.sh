#!/usr/bin/env bash
# Makes `pnpm` available (version 10, as package.json's packageManager says).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if command -v pnpm >/dev/null 2>&1; then exit 0; fi
command -v node >/dev/null 2>&1 || die "Node.js 20 or newer is required (node not found on PATH)"
say "pnpm not found: installing pnpm@10"
if command -v npm >/dev/null 2>&1 && npm install -g pnpm@10 >/dev/null 2>&1; then :
elif command -v corepack >/dev/null 2>&1; then
  corepack enable pnpm && corepack prepare pnpm@10 --activate
else
  die "could not install pnpm: neither npm nor corepack worked; see https://pnpm.io/installation"
fi
command -v pnpm >/dev/null 2>&1 || die "pnpm was installed but is not on PATH ($(npm prefix -g 2>/dev/null)/bin)"
say "pnpm $(pnpm --version)"
