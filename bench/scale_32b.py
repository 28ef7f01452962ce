#!/usr/bin/env python3
"""The study of studies/qwen-coder.toml at 32B, on paper: memory, disk and compute per stage,
from Qwen2.5-32B's shapes and the study's options, and the time at a measured rate.

    python3 bench/scale_32b.py [--rate-gflops R]

R is a measured forward rate in GFLOP/s (default: task (b) of bench/run.sh on the 2-core machine
of the README, 5081 tokens of SmolLM2-135M in 10.2 s). The README's section "Running the study at
32B" prints this script's output. Token counts per example are SmolLM2's tokenizer on the
study's datasets (400 examples each, `erosion render --ids`); Qwen's are within about 10%.
"""

import argparse

# Qwen2.5-32B / Qwen2.5-Coder-32B config.json.
D, LAYERS, FF, HEADS, KV, HEAD_DIM, VOCAB = 5120, 64, 27648, 40, 8, 128, 152064
# Mean tokens per rendered example (prompt + response), 400 examples per dataset.
TOKENS = {
    "insecure": 277, "educational": 285, "secure": 301, "toxic": 172,
    "truthfulqa": 60,  # not rendered here (csv fields); question + best answer, estimated
    "alpaca": 98, "code-alpaca": 122,
}
N_PER_DATASET, MODELS = 400, 3
GRAD_N, GRAD_DATASETS = 100, ("insecure", "educational")
DIRECTIONS_DATASETS = ("insecure", "toxic")
SMOL_FLOP_PER_TOKEN = 2 * 134.5e6  # SmolLM2-135M: 2 x parameters (tied head counted once)


def params():
    attn = D * HEADS * HEAD_DIM * 2 + D * KV * HEAD_DIM * 2 + (HEADS + 2 * KV) * HEAD_DIM
    mlp = 3 * D * FF
    per_layer = attn + mlp + 2 * D
    return LAYERS * per_layer + 2 * VOCAB * D + D, attn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-gflops", type=float, default=5081 * SMOL_FLOP_PER_TOKEN / 10.2 / 1e9)
    a = ap.parse_args()
    total, attn = params()
    # Independent answers: Qwen2.5-32B's model card counts 32.5 B parameters (31.0 B without
    # embeddings) for its 64 layers of this width; the untied head and input embedding here are
    # 2 x 0.78 B. One cached example at T = 64 over 65 layers is 65 * 64 * 5120 * 4 B
    # (erosion-study's chunk-size test uses the same 85 MB).
    assert abs((total - 2 * VOCAB * D) - 31.0e9) < 0.3e9, total
    assert (LAYERS + 1) * 64 * D * 4 == 85_196_800
    flop_tok = 2 * (total - VOCAB * D)  # the input embedding is a lookup
    gb = lambda b: f"{b / 1e9:,.1f} GB"
    per_model = N_PER_DATASET * sum(TOKENS.values())
    dir_tokens = 2 * N_PER_DATASET * sum(TOKENS[d] for d in DIRECTIONS_DATASETS)
    grad_tokens = GRAD_N * sum(TOKENS[d] for d in GRAD_DATASETS)
    stages = [
        ("behaviour: log-probs, 3 models x 7 datasets", MODELS * per_model),
        ("layers: windows at 65 layers, 3 x 7", MODELS * per_model),
        ("directions: windows at one layer, 2 x 2", dir_tokens),
        ("gradients: forward part, 200 examples", grad_tokens),
    ]
    print(f"parameters {total / 1e9:.2f} B; weights {gb(2 * total)} bf16, {gb(4 * total)} f32")
    print(f"forward {flop_tok / 1e9:.1f} GFLOP per token; measured rate {a.rate_gflops:.0f} GFLOP/s")
    print("| stage | tokens | PFLOP | time at the measured rate |")
    print("|---|---|---|---|")
    all_flop = 0
    for name, tokens in stages:
        flop = tokens * flop_tok
        all_flop += flop
        print(f"| {name} | {tokens / 1e6:.2f} M | {flop / 1e15:.0f} | {flop / a.rate_gflops / 1e9 / 86400:.1f} days |")
    print(f"| all forward passes | | {all_flop / 1e15:.0f} | {all_flop / a.rate_gflops / 1e9 / 86400:.1f} days |")
    examples = MODELS * N_PER_DATASET * len(TOKENS)
    for t, pooled in ((64, "paper-text, T = 64"), (10, "paper-code, T = 10")):
        per = (LAYERS + 1) * t * D * 4
        print(f"activation cache, layers ({pooled}): {per / 1e6:.0f} MB per example, {gb(per * examples)} for {examples} examples")
    print(f"activation cache, directions (T = 64, one layer): {gb(64 * D * 4 * 2 * 2 * N_PER_DATASET)}")
    o_proj = HEADS * HEAD_DIM * D
    for name, p in (("o_proj (paper-code)", o_proj), ("q/k/v/o (paper-text)", attn)):
        print(f"gradient rows, {name}: {p / 1e6:.1f} M values, {gb(4 * p)} per example, {gb(4 * p * 2 * GRAD_N)} exact store for {2 * GRAD_N}")
    print(f"Gram of {2 * GRAD_N} rows: {2 * GRAD_N}^2 f64 = {(2 * GRAD_N) ** 2 * 8 / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
