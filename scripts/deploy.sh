#!/usr/bin/env bash
# Deploy the Leap Change Microsoft 365 integration to Azure: infrastructure (infra/main.bicep) and then
# the code zip built by scripts/package.sh, with the Azure CLI.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh -g RESOURCE_GROUP [options]

Deploys infra/main.bicep into the resource group with `az deployment group create`, then the app zip
with `az functionapp deploy --type zip` (Flex Consumption one-deploy).

Needs the Azure CLI (`az`, with its built-in Bicep) logged in (`az login`) as a principal that may
create resources and role assignments in the group (Owner, or Contributor + Role Based Access Control
Administrator). It cannot run in the development sandbox: there is no az CLI and no network there.

Options:
  -g, --resource-group RG   target resource group (required)
  -l, --location LOC        create the resource group in LOC if it does not exist
  -s, --subscription SUB    subscription id or name (default: the CLI's current one)
  -p, --parameters FILE     parameters file (default: infra/main.parameters.json; start from
                            infra/main.parameters.example.json)
      --zip FILE            deploy this zip instead of building one with scripts/package.sh
      --app NAME            Function App name (only with --skip-infra; otherwise taken from the outputs)
      --what-if             preview the infrastructure changes (az deployment group what-if); deploy nothing
      --skip-infra          deploy only the code (needs --app)
      --skip-code           deploy only the infrastructure
  -h, --help                this text

Secrets are read from the environment and passed through a temporary mode-0600 parameters file, never
on the command line; unset ones keep the value already in Key Vault:
  M365_CLIENT_SECRET   -> Key Vault secret m365-client-secret  (app setting M365_CLIENT_SECRET)
  BOT_APP_SECRET       -> Key Vault secret bot-app-secret      (app setting BOT_APP_SECRET)
  STATE_SIGNING_KEY    -> Key Vault secret state-signing-key   (app setting STATE_SIGNING_KEY)
On a first deployment all three must be set.
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

die() { echo "deploy.sh: $*" >&2; exit 1; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || { echo "deploy.sh: $1 needs a value" >&2; usage >&2; exit 2; }; }

rg=""
location=""
subscription=""
params="$repo_root/infra/main.parameters.json"
zip_file=""
app=""
what_if=0
skip_infra=0
skip_code=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -g|--resource-group) need_value "$@"; rg=$2; shift 2 ;;
    -l|--location) need_value "$@"; location=$2; shift 2 ;;
    -s|--subscription) need_value "$@"; subscription=$2; shift 2 ;;
    -p|--parameters) need_value "$@"; params=$2; shift 2 ;;
    --zip) need_value "$@"; zip_file=$2; shift 2 ;;
    --app) need_value "$@"; app=$2; shift 2 ;;
    --what-if) what_if=1; shift ;;
    --skip-infra) skip_infra=1; shift ;;
    --skip-code) skip_code=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

# --- parameter checks (before touching Azure) ---------------------------------------------------
[[ -n "$rg" ]] || { echo "deploy.sh: --resource-group is required" >&2; usage >&2; exit 2; }
[[ $skip_infra -eq 0 || $skip_code -eq 0 ]] || die "--skip-infra and --skip-code together deploy nothing"
[[ $what_if -eq 0 || $skip_infra -eq 0 ]] || die "--what-if previews the infrastructure; it cannot be combined with --skip-infra"
[[ $skip_infra -eq 0 || -n "$app" ]] || die "--skip-infra needs --app NAME"
[[ -z "$app" || $skip_infra -eq 1 ]] || die "--app is only used with --skip-infra (otherwise the name comes from the deployment outputs)"
template="$repo_root/infra/main.bicep"
[[ -f "$template" ]] || die "missing $template"
if [[ $skip_infra -eq 0 ]]; then
  [[ -f "$params" ]] || die "parameters file $params not found (copy infra/main.parameters.example.json to infra/main.parameters.json and fill it in)"
fi
if [[ -n "$zip_file" ]]; then
  [[ -f "$zip_file" ]] || die "zip $zip_file not found"
fi
command -v az >/dev/null 2>&1 || die "the Azure CLI (az) is not installed; see https://learn.microsoft.com/cli/azure/install-azure-cli"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to write the secrets parameters file"

az_sub=()
[[ -z "$subscription" ]] || az_sub=(--subscription "$subscription")
az account show "${az_sub[@]}" --output none 2>/dev/null || die "not logged in to Azure (run: az login)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- infrastructure -----------------------------------------------------------------------------
if [[ $skip_infra -eq 0 ]]; then
  if ! az group show "${az_sub[@]}" --name "$rg" --output none 2>/dev/null; then
    [[ -n "$location" ]] || die "resource group $rg does not exist; pass --location to create it"
    echo "deploy.sh: creating resource group $rg in $location"
    az group create "${az_sub[@]}" --name "$rg" --location "$location" --output none
  fi

  # Secrets from the environment into a private parameters file (not visible in the process list).
  secrets_file="$tmp/secrets.parameters.json"
  (umask 077 && python3 - >"$secrets_file" <<'PY'
import json, os
params = {}
for env, name in (("M365_CLIENT_SECRET", "m365ClientSecret"),
                  ("BOT_APP_SECRET", "botAppSecret"),
                  ("STATE_SIGNING_KEY", "stateSigningKey")):
    if os.environ.get(env):
        params[name] = {"value": os.environ[env]}
print(json.dumps({
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
    "contentVersion": "1.0.0.0",
    "parameters": params,
}))
PY
  )
  for env in M365_CLIENT_SECRET BOT_APP_SECRET STATE_SIGNING_KEY; do
    [[ -n "${!env:-}" ]] || echo "deploy.sh: $env not set: keeping the Key Vault secret as it is (must exist already)" >&2
  done

  deployment="leapm365-$(date -u +%Y%m%d%H%M%S)"
  common=("${az_sub[@]}" --resource-group "$rg" --name "$deployment" --template-file "$template"
    --parameters "@$params" --parameters "@$secrets_file")

  if [[ $what_if -eq 1 ]]; then
    echo "deploy.sh: what-if for $template in $rg"
    az deployment group what-if "${common[@]}"
    exit 0
  fi

  echo "deploy.sh: deploying $template to $rg as $deployment"
  az deployment group create "${common[@]}" --output none
  outputs="$tmp/outputs.json"
  az deployment group show "${az_sub[@]}" --resource-group "$rg" --name "$deployment" \
    --query properties.outputs --output json >"$outputs"
  output() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]["value"])' "$outputs" "$1"; }
  app=$(output functionAppName)
  echo "deploy.sh: function app $app"
  for key in publicBaseUrl functionsBaseUrl consentRedirectUri graphNotificationUrl graphLifecycleUrl botMessagingEndpoint; do
    printf '  %-22s %s\n' "$key" "$(output "$key")"
  done
fi

# --- code ---------------------------------------------------------------------------------------
if [[ $skip_code -eq 0 ]]; then
  if [[ -z "$zip_file" ]]; then
    zip_file="$repo_root/dist/app.zip"
    "$script_dir/package.sh" --zip "$zip_file"
  fi
  echo "deploy.sh: deploying $zip_file to $app"
  az functionapp deploy "${az_sub[@]}" --resource-group "$rg" --name "$app" \
    --src-path "$zip_file" --type zip --output none
  echo "deploy.sh: done. The web app's function key for Api:"
  echo "  az functionapp function keys list -g $rg -n $app --function-name Api"
fi
