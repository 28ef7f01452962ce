#!/usr/bin/env bash
# The reports as a reader sees them: runs `erosion demo --reduced` and opens every report.html
# it wrote in headless Chromium at 1400 and 800 px, failing on horizontal overflow, images that
# do not load, broken local links and console messages (scripts/report-browser-check.py).
# Installs Debian's chromium and one fixed font package (text widths then do not depend on
# what fonts the machine happens to have), as root, when they are missing.
# Binary: $EROSION_BIN if set, else the debug build, which `cargo test` has just built in CI
# (the reduced demo takes about a minute in debug; a release build would cost more than that).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
start=$SECONDS

if ! command -v chromium >/dev/null || ! dpkg -s fonts-dejavu-core >/dev/null 2>&1; then
  # A fresh container has no package lists; update only when the install cannot find them.
  apt-get install -y --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium fonts-dejavu-core >/dev/null; }
fi

if [[ -z "${EROSION_BIN:-}" ]]; then
  cargo build -p erosion-cli --locked --quiet
  EROSION_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/erosion"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$EROSION_BIN" demo --reduced --quiet --out "$out/demo" >"$out/demo.log" 2>&1 ||
  { cat "$out/demo.log" >&2; echo "test-report-browser: FAIL: erosion demo --reduced failed" >&2; exit 1; }

mapfile -t reports < <(find "$out/demo" -name report.html | sort)
((${#reports[@]} > 0)) || { echo "test-report-browser: FAIL: the demo wrote no report.html" >&2; exit 1; }
python3 "$root/scripts/report-browser-check.py" chromium 1400,800 "${reports[@]}" ||
  { echo "test-report-browser: FAIL (reports kept in ${EROSION_KEEP_REPORTS:-nowhere: set EROSION_KEEP_REPORTS=DIR})" >&2
    [[ -n "${EROSION_KEEP_REPORTS:-}" ]] && cp -r "$out/demo" "$EROSION_KEEP_REPORTS"
    exit 1; }
echo "test-report-browser: ${#reports[@]} report(s) fit at 1400 and 800 px, in $((SECONDS - start)) s"
