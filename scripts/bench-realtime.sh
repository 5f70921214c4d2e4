#!/usr/bin/env bash
# The real-time sync benchmark (scripts/bench.sh realtime; README "Benchmarks"). Usage:
#
#   scripts/bench.sh realtime --users N --changes C [--rate R] [--debounce D] [--groups G] [--filter-repeats K] [--out FILE]
#
# Starts Azurite and the simulated Microsoft 365 tenant (a separate process) with N generated
# users in G groups (default 12, nested two levels deep, so that two groups cover about half the
# users), builds the handler and runs handler/cmd/bench realtime: the real handler behind the
# local Functions host stand-in, two orgs fully synced (one unfiltered, one with a group filter),
# the filtered-delta measurement, then real-time sync on and C user changes at R a second
# (default 5) through the simulated tenant, each timed until its stakeholder shows it. D is the
# handler's REALTIME_DEBOUNCE (default: its own, 15s). K pairs of delta runs (default 3) measure
# the filtered delta; --filter-repeats 0 leaves the filtered org and its measurement out
# (filtered_delta_ratio null): its full sync is the slow part of the set-up. The last line on
# stdout is one JSON object of the figures ({"bench":"realtime","users":N,"changes":C,"p50_s":…,"p95_s":…,
# "graph_requests_per_change":…,"filtered_delta_ratio":…, …}), also written with the date and
# machine to bench-results/realtime-N.json (or --out).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$root"

usage() {
  echo "usage: scripts/bench.sh realtime --users N --changes C [--rate R] [--debounce D] [--groups G] [--filter-repeats K] [--out FILE]" >&2
  exit 2
}

users="" changes="" rate=5 debounce="" groups=12 filter_repeats=3 out=""
parse_flags users changes rate debounce groups filter-repeats out -- "$@"
[[ "$users" =~ ^[1-9][0-9]*$ ]] || { echo "--users N is required (a positive integer)" >&2; usage; }
[[ "$changes" =~ ^[1-9][0-9]*$ ]] || { echo "--changes C is required (a positive integer)" >&2; usage; }
[[ "$rate" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "--rate must be a positive number of changes a second" >&2; usage; }
[[ "$groups" =~ ^[1-9][0-9]*$ ]] || { echo "--groups must be a positive integer" >&2; usage; }
[[ "$filter_repeats" =~ ^[0-9]+$ ]] || { echo "--filter-repeats must be a non-negative integer" >&2; usage; }
[ -z "$debounce" ] || [[ "$debounce" =~ ^[0-9]+(ms|s|m)$ ]] || { echo "--debounce is a duration such as 15s" >&2; usage; }
out=${out:-bench-results/realtime-$users.json}

bench_setup
say "building the handler"
go build -o "$work/handler" ./handler

say "starting the simulated tenant: $users users, $groups groups (separate process)"
start_sim -roles User.Read.All,GroupMember.Read.All -users "$users" -groups "$groups" -depth 2

mkdir -p "$(dirname "$out")"
args=(-sim "$sim_url" -ca "$work/ca.pem" -tenant "$tenant" -app-id "$app" -app-secret "$secret"
  -root "$root" -handler "$work/handler" -users "$users" -groups "$groups" -changes "$changes" -rate "$rate" -filter-repeats "$filter_repeats"
  -tables "$AZURITE_TABLES_CONNECTION" -out "$out")
[ -n "$debounce" ] && args+=(-debounce "$debounce")
[ -n "${BENCH_VERBOSE:-}" ] && args+=(-v) # the handler's info log
say "running the real-time sync benchmark"
"$work/bench" realtime "${args[@]}"
say "result written to $out"
