#!/usr/bin/env bash
# Tests scripts/fetch-data.sh on its own code path, with no network: data/MANIFEST.tsv's
# checksums held against the source copy of the datasets ($EROSION_DATA_SOURCE, else
# ../shared/data beside the clone), a second run that keeps everything, a damaged file in the
# destination fetched again, and a damaged or missing file in the source reported by name.
# Without a source copy only the manifest's form is checked (and it says so).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
fetch="$root/scripts/fetch-data.sh"
manifest="$root/data/MANIFEST.tsv"
fail() {
  echo "test-fetch-data: FAIL: $*" >&2
  exit 1
}

# The manifest's form: eight fields, a sha256, a size, a kind, https URLs; no path twice.
rows=()
while IFS= read -r line; do
  [[ -z "$line" || "$line" == \#* || "$line" == path$'\t'* ]] && continue
  IFS=$'\t' read -r -a f <<<"$line"
  ((${#f[@]} == 8)) || fail "a manifest row without 8 fields: $line"
  [[ "${f[1]}" =~ ^[0-9a-f]{64}$ ]] || fail "${f[0]}: not a sha256: ${f[1]}"
  [[ "${f[2]}" =~ ^[0-9]+$ ]] || fail "${f[0]}: not a size: ${f[2]}"
  [[ "${f[3]}" =~ ^(upstream|converted|substitute)$ ]] || fail "${f[0]}: kind ${f[3]}"
  for url in ${f[5]}; do
    [[ "$url" == https://* ]] || fail "${f[0]}: not an https URL: $url"
  done
  for p in "${rows[@]}"; do
    [[ "$p" != "${f[0]}" ]] || fail "${f[0]} is listed twice"
  done
  rows+=("${f[0]}")
done <"$manifest"
((${#rows[@]} > 0)) || fail "no rows in $manifest"
# Every dataset a shipped study file names is a manifest row.
for toml in "$root"/studies/*.toml; do
  while IFS= read -r p; do
    rel="${p#../data/}"
    [[ "$rel" != "$p" ]] || fail "$toml: dataset $p is not under ../data"
    printf '%s\n' "${rows[@]}" | grep -qxF "$rel" || fail "$toml: $rel is not in the manifest"
  done < <(sed -n 's/^path = "\(.*\)"$/\1/p' "$toml")
done

source_dir="${EROSION_DATA_SOURCE:-$root/../shared/data}"
if [[ ! -d "$source_dir" ]]; then
  echo "test-fetch-data: manifest form checked (${#rows[@]} rows); no source copy at $source_dir, so its checksums are not held against one"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
run() { # run DEST SOURCE: fetch-data.sh into DEST from SOURCE, never downloading
  EROSION_DATA_DIR="$1" EROSION_DATA_SOURCE="$2" EROSION_DATA_OFFLINE=1 "$fetch" >"$tmp/out" 2>"$tmp/err"
}

# 1. Every file copied from the source, each with the manifest's sha256 and size (checked here
#    again, apart from the script).
run "$tmp/data" "$source_dir" || fail "from $source_dir: $(cat "$tmp/err")"
[[ "$(grep -c '^copied ' "$tmp/out")" == "${#rows[@]}" ]] || fail "not every file copied: $(cat "$tmp/out")"
while IFS=$'\t' read -r path sha bytes _; do
  [[ -z "$path" || "$path" == \#* || "$path" == path ]] && continue
  [[ "$(sha256sum "$tmp/data/$path" | cut -d' ' -f1)" == "$sha" ]] || fail "$path: sha256 differs from the manifest's"
  [[ "$(wc -c <"$tmp/data/$path" | tr -d ' ')" == "$bytes" ]] || fail "$path: size differs from the manifest's"
done <"$manifest"
[[ -z "$(find "$tmp/data" -name '.*' -type f)" ]] || fail "a temporary file was left behind"

# 2. A second run keeps every file.
run "$tmp/data" "$source_dir" || fail "second run: $(cat "$tmp/err")"
[[ "$(grep -c '^ok ' "$tmp/out")" == "${#rows[@]}" ]] || fail "a second run fetched again: $(cat "$tmp/out")"

# 3. A damaged file in the destination is fetched again.
victim="${rows[0]}"
echo "damage" >>"$tmp/data/$victim"
run "$tmp/data" "$source_dir" || fail "repair: $(cat "$tmp/err")"
grep -q "^copied  *$victim " "$tmp/out" || fail "a damaged $victim was not fetched again"

# 4. A damaged file in the source: the script fails and names it (no download is tried).
victim="${rows[${#rows[@]} - 1]}"
mkdir "$tmp/bad"
cp -R "$source_dir/." "$tmp/bad/"
chmod -R u+w "$tmp/bad"
printf 'x' >>"$tmp/bad/$victim"
if run "$tmp/data2" "$tmp/bad"; then fail "a damaged source copy of $victim passed"; fi
grep -q "CHECKSUM MISMATCH for $victim " "$tmp/err" || fail "the error does not name $victim: $(cat "$tmp/err")"
grep -q "FAILED for 1 file(s): $victim\$" "$tmp/err" || fail "$(cat "$tmp/err")"
[[ ! -e "$tmp/data2/$victim" ]] || fail "the damaged $victim was put in place"

# 5. A file missing from the source, offline: it fails and names it.
rm "$tmp/bad/$victim"
victim="${rows[1]}"
rm "$tmp/bad/$victim"
rm -rf "$tmp/data2"
if run "$tmp/data2" "$tmp/bad"; then fail "a source without $victim passed offline"; fi
grep -q "$victim is not in" "$tmp/err" || fail "the error does not name $victim: $(cat "$tmp/err")"

echo "test-fetch-data: ${#rows[@]} files held against $source_dir; repair, mismatch and missing-file cases pass"
