#!/usr/bin/env bash
# Benchmarks (DESIGN §6). Usage:
#
#   scripts/bench.sh sync --users N [--groups M] [--out FILE] [--cpuprofile FILE] [--memprofile FILE]
#   scripts/bench.sh mail --recipients N [--mailboxes M] [--per-minute P] [--workers W] [--out FILE]
#
# sync: starts Azurite and the simulated Microsoft 365 tenant (handler/cmd/m365sim) as a separate
# process with N generated users, then runs handler/cmd/bench, which measures a full sync, its
# floor (the same Graph pages and the same number of entity writes with no sync logic) and a
# delta sync after 1 % of the users changed. Progress goes to stderr; the last line on stdout is
# one JSON object of the figures, also written with the date and machine to
# bench-results/sync-N.json (or --out).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$root"

usage() {
  echo "usage: scripts/bench.sh sync --users N [--groups M] [--out FILE] [--cpuprofile FILE] [--memprofile FILE]" >&2
  echo "       scripts/bench.sh mail --recipients N [--mailboxes M] [--per-minute P] [--workers W] [--out FILE]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
name=$1
shift
case "$name" in
  sync) ;;
  mail) exec "$(dirname "$0")/bench-mail.sh" "$@" ;;
  -h | --help) usage ;;
  *) echo "unknown benchmark: $name" >&2; usage ;;
esac

users="" groups=50 out="" cpuprofile="" memprofile=""
while [ $# -gt 0 ]; do
  case "$1" in
    --users) [ $# -ge 2 ] || usage; users=$2; shift 2 ;;
    --groups) [ $# -ge 2 ] || usage; groups=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --cpuprofile) [ $# -ge 2 ] || usage; cpuprofile=$2; shift 2 ;;
    --memprofile) [ $# -ge 2 ] || usage; memprofile=$2; shift 2 ;;
    --users=*) users=${1#*=}; shift ;;
    --groups=*) groups=${1#*=}; shift ;;
    --out=*) out=${1#*=}; shift ;;
    *) echo "unknown flag: $1" >&2; usage ;;
  esac
done
[[ "$users" =~ ^[1-9][0-9]*$ ]] || { echo "--users N is required (a positive integer)" >&2; usage; }
[[ "$groups" =~ ^[0-9]+$ ]] || { echo "--groups must be a non-negative integer" >&2; usage; }
out=${out:-bench-results/sync-$users.json}

tenant=7e3f1a2b-9c4d-4e5f-8a6b-1c2d3e4f5a6b
app=0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
work=$(mktemp -d)
sim_pid="" azurite_pid=""
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  [ -n "$azurite_pid" ] && kill "$azurite_pid" 2>/dev/null
  rm -rf "$work"
  return 0
}
trap cleanup EXIT

ensure_npm_tools
say "starting Azurite (Table Storage)"
start_azurite

say "building the simulated tenant and the bench"
go build -o "$work/m365sim" ./handler/cmd/m365sim
go build -o "$work/bench" ./handler/cmd/bench

say "starting the simulated tenant: $users users, $groups groups (separate process)"
mkfifo "$work/sim.out"
"$work/m365sim" -tenant "$tenant" -app-id "$app" -app-secret "$secret" -roles User.Read.All,GroupMember.Read.All \
  -users "$users" -groups "$groups" -ca-out "$work/ca.pem" >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
exec 3<"$work/sim.out"
sim_url=""
while IFS= read -r -t 600 line <&3; do
  case "$line" in READY\ *) sim_url=${line#READY }; break ;; esac
done
if [ -z "$sim_url" ]; then
  echo "the simulated tenant did not start:" >&2
  cat "$work/sim.err" >&2
  exit 1
fi
# keep draining its stdout so it never blocks on a full pipe
cat <&3 >/dev/null &
exec 3<&-
say "simulated tenant at $sim_url"

mkdir -p "$(dirname "$out")"
args=(-sim "$sim_url" -ca "$work/ca.pem" -tenant "$tenant" -app-id "$app" -app-secret "$secret"
  -users "$users" -groups "$groups" -tables "$AZURITE_TABLES_CONNECTION" -out "$out")
[ -n "$cpuprofile" ] && args+=(-cpuprofile "$cpuprofile")
[ -n "$memprofile" ] && args+=(-memprofile "$memprofile")
say "running the sync benchmark"
"$work/bench" "${args[@]}"
say "result written to $out"
