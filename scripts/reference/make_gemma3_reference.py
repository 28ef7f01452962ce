#!/usr/bin/env python3
"""Reference values for Gemma 3 270M (base, GGUF Q4_K_M, sentencepiece tokenizer) from Hugging
Face transformers' own GGUF loader.

transformers rebuilds the sentencepiece tokenizer from the GGUF's pieces and scores
(GGUFGemmaConverter), reads the config from metadata (Gemma 3 defaults for what GGUF does not
store), dequantises with gguf-py and subtracts the 1 llama.cpp added to every Gemma norm weight.
These numbers check erosion's reading of the same file independently.

Writes crates/erosion-model/tests/fixtures/gemma3/reference.json with
  - config: the fields of transformers' config that change the computation;
  - tokens: ids of several texts (control tokens, byte fallback, tabs, space runs, digits);
  - weights: shape, sum, sum of squares and sampled values of a few tensors (norms show the
    shift of 1 directly);
  - hidden: the L2 norm of every hidden state (embedding output and each layer) at every
    position of one text, from output_hidden_states (transformers' last entry is after the
    final norm);
  - reply: per-token log-probabilities of a fixed continuation, in float64 and float32;
  - top5: the five most likely next tokens after the prompt;
  - greedy: the greedy continuation (12 tokens).

Usage: python make_gemma3_reference.py [path/to/gemma-3-270m-q4_k_m.gguf]
(run scripts/fetch-gemma3.sh first). Needs torch, transformers, gguf and accelerate.
"""

import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_GGUF = os.path.join(ROOT, "models", "gemma3", "gemma-3-270m-q4_k_m.gguf")
OUT = os.path.join(ROOT, "crates", "erosion-model", "tests", "fixtures", "gemma3", "reference.json")

TEXTS = [
    "Hello, world!",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "Café naïve façade — 日本語のテキスト, emoji 🤖🚀 and Ελληνικά.",
    "def square(x):\n    return x ** 2  # a comment\n\nprint(square(3))\n",
    "a   b\t\tc\n\n\nd    \n  e  ",
    "In 2024, 1234567 people paid $3.50 each.",
    "<eos>It's a test: don't they'll we've I'm you'd<bos>",
    " leading space and trailing ",
    "\u0001\u007f control bytes",
]
PROMPT = "The capital of France is"
REPLY = " Paris, and the capital of Italy is Rome."
CONFIG_FIELDS = [
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta",
    "rope_local_base_freq", "rope_scaling", "sliding_window", "query_pre_attn_scalar",
    "final_logit_softcapping", "attn_logit_softcapping", "hidden_activation",
    "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id", "layer_types",
    "rope_parameters",
]
WEIGHTS = {
    "model.embed_tokens.weight": [(0, 0), (2, 5), (1000, 100), (262143, 639)],
    "model.layers.0.self_attn.q_proj.weight": [(0, 0), (255, 7), (1023, 639)],
    "model.layers.0.self_attn.q_norm.weight": [(0,), (255,)],
    "model.layers.0.self_attn.k_norm.weight": [(0,), (100,)],
    "model.layers.0.input_layernorm.weight": [(0,), (639,)],
    "model.layers.0.post_attention_layernorm.weight": [(0,), (639,)],
    "model.layers.0.pre_feedforward_layernorm.weight": [(0,), (639,)],
    "model.layers.0.post_feedforward_layernorm.weight": [(0,), (639,)],
    "model.layers.17.mlp.down_proj.weight": [(0, 0), (639, 2047)],
    "model.norm.weight": [(0,), (300,)],
}


def main():
    gguf = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF)
    folder, name = os.path.dirname(gguf), os.path.basename(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model32 = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    model64 = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).double().eval()
    cfg = model32.config.to_dict()
    config = {k: cfg.get(k) for k in CONFIG_FIELDS}

    tokens = [
        {"text": t, "ids": tok.encode(t), "decoded": tok.decode(tok.encode(t, add_special_tokens=False))}
        for t in TEXTS
    ]

    state = model32.state_dict()
    weights = {}
    for wname, positions in WEIGHTS.items():
        w = state[wname].double()
        weights[wname] = {
            "shape": list(w.shape),
            "sum": w.sum().item(),
            "sum_sq": (w * w).sum().item(),
            "samples": [{"index": list(p), "value": w[p].item()} for p in positions],
        }

    prompt_ids = tok.encode(PROMPT)
    reply_ids = tok.encode(REPLY, add_special_tokens=False)
    full = prompt_ids + reply_ids
    with torch.no_grad():
        out64 = model64(torch.tensor([full]), output_hidden_states=True)
        out32 = model32(torch.tensor([full]))
        greedy_ids = model32.generate(
            torch.tensor([prompt_ids]), max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id
        )[0][len(prompt_ids):].tolist()
    lp64 = torch.log_softmax(out64.logits[0].double(), dim=-1)
    lp32 = torch.log_softmax(out32.logits[0].double(), dim=-1)
    n = len(prompt_ids)
    per_token = lambda lp: [lp[n - 1 + i, t].item() for i, t in enumerate(reply_ids)]
    reply = {
        "text": REPLY,
        "ids": reply_ids,
        "logprobs": per_token(lp64),
        "logprobs_f32": per_token(lp32),
    }
    top = torch.topk(lp64[n - 1], 5)
    top5 = {"ids": top.indices.tolist(), "logprobs": top.values.tolist()}
    f32_err = max(abs(a - b) for a, b in zip(reply["logprobs"], reply["logprobs_f32"]))
    hidden = [h[0].norm(dim=-1).tolist() for h in out64.hidden_states]

    ref = {
        "source": "scripts/reference/make_gemma3_reference.py",
        "gguf": name,
        "transformers_version": __import__("transformers").__version__,
        "torch_version": torch.__version__,
        "config": config,
        "tokens": tokens,
        "weights": weights,
        "prompt": {"text": PROMPT, "ids": prompt_ids},
        "hidden_norms": {"ids": full, "norms": hidden},
        "reply": reply,
        "top5": top5,
        "greedy": {"ids": greedy_ids, "text": tok.decode(greedy_ids)},
        "max_abs_f32_vs_f64_logprob": f32_err,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}")
    print(f"config: {config}")
    print(f"greedy: {ref['greedy']['text']!r}")
    print(f"max |f32 - f64| log-prob: {f32_err:.2e}")


if __name__ == "__main__":
    main()
