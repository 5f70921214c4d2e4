#!/usr/bin/env bash
# Runs the main job locally on embedded defaults: installs and starts Azurite, then runs
# handler/cmd/demo, which starts the simulated Microsoft 365 tenant and the local Functions host
# stand-in with the real handler, connects a demo org, runs a full and a delta stakeholder sync
# of a generated tenant, and prints what happened. Flags go to the demo (e.g. --users 20000).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"

ensure_npm_tools
say "starting Azurite (Table Storage)"
start_azurite
trap 'kill "$azurite_pid" 2>/dev/null || true' EXIT
say "running the demo"
go run ./handler/cmd/demo -root "$root" "$@"
