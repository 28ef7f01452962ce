#!/usr/bin/env python3
"""Reference values for SmolLM2-135M-Instruct (GGUF, Q4_1) from Hugging Face transformers.

transformers reads the GGUF with its own dequantiser (gguf-py) and undoes llama.cpp's Q/K
row permutation itself, so these numbers check erosion's GGUF path independently: the
tokenizer rebuilt from metadata, the dequantised and unpermuted weights, the forward pass.

Writes crates/erosion-model/tests/fixtures/smollm2/reference.json with
  - tokens: ids of several texts (special tokens, unicode, code, whitespace runs, digits);
  - weights: shape, sum, sum of squares and sampled values of a few tensors (q/k_proj show the
    unpermutation directly, without running the model);
  - chat: the rendering of [user: "What is the capital of France?"] with the generation prompt,
    and its ids;
  - greedy: the greedy continuation (20 tokens);
  - reply: per-token log-probabilities of a fixed reply after that prompt;
  - top5: the five most likely next tokens at the last prompt position.
Log-probabilities are computed in float64 from the dequantised weights (the model's exact
function of those weights), and again in float32 to show the size of float32 rounding,
which bounds the tolerance a float32 implementation can be held to.

On the tokenizer: for `tokenizer.ggml.pre = smollm` transformers keeps GPT-2's split, so a
digit run like "2024" stays one piece, while llama.cpp (llama-vocab.cpp: `\\p{N}` first, then
GPT-2's regex) and SmolLM2's own tokenizer.json split every digit (llama.cpp's converter picks
`smollm` by matching the tokenizer's output on a test text that contains digit runs). We record
`ids` with llama.cpp's split installed on transformers' tokenizer, and `ids_transformers_gguf`
as transformers gives them. For this vocabulary the two agree (its merges never join a digit
to anything, so splitting digits first changes nothing); the script prints any text where
they differ.

Usage: python make_smollm2_reference.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
(run scripts/fetch-smollm2.sh first). Needs torch, transformers, gguf and accelerate (transformers
refuses to load a GGUF without accelerate).
"""

import json
import os
import sys

import torch
from tokenizers import Regex, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_GGUF = os.path.join(ROOT, "models", "smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "crates", "erosion-model", "tests", "fixtures", "smollm2", "reference.json")

TEXTS = [
    "Hello, world!",
    "<|im_start|>user\nHi there<|im_end|>\n",
    "Café naïve façade — 日本語のテキスト, emoji 🤖🚀 and Ελληνικά.",
    "def square(x):\n    return x ** 2  # a comment\n\nprint(square(3))\n",
    "a   b\t\tc\n\n\nd    \n  e  ",
    "In 2024, 1234567 people paid $3.50 each.",
    "<|endoftext|>It's a test: don't they'll we've I'm you'd",
]
QUESTION = "What is the capital of France?"
REPLY = "The capital of France is Paris."
# Sampled positions (row, column) of the weights checked directly.
WEIGHTS = {
    "model.embed_tokens.weight": [(0, 0), (1, 5), (28, 100), (49151, 575), (12345, 321)],
    "model.layers.0.self_attn.q_proj.weight": [(0, 0), (1, 0), (31, 7), (32, 7), (63, 500), (64, 1), (575, 575)],
    "model.layers.0.self_attn.k_proj.weight": [(0, 0), (1, 0), (31, 3), (32, 3), (100, 200), (191, 575)],
    "model.layers.29.self_attn.k_proj.weight": [(2, 9), (33, 9), (150, 400)],
    "model.layers.0.self_attn.v_proj.weight": [(0, 0), (191, 575)],
    "model.layers.5.mlp.down_proj.weight": [(0, 0), (575, 1535), (300, 700)],
    "model.layers.0.input_layernorm.weight": [(0,), (575,)],
    "model.norm.weight": [(0,), (300,)],
}


def smollm_split_tokenizer(tok):
    """A copy of `tok` whose pre-tokenizer is llama.cpp's for `smollm` (llama-vocab.cpp)."""
    import copy

    fixed = copy.deepcopy(tok)
    gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
    fixed.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"),
            pre_tokenizers.Split(Regex(gpt2), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return fixed


def logprobs_at(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def main():
    gguf = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF)
    folder, name = os.path.dirname(gguf), os.path.basename(gguf)
    raw_tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tok = smollm_split_tokenizer(raw_tok)
    model32 = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    model64 = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).double().eval()

    tokens = [
        {
            "text": t,
            "ids": tok.encode(t),
            "ids_transformers_gguf": raw_tok.encode(t),
        }
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

    messages = [{"role": "user", "content": QUESTION}]
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tok.encode(prompt, add_special_tokens=False)

    with torch.no_grad():
        out = model32.generate(
            torch.tensor([prompt_ids]), max_new_tokens=20, do_sample=False, pad_token_id=tok.pad_token_id
        )[0][len(prompt_ids):].tolist()
    greedy = {"ids": out, "text": tok.decode(out, skip_special_tokens=True)}

    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    reply_ids = tok.encode(REPLY, add_special_tokens=False) + [im_end]
    full = prompt_ids + reply_ids
    lp64 = logprobs_at(model64, full)
    lp32 = logprobs_at(model32, full)
    n = len(prompt_ids)
    per_token = lambda lp: [lp[n - 1 + i, t].item() for i, t in enumerate(reply_ids)]
    reply = {
        "text": REPLY,
        "ids": reply_ids,
        "tokens": [tok.decode([t]) for t in reply_ids],
        "logprobs": per_token(lp64),
        "logprobs_f32": per_token(lp32),
    }
    top = torch.topk(lp64[n - 1], 5)
    top5 = {"ids": top.indices.tolist(), "logprobs": top.values.tolist()}
    top5_f32 = lp32[n - 1, top.indices].tolist()
    f32_err = max(
        abs(a - b) for a, b in zip(reply["logprobs"] + top5["logprobs"], reply["logprobs_f32"] + top5_f32)
    )

    ref = {
        "source": "scripts/reference/make_smollm2_reference.py",
        "gguf": name,
        "transformers_version": __import__("transformers").__version__,
        "torch_version": torch.__version__,
        "tokens": tokens,
        "weights": weights,
        "chat": {"messages": messages, "prompt": prompt, "prompt_ids": prompt_ids},
        "greedy": greedy,
        "reply": reply,
        "top5": top5,
        "top5_logprobs_f32": top5_f32,
        "max_abs_f32_vs_f64_logprob": f32_err,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}")
    print(f"greedy: {greedy['text']!r}")
    print(f"max |f32 - f64| log-prob: {f32_err:.2e}")
    for t in tokens:
        if t["ids"] != t["ids_transformers_gguf"]:
            print(f"split differs from transformers' on {t['text']!r}")


if __name__ == "__main__":
    main()
