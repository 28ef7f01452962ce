#!/usr/bin/env python3
"""A Llama-2-style sentencepiece GGUF, and the ids three tokenizers give for it.

Trains a small sentencepiece BPE model the way Llama 2's was configured (byte fallback, digits
split, a dummy prefix space), writes it as llama.cpp's converter writes a sentencepiece vocabulary
(`tokenizer.ggml.model = "llama"`: pieces, scores, token types) into a tiny random `llama` GGUF
(one layer), then records for several texts:
  - ids: what transformers' GGUF loader gives (AutoTokenizer.from_pretrained(..., gguf_file=...));
  - ids_sentencepiece: what the trained sentencepiece model itself gives (with BOS), for reference;
  - decoded: transformers' decoding of the ids without BOS.

Writes crates/erosion-model/tests/fixtures/spm-llama/{tiny-spm-llama.gguf, tokens.json}.
Needs transformers, gguf, sentencepiece and numpy (the reference venv, plus `pip install
sentencepiece`).
"""

import json
import os
import tempfile

import gguf
import numpy as np
import sentencepiece as spm
from transformers import AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "crates", "erosion-model", "tests", "fixtures", "spm-llama")
NAME = "tiny-spm-llama.gguf"

CORPUS = [
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "Hello, world! How are you today? I am fine, thank you.",
    "def square(x):\n    return x ** 2  # a comment",
    "In 2024, 1234567 people paid $3.50 each for the tickets.",
    "Fine-tuning can erode the safety alignment of language models.",
    "She sells sea shells by the sea shore; the shells she sells are sea shells.",
    "Café naïve façade, and other words with accents.",
] * 20

TEXTS = [
    "Hello, world!",
    "The capital of France is Paris.",
    "  leading spaces and trailing  ",
    "a   b\t\tc\n\nd",
    "In 2024, 1234567 people paid $3.50 each.",
    "Café naïve — 日本語, emoji 🤖",
    "<s>bos in text</s> and <unk>",
    "unseenword zzzqqq",
]


def train(tmp):
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(CORPUS) + "\n")
    prefix = os.path.join(tmp, "spm")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=400, model_type="bpe", byte_fallback=True,
        split_digits=True, add_dummy_prefix=True, character_coverage=1.0, num_threads=1,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity",
    )
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def token_type(sp, i):
    # llama.cpp's SentencePieceTokenTypes.
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_byte(i):
        return 6
    if sp.is_unused(i):
        return 5
    return 1


def write_gguf(sp, path):
    n, hidden, ff, heads = sp.get_piece_size(), 8, 16, 2
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_dimension_count(hidden // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([sp.id_to_piece(i).encode("utf-8") for i in range(n)])
    w.add_token_scores([sp.get_score(i) for i in range(n)])
    w.add_token_types([token_type(sp, i) for i in range(n)])
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    rng = np.random.default_rng(0)
    t = lambda *shape: rng.standard_normal(shape).astype(np.float32) * 0.1
    w.add_tensor("token_embd.weight", t(n, hidden))
    w.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    for name, shape in [("attn_q", (hidden, hidden)), ("attn_k", (hidden, hidden)), ("attn_v", (hidden, hidden)),
                        ("attn_output", (hidden, hidden)), ("ffn_gate", (ff, hidden)), ("ffn_up", (ff, hidden)),
                        ("ffn_down", (hidden, ff))]:
        w.add_tensor(f"blk.0.{name}.weight", t(*shape))
    for name in ("attn_norm", "ffn_norm"):
        w.add_tensor(f"blk.0.{name}.weight", np.ones(hidden, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sp = train(tmp)
    path = os.path.join(OUT, NAME)
    write_gguf(sp, path)
    tok = AutoTokenizer.from_pretrained(OUT, gguf_file=NAME)
    cases = []
    for text in TEXTS:
        ids = tok.encode(text)
        cases.append({
            "text": text,
            "ids": ids,
            "ids_sentencepiece": [sp.bos_id()] + sp.encode(text),
            "decoded": tok.decode(tok.encode(text, add_special_tokens=False)),
        })
        if cases[-1]["ids"] != cases[-1]["ids_sentencepiece"]:
            print(f"transformers and sentencepiece differ on {text!r}")
    ref = {
        "source": "scripts/reference/make_spm_gguf_fixture.py",
        "transformers_version": __import__("transformers").__version__,
        "sentencepiece_version": spm.__version__,
        "vocab_size": sp.get_piece_size(),
        "tokens": cases,
    }
    with open(os.path.join(OUT, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes) and tokens.json")


if __name__ == "__main__":
    main()
