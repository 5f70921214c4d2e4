# Shared by the entry-point scripts: repo root, npm tools, free ports, Azurite.
# shellcheck shell=bash

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ensure_npm_tools installs the npm tools (Azurite, the Bicep grammar) from the committed
# package.json + lockfile when one is missing or the lockfile changed since the last install.
ensure_npm_tools() {
  if [ ! -x "$root/node_modules/.bin/azurite-table" ] ||
    [ ! -f "$root/node_modules/tree-sitter-bicep/tree-sitter-bicep.wasm" ] ||
    [ ! -f "$root/node_modules/web-tree-sitter/package.json" ] ||
    [ "$root/package-lock.json" -nt "$root/node_modules/.package-lock.json" ]; then
    command -v npm >/dev/null || { echo "npm is required (Node.js 20+): apt-get install nodejs npm" >&2; exit 1; }
    say "installing npm tools (npm ci)"
    (cd "$root" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# free_port prints a free loopback TCP port.
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_port waits until 127.0.0.1:$1 accepts connections (up to $2 seconds, default 30).
wait_port() {
  local port=$1 limit=${2:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$port after ${limit}s" >&2
  return 1
}

# start_azurite starts an in-memory Azurite Table service on a free port and sets
# AZURITE_TABLES_CONNECTION; the caller stops it with kill "$azurite_pid". AZURITE_HEAP_MB, when
# set, is its V8 heap limit: node's default (a few GB) runs out of room near a million rows.
start_azurite() {
  local port node_options=${NODE_OPTIONS:-}
  port=$(free_port)
  if [ -n "${AZURITE_HEAP_MB:-}" ]; then node_options="$node_options --max-old-space-size=$AZURITE_HEAP_MB"; fi
  NODE_OPTIONS="$node_options" "$root/node_modules/.bin/azurite-table" --tableHost 127.0.0.1 --tablePort "$port" --inMemoryPersistence \
    --skipApiVersionCheck --disableProductStyleUrl --disableTelemetry --silent >"${AZURITE_LOG:-/dev/null}" 2>&1 &
  azurite_pid=$!
  wait_port "$port" 60
  AZURITE_TABLES_CONNECTION="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:$port/devstoreaccount1;"
  export AZURITE_TABLES_CONNECTION
}

# parse_flags NAME... -- ARG...: sets the variable of each --NAME (dashes as underscores) from
# "--NAME VALUE" or "--NAME=VALUE" in the ARGs; an unknown flag or a missing value calls the
# script's usage.
parse_flags() {
  local names=" " flag value
  while [ "$1" != -- ]; do names+="$1 "; shift; done
  shift
  while [ $# -gt 0 ]; do
    flag=${1%%=*}
    flag=${flag#--}
    if [[ $1 != --* || $names != *" $flag "* ]]; then echo "unknown flag: $1" >&2; usage; fi
    if [[ $1 == *=* ]]; then
      value=${1#*=}
      shift
    else
      [ $# -ge 2 ] || usage
      value=$2
      shift 2
    fi
    printf -v "${flag//-/_}" '%s' "$value"
  done
}

# bench_setup prepares a benchmark run: the bench's tenant, app and a fresh secret, a work
# directory, Azurite, and the simulated tenant and bench binaries built into it; everything
# started is stopped on exit.
bench_setup() {
  tenant=7e3f1a2b-9c4d-4e5f-8a6b-1c2d3e4f5a6b
  app=0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e
  secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  work=$(mktemp -d)
  sim_pid="" azurite_pid=""
  trap bench_cleanup EXIT
  ensure_npm_tools
  say "starting Azurite (Table Storage)"
  start_azurite
  say "building the simulated tenant and the bench"
  go build -o "$work/m365sim" ./handler/cmd/m365sim
  go build -o "$work/bench" ./handler/cmd/bench
}

bench_cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  [ -n "$azurite_pid" ] && kill "$azurite_pid" 2>/dev/null
  rm -rf "$work"
  return 0
}

# start_sim runs the simulated tenant built by bench_setup with these flags (plus the bench's
# tenant, app and secret), waits up to 10 minutes for its READY line (a large generated tenant
# takes a while) and sets sim_url; its stdout is drained so it never blocks.
start_sim() {
  mkfifo "$work/sim.out"
  "$work/m365sim" -tenant "$tenant" -app-id "$app" -app-secret "$secret" -ca-out "$work/ca.pem" "$@" >"$work/sim.out" 2>"$work/sim.err" &
  sim_pid=$!
  exec 3<"$work/sim.out"
  sim_url=""
  local line
  while IFS= read -r -t 600 line <&3; do
    case "$line" in READY\ *) sim_url=${line#READY }; break ;; esac
  done
  if [ -z "$sim_url" ]; then
    echo "the simulated tenant did not start:" >&2
    cat "$work/sim.err" >&2
    exit 1
  fi
  cat <&3 >/dev/null &
  exec 3<&-
  say "simulated tenant at $sim_url"
}
