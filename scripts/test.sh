#!/usr/bin/env bash
# Runs all the tests: installs Azurite if missing, starts one on a free port for the whole run,
# then go vet and go test over every package, and stops what it started.
# Extra arguments go to go test (e.g. scripts/test.sh -run TestStore ./handler/internal/tablestore/).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$root"

ensure_npm_tools
say "starting Azurite"
start_azurite
trap 'kill "$azurite_pid" 2>/dev/null || true' EXIT

pkgs=(./...)
if [ $# -gt 0 ]; then pkgs=("$@"); fi
say "go vet"
go vet ./...
say "go test"
go test -count=1 -timeout 15m "${pkgs[@]}"
