#!/usr/bin/env bash
# Throughput of `erosion serve` on SmolLM2-135M-Instruct: greedy chat requests one by one, then
# from 1, 4 and 16 concurrent clients (bench/serve.py; see bench/README.md). Release build; the
# openai client in the venv scripts/test-serve-openai.sh makes.
#   bench/serve.sh                       # 32 requests of 64 tokens
#   BENCH_SERVE_N=64 BENCH_SERVE_TOKENS=128 bench/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n="${BENCH_SERVE_N:-32}"
tokens="${BENCH_SERVE_TOKENS:-64}"
venv="${EROSION_OPENAI_VENV:-$HOME/.cache/erosion/venv-openai}"
if ! "$venv/bin/python" -c "import openai" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "openai>=1.40,<3"
fi
scripts/fetch-smollm2.sh
cargo build --release -q --locked -p erosion-cli
bin="${CARGO_TARGET_DIR:-target}/release/erosion"
log="$(mktemp)"
"$bin" serve models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --port 0 --served-model-name smollm2 >"$log" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; rm -f "$log"' EXIT
until grep -q "^serving " "$log"; do sleep 0.2; done
url="$(sed -n 's/^serving .* on //p' "$log")"
"$venv/bin/python" bench/serve.py "$url" smollm2 "$n" "$tokens"
