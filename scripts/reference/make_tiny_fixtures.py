"""Tiny random Qwen2 / Qwen3 / Llama / Mistral / Gemma 2 / Gemma 3 checkpoints and their Hugging
Face reference outputs.

The Rust transformer (crates/erosion-model) is held to these numbers by
crates/erosion-model/tests/hf_fixtures.rs. For each architecture this writes
crates/erosion-model/tests/fixtures/tiny-<arch>/ with

  config.json            what transformers saves, with the rope settings written in the legacy
                         form real hub checkpoints use (`rope_theta`, `rope_scaling`; see below)
  model.safetensors      f32 weights under their Hugging Face names
  reference.safetensors  input_ids [3, S] (int64) and attention_mask [3, S] (int64) of a
                         RIGHT-padded batch of three sequences of different lengths;
                         logits [3, S, vocab] (f32) and hidden_states.{i} [3, S, hidden] (f32)
                         for every entry i of `output_hidden_states` (i = 0: embeddings,
                         i = l: output of decoder layer l-1, last: after the final norm `model.norm`);
                         logits_bf16 [3, S, vocab] (bf16): the same model cast to bfloat16.

Only positions where attention_mask is 1 are meaningful: transformers' default position ids
ignore the mask, which is right for right padding at the valid positions only.

The architectures differ where the Rust code branches:
  tiny-qwen2    q/k/v bias, tied embeddings, GQA (4 heads / 2 kv heads), rope_theta 1e6
  tiny-llama    untied lm_head, GQA, rope_theta 500000 with llama3 rope scaling whose
                thresholds put one frequency in each branch (high kept, medium smoothed,
                low divided by the factor), rms_norm_eps 1e-5
  tiny-mistral  untied, GQA, an explicit head_dim (16) different from hidden / heads (8),
                sliding_window 4096 (longer than the sequences, so full attention)
  tiny-qwen3    per-head q/k RMS norms, no biases, head_dim 16, untied
  tiny-gemma2   four (1 + w) norms per block, scaled embeddings, GeGLU, query_pre_attn_scalar 24
                (not head_dim), attention and final logit soft-capping at values the activations
                reach (5 and 30: tanh bends them), sliding_window 4 on layer 0 (shorter than
                the longest sequence, 10, so the window cuts keys), full attention on layer 1
  tiny-gemma3   q/k norms with (1 + w), sliding_window 4 on layer 0 with local RoPE base 10000,
                full attention on layer 1 with rope_theta 1e6 and linear rope scaling (factor 8)

Weights are drawn with a seeded generator at scales that keep activations and logits of
order one (Hugging Face's std 0.02 init would make every logit ~0 and a 1e-4 tolerance
meaningless); norm gains are 1 + noise and biases nonzero, so every tensor matters.
Attention runs with attn_implementation="eager" (the bf16 reference then rounds where the
Rust code does: norm and softmax in f32, the rest in bf16).

Why the legacy rope keys: transformers 5 saves rope settings as `rope_parameters`, while the
checkpoints on the hub (Qwen2.5, Llama 3.x, SmolLM2) carry `rope_theta` and `rope_scaling`.
The script rewrites config.json in the hub form and checks that transformers, reloading the
folder, reproduces the logits bit for bit, so both readers see the same rope.

Rerun (from the repository root; the venv comes from scripts/reference/setup-venv.sh):

    .venv/bin/python scripts/reference/make_tiny_fixtures.py

Made with: Python 3, torch 2.15.0 (CPU), transformers 5.24.0, safetensors 0.8.0 (qwen2, llama,
mistral); transformers 5.25.0 (qwen3, gemma2, gemma3: `make_tiny_fixtures.py qwen3 gemma2 gemma3`).
The output is deterministic for these versions (seeded generator, CPU, eager attention).
"""

import json
import os
import sys
import tempfile

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "crates", "erosion-model", "tests", "fixtures")

COMMON = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

ARCHS = {
    "qwen2": dict(
        cls=transformers.Qwen2Config,
        kw=dict(COMMON, rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                use_sliding_window=False),
        seed=1,
    ),
    "llama": dict(
        cls=transformers.LlamaConfig,
        kw=dict(COMMON, rope_theta=500_000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                # head_dim 8 -> wavelengths 2*pi*theta^(i/4) = 6.3, 167, 4443, 118000 tokens;
                # with original context 256, low_freq_wavelen = 256 and high_freq_wavelen = 64:
                # i=0 is kept, i=1 is smoothed, i=2,3 are divided by the factor.
                rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                  high_freq_factor=4.0, original_max_position_embeddings=256)),
        seed=2,
    ),
    "mistral": dict(
        cls=transformers.MistralConfig,
        kw=dict(COMMON, rope_theta=10_000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                head_dim=16, sliding_window=4096),
        seed=3,
    ),
}

GEMMA = dict(COMMON, head_dim=16, query_pre_attn_scalar=24, rms_norm_eps=1e-6,
             tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh", sliding_window=4)

ARCHS.update({
    "qwen3": dict(
        cls=transformers.Qwen3Config,
        kw=dict(COMMON, head_dim=16, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
                tie_word_embeddings=False, use_sliding_window=False),
        seed=4,
    ),
    "gemma2": dict(
        cls=transformers.Gemma2Config,
        kw=dict(GEMMA, rope_theta=10_000.0, attn_logit_softcapping=5.0,
                final_logit_softcapping=30.0),
        seed=5,
    ),
    "gemma3": dict(
        cls=transformers.Gemma3TextConfig,
        kw=dict(GEMMA, layer_types=["sliding_attention", "full_attention"],
                rope_parameters={
                    "sliding_attention": dict(rope_type="default", rope_theta=10_000.0),
                    "full_attention": dict(rope_type="linear", factor=8.0, rope_theta=1_000_000.0),
                }),
        seed=6,
    ),
})

LENGTHS = [10, 6, 3]  # right-padded to 10


def init_weights(model, seed):
    """Order-one activations: x ~ N(0,1) embeddings, W ~ N(0, 1/fan_in), gains 1 + N(0, 0.2^2)
    (Gemma stores a norm's gain as its offset from 1, so its weights are N(0, 0.2^2))."""
    g = torch.Generator().manual_seed(seed)
    offset = 0.0 if model.config.model_type.startswith("gemma") else 1.0
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(offset + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # [out, in] linear weights, lm_head included
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def batch(vocab, seed):
    g = torch.Generator().manual_seed(100 + seed)
    seq = max(LENGTHS)
    ids = torch.zeros(len(LENGTHS), seq, dtype=torch.int64)
    mask = torch.zeros(len(LENGTHS), seq, dtype=torch.int64)
    for b, n in enumerate(LENGTHS):
        ids[b, :n] = torch.randint(3, vocab, (n,), generator=g)
        mask[b, :n] = 1
    return ids, mask


def legacy_rope_config(path, arch_kw):
    """Rewrites transformers 5's `rope_parameters` as the hub's `rope_theta` + `rope_scaling`."""
    with open(path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters", None) or {}
    if "full_attention" in rp:  # Gemma 3: one set per attention type
        cfg["rope_local_base_freq"] = rp["sliding_attention"]["rope_theta"]
        rp = rp["full_attention"]
    cfg["rope_theta"] = rp.get("rope_theta", arch_kw.get("rope_theta"))
    if rp.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = {k: v for k, v in rp.items() if k != "rope_theta"}
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def run(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return out.logits, out.hidden_states


def make(arch, spec):
    torch.manual_seed(spec["seed"])
    cfg = spec["cls"](**spec["kw"])
    cfg._attn_implementation = "eager"
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    init_weights(model, spec["seed"])
    ids, mask = batch(cfg.vocab_size, spec["seed"])
    logits, hidden = run(model, ids, mask)

    # The last hidden state is after the final norm; the others are raw residual streams.
    assert len(hidden) == cfg.num_hidden_layers + 1
    with torch.no_grad():
        last = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(hidden[-1], last), "hidden_states[-1] is expected after model.norm"

    folder = os.path.join(OUT, f"tiny-{arch}")
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        legacy_rope_config(os.path.join(tmp, "config.json"), spec["kw"])
        for name in ("config.json", "model.safetensors"):
            os.replace(os.path.join(tmp, name), os.path.join(folder, name))

    # The folder as written must reproduce the logits in transformers itself.
    reloaded = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    logits2, _ = run(reloaded, ids, mask)
    assert torch.equal(logits, logits2), f"{arch}: reloaded folder gives different logits"

    bf16 = reloaded.to(torch.bfloat16)
    logits_bf16, _ = run(bf16, ids, mask)
    valid = mask.bool()
    err = (logits_bf16.float() - logits)[valid].abs().max().item()

    tensors = {"input_ids": ids, "attention_mask": mask, "logits": logits.contiguous(),
               "logits_bf16": logits_bf16.contiguous()}
    for i, h in enumerate(hidden):
        tensors[f"hidden_states.{i}"] = h.contiguous()
    save_file(tensors, os.path.join(folder, "reference.safetensors"),
              metadata={"transformers": transformers.__version__, "torch": torch.__version__})
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"tiny-{arch}: {size / 1024:.0f} KiB, |logits| max {logits[valid].abs().max():.2f}, "
          f"bf16 vs f32 logits max diff {err:.4f}")
    return size


def main():
    only = sys.argv[1:]  # optional: the architectures to (re)make
    total = sum(make(arch, spec) for arch, spec in ARCHS.items() if not only or arch in only)
    print(f"total {total / 1024:.0f} KiB under {OUT}")
    if total > 900 * 1024:
        sys.exit("fixtures exceed 900 KiB")


if __name__ == "__main__":
    main()
