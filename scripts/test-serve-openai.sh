#!/usr/bin/env bash
# `erosion serve` driven by the official openai Python client (scripts/serve_openai_test.py),
# and `erosion eval --judge-url` against it compared with the in-process judge. The client is
# installed from PyPI into a venv outside the clone (reused: ~/.cache/erosion/venv-openai, or
# $EROSION_OPENAI_VENV). Needs python3 with venv, and models/smollm2 (scripts/fetch-smollm2.sh).
# Uses the debug build `cargo test` makes (or $EROSION_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EROSION_OPENAI_VENV:-$HOME/.cache/erosion/venv-openai}"
if ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "openai>=1.40,<3"
fi
BIN="${EROSION_BIN:-${CARGO_TARGET_DIR:-target}/debug/erosion}"
if [ ! -x "$BIN" ]; then
    cargo build --locked -p erosion-cli
fi
MODEL=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$VENV/bin/python" scripts/serve_openai_test.py "$BIN" "$MODEL" "$WORK" \
    data/emergent-misalignment-eval/first_plot_questions.yaml
