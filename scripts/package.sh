#!/usr/bin/env bash
# Build the deployable Azure Functions app (README, Deploying):
#
#   <stage>/host.json
#   <stage>/handler                 linux/amd64 executable, mode 0755
#   <stage>/<Name>/function.json    one folder per functions/<Name>/function.json
#
# and zip it (file entries only, fixed timestamps, Unix modes kept so `handler` stays executable).
# local.settings.json and anything else in the repository are never staged.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/package.sh [--out DIR] [--zip FILE] [--root DIR] [--force]

  --out DIR    staging directory (default: <root>/dist/app). It must be empty or absent unless it is
               the default or --force is given; it is then emptied first.
  --zip FILE   zip to write (default: <root>/dist/app.zip; replaced if present)
  --root DIR   app source root holding host.json and functions/ (default: the repository root).
               The handler is built from <root>/handler.
  --force      empty a non-empty --out directory

Environment:
  HANDLER_BIN=PATH        use this executable instead of building ./handler (tests)
  PACKAGE_ZIPPER=TOOL     auto (default: python3, else zip, else a small `go run` program),
                          python3, zip or go
EOF
}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/.." && pwd)

root=$repo_root
out=""
zip_file=""
force=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || { echo "package.sh: --out needs a value" >&2; exit 2; }; out=$2; shift 2 ;;
    --zip) [[ $# -ge 2 ]] || { echo "package.sh: --zip needs a value" >&2; exit 2; }; zip_file=$2; shift 2 ;;
    --root) [[ $# -ge 2 ]] || { echo "package.sh: --root needs a value" >&2; exit 2; }; root=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "package.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

die() { echo "package.sh: $*" >&2; exit 1; }

[[ -d "$root" ]] || die "root $root is not a directory"
root=$(cd "$root" && pwd)

default_out=0
if [[ -z "$out" ]]; then
  out="$root/dist/app"
  default_out=1
fi
[[ -n "$zip_file" ]] || zip_file="$root/dist/app.zip"

# Absolute paths (go build and the zipper run from other directories).
mkdir -p "$out" "$(dirname "$zip_file")"
out=$(cd "$out" && pwd)
zip_file="$(cd "$(dirname "$zip_file")" && pwd)/$(basename "$zip_file")"

case "$out" in
  /|"$root"|"$repo_root"|"$HOME") die "refusing to use $out as the staging directory" ;;
esac
if [[ -n "$(ls -A "$out")" ]]; then
  if [[ $default_out -eq 1 || $force -eq 1 ]]; then
    find "$out" -mindepth 1 -delete
  else
    die "staging directory $out is not empty (use --force to empty it)"
  fi
fi

# --- inputs -----------------------------------------------------------------------------------
[[ -f "$root/host.json" ]] || die "missing $root/host.json"
[[ -d "$root/functions" ]] || die "missing $root/functions/"

names=()
for dir in "$root"/functions/*/; do
  [[ -d "$dir" ]] || continue
  name=$(basename "$dir")
  [[ "$name" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || die "function folder name '$name' is not a valid function name"
  [[ "$name" != "handler" ]] || die "a function may not be called 'handler' (the executable's name)"
  [[ -f "$dir/function.json" ]] || die "missing $dir""function.json"
  names+=("$name")
done
[[ ${#names[@]} -gt 0 ]] || die "no functions/<Name>/function.json under $root"
for extra in "$root"/functions/*; do
  [[ -d "$extra" ]] || echo "package.sh: not staged (not a function folder): ${extra#"$root"/}" >&2
done

# --- handler ----------------------------------------------------------------------------------
if [[ -n "${HANDLER_BIN:-}" ]]; then
  [[ -f "$HANDLER_BIN" ]] || die "HANDLER_BIN=$HANDLER_BIN does not exist"
  echo "package.sh: using prebuilt handler $HANDLER_BIN"
  cp "$HANDLER_BIN" "$out/handler"
else
  [[ -d "$root/handler" ]] || die "missing $root/handler (or set HANDLER_BIN)"
  echo "package.sh: building ./handler for linux/amd64 in $root"
  (cd "$root" && GOOS=linux GOARCH=amd64 CGO_ENABLED=0 \
    go build -trimpath -ldflags='-s -w' -o "$out/handler" ./handler)
fi
chmod 0755 "$out/handler"

# --- host.json and function folders -----------------------------------------------------------
cp "$root/host.json" "$out/host.json"
chmod 0644 "$out/host.json"
for name in "${names[@]}"; do
  mkdir -p "$out/$name"
  cp "$root/functions/$name/function.json" "$out/$name/function.json"
  chmod 0644 "$out/$name/function.json"
done

echo "package.sh: staged $out"
(cd "$out" && find . -type f | LC_ALL=C sort | sed 's|^\./|  |')

# --- zip --------------------------------------------------------------------------------------
zip_python3() {
  python3 - "$out" "$zip_file" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
files = []
for base, dirs, names in os.walk(src):
    dirs.sort()
    for n in names:
        files.append(os.path.relpath(os.path.join(base, n), src))
tmp = dst + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    for rel in sorted(files):
        path = os.path.join(src, rel)
        info = zipfile.ZipInfo(rel.replace(os.sep, "/"), date_time=(1980, 1, 1, 0, 0, 0))
        info.create_system = 3  # Unix: external_attr carries the mode
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as f:
            z.writestr(info, f.read())
os.replace(tmp, dst)
PY
}

zip_zip() {
  local tmp="$zip_file.tmp.zip"
  rm -f "$tmp"
  # -X: no extra attributes; -D: no directory entries; Unix modes are kept by Info-ZIP.
  (cd "$out" && find . -type f | LC_ALL=C sort | sed 's|^\./||' | TZ=UTC zip -q -X -D "$tmp" -@)
  mv "$tmp" "$zip_file"
}

zip_go() {
  local dir
  dir=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$dir'" RETURN
  cat >"$dir/main.go" <<'GO'
package main

import (
	"archive/zip"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

func main() {
	src, dst := os.Args[1], os.Args[2]
	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(src, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return err
	})
	check(err)
	sort.Strings(files)
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	check(err)
	w := zip.NewWriter(f)
	for _, rel := range files {
		p := filepath.Join(src, filepath.FromSlash(rel))
		st, err := os.Stat(p)
		check(err)
		mode := fs.FileMode(0o644)
		if st.Mode()&0o111 != 0 {
			mode = 0o755
		}
		h := &zip.FileHeader{Name: rel, Method: zip.Deflate, Modified: time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)}
		h.SetMode(mode)
		out, err := w.CreateHeader(h)
		check(err)
		in, err := os.Open(p)
		check(err)
		_, err = io.Copy(out, in)
		check(err)
		check(in.Close())
	}
	check(w.Close())
	check(f.Close())
	check(os.Rename(tmp, dst))
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
GO
  (cd "$dir" && GOFLAGS='' go run main.go "$out" "$zip_file")
}

zipper=${PACKAGE_ZIPPER:-auto}
if [[ "$zipper" == auto ]]; then
  if command -v python3 >/dev/null 2>&1; then zipper=python3
  elif command -v zip >/dev/null 2>&1; then zipper=zip
  else zipper=go
  fi
fi
case "$zipper" in
  python3|zip|go) command -v "$zipper" >/dev/null 2>&1 || die "PACKAGE_ZIPPER=$zipper but $zipper is not installed" ;;
  *) die "PACKAGE_ZIPPER must be auto, python3, zip or go (got $zipper)" ;;
esac
rm -f "$zip_file"
"zip_$zipper"
echo "package.sh: wrote $zip_file ($zipper, $(wc -c <"$zip_file") bytes, ${#names[@]} functions)"
