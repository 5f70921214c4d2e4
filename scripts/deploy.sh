#!/usr/bin/env bash
# Deploy the Leap Change Microsoft 365 integration to Azure with the Azure CLI: infrastructure
# (infra/main.bicep), a check that the app's Key Vault references resolve, then the code zip built by
# scripts/package.sh. `azd up` (azure.yaml) does the same with the Azure Developer CLI.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh -g RESOURCE_GROUP [options]

Deploys infra/main.bicep into the resource group with `az deployment group create`, checks that the
app's Key Vault references resolve, then deploys the app zip with `az functionapp deploy --type zip`
(Flex Consumption one-deploy). With the Azure Developer CLI, `azd up` does the same (see README).

Needs the Azure CLI (`az`, with its built-in Bicep) logged in (`az login`) as a principal that may
create resources and role assignments in the group (Owner, or Contributor + Role Based Access Control
Administrator), and python3. It cannot run in the development sandbox: there is no az CLI and no
network there.

Options:
  -g, --resource-group RG   target resource group (required)
  -l, --location LOC        create the resource group in LOC if it does not exist
  -s, --subscription SUB    subscription id or name (default: the CLI's current one)
  -p, --parameters FILE     parameters file; repeat to layer files (later ones win). Default:
                            infra/main.parameters.json, the file azd uses too
      --zip FILE            deploy this zip instead of building one with scripts/package.sh
      --app NAME            Function App name (with --skip-infra or --check-settings; otherwise taken
                            from the deployment outputs)
      --what-if             preview the infrastructure changes (az deployment group what-if); deploy nothing
      --skip-infra          deploy only the code (needs --app)
      --skip-code           deploy only the infrastructure (and check the Key Vault references)
      --check-settings      only check the Key Vault references of an existing app (needs --app)
  -h, --help                this text

Parameters: a string value "${NAME}" in a parameters file is replaced with the environment variable NAME,
as azd does; a parameter whose variables are all unset or empty is left out, so the template's default
applies. infra/main.parameters.json maps, among others:
  M365_CLIENT_ID  BOT_APP_ID  BOT_TENANT_ID  LEAP_APP_URL  PUBLIC_BASE_URL  LEAP_TABLE_PREFIX
  AZURE_ENV_NAME  AZURE_LOCATION  LEAP_NAME_PREFIX
M365_CLIENT_ID, BOT_APP_ID and LEAP_APP_URL are required (main.bicep has no default for them).

Secrets are read from the environment and written only to a private (mode 0600) temporary parameters
file, never to the command line; unset ones keep the value already in Key Vault:
  M365_CLIENT_SECRET   -> Key Vault secret m365-client-secret  (app setting M365_CLIENT_SECRET)
  BOT_APP_SECRET       -> Key Vault secret bot-app-secret      (app setting BOT_APP_SECRET)
  STATE_SIGNING_KEY    -> Key Vault secret state-signing-key   (app setting STATE_SIGNING_KEY)
  NOTIFY_CERT_PEM      -> Key Vault secret notify-cert         (app setting NOTIFY_CERT_PEM: the rich-notification
                          certificate and key as PEM; infra/README.md "Notification certificate")
On a first deployment all four must be set.

Waiting for Azure (new role assignments take minutes to propagate):
  - After the infrastructure, the app's Key Vault references are refreshed and their status read
    (az rest .../config/configreferences/appsettings) until all resolve; a missing secret stops the
    deployment before any code is uploaded.
  - A code upload refused with 403 (the app identity's role on the deployment container is not yet in
    effect) is retried with back-off.
  Both wait at most DEPLOY_RETRY_DELAYS, the seconds between attempts
  (default "15 30 45 60 90 120 120 120": 9 attempts over about 10 minutes).
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

die() { echo "deploy.sh: $*" >&2; exit 1; }
say() { echo "deploy.sh: $*"; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || { echo "deploy.sh: $1 needs a value" >&2; usage >&2; exit 2; }; }

rg=""
location=""
subscription=""
params=()
zip_file=""
app=""
what_if=0
skip_infra=0
skip_code=0
check_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -g|--resource-group) need_value "$@"; rg=$2; shift 2 ;;
    -l|--location) need_value "$@"; location=$2; shift 2 ;;
    -s|--subscription) need_value "$@"; subscription=$2; shift 2 ;;
    -p|--parameters) need_value "$@"; params+=("$2"); shift 2 ;;
    --zip) need_value "$@"; zip_file=$2; shift 2 ;;
    --app) need_value "$@"; app=$2; shift 2 ;;
    --what-if) what_if=1; shift ;;
    --skip-infra) skip_infra=1; shift ;;
    --skip-code) skip_code=1; shift ;;
    --check-settings) check_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ ${#params[@]} -gt 0 ]] || params=("$repo_root/infra/main.parameters.json")

# --- parameter checks (before touching Azure) ---------------------------------------------------
[[ -n "$rg" ]] || { echo "deploy.sh: --resource-group is required" >&2; usage >&2; exit 2; }
if [[ $check_only -eq 1 ]]; then
  [[ $what_if -eq 0 && $skip_infra -eq 0 && $skip_code -eq 0 && -z "$zip_file" ]] ||
    die "--check-settings deploys nothing; it cannot be combined with --what-if, --skip-infra, --skip-code or --zip"
  [[ -n "$app" ]] || die "--check-settings needs --app NAME"
  skip_infra=1
  skip_code=1
fi
[[ $check_only -eq 1 || $skip_infra -eq 0 || $skip_code -eq 0 ]] || die "--skip-infra and --skip-code together deploy nothing"
[[ $what_if -eq 0 || $skip_infra -eq 0 ]] || die "--what-if previews the infrastructure; it cannot be combined with --skip-infra"
[[ $skip_infra -eq 0 || -n "$app" ]] || die "--skip-infra needs --app NAME"
[[ -z "$app" || $skip_infra -eq 1 ]] || die "--app is only used with --skip-infra or --check-settings (otherwise the name comes from the deployment outputs)"
template="$repo_root/infra/main.bicep"
[[ -f "$template" ]] || die "missing $template"
if [[ $skip_infra -eq 0 ]]; then
  for p in "${params[@]}"; do
    [[ -f "$p" ]] || die "parameters file $p not found"
  done
fi
if [[ -n "$zip_file" ]]; then
  [[ -f "$zip_file" ]] || die "zip $zip_file not found"
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to resolve the parameters files and read Azure's answers"

# Seconds to wait between attempts while Azure propagates new role assignments.
read -r -a retry_delays <<<"${DEPLOY_RETRY_DELAYS:-15 30 45 60 90 120 120 120}"
for d in "${retry_delays[@]}"; do
  [[ "$d" =~ ^[0-9]+$ ]] || die "DEPLOY_RETRY_DELAYS must be whole seconds separated by spaces (got '$d')"
done
max_attempts=$((${#retry_delays[@]} + 1))

tmp=$(mktemp -d)
chmod 700 "$tmp"
trap 'rm -rf "$tmp"' EXIT

# Resolve ${NAME} placeholders from the environment (like azd), check the required parameters, and write
# the resolved files into the private temporary directory. Prints the file names, one per line.
resolved=()
if [[ $skip_infra -eq 0 ]]; then
  mapfile -t resolved < <(umask 077 && python3 - "$template" "$tmp" "${params[@]}" <<'PY'
import json, os, re, sys

template, outdir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
placeholder = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# Parameters main.bicep declares without a default value (`param name type` and nothing after it).
required = set()
for line in open(template, encoding="utf-8"):
    m = re.match(r"^param\s+([A-Za-z_][A-Za-z0-9_]*)\s+[A-Za-z\[\]]+\s*(//.*)?$", line.rstrip("\n"))
    if m:
        required.add(m.group(1))

given = set()
written = []
for i, path in enumerate(files):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    out = {}
    for name, p in (doc.get("parameters") or {}).items():
        value = p.get("value") if isinstance(p, dict) else None
        if isinstance(value, str) and placeholder.search(value):
            unset = []
            def sub(m):
                v = os.environ.get(m.group(1), "")
                if v == "":
                    unset.append(m.group(1))
                return v
            value = placeholder.sub(sub, value)
            if value == "" and unset:
                print(f"deploy.sh: {', '.join(unset)} not set: parameter {name} left to the template default",
                      file=sys.stderr)
                continue
            p = dict(p, value=value)
        out[name] = p
        given.add(name)
    dst = os.path.join(outdir, f"parameters-{i}.json")
    with open(dst, "w", encoding="utf-8") as f:
        json.dump({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
            "contentVersion": "1.0.0.0",
            "parameters": out,
        }, f)
    written.append(dst)

missing = sorted(required - given)
if missing:
    print("deploy.sh: no value for required parameter(s): " + ", ".join(missing) +
          " (set the environment variables infra/main.parameters.json maps to them, e.g. M365_CLIENT_ID, "
          "BOT_APP_ID, LEAP_APP_URL, or pass a parameters file with -p)", file=sys.stderr)
    sys.exit(1)
print("\n".join(written))
PY
  )
  [[ ${#resolved[@]} -eq ${#params[@]} ]] || die "the parameters could not be resolved (see above)"
fi

command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed; see https://learn.microsoft.com/cli/azure/install-azure-cli"

az_sub=()
[[ -z "$subscription" ]] || az_sub=(--subscription "$subscription")
az account show "${az_sub[@]}" --output none 2>/dev/null || die "not logged in to Azure (run: az login)"

# check_key_vault_references APP_RESOURCE_ID: asks App Service to resolve the app's Key Vault references
# again and reads their status, with back-off while they are only waiting for RBAC to propagate. Stops at
# once when a secret or the vault is missing. Documented endpoints: POST .../refresh
# (app-service-key-vault-references, "Understand rotation") and GET .../config/configreferences/appsettings
# (REST API WebApps_GetAppSettingsKeyVaultReferences).
check_key_vault_references() {
  local id=$1 attempt=1 out verdict delay
  local api="api-version=2022-03-01"
  say "checking that the app's Key Vault references resolve (M365_CLIENT_SECRET, BOT_APP_SECRET, STATE_SIGNING_KEY, NOTIFY_CERT_PEM)"
  while :; do
    az rest --method post --url "$id/config/configreferences/appsettings/refresh?$api" --output none 2>"$tmp/refresh.err" ||
      say "refreshing the Key Vault references failed ($(tr '\n' ' ' <"$tmp/refresh.err")); reading their status anyway"
    out=$(az rest --method get --url "$id/config/configreferences/appsettings?$api" --output json) ||
      die "could not read the Key Vault reference status of $id"
    verdict=0
    printf '%s' "$out" | python3 -c '
import json, sys
expected = {"M365_CLIENT_SECRET", "BOT_APP_SECRET", "STATE_SIGNING_KEY", "NOTIFY_CERT_PEM"}
# Statuses that only need time (RBAC propagation, first fetch) as opposed to ones that need a fix.
waiting = {"Initialized", "AccessToKeyVaultDenied", "FetchTimedOut", "OtherReasons", ""}
refs = {}
for item in json.load(sys.stdin).get("value") or []:
    props = item.get("properties") or {}
    refs[item.get("name", "").rsplit("/", 1)[-1]] = (props.get("status") or "", props.get("details") or "")
bad = 0
for name in sorted(expected | set(refs)):
    status, details = refs.get(name, ("not a Key Vault reference", "the setting is missing or not a reference"))
    if status == "Resolved":
        print(f"  {name}: Resolved")
        continue
    print(f"  {name}: {status}" + (f" ({details})" if details else ""))
    bad = max(bad, 1 if status in waiting else 2)
sys.exit(bad)
' || verdict=$?
    case $verdict in
      0) say "all Key Vault references resolve"; return 0 ;;
      1) ;;
      *) die "a Key Vault reference cannot resolve (see above). SecretNotFound: set the secret's environment variable (M365_CLIENT_SECRET, BOT_APP_SECRET, STATE_SIGNING_KEY or NOTIFY_CERT_PEM) and deploy again. No code was uploaded." ;;
    esac
    if ((attempt >= max_attempts)); then
      die "the Key Vault references still do not resolve after $max_attempts attempts. AccessToKeyVaultDenied: the identity's Key Vault Secrets User role is not in effect yet; run scripts/deploy.sh -g $rg --check-settings --app ${app:-<app>} again in a few minutes, then deploy the code with --skip-infra."
    fi
    delay=${retry_delays[attempt - 1]}
    attempt=$((attempt + 1))
    say "Key Vault references not resolved yet (new role assignments take minutes to propagate); next check in ${delay}s (attempt $attempt/$max_attempts)"
    sleep "$delay"
  done
}

# deploy_code: az functionapp deploy, retried with back-off while the upload is refused with 403 (the app
# identity's Storage Blob Data Owner role on the deployment container not in effect yet). Other failures
# are not retried.
deploy_code() {
  local attempt=1 delay
  while :; do
    say "deploying $zip_file to $app (attempt $attempt/$max_attempts)"
    if az functionapp deploy "${az_sub[@]}" --resource-group "$rg" --name "$app" \
      --src-path "$zip_file" --type zip --output none 2>"$tmp/deploy.err"; then
      return 0
    fi
    cat "$tmp/deploy.err" >&2
    if ! grep -qiE '\b403\b|forbidden|AuthorizationPermissionMismatch|AuthorizationFailure|does not have authorization' "$tmp/deploy.err"; then
      die "code deployment failed (not a permission error, so not retried)"
    fi
    if ((attempt >= max_attempts)); then
      die "code deployment still refused (403) after $max_attempts attempts: the app identity's role on the deployment container is not in effect. Check the role assignments (infra/README.md), then run: scripts/deploy.sh -g $rg --skip-infra --app $app"
    fi
    delay=${retry_delays[attempt - 1]}
    attempt=$((attempt + 1))
    say "upload refused with 403: the app identity's new role assignment on the deployment container is probably still propagating; retrying in ${delay}s (attempt $attempt/$max_attempts)"
    sleep "$delay"
  done
}

# --- infrastructure -----------------------------------------------------------------------------
app_id=""
if [[ $skip_infra -eq 0 ]]; then
  if ! az group show "${az_sub[@]}" --name "$rg" --output none 2>/dev/null; then
    [[ -n "$location" ]] || die "resource group $rg does not exist; pass --location to create it"
    say "creating resource group $rg in $location"
    az group create "${az_sub[@]}" --name "$rg" --location "$location" --output none
  fi

  # Secrets from the environment into the private temporary directory (not visible in the process list).
  secrets_file="$tmp/secrets.parameters.json"
  (umask 077 && python3 - >"$secrets_file" <<'PY'
import json, os
params = {}
for env, name in (("M365_CLIENT_SECRET", "m365ClientSecret"),
                  ("BOT_APP_SECRET", "botAppSecret"),
                  ("STATE_SIGNING_KEY", "stateSigningKey"),
                  ("NOTIFY_CERT_PEM", "notifyCertPem")):
    if os.environ.get(env):
        params[name] = {"value": os.environ[env]}
print(json.dumps({
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
    "contentVersion": "1.0.0.0",
    "parameters": params,
}))
PY
  )
  for env in M365_CLIENT_SECRET BOT_APP_SECRET STATE_SIGNING_KEY NOTIFY_CERT_PEM; do
    [[ -n "${!env:-}" ]] || echo "deploy.sh: $env not set: keeping the Key Vault secret as it is (must exist already)" >&2
  done

  deployment="leapm365-$(date -u +%Y%m%d%H%M%S)"
  common=("${az_sub[@]}" --resource-group "$rg" --name "$deployment" --template-file "$template")
  for f in "${resolved[@]}"; do
    common+=(--parameters "@$f")
  done
  common+=(--parameters "@$secrets_file")

  if [[ $what_if -eq 1 ]]; then
    say "what-if for $template in $rg"
    az deployment group what-if "${common[@]}"
    exit 0
  fi

  say "deploying $template to $rg as $deployment"
  az deployment group create "${common[@]}" --output none
  outputs="$tmp/outputs.json"
  az deployment group show "${az_sub[@]}" --resource-group "$rg" --name "$deployment" \
    --query properties.outputs --output json >"$outputs"
  # The outputs as shell variables out_<name> (values quoted by shlex, so eval is safe).
  out_vars=$(python3 - "$outputs" <<'PY'
import json, re, shlex, sys
for name, o in json.load(open(sys.argv[1])).items():
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and isinstance(o, dict):
        print(f"out_{name}={shlex.quote(str(o.get('value', '')))}")
PY
  ) || die "could not read the deployment outputs"
  eval "$out_vars"
  app=${out_functionAppName:?deployment output functionAppName missing}
  app_id=${out_AZURE_FUNCTION_APP_ID:-}
  say "function app $app"
  for key in publicBaseUrl functionsBaseUrl consentRedirectUri graphNotificationUrl graphLifecycleUrl botMessagingEndpoint; do
    var="out_$key"
    printf '  %-22s %s\n' "$key" "${!var:-}"
  done
  if [[ "${out_publicBaseUrl:-}" != "https://${out_defaultHostName:-}" && "${out_publicBaseUrl:-}" == *.azurewebsites.net ]]; then
    echo "deploy.sh: warning: the app's default host name is ${out_defaultHostName:-?}, not the assumed ${out_publicBaseUrl:-?}; set PUBLIC_BASE_URL=https://${out_defaultHostName:-?} and deploy again" >&2
  fi
fi

# --- Key Vault references -------------------------------------------------------------------------
if [[ -z "$app_id" ]]; then
  app_id=$(az functionapp show "${az_sub[@]}" --resource-group "$rg" --name "$app" --query id --output tsv) ||
    die "function app $app not found in $rg"
fi
check_key_vault_references "$app_id"
[[ $check_only -eq 0 ]] || exit 0

# --- code ---------------------------------------------------------------------------------------
if [[ $skip_code -eq 0 ]]; then
  if [[ -z "$zip_file" ]]; then
    zip_file="$repo_root/dist/app.zip"
    "$script_dir/package.sh" --zip "$zip_file"
  fi
  deploy_code
  say "done. The web app's function key for Api:"
  echo "  az functionapp function keys list -g $rg -n $app --function-name Api"
fi
