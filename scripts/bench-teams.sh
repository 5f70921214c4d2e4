#!/usr/bin/env bash
# The Teams benchmark (scripts/bench.sh teams; README "Benchmarks"). Usage:
#
#   scripts/bench.sh teams --recipients N [--rate R] [--workers W] [--uninstalled F] [--horizon D] [--out FILE]
#
# Starts Azurite and the simulated Microsoft 365 tenant (a separate process) with N users, the
# Leap Change bot registered and Teams' per app per tenant limit of R Bot Connector requests a
# second (default 30, Microsoft's documented figure), then runs handler/cmd/bench teams: one
# batch of N personalised Teams notifications to the synced stakeholders, through the real
# outbound pipeline, Bot Connector client and Graph client, paced to the same limit, with W
# TeamsSender workers. A share F of the recipients (default 0.05) has not got the app and gets
# it installed through Graph; the rest had it installed beforehand. At 30 a second 10 000
# recipients take about six minutes. The last line on stdout is one JSON object of the figures,
# also written with the date and machine to bench-results/teams-N.json (or --out). --horizon
# (a Go duration) overrides how far ahead the pipeline books slots (default 10 min).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$root"

usage() {
  echo "usage: scripts/bench.sh teams --recipients N [--rate R] [--workers W] [--uninstalled F] [--horizon D] [--out FILE]" >&2
  exit 2
}

recipients="" rate=30 workers=32 uninstalled=0.05 horizon=0 out=""
parse_flags recipients rate workers uninstalled horizon out -- "$@"
[[ "$recipients" =~ ^[1-9][0-9]*$ ]] || { echo "--recipients N is required (a positive integer)" >&2; usage; }
[[ "$rate" =~ ^[1-9][0-9]*$ ]] || { echo "--rate must be a positive integer" >&2; usage; }
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "--workers must be a positive integer" >&2; usage; }
[[ "$uninstalled" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || { echo "--uninstalled must be a fraction between 0 and 1" >&2; usage; }
out=${out:-bench-results/teams-$recipients.json}

bench_setup
bot_app=6d7e8f90-1a2b-4c3d-8e4f-5a6b7c8d9e0f
bot_tenant=2f3e4d5c-6b7a-4980-9a1b-2c3d4e5f6a7b
bot_secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

say "starting the simulated tenant: $recipients users, the bot, $rate Bot Connector requests a second per tenant (Teams: 30)"
start_sim -roles User.Read.All,TeamsAppInstallation.ReadWriteSelfForUser.All,Team.ReadBasic.All,Channel.ReadBasic.All \
  -users "$recipients" -groups 0 \
  -bot-app-id "$bot_app" -bot-tenant "$bot_tenant" -bot-secret "$bot_secret" -bot-tenant-rate "$rate"

mkdir -p "$(dirname "$out")"
say "running the Teams benchmark"
"$work/bench" teams -sim "$sim_url" -ca "$work/ca.pem" -tenant "$tenant" -app-id "$app" -app-secret "$secret" \
  -bot-app-id "$bot_app" -bot-tenant "$bot_tenant" -bot-secret "$bot_secret" \
  -recipients "$recipients" -rate "$rate" -workers "$workers" -uninstalled "$uninstalled" -horizon "$horizon" \
  -tables "$AZURITE_TABLES_CONNECTION" -out "$out"
say "result written to $out"
