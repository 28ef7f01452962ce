"""The peer side of the benchmark: PyTorch + transformers on the same model and inputs.

Run by bench/run.sh, one task per process (so peak memory is the task's own):
    python bench/peer.py --task forward --inputs out/bench/inputs.json --dir out/bench
Writes peer-<task>.json with the same fields as erosion's result (see
crates/erosion-bench/src/measure.rs). Threads: torch.set_num_threads(--threads).
Tasks (c) and (d) follow the study's code: full autograd per example, and every example's
activations kept in a list until the end.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()  # "Loading weights" bars would clutter run.sh's output


def peak_rss_mb():
    """VmHWM of this process, MiB (as erosion's side)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("/proc/self/status has no VmHWM line")


def best_of(reps, f):
    """One untimed warm-up, then `reps` timed runs; returns (times, last output)."""
    out = f()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return times, out


def plan_batches(lens, max_tokens, max_batch=64):
    """erosion's plan: longest first (ties in input order), greedy under batch * longest <= max_tokens."""
    order = sorted((i for i in range(len(lens)) if lens[i] > 0), key=lambda i: (-lens[i], i))
    batches, cur = [], []
    for i in order:
        longest = lens[cur[0]] if cur else lens[i]
        if cur and ((len(cur) + 1) * longest > max_tokens or len(cur) >= max_batch):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def padded(rows):
    """Right-padded ids and attention mask, [batch, seq]."""
    n = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), n), dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for k, r in enumerate(rows):
        ids[k, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[k, : len(r)] = 1
    return ids, mask


def result(task, times, tokens, extra=None):
    return {
        "side": "peer",
        "task": task,
        "wall_s": min(times),
        "runs_s": times,
        "tokens": tokens,
        "peak_rss_mb": peak_rss_mb(),
        "extra": extra or {},
    }


def task_matmul(reps):
    n, inner = 1024, 10
    a, b = torch.randn(n, n), torch.randn(n, n)

    def run():
        with torch.inference_mode():
            c = a @ b
            for _ in range(inner - 1):
                c = a @ b
            return c

    times, _ = best_of(reps, run)
    return result("matmul", times, 0, {"gflops": 2.0 * n**3 * inner / min(times) / 1e9})


def task_forward(inputs, reps):
    """(a) hidden states of every layer (output_hidden_states=True), batch by batch."""
    model = AutoModel.from_pretrained(inputs["model"], dtype=torch.float32).eval()
    rows = [e["ids"] for e in inputs["examples"]]
    plan = plan_batches([len(r) for r in rows], inputs["max_tokens"])
    batches = [padded([rows[i] for i in b]) for b in plan]

    def run():
        kept = 0
        with torch.inference_mode():
            for ids, mask in batches:
                out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                kept += len(out.hidden_states)
        return kept

    times, _ = best_of(reps, run)
    return result("forward", times, sum(len(r) for r in rows))


def task_logprobs(inputs, reps, erosion_values):
    """(b) full logits, log_softmax, gather at the response positions (as the study's code),
    and the entropy of each of those next-token distributions (the dataset-level table)."""
    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32).eval()
    ex = inputs["examples"]
    rows = [e["ids"][: e["response"]["end"] - 1] for e in ex]
    plan = plan_batches([len(r) for r in rows], inputs["max_tokens"])
    batches = [(b, *padded([rows[i] for i in b])) for b in plan]

    def run():
        out = [None] * len(ex)
        with torch.inference_mode():
            for members, ids, mask in batches:
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
                lp = torch.log_softmax(logits, dim=-1)  # [b, s, vocab]
                for k, i in enumerate(members):
                    s, e = ex[i]["response"]["start"], ex[i]["response"]["end"]
                    targets = torch.tensor(ex[i]["ids"][s:e], dtype=torch.long)
                    rows_lp = lp[k, s - 1 : e - 1]  # [n, vocab]
                    entropy = -(rows_lp.exp() * rows_lp).sum(-1)
                    out[i] = (rows_lp.gather(-1, targets[:, None])[:, 0], entropy)
        return out

    times, out = best_of(reps, run)
    diff, ent_diff = 0.0, 0.0
    if erosion_values is not None:
        pairs = zip(out, erosion_values["logprobs"], erosion_values["entropy"])
        for (lp, ent), their_lp, their_ent in pairs:
            diff = max(diff, (lp - torch.tensor(their_lp)).abs().max().item())
            ent_diff = max(ent_diff, (ent - torch.tensor(their_ent)).abs().max().item())
    extra = {"max_abs_diff": diff, "entropy_max_abs_diff": ent_diff}
    return result("logprobs", times, sum(len(r) for r in rows), extra)


# erosion's default loss for gradients (erosion_forward::gradients::LossSpec::default()):
# mean cross-entropy over the first 64 response tokens (fewer when the response is shorter).
LOSS_WINDOW = 64


def task_gradients(inputs, reps, erosion_dir):
    """(c) per example: zero_grad, forward with autograd, loss.backward(), the last layer's
    o_proj.weight.grad flattened (float32), kept in a list (as the study's code)."""
    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32).eval()
    weight = model.model.layers[-1].self_attn.o_proj.weight
    ex = inputs["examples"]
    work = []
    for e in ex:
        s = e["response"]["start"]
        end = min(e["response"]["end"], s + LOSS_WINDOW)
        ids = torch.tensor(e["ids"][: end - 1], dtype=torch.long)[None]
        work.append((s, end, ids, torch.tensor(e["ids"][s:end], dtype=torch.long)))

    def run():
        grads, losses = [], []
        for s, end, ids, targets in work:
            model.zero_grad()
            logits = model(input_ids=ids).logits[0]  # [end - 1, vocab]
            loss = F.cross_entropy(logits[s - 1 : end - 1], targets)
            loss.backward()
            grads.append(weight.grad.detach().flatten().clone())
            losses.append(loss.item())
        return grads, losses

    times, (grads, losses) = best_of(reps, run)
    r = result("gradients", times, sum(ids.shape[1] for _, _, ids, _ in work))
    norms = [g.double().norm().item() for g in grads]
    r["extra"].update({"dim": grads[0].numel(), "loss": losses, "grad_norm": norms})
    # Checked after the peak-memory reading: erosion's rows (a headerless f32 row store).
    path = os.path.join(erosion_dir, "erosion-gradients-values.f32")
    if os.path.exists(path):
        theirs = np.fromfile(path, dtype="<f4").reshape(len(ex), -1)
        rel = [
            float(np.linalg.norm(theirs[k].astype(np.float64) - g.double().numpy()) / norms[k])
            for k, g in enumerate(grads)
        ]
        with open(os.path.join(erosion_dir, "erosion-gradients.json")) as f:
            their_loss = json.load(f)["extra"]["loss"]
        r["extra"]["rel_diff"] = rel
        r["extra"]["max_rel_diff"] = max(rel)
        r["extra"]["max_loss_diff"] = max(abs(a - b) for a, b in zip(losses, their_loss))
    return r


def task_layers(inputs, reps, erosion_dir):
    """(d) v_l = mean(instruct) - mean(base) of hidden_states[l], l = 0..L, window-mean over
    the first T response tokens: every example's [L+1, T, d] activations kept in a list per
    model, stacked at the end, then averaged (as the study's code)."""
    t = inputs["window"]
    models = [
        AutoModel.from_pretrained(p, dtype=torch.float32).eval()
        for p in (inputs["model"], inputs["base"])
    ]
    ex = inputs["examples"]
    rows = [e["ids"][: e["response"]["start"] + t] for e in ex]
    plan = plan_batches([len(r) for r in rows], inputs["max_tokens"])
    batches = [(b, *padded([rows[i] for i in b])) for b in plan]

    def run():
        acts = []
        with torch.inference_mode():
            for model in models:
                kept = [None] * len(ex)
                for members, ids, mask in batches:
                    hs = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                    for k, i in enumerate(members):
                        s = ex[i]["response"]["start"]
                        kept[i] = torch.stack([h[k, s : s + t] for h in hs.hidden_states])
                acts.append(kept)
        mu = [torch.stack(a).mean(dim=2).mean(dim=0) for a in acts]  # [L+1, d] each
        return mu[0] - mu[1]

    times, v = best_of(reps, run)
    task = f"layers-{len(ex)}"
    r = result(task, times, 2 * sum(len(r) for r in rows))
    v = v.double()
    norms = v.norm(dim=1)
    r["extra"].update({"window": t, "direction_norms": norms.tolist()})
    path = os.path.join(erosion_dir, f"erosion-{task}-values.json")
    if os.path.exists(path):
        with open(path) as f:
            theirs = torch.tensor(json.load(f), dtype=torch.float64)
        rel = ((theirs - v).abs().max(dim=1).values / norms).tolist()
        r["extra"]["rel_diff"] = rel
        r["extra"]["max_rel_diff"] = max(rel)
    return r


def task_generate(inputs, reps, batch, erosion_dir):
    """Greedy decoding with transformers' generate: the first 4 prompts one at a time
    (batch 1) or 16 prompts left-padded in one batch; as many new tokens as erosion decoded
    (its values file), no stop token, so both sides do the same work."""
    with open(os.path.join(erosion_dir, f"erosion-generate-b{batch}-values.json")) as f:
        theirs = json.load(f)
    t = theirs["new_tokens"]
    model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None  # decode every token, as erosion does here
    n = 4 if batch == 1 else batch
    prompts = [e["ids"][: e["response"]["start"]] for e in inputs["examples"][:n]]
    groups = [prompts[i : i + batch] for i in range(0, n, batch)]

    def left_padded(rows):
        width = max(len(r) for r in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            ids[k, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[k, width - len(r) :] = 1
        return ids, mask

    batches = [left_padded(g) for g in groups]

    def run():
        out = []
        with torch.inference_mode():
            for ids, mask in batches:
                g = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=t,
                    do_sample=False,
                    pad_token_id=0,
                )
                out.extend(g[:, ids.shape[1] :].tolist())
        return out

    times, out = best_of(reps, run)
    r = result(f"generate-b{batch}", times, n * t)
    mine = theirs["ids"]
    r["extra"]["first_tokens_equal"] = all(a[:1] == b[:1] for a, b in zip(out, mine)) and len(out) == len(mine)
    r["extra"]["rows_equal"] = sum(a == b for a, b in zip(out, mine))
    return r


def task_train(inputs, reps, erosion_dir, lora):
    """Optimizer steps with PyTorch + peft, as erosion's values file says: the same examples
    per step (right-padded, one batch), transformers' own loss (`labels`, -100 off the
    targets: the mean over the step's target tokens), the global norm clipped, torch's AdamW.
    LoRA starts from erosion's A matrices (B = 0 on both sides). A fresh model per run;
    loading is not timed."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    name = "train-lora" if lora else "train-full"
    with open(os.path.join(erosion_dir, f"erosion-{name}-values.json")) as f:
        theirs = json.load(f)
    opts, steps, batch = theirs["options"], theirs["steps"], theirs["batch"]
    ex = inputs["examples"][: steps * batch]
    batches = []
    for k in range(steps):
        rows = list(zip(ex[k * batch : (k + 1) * batch], theirs["targets"][k * batch : (k + 1) * batch]))
        ids, mask = padded([e["ids"] for e, _ in rows])
        labels = torch.full_like(ids, -100)
        for r, (e, (start, end)) in enumerate(rows):
            labels[r, start:end] = ids[r, start:end]
        batches.append((ids, mask, labels))
    a_init = load_file(os.path.join(erosion_dir, theirs["adapters"])) if lora else None

    def fresh():
        model = AutoModelForCausalLM.from_pretrained(inputs["model"], dtype=torch.float32)
        if lora:
            m = opts["method"]
            cfg = LoraConfig(r=m["rank"], lora_alpha=m["alpha"], target_modules=m["targets"], lora_dropout=0.0, bias="none")
            model = get_peft_model(model, cfg)
            set_a = 0
            with torch.no_grad():
                for mod_name, mod in model.named_modules():
                    if hasattr(mod, "lora_A") and "default" in mod.lora_A:
                        key = mod_name.split("base_model.model.", 1)[1] + ".lora_A.weight"
                        mod.lora_A["default"].weight.copy_(a_init[key])
                        set_a += 1
            if set_a != len(a_init):
                raise RuntimeError(f"set {set_a} adapters, erosion saved {len(a_init)}")
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        ad = opts["adamw"]
        opt = torch.optim.AdamW(params, lr=opts["lr"], betas=(ad["beta1"], ad["beta2"]), eps=ad["eps"], weight_decay=ad["weight_decay"])
        return model, params, opt

    times, losses = [], []
    for rep in range(max(1, reps) + 1):
        model, params, opt = fresh()
        t0 = time.perf_counter()
        losses = []
        for ids, mask, labels in batches:
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, opts["max_grad_norm"])
            opt.step()
            losses.append(loss.item())
        if rep > 0:
            times.append(time.perf_counter() - t0)
    r = result(name, times, sum(len(e["ids"]) for e in ex))
    rel = [abs(a - b) / abs(b) for a, b in zip(theirs["losses"], losses)]
    r["extra"].update({"losses": losses, "erosion_losses": theirs["losses"], "max_rel_diff": max(rel)})
    return r


def ids_match(inputs):
    """Renders every example with the tokenizer's chat template and compares with erosion's ids."""
    tok = AutoTokenizer.from_pretrained(inputs["model"])
    bad = []
    for k, e in enumerate(inputs["examples"]):
        ids = tok.apply_chat_template(e["messages"], tokenize=True)
        if hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        if list(ids) != e["ids"]:
            bad.append(k)
    return bad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True, choices=["matmul", "forward", "logprobs", "gradients", "layers", "generate1", "generate16", "train-lora", "train-full"])
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.inputs) as f:
        inputs = json.load(f)
    if a.task == "matmul":
        r = task_matmul(a.reps)
    elif a.task == "forward":
        r = task_forward(inputs, a.reps)
    elif a.task == "gradients":
        r = task_gradients(inputs, a.reps, a.dir)
    elif a.task == "layers":
        r = task_layers(inputs, a.reps, a.dir)
    elif a.task.startswith("train-"):
        r = task_train(inputs, a.reps, a.dir, a.task == "train-lora")
    elif a.task.startswith("generate"):
        r = task_generate(inputs, a.reps, int(a.task[len("generate") :]), a.dir)
    else:
        path = os.path.join(a.dir, "erosion-logprobs-values.json")
        values = json.load(open(path)) if os.path.exists(path) else None
        r = task_logprobs(inputs, a.reps, values)
        # Checked after timing, in the same process: the tokenizer does not count in the
        # forward task's memory, and its cost here is small next to the model's.
        bad = ids_match(inputs)
        r["extra"]["ids_match"] = not bad
        if bad:
            r["extra"]["ids_mismatch_examples"] = bad
    with open(os.path.join(a.dir, f"peer-{r['task']}.json"), "w") as f:
        json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
