#!/usr/bin/env bash
# Makes the Python venv (torch + transformers) that regenerates the reference fixtures.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${EROSION_REF_VENV:-$root/.venv}"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet -r "$root/scripts/reference/requirements.txt"
echo "$venv/bin/python"
