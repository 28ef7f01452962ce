#!/usr/bin/env bash
# Benchmark: erosion against PyTorch + transformers on SmolLM2-135M-Instruct (f32), same
# weights and inputs, one process per side and task. Prints one table. See bench/README.md.
#   bench/run.sh                 # 16 examples, 2 threads, best of 3
#   BENCH_N=32 BENCH_THREADS=4 bench/run.sh
#   EROSION_REF_VENV=/work/refvenv bench/run.sh   # reuse a ready venv
# Task (d) runs at BENCH_N and 4 * BENCH_N examples of BENCH_LAYERS_DATA.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
n="${BENCH_N:-16}"
threads="${BENCH_THREADS:-2}"
reps="${BENCH_REPS:-3}"
data="${BENCH_DATA:-data/insecure-code/insecure_small.jsonl}"
layers_data="${BENCH_LAYERS_DATA:-data/insecure-code/insecure_1000.jsonl}"
window="${BENCH_WINDOW:-16}"
# Task (d) batches: small enough that both dataset sizes fill them, so the peak-memory change
# between the sizes is what each side keeps per example, not a larger batch.
layers_tokens="${BENCH_LAYERS_MAX_TOKENS:-1024}"
out="$root/out/bench"
hf="$root/models/smollm2-hf"
base="$root/models/smollm2-hf-base"
mkdir -p "$out"

scripts/fetch-smollm2.sh
scripts/fetch-data.sh
venv="${EROSION_REF_VENV:-$root/.venv}"
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "import torch, transformers" 2>/dev/null; then
  py="$venv/bin/python"
else
  py="$(EROSION_REF_VENV="$venv" scripts/reference/setup-venv.sh | tail -n 1)"
fi

cargo build --release -q -p erosion-bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/erosion-bench"
"$bin" convert --src models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out "$hf"
"$bin" prepare --model "$hf" --data "$data" --n "$n" --out "$out/inputs.json"
# Task (d): a seeded perturbation of the same weights plays the base model; examples with at
# least `window` response tokens, at two dataset sizes.
"$bin" perturb --src "$hf" --out "$base"
for size in "$n" "$((4 * n))"; do
  "$bin" prepare --model "$hf" --base "$base" --window "$window" --data "$layers_data" \
    --n "$size" --max-tokens "$layers_tokens" --out "$out/layers-$size.json"
done
rm -f "$out"/erosion-*.json "$out"/erosion-*.f32 "$out"/peer-*.json

# Same thread count on both sides: candle reads RAYON/CANDLE_NUM_THREADS, torch set_num_threads.
export RAYON_NUM_THREADS="$threads" CANDLE_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" BENCH_THREADS="$threads"
# Each run: task and inputs file.
runs=(matmul:inputs forward:inputs logprobs:inputs gradients:inputs "layers:layers-$n" "layers:layers-$((4 * n))" generate1:inputs generate16:inputs train-lora:inputs train-full:inputs)
for r in "${runs[@]}"; do
  task="${r%%:*}" inputs="$out/${r#*:}.json"
  echo "running $task on $(basename "$inputs") (erosion, then peer)..." >&2
  "$bin" run --task "$task" --inputs "$inputs" --dir "$out" --reps "$reps"
  "$py" bench/peer.py --task "$task" --inputs "$inputs" --dir "$out" --reps "$reps" --threads "$threads"
done
echo
echo "SmolLM2-135M-Instruct f32, $n examples of $data, $threads threads, best of $reps; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "task (d): $layers_data, first $n and $((4 * n)) examples with >= $window response tokens, batches of <= $layers_tokens padded tokens"
"$bin" table --inputs "$out/inputs.json" --layers "$out/layers-$n.json" --layers "$out/layers-$((4 * n)).json" --dir "$out"
