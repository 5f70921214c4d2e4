#!/usr/bin/env bash
# The mail benchmark (scripts/bench.sh mail; README "Benchmarks"). Usage:
#
#   scripts/bench.sh mail --recipients N [--mailboxes M] [--per-minute P] [--workers W] [--out FILE]
#
# Starts Azurite and the simulated Microsoft 365 tenant (a separate process) with Exchange's
# per-mailbox rate scaled up to P mails a minute (default: what sends N recipients through M
# mailboxes in about a minute, at most 10 000 a minute in all), then runs handler/cmd/bench mail: one batch of N personalised
# mails to a stakeholder group through the real outbound pipeline and Graph client, paced to
# the same limits. The last line on stdout is one JSON object of the figures, also written
# with the date and machine to bench-results/mail-N.json (or --out).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$root"

usage() {
  echo "usage: scripts/bench.sh mail --recipients N [--mailboxes M] [--per-minute P] [--workers W] [--out FILE]" >&2
  exit 2
}

recipients="" mailboxes=4 per_minute="" workers=32 out=""
parse_flags recipients mailboxes per-minute workers out -- "$@"
[[ "$recipients" =~ ^[1-9][0-9]*$ ]] || { echo "--recipients N is required (a positive integer)" >&2; usage; }
[[ "$mailboxes" =~ ^[1-9][0-9]*$ ]] || { echo "--mailboxes must be a positive integer" >&2; usage; }
[[ "$workers" =~ ^[1-9][0-9]*$ ]] || { echo "--workers must be a positive integer" >&2; usage; }
if [ -z "$per_minute" ]; then
  # About a minute of sending, but at most 10 000 mails a minute in all: past ~160 sends a
  # second this 2-core machine's Azurite, not the limit, would set the pace (README).
  per_minute=$(((recipients + mailboxes - 1) / mailboxes))
  cap=$((10000 / mailboxes))
  [ "$per_minute" -le "$cap" ] || per_minute=$cap
  [ "$per_minute" -ge 30 ] || per_minute=30
fi
[[ "$per_minute" =~ ^[1-9][0-9]*$ ]] || { echo "--per-minute must be a positive integer" >&2; usage; }
out=${out:-bench-results/mail-$recipients.json}

bench_setup

say "starting the simulated tenant: $mailboxes sender mailboxes at $per_minute mails a minute each (Exchange: 30)"
start_sim -roles User.Read.All,Mail.Send,Mail.ReadBasic.All \
  -users 0 -groups 0 -mail-per-minute "$per_minute" -mail-daily-recipients -1

mkdir -p "$(dirname "$out")"
say "running the mail benchmark"
"$work/bench" mail -sim "$sim_url" -ca "$work/ca.pem" -tenant "$tenant" -app-id "$app" -app-secret "$secret" \
  -recipients "$recipients" -mailboxes "$mailboxes" -per-minute "$per_minute" -workers "$workers" \
  -tables "$AZURITE_TABLES_CONNECTION" -out "$out"
say "result written to $out"
