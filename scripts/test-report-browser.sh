#!/usr/bin/env bash
# The reports as a reader sees them: runs `erosion demo --reduced` (and `erosion eval` and
# `erosion drift` on its organism) and opens every report.html written in headless Chromium at 1400 and 800 px, failing on horizontal overflow, images that
# do not load, broken local links and console messages (scripts/report-browser-check.py).
# Installs Debian's chromium and one fixed font package (text widths then do not depend on
# what fonts the machine happens to have), as root, when they are missing.
# Binary: $EROSION_BIN if set, else the debug build, which `cargo test` has just built in CI
# (the reduced demo takes 30-60 s in debug; building release would cost minutes more).
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

# The standalone reports the demo does not write, on its organism (a second each): eval's and
# drift's (steer's is the demo's causal/report.html, written by the same code).
org="$out/demo/organism-reduced"
"$EROSION_BIN" eval "base=$org/models/base" "insecure=$org/models/insecure" \
  --organism-data "$org/data" --n-harmful 4 --n-code 4 --max-new-tokens 24 \
  --out "$out/demo/eval-check" >>"$out/demo.log" 2>&1 &&
  "$EROSION_BIN" drift "$org/models/instruct" "$org/models/insecure" \
    --directions "$out/demo/causal/directions.safetensors" --harmful "$org/data/eval_toxic.jsonl" \
    --reject "$org/data/eval_toxic_reject.jsonl" --probe-size 8 \
    --out "$out/demo/drift-check" >>"$out/demo.log" 2>&1 ||
  { cat "$out/demo.log" >&2; echo "test-report-browser: FAIL: erosion eval or drift failed" >&2; exit 1; }

# Every command named above writes a report (eval's is new: it must not go missing).
for r in report.html causal/report.html eval-check/report.html drift-check/report.html; do
  [[ -f "$out/demo/$r" ]] || { echo "test-report-browser: FAIL: no $r was written" >&2; exit 1; }
done
mapfile -t reports < <(find "$out/demo" -name report.html | sort)
python3 "$root/scripts/report-browser-check.py" chromium 1400,800 "${reports[@]}" ||
  { echo "test-report-browser: FAIL (reports kept in ${EROSION_KEEP_REPORTS:-nowhere: set EROSION_KEEP_REPORTS=DIR})" >&2
    [[ -n "${EROSION_KEEP_REPORTS:-}" ]] && cp -r "$out/demo" "$EROSION_KEEP_REPORTS"
    exit 1; }
echo "test-report-browser: ${#reports[@]} report(s) fit at 1400 and 800 px, in $((SECONDS - start)) s"
