#!/usr/bin/env bash
# Puts the study's datasets under data/ as data/MANIFEST.tsv lists them (path, sha256, URLs),
# checking every file's sha256. A file already there with its checksum is kept; any other is
# fetched. Where from, in this order:
#   1. $EROSION_DATA_SOURCE, a folder with the same layout (copied, then checked), or else
#      ../shared/data beside the clone when there is one (as in CI);
#   2. the manifest's URLs, tried in order (curl, with retries), until one gives the checksum.
# A file copied from the source folder with the wrong checksum is an error, not a reason to
# download: that folder is what the tests are held against.
#   EROSION_DATA_DIR   where to put the files (default: data/ in the repository)
#   EROSION_DATA_SOURCE   the folder to copy from (default: ../shared/data when it exists)
#   EROSION_DATA_OFFLINE=1   never download: a file the source folder lacks is an error
# Idempotent; exits non-zero, naming each file, when any file could not be had.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
manifest="$root/data/MANIFEST.tsv"
dest="${EROSION_DATA_DIR:-$root/data}"
source_dir="${EROSION_DATA_SOURCE:-}"
if [[ -z "$source_dir" && -d "$root/../shared/data" ]]; then
  source_dir="$root/../shared/data"
fi
if [[ -n "$source_dir" && ! -d "$source_dir" ]]; then
  echo "fetch-data: EROSION_DATA_SOURCE=$source_dir is not a folder" >&2
  exit 1
fi
offline="${EROSION_DATA_OFFLINE:-0}"

sha256() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

mkdir -p "$dest"
failed=()
# The temporary file of the row in flight, removed on any exit.
part=""
trap '[[ -z "$part" ]] || rm -f "$part"' EXIT

# Moves the checked temporary file into place (same folder, so the rename is atomic), with the
# mode of a new file (mktemp makes it private).
mode="$(printf '%o' $((0666 & ~0$(umask))))"
install_part() {
  chmod "$mode" "$part"
  mv -f "$part" "$1"
  part=""
}

# Counts the row in flight as failed and drops its temporary file.
give_up() {
  failed+=("$path")
  rm -f "$part"
  part=""
}

while IFS=$'\t' read -r path sha bytes kind license urls origin note; do
  [[ -z "$path" || "$path" == \#* || "$path" == path ]] && continue
  target="$dest/$path"
  if [[ -f "$target" ]]; then
    if [[ "$(sha256 "$target")" == "$sha" ]]; then
      echo "ok          $path"
      continue
    fi
    echo "fetch-data: $path is there with another checksum: fetching it again" >&2
  fi
  mkdir -p "$(dirname "$target")"
  part="$(mktemp "$(dirname "$target")/.$(basename "$path").XXXXXX")"

  if [[ -n "$source_dir" && -f "$source_dir/$path" ]]; then
    cp "$source_dir/$path" "$part"
    got="$(sha256 "$part")"
    if [[ "$got" == "$sha" ]]; then
      install_part "$target"
      echo "copied      $path (from $source_dir)"
    else
      echo "fetch-data: CHECKSUM MISMATCH for $path in $source_dir: sha256 $got, the manifest says $sha" >&2
      give_up
    fi
    continue
  fi

  if [[ "$offline" == 1 ]]; then
    echo "fetch-data: $path is not in ${source_dir:-any source folder} and EROSION_DATA_OFFLINE=1" >&2
    give_up
    continue
  fi
  done_=0
  for url in $urls; do
    if ! curl -fsSL --retry 4 --retry-delay 2 --connect-timeout 30 -o "$part" "$url" </dev/null; then
      echo "fetch-data: $path: download failed from $url" >&2
      continue
    fi
    got="$(sha256 "$part")"
    if [[ "$got" == "$sha" ]]; then
      install_part "$target"
      echo "downloaded  $path (from $url)"
      done_=1
      break
    fi
    echo "fetch-data: CHECKSUM MISMATCH for $path from $url: sha256 $got, the manifest says $sha" >&2
  done
  if [[ "$done_" == 0 ]]; then
    echo "fetch-data: could not fetch $path with sha256 $sha from: $urls" >&2
    give_up
  fi
done <"$manifest"

if ((${#failed[@]})); then
  echo "fetch-data: FAILED for ${#failed[@]} file(s): ${failed[*]}" >&2
  exit 1
fi
echo "fetch-data: every file of data/MANIFEST.tsv is in $dest with its checksum"
