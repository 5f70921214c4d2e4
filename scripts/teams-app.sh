#!/usr/bin/env bash
# Build the Teams app package (the zip an admin uploads to Teams or the Teams admin center):
#
#   manifest.json   infra/teams-app/manifest.json with its {{...}} placeholders filled
#   color.png       192x192
#   outline.png     32x32, white on transparent
#
# all three at the zip's root. The filled manifest is checked offline before anything is written
# (JSON, GUIDs, required fields, the schema's length limits, icon sizes and the outline icon's
# colours); any problem is reported and nothing is written. Needs bash and python3 only: no network.
set -euo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: scripts/teams-app.sh [-o FILE] [--bot-id GUID] [--app-id GUID] [--version X.Y.Z] [--app-url URL]

  -o, --out FILE   zip to write (default: <repo>/dist/teams-app/leapchange-teams.zip; replaced if present)
  --bot-id GUID    the bot's Microsoft App ID (default: $BOT_APP_ID). Required.
  --app-id GUID    the Teams app id, the manifest's "id" and the org catalog's externalId
                   (default: $TEAMS_APP_ID, else the bot id)
  --version X.Y.Z  the package version (default: $TEAMS_APP_VERSION, else 1.0.0). Raise it for every
                   upload that replaces a published package.
  --app-url URL    the Leap Change web app; its host goes into validDomains
                   (default: $LEAP_APP_URL, else https://app.leapchange.example)
  --src DIR        the package sources (default: <repo>/infra/teams-app)
EOF_USAGE
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

die() { echo "teams-app.sh: $*" >&2; exit 1; }
need() { [[ $2 -ge 2 ]] || { echo "teams-app.sh: $1 needs a value" >&2; exit 2; }; }

out="" bot_id="" app_id="" version="" app_url="" src=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -o|--out) need "$1" $#; out=$2; shift 2 ;;
    --bot-id) need "$1" $#; bot_id=$2; shift 2 ;;
    --app-id) need "$1" $#; app_id=$2; shift 2 ;;
    --version) need "$1" $#; version=$2; shift 2 ;;
    --app-url) need "$1" $#; app_url=$2; shift 2 ;;
    --src) need "$1" $#; src=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "teams-app.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

[[ -n "$bot_id" ]] || bot_id=${BOT_APP_ID:-}
[[ -n "$app_id" ]] || app_id=${TEAMS_APP_ID:-}
[[ -n "$version" ]] || version=${TEAMS_APP_VERSION:-1.0.0}
[[ -n "$app_url" ]] || app_url=${LEAP_APP_URL:-https://app.leapchange.example}
[[ -n "$src" ]] || src="$repo_root/infra/teams-app"
[[ -n "$out" ]] || out="$repo_root/dist/teams-app/leapchange-teams.zip"

guid_re='^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
nil_guid=00000000-0000-0000-0000-000000000000
[[ -n "$bot_id" ]] || die "no bot id: set BOT_APP_ID or pass --bot-id (the Azure Bot's Microsoft App ID, a GUID)"
[[ "$bot_id" =~ $guid_re && "$bot_id" != "$nil_guid" ]] \
  || die "the bot id '$bot_id' (BOT_APP_ID / --bot-id) is not a GUID like 8f2c6a1e-0b3d-4c5e-9f7a-1b2c3d4e5f60"
if [[ -z "$app_id" ]]; then
  app_id=$bot_id
  echo "teams-app.sh: TEAMS_APP_ID not set: the Teams app id is the bot id $bot_id"
fi
[[ "$app_id" =~ $guid_re && "$app_id" != "$nil_guid" ]] \
  || die "the Teams app id '$app_id' (TEAMS_APP_ID / --app-id) is not a GUID"
[[ "$version" =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$ ]] \
  || die "the version '$version' (TEAMS_APP_VERSION / --version) is not MAJOR.MINOR.PATCH (e.g. 1.0.0)"
[[ -f "$src/manifest.json" ]] || die "missing $src/manifest.json"
command -v python3 >/dev/null || die "python3 is needed (it fills, checks and zips the package)"

mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

python3 - "$src" "$out" "$bot_id" "$app_id" "$version" "$app_url" <<'PY'
import json, os, re, struct, sys, urllib.parse, zipfile, zlib

src, out, bot_id, app_id, version, app_url = sys.argv[1:7]
errors = []

def fail(msg):
    print("teams-app.sh: " + msg, file=sys.stderr)
    sys.exit(1)

host = urllib.parse.urlsplit(app_url).hostname
if not host:
    fail(f"the app URL '{app_url}' (LEAP_APP_URL / --app-url) has no host")

try:
    with open(os.path.join(src, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
except ValueError as e:
    fail(f"{src}/manifest.json is not valid JSON: {e}")

values = {"BOT_APP_ID": bot_id, "TEAMS_APP_ID": app_id, "APP_VERSION": version, "APP_DOMAIN": host}

def fill(v):
    if isinstance(v, str):
        return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values.get(m.group(1), m.group(0)), v)
    if isinstance(v, list):
        return [fill(x) for x in v]
    if isinstance(v, dict):
        return {k: fill(x) for k, x in v.items()}
    return v

manifest = fill(manifest)
text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
for m in sorted(set(re.findall(r"\{\{[^}]*\}\}", text))):
    errors.append(f"placeholder {m} left in the manifest (known: {', '.join(sorted(values))})")

# --- the manifest, against the rules of the schema it names ----------------------------------
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

def get(path):
    v = manifest
    for p in path.split("."):
        if not isinstance(v, dict) or p not in v:
            return None
        v = v[p]
    return v

def string(path, maxlen, required=True, pattern=None, what=None):
    v = get(path)
    if v is None:
        if required:
            errors.append(f"{path} is required")
        return None
    if not isinstance(v, str) or v == "":
        errors.append(f"{path} must be a non-empty string")
        return None
    if len(v) > maxlen:
        errors.append(f"{path} is {len(v)} characters long; the limit is {maxlen}")
    if pattern and not re.fullmatch(pattern, v):
        errors.append(f"{path} '{v}' is not {what or pattern}")
    return v

mv = string("manifestVersion", 16, pattern=r"1\.\d+", what="a GA manifest version like 1.30")
if mv:
    want = f"https://developer.microsoft.com/json-schemas/teams/v{mv}/MicrosoftTeams.schema.json"
    if manifest.get("$schema") != want:
        errors.append(f"$schema is {manifest.get('$schema')!r}; for manifestVersion {mv} it must be {want}")
string("version", 256, pattern=r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)", what="MAJOR.MINOR.PATCH")
string("id", 36, pattern=GUID.pattern, what="a GUID")
string("developer.name", 32)
for k in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
    string("developer." + k, 2048, pattern=r"https://\S+", what="an https URL")
string("name.short", 30)
string("name.full", 100, required=False)
string("description.short", 80)
string("description.full", 4000)
string("accentColor", 7, pattern=r"#[0-9a-fA-F]{6}", what="a colour like #2B5FD9")
string("icons.color", 2048)
string("icons.outline", 2048)

SCOPES = {"personal", "team", "groupChat", "copilot"}
bots = manifest.get("bots")
if not isinstance(bots, list) or not bots:
    errors.append("bots must hold the Leap Change bot")
    bots = []
for i, bot in enumerate(bots):
    where = f"bots[{i}]"
    if not isinstance(bot.get("botId"), str) or not GUID.fullmatch(bot["botId"]):
        errors.append(f"{where}.botId {bot.get('botId')!r} is not a GUID")
    scopes = bot.get("scopes")
    if not isinstance(scopes, list) or not scopes or not set(scopes) <= SCOPES or len(scopes) > 3:
        errors.append(f"{where}.scopes {scopes!r} must be 1 to 3 of {sorted(SCOPES)}")
        scopes = []
    for flag in ("supportsFiles", "isNotificationOnly"):
        if not isinstance(bot.get(flag, False), bool):
            errors.append(f"{where}.{flag} must be true or false")
    lists = bot.get("commandLists", [])
    if not isinstance(lists, list) or len(lists) > 3:
        errors.append(f"{where}.commandLists must be a list of at most 3")
        lists = []
    for j, cl in enumerate(lists):
        w = f"{where}.commandLists[{j}]"
        cs = cl.get("scopes")
        if not isinstance(cs, list) or not cs or not set(cs) <= set(scopes):
            errors.append(f"{w}.scopes {cs!r} must be some of the bot's scopes {scopes}")
        cmds = cl.get("commands")
        if not isinstance(cmds, list) or not 1 <= len(cmds) <= 12:
            errors.append(f"{w}.commands must hold 1 to 12 commands")
            continue
        titles = set()
        for k, c in enumerate(cmds):
            t, d = c.get("title"), c.get("description")
            if not isinstance(t, str) or not 1 <= len(t) <= 32:
                errors.append(f"{w}.commands[{k}].title {t!r} must be 1 to 32 characters")
            elif t in titles:
                errors.append(f"{w}: command {t!r} twice")
            else:
                titles.add(t)
            if not isinstance(d, str) or not 1 <= len(d) <= 128:
                errors.append(f"{w}.commands[{k}].description must be 1 to 128 characters")

domains = manifest.get("validDomains", [])
if not isinstance(domains, list) or len(domains) > 16:
    errors.append("validDomains must be a list of at most 16 domains")
    domains = []
for d in domains:
    if not isinstance(d, str) or not d or len(d) > 2048 or re.search(r"[/:\s]", d):
        errors.append(f"validDomains entry {d!r} must be a bare domain (no scheme, port or path)")
# The Leap app host and token.botframework.com may be the same: keep the first of each.
seen = set()
manifest["validDomains"] = [d for d in domains if not (d in seen or seen.add(d))]

if "webApplicationInfo" in manifest:
    string("webApplicationInfo.id", 36, pattern=GUID.pattern, what="a GUID")
    string("webApplicationInfo.resource", 2048, required=False)

# --- icons -------------------------------------------------------------------------------------
def read_png(path):
    """(width, height, colour type, pixels or None): pixels are RGBA rows for 8-bit RGBA images."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, ihdr, idat = 8, None, b""
    while pos + 8 <= len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    if ihdr is None:
        raise ValueError("no IHDR chunk")
    w, h, depth, ctype, _, _, interlace = ihdr
    if ctype != 6 or depth != 8 or interlace != 0:
        return w, h, ctype, None
    raw, stride, rows, prev = zlib.decompress(idat), w * 4, [], bytearray(w * 4)
    for y in range(h):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - 4] if x >= 4 else 0
            b = prev[x]
            c = prev[x - 4] if x >= 4 else 0
            if ft == 1:
                line[x] = (line[x] + a) & 255
            elif ft == 2:
                line[x] = (line[x] + b) & 255
            elif ft == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, ctype, rows

icons = {}
for kind, size in (("color", 192), ("outline", 32)):
    name = get("icons." + kind)
    if not isinstance(name, str) or not name:
        continue
    if "/" in name or "\\" in name or name in ("manifest.json",):
        errors.append(f"icons.{kind} {name!r} must be a file name at the package root")
        continue
    path = os.path.join(src, name)
    if not os.path.isfile(path):
        errors.append(f"icons.{kind}: {path} does not exist")
        continue
    try:
        w, h, ctype, rows = read_png(path)
    except (ValueError, zlib.error, struct.error) as e:
        errors.append(f"icons.{kind}: {path}: {e}")
        continue
    if (w, h) != (size, size):
        errors.append(f"icons.{kind}: {name} is {w}x{h}; it must be {size}x{size}")
    if kind == "outline":
        if rows is None:
            errors.append(f"icons.outline: {name} must be an 8-bit RGBA PNG (white on transparent)")
        else:
            px = [bytes(r[i:i + 4]) for r in rows for i in range(0, len(r), 4)]
            if any(p[3] != 0 and p[:3] != b"\xff\xff\xff" for p in px):
                errors.append(f"icons.outline: {name} has pixels that are neither white nor transparent")
            if not any(p[3] for p in px) or all(p[3] for p in px):
                errors.append(f"icons.outline: {name} must be white on a transparent background")
    icons[name] = path

if errors:
    print("teams-app.sh: the manifest does not pass the checks:", file=sys.stderr)
    for e in errors:
        print("  - " + e, file=sys.stderr)
    sys.exit(1)

# --- the zip -----------------------------------------------------------------------------------
text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    entries = [("manifest.json", text.encode("utf-8"))]
    for name, path in icons.items():
        with open(path, "rb") as f:
            entries.append((name, f.read()))
    for name, data in entries:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        z.writestr(info, data)
os.replace(tmp, out)
print(f"teams-app.sh: wrote {out}")
print(f"  manifest {manifest['manifestVersion']}, app id {manifest['id']}, bot id {bot_id}, version {manifest['version']}")
print("  files: " + ", ".join(n for n, _ in entries))
PY
