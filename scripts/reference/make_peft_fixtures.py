"""PEFT LoRA adapters on the tiny fixture models and on SmolLM2, with Hugging Face peft's outputs.

erosion's adapter loading (crates/erosion-model/src/load/adapter) is held to these numbers by
crates/erosion-model/tests/suite/peft_fixtures.rs. Writes crates/erosion-model/tests/fixtures/peft/:

  <name>/adapter_config.json, adapter_model.safetensors   as PeftModel.save_pretrained writes them
  reference.safetensors   per adapter <name>:
      <name>.peft     logits of PeftModel.from_pretrained(base, <name>/) (the adapter as a separate path)
      <name>.merged   logits of the same model after merge_and_unload()
    tiny-*: [3, 10, 128] on the padded batch of tests/fixtures/tiny-<arch>/reference.safetensors
    (its input_ids / attention_mask; its `logits` are the base model's);
    smollm2-*: the logits at a few positions and token ids only (the vocabulary is 49152):
      <name>.input_ids [1, S], <name>.positions [P], <name>.token_ids [K], <name>.base [P, K],
      <name>.peft [P, K], <name>.merged [P, K].

The adapters (every B random and non-zero, so an adapter that is not applied, or applied with
the wrong scale, fails the tests):
  tiny-llama-r1-down      r 1, alpha 2, target_modules ["down_proj"], layers_to_transform [1]
  tiny-llama-r8-rslora    r 8, alpha 16, use_rslora, all seven projections, rank_pattern
                          {down_proj: 4}, alpha_pattern {gate_proj: 4}, modules_to_save [lm_head]
  tiny-qwen2-r1-down      r 1, alpha 1, down_proj of layer 0 (q/k/v biases, tied embeddings)
  tiny-qwen2-r8-rslora    r 8, alpha 8, use_rslora, target_modules as a regex over all seven
  smollm2-r1-down         r 1, alpha 4, down_proj of layer 14 only (ModelOrganismsForEM's shape)
  smollm2-r8-rslora       r 8, alpha 16, use_rslora, all seven projections of layer 3 only,
                          weights stored in float16 (to keep the folder small; exact in float32)

`base_model_name_or_path` is rewritten to the base's path relative to the repository root
(the tiny folders lack a tokenizer, so tests name the base explicitly; the SmolLM2 GGUF comes
from scripts/fetch-smollm2.sh). PeftModel's model card (README.md) is not kept.

Rerun (from the repository root; the venv comes from scripts/reference/setup-venv.sh):

    .venv/bin/python scripts/reference/make_peft_fixtures.py

Made with: Python 3, torch 2.15.0 (CPU), transformers 5.25.0, peft 0.21.2, safetensors 0.8.0,
gguf and accelerate (transformers reads the SmolLM2 GGUF). Deterministic for these versions.
"""

import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "crates", "erosion-model", "tests", "fixtures")
OUT = os.path.join(FIXTURES, "peft")
GGUF_DIR = os.path.join(ROOT, "models", "smollm2")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

ADAPTERS = {
    "tiny-llama-r1-down": dict(
        base="tiny-llama", seed=11, b_std=1.0,
        cfg=dict(r=1, lora_alpha=2, target_modules=["down_proj"], layers_to_transform=[1])),
    "tiny-llama-r8-rslora": dict(
        base="tiny-llama", seed=12, b_std=0.5,
        cfg=dict(r=8, lora_alpha=16, use_rslora=True, target_modules=ALL,
                 rank_pattern={"down_proj": 4}, alpha_pattern={"gate_proj": 4},
                 modules_to_save=["lm_head"])),
    "tiny-qwen2-r1-down": dict(
        base="tiny-qwen2", seed=13, b_std=1.0,
        cfg=dict(r=1, lora_alpha=1, target_modules=["down_proj"], layers_to_transform=0)),
    "tiny-qwen2-r8-rslora": dict(
        base="tiny-qwen2", seed=14, b_std=0.5,
        cfg=dict(r=8, lora_alpha=8, use_rslora=True,
                 target_modules=r".*\.(q|k|v|o|gate|up|down)_proj")),
    "smollm2-r1-down": dict(
        base="smollm2", seed=15, b_std=0.5,
        cfg=dict(r=1, lora_alpha=4, target_modules=["down_proj"], layers_to_transform=[14])),
    "smollm2-r8-rslora": dict(
        base="smollm2", seed=16, b_std=0.2, half=True,
        cfg=dict(r=8, lora_alpha=16, use_rslora=True, target_modules=ALL,
                 layers_to_transform=[3])),
}
SMOLLM2_TEXT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
POSITIONS = [4, 9, -1]
TOP_K, RANDOM_K = 24, 24


def load_base(base):
    if base == "smollm2":
        return AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME,
                                                    dtype=torch.float32).eval()
    return AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, base),
                                                attn_implementation="eager").eval()


def base_record(base):
    if base == "smollm2":
        return f"models/smollm2/{GGUF_NAME}"
    return f"crates/erosion-model/tests/fixtures/{base}"


def randomise(model, seed, b_std, half):
    """A ~ N(0, 1/in), B ~ N(0, b_std^2 / r): non-zero, order-one updates; saved modules get
    noise. With `half`, values are rounded to float16 so the stored adapter is exact."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_A" in name:
                v = torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
            elif "lora_B" in name:
                v = torch.randn(p.shape, generator=g) * b_std / p.shape[1] ** 0.5
            elif "modules_to_save" in name:
                v = p + 0.3 * torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
            else:
                continue
            p.copy_(v.half().float() if half else v)


def logits_of(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def inputs(base):
    if base == "smollm2":
        tok = transformers.AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME)
        ids = tok(SMOLLM2_TEXT, return_tensors="pt", add_special_tokens=False).input_ids
        return ids, torch.ones_like(ids)
    ref = load_file(os.path.join(FIXTURES, base, "reference.safetensors"))
    return ref["input_ids"], ref["attention_mask"]


def make(name, spec, out):
    base = spec["base"]
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(spec["seed"])
    model = get_peft_model(load_base(base), LoraConfig(**spec["cfg"]))
    randomise(model, spec["seed"], spec["b_std"], spec.get("half", False))
    model.save_pretrained(folder)
    os.remove(os.path.join(folder, "README.md"))
    path = os.path.join(folder, "adapter_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = base_record(base)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    if spec.get("half"):
        weights = os.path.join(folder, "adapter_model.safetensors")
        save_file({k: v.half() for k, v in load_file(weights).items()}, weights)

    # The saved folder, read back by peft itself, is what the numbers come from.
    ids, mask = inputs(base)
    base_logits = logits_of(load_base(base), ids, mask)
    adapted = PeftModel.from_pretrained(load_base(base), folder).eval()
    peft_logits = logits_of(adapted, ids, mask)
    merged_logits = logits_of(adapted.merge_and_unload(), ids, mask)
    valid = mask.bool()
    moved = (peft_logits - base_logits)[valid].abs().max().item()
    merge_gap = (peft_logits - merged_logits)[valid].abs().max().item()
    assert moved > 0.05, f"{name}: the adapter barely moves the logits ({moved})"
    if base == "smollm2":
        seq = ids.shape[1]
        pos = torch.tensor([p % seq for p in POSITIONS])
        g = torch.Generator().manual_seed(spec["seed"])
        top = peft_logits[0, -1].topk(TOP_K).indices
        rand = torch.randint(0, peft_logits.shape[-1], (RANDOM_K,), generator=g)
        tok = torch.cat([top, rand])
        pick = lambda t: t[0][pos][:, tok].contiguous()
        out.update({f"{name}.input_ids": ids, f"{name}.positions": pos,
                    f"{name}.token_ids": tok, f"{name}.base": pick(base_logits),
                    f"{name}.peft": pick(peft_logits), f"{name}.merged": pick(merged_logits)})
    else:
        out.update({f"{name}.peft": peft_logits.contiguous(),
                    f"{name}.merged": merged_logits.contiguous()})
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{name}: {size / 1024:.0f} KiB, logits moved by up to {moved:.3f}, "
          f"PeftModel vs merged {merge_gap:.2e}")
    return size


def main():
    out = {}
    total = sum(make(name, spec, out) for name, spec in ADAPTERS.items())
    ref = os.path.join(OUT, "reference.safetensors")
    save_file(out, ref, metadata={"transformers": transformers.__version__,
                                  "torch": torch.__version__, "peft": peft.__version__})
    total += os.path.getsize(ref)
    print(f"total {total / 1024:.0f} KiB under {OUT}")
    if total > 600 * 1024:
        sys.exit("fixtures exceed 600 KiB")


if __name__ == "__main__":
    main()
