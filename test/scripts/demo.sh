#!/usr/bin/env bash
# Quick start, command 1: installs what the lab needs (Debian packages, npm packages) and runs one
# real rebalance against a local lab (real Graphite, three real HAProxy load balancers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bash test/scripts/install-system-packages.sh
printf '\n==== npm ci ====\n'
npm ci --no-audit --no-fund --loglevel=error
printf '\n==== npm run build ====\n'
npm run build
printf '\n==== demo ====\n'
exec npx tsx test/scripts/demo.ts
