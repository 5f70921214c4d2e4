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

rate="" seconds=10 per_request=1 subscriptions=20 route=devhost out=""
parse_flags rate seconds per-request subscriptions route out -- "$@"
[[ "$rate" =~ ^[1-9][0-9]*$ ]] || { echo "--rate R is required (a positive integer)" >&2; usage; }
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "--seconds must be a positive integer" >&2; usage; }
[[ "$per_request" =~ ^[1-9][0-9]*$ ]] || { echo "--per-request must be a positive integer" >&2; usage; }
[[ "$subscriptions" =~ ^[1-9][0-9]*$ ]] || { echo "--subscriptions must be a positive integer" >&2; usage; }
[[ "$route" =~ ^(devhost|inprocess)$ ]] || { echo "--route is devhost or inprocess" >&2; usage; }
suffix=""
[ "$route" = inprocess ] && suffix=-inprocess
out=${out:-bench-results/webhook-$rate$suffix.json}

bench_setup # builds the simulated tenant too, which this benchmark does not start
say "building the handler"
go build -o "$work/handler" ./handler

mkdir -p "$(dirname "$out")"
say "running the webhook benchmark ($route): $rate requests/s for ${seconds}s"
"$work/bench" webhook -root "$root" -handler "$work/handler" -rate "$rate" -seconds "$seconds" \
  -per-request "$per_request" -subscriptions "$subscriptions" -route "$route" -tables "$AZURITE_TABLES_CONNECTION" -out "$out"
say "result written to $out"
