#!/usr/bin/env bash
# The webhook benchmark (scripts/bench.sh webhook; README "Benchmarks"). Usage:
#
#   scripts/bench.sh webhook --rate R [--seconds S] [--per-request N] [--subscriptions K] [--route devhost|inprocess] [--out FILE]
#
# Starts Azurite, builds the handler and runs handler/cmd/bench webhook: the real handler behind
# the local Functions host stand-in (devhost), as Graph reaches GraphNotifications, with K
# channel subscriptions (default 20) in its tables. Plain change notifications for those
# subscriptions (N per request, default 1) are POSTed open loop at R requests a second for S
# seconds (default 10) over loopback. The host's ChannelEventWorker is disabled for the run so
# that every message the webhook accepted is still on channel-events at the end, where the
# bench counts them. --route inprocess measures the webhook's handler alone instead: on a
# loopback HTTP server inside the bench process, publishing to an in-memory queue (no host
# proxy, no handler process, no queue stand-in over HTTP). The last line on stdout is one JSON object of the figures
# ({"bench":"webhook","rate":R,"accepted":…,"lost":0,"p50_ms":…,"p99_ms":…, …}), also written
# with the date and machine to bench-results/webhook-R.json (or --out).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$root"

usage() {
  echo "usage: scripts/bench.sh webhook --rate R [--seconds S] [--per-request N] [--subscriptions K] [--route devhost|inprocess] [--out FILE]" >&2
  exit 2
}

rate="" seconds=10 per_request=1 subs=20 route=devhost out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) [ $# -ge 2 ] || usage; rate=$2; shift 2 ;;
    --seconds) [ $# -ge 2 ] || usage; seconds=$2; shift 2 ;;
    --per-request) [ $# -ge 2 ] || usage; per_request=$2; shift 2 ;;
    --subscriptions) [ $# -ge 2 ] || usage; subs=$2; shift 2 ;;
    --route) [ $# -ge 2 ] || usage; route=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --rate=*) rate=${1#*=}; shift ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --per-request=*) per_request=${1#*=}; shift ;;
    --subscriptions=*) subs=${1#*=}; shift ;;
    --route=*) route=${1#*=}; shift ;;
    --out=*) out=${1#*=}; shift ;;
    *) echo "unknown flag: $1" >&2; usage ;;
  esac
done
[[ "$rate" =~ ^[1-9][0-9]*$ ]] || { echo "--rate R is required (a positive integer)" >&2; usage; }
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "--seconds must be a positive integer" >&2; usage; }
[[ "$per_request" =~ ^[1-9][0-9]*$ ]] || { echo "--per-request must be a positive integer" >&2; usage; }
[[ "$subs" =~ ^[1-9][0-9]*$ ]] || { echo "--subscriptions must be a positive integer" >&2; usage; }
[[ "$route" =~ ^(devhost|inprocess)$ ]] || { echo "--route is devhost or inprocess" >&2; usage; }
suffix=""
[ "$route" = inprocess ] && suffix=-inprocess
out=${out:-bench-results/webhook-$rate$suffix.json}

work=$(mktemp -d)
sim_pid="" azurite_pid=""
trap bench_cleanup EXIT
ensure_npm_tools
say "starting Azurite (Table Storage)"
start_azurite
say "building the handler and the bench"
go build -o "$work/handler" ./handler
go build -o "$work/bench" ./handler/cmd/bench

mkdir -p "$(dirname "$out")"
say "running the webhook benchmark ($route): $rate requests/s for ${seconds}s"
"$work/bench" webhook -root "$root" -handler "$work/handler" -rate "$rate" -seconds "$seconds" \
  -per-request "$per_request" -subscriptions "$subs" -route "$route" -tables "$AZURITE_TABLES_CONNECTION" -out "$out"
say "result written to $out"
