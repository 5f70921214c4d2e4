#!/usr/bin/env bash
# Benchmarks (README, Benchmarks). Usage:
#
#   scripts/bench.sh sync --users N [--groups M] [--floor both|sequential|pipelined|auto] [--out FILE] [--cpuprofile FILE] [--memprofile FILE]
#   scripts/bench.sh mail --recipients N [--mailboxes M] [--per-minute P] [--workers W] [--out FILE]
#   scripts/bench.sh teams --recipients N [--rate R] [--workers W] [--uninstalled F] [--horizon D] [--out FILE]
#   scripts/bench.sh webhook --rate R [--seconds S] [--per-request N] [--subscriptions K] [--route devhost|inprocess] [--out FILE]
#   scripts/bench.sh realtime --users N --changes C [--rate R] [--debounce D] [--groups G] [--filter-repeats K] [--out FILE]
#
# sync: starts Azurite and the simulated Microsoft 365 tenant (handler/cmd/m365sim) as a separate
# process with N generated users, then runs handler/cmd/bench, which measures a full sync, its
# floor (the same Graph pages and the same number of entity writes with no sync logic) and a
# delta sync after 1 % of the users changed (--floor: how the floor is measured, see handler/cmd/bench;
# auto measures it once from 500 000 users). Progress goes to stderr; the last line on stdout is
# one JSON object of the figures, also written with the date and machine to
# bench-results/sync-N.json (or --out).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$root"

usage() {
  echo "usage: scripts/bench.sh sync --users N [--groups M] [--floor both|sequential|pipelined|auto] [--out FILE] [--cpuprofile FILE] [--memprofile FILE]" >&2
  echo "       scripts/bench.sh mail --recipients N [--mailboxes M] [--per-minute P] [--workers W] [--out FILE]" >&2
  echo "       scripts/bench.sh teams --recipients N [--rate R] [--workers W] [--uninstalled F] [--horizon D] [--out FILE]" >&2
  echo "       scripts/bench.sh webhook --rate R [--seconds S] [--per-request N] [--subscriptions K] [--route devhost|inprocess] [--out FILE]" >&2
  echo "       scripts/bench.sh realtime --users N --changes C [--rate R] [--debounce D] [--groups G] [--filter-repeats K] [--out FILE]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
name=$1
shift
case "$name" in
  sync) ;;
  mail) exec "$(dirname "$0")/bench-mail.sh" "$@" ;;
  teams) exec "$(dirname "$0")/bench-teams.sh" "$@" ;;
  webhook) exec "$(dirname "$0")/bench-webhook.sh" "$@" ;;
  realtime) exec "$(dirname "$0")/bench-realtime.sh" "$@" ;;
  -h | --help) usage ;;
  *) echo "unknown benchmark: $name" >&2; usage ;;
esac

users="" groups=50 out="" cpuprofile="" memprofile="" floor=auto
parse_flags users groups out floor cpuprofile memprofile -- "$@"
[[ "$users" =~ ^[1-9][0-9]*$ ]] || { echo "--users N is required (a positive integer)" >&2; usage; }
[[ "$groups" =~ ^[0-9]+$ ]] || { echo "--groups must be a non-negative integer" >&2; usage; }
out=${out:-bench-results/sync-$users.json}
# Azurite keeps every row in its heap: about 12 GB for a million users' stakeholders, index rows,
# change log and the floor's copy (each row is a JavaScript object of a kilobyte or more).
export AZURITE_HEAP_MB=${AZURITE_HEAP_MB:-$((users >= 300000 ? users / 80 : 4096))}

bench_setup

say "starting the simulated tenant: $users users, $groups groups (separate process)"
start_sim -roles User.Read.All,GroupMember.Read.All \
  -users "$users" -groups "$groups"

mkdir -p "$(dirname "$out")"
args=(-sim "$sim_url" -ca "$work/ca.pem" -tenant "$tenant" -app-id "$app" -app-secret "$secret"
  -users "$users" -groups "$groups" -floor "$floor" -tables "$AZURITE_TABLES_CONNECTION" -out "$out"
  -timeout "$((60 + users / 4000))m") # a million users take hours on a small machine
[ -n "$cpuprofile" ] && args+=(-cpuprofile "$cpuprofile")
[ -n "$memprofile" ] && args+=(-memprofile "$memprofile")
say "running the sync benchmark"
"$work/bench" "${args[@]}"
say "result written to $out"
