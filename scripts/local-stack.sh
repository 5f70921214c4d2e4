#!/usr/bin/env bash
# Starts the local services a `func start` session (Azure Functions Core Tools) of the packaged app
# needs, and writes that app's local.settings.json:
#
#   - Azurite with its blob, queue and table services (in memory, free loopback ports): the host's
#     AzureWebJobsStorage (timer locks and schedule state, keys) and our TablesConnection;
#   - the simulated Microsoft 365 tenant (handler/cmd/m365sim) as a process, with its CA written
#     to a file and joined to the system CAs in a bundle that SSL_CERT_FILE names;
#   - <out>/local.settings.json: every setting the handler reads (handler/config.go), pointing at
#     the two, with fresh secrets.
#
# It stays in the foreground until Ctrl-C (SIGINT) or SIGTERM and then stops what it started.
# Service Bus is not started: no local emulator runs without Docker. See --help and the README
# section "Running under Azure Functions Core Tools (`func start`)".
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/local-stack.sh [--out DIR] [--users N] [--groups N] [--port PORT]
                              [--service-bus CONNECTION-STRING | --service-bus-namespace FQDN]
                              [--consented] [--state DIR]

Starts Azurite (blob + queue + table) and the simulated Microsoft 365 tenant, writes
DIR/local.settings.json for `func start` in the packaged app, and runs until Ctrl-C.
Run scripts/package.sh first: it stages the app into dist/app and empties that folder each time.

  --out DIR       the staged app folder (default: <repo>/dist/app, where scripts/package.sh stages);
                  it must hold host.json and handler
  --users N       users in the simulated tenant (default 1000)
  --groups N      groups in the simulated tenant (default 20)
  --port PORT     the port `func start` serves on (default 7071): PUBLIC_BASE_URL, the consent
                  redirect URI registered in the simulated tenant, Host.LocalHttpPort
  --service-bus CONNECTION-STRING
                  ServiceBusConnection: a real namespace's connection string, e.g.
                  'Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…'
                  (default: the Service Bus emulator's, which needs Docker; not started here)
  --service-bus-namespace FQDN
                  use a namespace with your Azure identity instead (ServiceBusConnection__fullyQualifiedNamespace,
                  e.g. leap-dev.servicebus.windows.net; DefaultAzureCredential, e.g. `az login`; needs
                  Azure Service Bus Data Sender and Data Receiver on its queues)
  --consented     the tenant starts with admin consent already given (default: not consented,
                  so the app's connection flow grants it as a real tenant's admin would)
  --state DIR     where the CA files, logs and the emulator config go (default: <repo>/dist/local-stack)
  -h, --help      this text

The last line on stdout is "READY <path of local.settings.json>" once everything answers.
EOF
}

die() { echo "local-stack.sh: $*" >&2; exit 1; }
bad_usage() { echo "local-stack.sh: $*" >&2; usage >&2; exit 2; }

# --- arguments (relative paths are taken from the caller's directory) --------------------------
out="" state="" users=1000 groups=20 port=7071 consented=false service_bus_namespace=""
service_bus="Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || bad_usage "--out needs a value"; out=$2; shift 2 ;;
    --users) [[ $# -ge 2 ]] || bad_usage "--users needs a value"; users=$2; shift 2 ;;
    --groups) [[ $# -ge 2 ]] || bad_usage "--groups needs a value"; groups=$2; shift 2 ;;
    --port) [[ $# -ge 2 ]] || bad_usage "--port needs a value"; port=$2; shift 2 ;;
    --service-bus) [[ $# -ge 2 ]] || bad_usage "--service-bus needs a value"; service_bus=$2; shift 2 ;;
    --service-bus-namespace) [[ $# -ge 2 ]] || bad_usage "--service-bus-namespace needs a value"; service_bus_namespace=$2; shift 2 ;;
    --state) [[ $# -ge 2 ]] || bad_usage "--state needs a value"; state=$2; shift 2 ;;
    --out=* | --users=* | --groups=* | --port=* | --service-bus=* | --service-bus-namespace=* | --state=*)
      set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --consented) consented=true; shift ;;
    -h | --help) usage; exit 0 ;;
    *) bad_usage "unknown argument: $1" ;;
  esac
done
[[ "$users" =~ ^[1-9][0-9]*$ ]] || bad_usage "--users must be a positive integer, got '$users'"
[[ "$groups" =~ ^[0-9]+$ ]] || bad_usage "--groups must be a non-negative integer, got '$groups'"
[[ "$port" =~ ^[1-9][0-9]*$ && "$port" -le 65535 ]] || bad_usage "--port must be a TCP port, got '$port'"
[[ "$service_bus" == *"Endpoint=sb://"* ]] ||
  bad_usage "--service-bus must be a Service Bus connection string (Endpoint=sb://…)"
if [[ -n "$service_bus_namespace" ]]; then
  [[ "$service_bus_namespace" =~ ^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$ ]] ||
    bad_usage "--service-bus-namespace must be a host name like leap-dev.servicebus.windows.net, got '$service_bus_namespace'"
  service_bus="" # the connection string would win over the namespace
fi

abspath() { # abspath PATH: PATH made absolute against the current directory (need not exist)
  case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac
}
[[ -z "$out" ]] || out=$(abspath "$out")
[[ -z "$state" ]] || state=$(abspath "$state")

# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
out=${out:-$root/dist/app}
state=${state:-$root/dist/local-stack}

[[ -f "$out/host.json" && -f "$out/handler" ]] ||
  die "no packaged app in $out (host.json and handler): run scripts/package.sh first (it empties its staging folder, so run it before this script)"
command -v go >/dev/null || die "go is required (Go 1.26)"

# Fixed ids, so that a restarted stack keeps the same tenant; secrets are new on every start.
tenant=3c1e5f0a-7b2d-4e6f-9a1b-2c3d4e5f6a7b
client_id=5a0d6c1e-2f3b-4c5d-8e6f-7a8b9c0d1e2f
bot_app_id=00000000-0000-4000-8000-00000000b07a
random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
client_secret=$(random_hex 24)
bot_secret=$(random_hex 24)
state_key=$(random_hex 32) # 64 characters; the handler wants at least 32 bytes
public_url="http://127.0.0.1:$port"
leap_app_url="http://localhost:3000/settings/integrations"
account_key="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==" # Azurite's public well-known key

mkdir -p "$state/bin"
sim_pid="" azurite_pid=""
# shellcheck disable=SC2317 # called from the traps below
stop_all() {
  local pid
  for pid in "$sim_pid" "$azurite_pid"; do
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; fi
  done
  for pid in "$sim_pid" "$azurite_pid"; do
    if [[ -n "$pid" ]]; then wait "$pid" 2>/dev/null || true; fi
  done
  sim_pid="" azurite_pid=""
}
trap stop_all EXIT
trap 'say "stopping"; stop_all; exit 0' INT TERM

# --- Azurite: blob, queue and table ------------------------------------------------------------
ensure_npm_tools
# Three distinct free ports at once (lib.sh's free_port gives one per node start).
blob_port="" queue_port="" table_port=""
read -r blob_port queue_port table_port < <(node -e '
const net = require("net");
const s = [0, 1, 2].map(() => net.createServer());
Promise.all(s.map((x) => new Promise((ok) => x.listen(0, "127.0.0.1", () => ok(x.address().port)))))
  .then((p) => { console.log(p.join(" ")); s.forEach((x) => x.close()); });
') || true
[[ -n "$table_port" ]] || die "could not find free ports"
say "starting Azurite: blob $blob_port, queue $queue_port, table $table_port (in memory)"
"$root/node_modules/.bin/azurite" \
  --blobHost 127.0.0.1 --blobPort "$blob_port" \
  --queueHost 127.0.0.1 --queuePort "$queue_port" \
  --tableHost 127.0.0.1 --tablePort "$table_port" \
  --inMemoryPersistence --skipApiVersionCheck --loose \
  --disableProductStyleUrl --disableTelemetry --silent >"$state/azurite.log" 2>&1 &
azurite_pid=$!
for p in "$blob_port" "$queue_port" "$table_port"; do
  wait_port "$p" 60 || die "Azurite did not start (log: $state/azurite.log)"
done

storage_account="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$account_key"
web_jobs_storage="$storage_account;BlobEndpoint=http://127.0.0.1:$blob_port/devstoreaccount1;QueueEndpoint=http://127.0.0.1:$queue_port/devstoreaccount1;TableEndpoint=http://127.0.0.1:$table_port/devstoreaccount1;"
tables_connection="$storage_account;TableEndpoint=http://127.0.0.1:$table_port/devstoreaccount1;"

# --- the simulated Microsoft 365 tenant ---------------------------------------------------------
say "building the simulated tenant (handler/cmd/m365sim)"
go build -o "$state/bin/m365sim" ./handler/cmd/m365sim
say "starting the simulated tenant: $users users, $groups groups"
sim_ca="$state/m365sim-ca.pem"
rm -f "$sim_ca" "$state/m365sim.out"
"$state/bin/m365sim" -addr 127.0.0.1:0 -tenant "$tenant" -domain fabrikam.example \
  -users "$users" -groups "$groups" -seed 1 \
  -app-id "$client_id" -app-secret "$client_secret" -roles User.Read.All,GroupMember.Read.All,Mail.Send \
  -redirect-uri "$public_url/api/consent/callback" -consented="$consented" \
  -group-membership-claims DirectoryRole -ca-out "$sim_ca" \
  >"$state/m365sim.out" 2>"$state/m365sim.log" &
sim_pid=$!
sim_url=""
for ((i = 0; i < 1200; i++)); do # up to 2 minutes: generating a large tenant takes a while
  line=$(grep -m1 '^READY ' "$state/m365sim.out" 2>/dev/null || true)
  if [[ -n "$line" ]]; then sim_url=${line#READY }; break; fi
  kill -0 "$sim_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$sim_url" ]] || { cat "$state/m365sim.log" >&2; die "the simulated tenant did not start"; }

# SSL_CERT_FILE replaces the system CA file for Go (and for OpenSSL-based clients such as the
# .NET host), so the bundle holds the system CAs too: a real Service Bus namespace still verifies.
ca_bundle="$state/ca-bundle.pem"
{
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    if [[ -f "$f" ]]; then cat "$f"; echo; break; fi
  done
  cat "$sim_ca"
} >"$ca_bundle.tmp"
mv "$ca_bundle.tmp" "$ca_bundle"

# --- Service Bus emulator configuration (for a machine with Docker) -----------------------------
cat >"$state/servicebus-emulator-config.json" <<'EOF'
{
  "UserConfig": {
    "Namespaces": [
      {
        "Name": "sbemulatorns",
        "Queues": [
          { "Name": "sync-jobs", "Properties": { "MaxDeliveryCount": 10, "LockDuration": "PT5M", "RequiresDuplicateDetection": true, "DuplicateDetectionHistoryTimeWindow": "PT5M", "DeadLetteringOnMessageExpiration": true, "DefaultMessageTimeToLive": "PT1H", "RequiresSession": false, "ForwardTo": "", "ForwardDeadLetteredMessagesTo": "" } },
          { "Name": "channel-events", "Properties": { "MaxDeliveryCount": 10, "LockDuration": "PT5M", "RequiresDuplicateDetection": true, "DuplicateDetectionHistoryTimeWindow": "PT5M", "DeadLetteringOnMessageExpiration": true, "DefaultMessageTimeToLive": "PT1H", "RequiresSession": false, "ForwardTo": "", "ForwardDeadLetteredMessagesTo": "" } },
          { "Name": "outbound-mail", "Properties": { "MaxDeliveryCount": 10, "LockDuration": "PT5M", "RequiresDuplicateDetection": true, "DuplicateDetectionHistoryTimeWindow": "PT5M", "DeadLetteringOnMessageExpiration": true, "DefaultMessageTimeToLive": "PT1H", "RequiresSession": false, "ForwardTo": "", "ForwardDeadLetteredMessagesTo": "" } },
          { "Name": "outbound-teams", "Properties": { "MaxDeliveryCount": 10, "LockDuration": "PT5M", "RequiresDuplicateDetection": true, "DuplicateDetectionHistoryTimeWindow": "PT5M", "DeadLetteringOnMessageExpiration": true, "DefaultMessageTimeToLive": "PT1H", "RequiresSession": false, "ForwardTo": "", "ForwardDeadLetteredMessagesTo": "" } }
        ],
        "Topics": []
      }
    ],
    "Logging": { "Type": "File" }
  }
}
EOF

# --- local.settings.json ------------------------------------------------------------------------
# Written by node (Azurite needs it anyway) so that every value is escaped as JSON.
settings="$out/local.settings.json"
LS_FILE="$settings.tmp" LS_PORT="$port" LS_LEAP_APP_URL="$leap_app_url" \
  LS_AzureWebJobsStorage="$web_jobs_storage" \
  LS_TablesConnection="$tables_connection" \
  LS_ServiceBusConnection="$service_bus" \
  LS_ServiceBusConnection__fullyQualifiedNamespace="$service_bus_namespace" \
  LS_M365_CLIENT_ID="$client_id" \
  LS_M365_CLIENT_SECRET="$client_secret" \
  LS_GRAPH_BASE_URL="$sim_url/v1.0" \
  LS_AZURE_AUTHORITY_HOST="$sim_url/" \
  LS_BOT_APP_ID="$bot_app_id" \
  LS_BOT_APP_SECRET="$bot_secret" \
  LS_BOT_TENANT_ID="$tenant" \
  LS_BOT_OPENID_METADATA_URL="$sim_url/botframework/v1/.well-known/openidconfiguration" \
  LS_BOT_SERVICE_URL="$sim_url/bot/emea/" \
  LS_BOT_TRUSTED_HOSTS="${sim_url#https://}" \
  LS_GRAPH_NOTIFY_KEYS_URL="$sim_url/common/discovery/v2.0/keys" \
  LS_PUBLIC_BASE_URL="$public_url" \
  LS_STATE_SIGNING_KEY="$state_key" \
  LS_SSL_CERT_FILE="$ca_bundle" \
  node -e '
const e = process.env;
const v = (k) => e["LS_" + k] ?? "";
const values = {
  FUNCTIONS_WORKER_RUNTIME: "custom",
  AzureWebJobsStorage: v("AzureWebJobsStorage"),
  TablesConnection: v("TablesConnection"),
  TablesConnection__tableServiceUri: "",
  TablesConnection__clientId: "",
  ServiceBusConnection: v("ServiceBusConnection"),
  ServiceBusConnection__fullyQualifiedNamespace: v("ServiceBusConnection__fullyQualifiedNamespace"),
  ServiceBusConnection__clientId: "",
  TABLE_PREFIX: "",
  M365_CLIENT_ID: v("M365_CLIENT_ID"),
  M365_CLIENT_SECRET: v("M365_CLIENT_SECRET"),
  GRAPH_BASE_URL: v("GRAPH_BASE_URL"),
  AZURE_AUTHORITY_HOST: v("AZURE_AUTHORITY_HOST"),
  BOT_APP_ID: v("BOT_APP_ID"),
  BOT_APP_SECRET: v("BOT_APP_SECRET"),
  BOT_TENANT_ID: v("BOT_TENANT_ID"),
  BOT_OPENID_METADATA_URL: v("BOT_OPENID_METADATA_URL"),
  TEAMS_APP_ID: "",
  BOT_SERVICE_URL: v("BOT_SERVICE_URL"),
  BOT_TRUSTED_HOSTS: v("BOT_TRUSTED_HOSTS"),
  TEAMS_TENANT_RATE: "",
  REALTIME_DEBOUNCE: "",
  NOTIFY_CERT_PEM: "",
  NOTIFY_CERT_ID: "leap-notify-1",
  NOTIFY_CERT_PREVIOUS_PEM: "",
  NOTIFY_CERT_PREVIOUS_ID: "",
  GRAPH_NOTIFY_KEYS_URL: v("GRAPH_NOTIFY_KEYS_URL"),
  PUBLIC_BASE_URL: v("PUBLIC_BASE_URL"),
  LEAP_APP_URL: e.LS_LEAP_APP_URL,
  STATE_SIGNING_KEY: v("STATE_SIGNING_KEY"),
  SSL_CERT_FILE: v("SSL_CERT_FILE"),
};
const host = { LocalHttpPort: Number(e.LS_PORT), CORS: new URL(e.LS_LEAP_APP_URL).origin };
require("fs").writeFileSync(e.LS_FILE,
  JSON.stringify({ IsEncrypted: false, Values: values, Host: host }, null, 2) + "\n", { mode: 0o600 });
'
chmod 0600 "$settings.tmp"
mv "$settings.tmp" "$settings"

# Core Tools (like devhost) keeps an environment variable over the Values entry of the same name.
shadowed=()
for k in AzureWebJobsStorage TablesConnection TablesConnection__tableServiceUri TablesConnection__clientId \
  ServiceBusConnection ServiceBusConnection__fullyQualifiedNamespace ServiceBusConnection__clientId TABLE_PREFIX \
  M365_CLIENT_ID M365_CLIENT_SECRET GRAPH_BASE_URL AZURE_AUTHORITY_HOST BOT_APP_ID BOT_APP_SECRET BOT_TENANT_ID \
  BOT_OPENID_METADATA_URL TEAMS_APP_ID BOT_SERVICE_URL BOT_TRUSTED_HOSTS TEAMS_TENANT_RATE REALTIME_DEBOUNCE \
  NOTIFY_CERT_PEM NOTIFY_CERT_ID NOTIFY_CERT_PREVIOUS_PEM NOTIFY_CERT_PREVIOUS_ID GRAPH_NOTIFY_KEYS_URL \
  PUBLIC_BASE_URL LEAP_APP_URL STATE_SIGNING_KEY SSL_CERT_FILE; do
  if [[ -n "${!k:-}" ]]; then shadowed+=("$k"); fi
done
func_cmd="func start"
if [[ ${#shadowed[@]} -gt 0 ]]; then
  func_cmd="env$(printf ' -u %s' "${shadowed[@]}") func start"
  echo "local-stack.sh: your environment sets ${shadowed[*]}; func start would keep those over local.settings.json (run it as below)" >&2
fi
if [[ -n "$service_bus_namespace" ]]; then
  sb_shown="namespace $service_bus_namespace with your Azure identity (not started here)"
elif [[ "$service_bus" == *"UseDevelopmentEmulator=true"* ]]; then
  sb_shown="the emulator's connection string, ${service_bus%%;*}: NOT started here (it needs Docker; its config for
                     our queues: $state/servicebus-emulator-config.json). Without it or a real namespace
                     (--service-bus, --service-bus-namespace) the queue-triggered functions and the
                     API calls that publish (POST …/m365/sync) fail; the rest works"
else
  sb_shown="${service_bus%%;*};… (key not shown; not started here)"
fi
cat <<EOF

Local stack for \`func start\` (stop with Ctrl-C):
  Azurite            blob http://127.0.0.1:$blob_port  queue http://127.0.0.1:$queue_port  table http://127.0.0.1:$table_port (in memory)
  simulated tenant   $sim_url  tenant $tenant (fabrikam.example), $users users, $groups groups, consented: $consented
                     admin API under $sim_url/_sim/; log $state/m365sim.log
  tenant CA          $sim_ca (curl --cacert); SSL_CERT_FILE=$ca_bundle (system CAs + tenant CA)
  Service Bus        $sb_shown
  settings           $settings

Next, in another terminal:
  cd $out && $func_cmd
  curl -s -H 'Content-Type: application/json' -X PUT $public_url/api/orgs/demo -d '{"displayName":"Demo","timeZone":"UTC"}'   # register the org
  curl -s -X POST $public_url/api/orgs/demo/m365/connect        # then follow consentUrl:
  curl -sS --cacert $sim_ca -L -o /dev/null -w '%{url_effective}\n' "<consentUrl>"   # ends at LEAP_APP_URL?…&ticket=…
  curl -s -H 'Content-Type: application/json' -X POST $public_url/api/orgs/demo/m365/connect/confirm -d '{"ticket":"<ticket>"}'   # as the web app would
  curl -s $public_url/api/orgs/demo/m365
EOF
echo "READY $settings"

# --- run until Ctrl-C, or until one of them dies ---------------------------------------------------
# (a background sleep and `wait` so that a signal is handled at once)
while kill -0 "$sim_pid" 2>/dev/null && kill -0 "$azurite_pid" 2>/dev/null; do
  sleep 1 &
  wait $! || true
done
if ! kill -0 "$sim_pid" 2>/dev/null; then
  echo "local-stack.sh: the simulated tenant exited; log: $state/m365sim.log" >&2
else
  echo "local-stack.sh: Azurite exited; log: $state/azurite.log" >&2
fi
exit 1
