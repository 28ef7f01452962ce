#!/usr/bin/env python3
"""Reference fixtures for erosion's chat rendering, made with Hugging Face transformers itself.

Writes into crates/erosion-model/tests/fixtures/chat/:
  templates/smollm2-135m-instruct.jinja  the chat template stored in the SmolLM2 GGUF
  renders.json       for each real template x conversation x add_generation_prompt: the text that
                     transformers' apply_chat_template(tokenize=False) renders, or its error
  tiny-chatml/       a small byte-level BPE tokenizer (trained here) with tokenizer_config.json
  tiny_tokens.json   ids that transformers' apply_chat_template(tokenize=True) gives with it, and
                     the response's token span found independently (char_to_token on the text)
  smollm2_tokens.json  the same for the real SmolLM2-135M-Instruct tokenizer, read from the GGUF
                     (only when models/smollm2 holds it: scripts/fetch-smollm2.sh)

The other templates in templates/ are transcriptions of the published tokenizer_config.json
chat templates (see crates/erosion-model/tests/fixtures/chat/templates/SOURCES.md).
Run with the reference venv:
    /work/refvenv/bin/python scripts/reference/make_chat_fixtures.py
"""
import datetime as _dt
import json
import os
import sys

import transformers.utils.chat_template_utils as ctu
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "erosion-model", "tests", "fixtures", "chat")
TEMPLATES = os.path.join(OUT, "templates")
GGUF_DIR = os.path.join(ROOT, "models", "smollm2")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# The clock strftime_now reads while rendering (Llama 3.2 prints today's date): 2025-03-09 14:05 UTC.
NOW_UNIX = 1741529100


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return _dt.datetime.fromtimestamp(NOW_UNIX, _dt.timezone.utc).replace(tzinfo=None)


# transformers' strftime_now calls `datetime.now()` through this module's global.
ctu.datetime = _FixedDatetime

# Named special tokens of each checkpoint (its tokenizer_config.json), which transformers passes
# to the template.
TEMPLATE_TOKENS = {
    "qwen2.5-instruct": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen3": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "smollm2-135m-instruct": {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|im_end|>",
    },
    "llama-3-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama-3.1-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama-3.2-instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "mistral-7b-instruct-v0.2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "gemma-3-it": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city — in °C, <b>bold</b> & 'quoted'",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": 'City, e.g. "Paris"'},
                    "days": {"type": "integer", "default": 3},
                    "ratio": {"type": "number", "default": 0.5},
                    "units": {"type": "string", "enum": ["c", "f"], "nullable": None},
                },
                "required": ["city"],
            },
        },
    }
]

U, A, S = "user", "assistant", "system"
CONVERSATIONS = [
    {"name": "no_system", "messages": [
        {"role": U, "content": "What is the capital of France?"},
        {"role": A, "content": "The capital of France is Paris."}]},
    {"name": "explicit_system", "messages": [
        {"role": S, "content": "You are a terse assistant."},
        {"role": U, "content": "Name a prime number."},
        {"role": A, "content": "7"}]},
    {"name": "multi_turn", "messages": [
        {"role": U, "content": "Hello!"},
        {"role": A, "content": "Hi, how can I help?"},
        {"role": U, "content": "Tell me a joke."},
        {"role": A, "content": "Why did the chicken cross the road? To get to the other side."}]},
    {"name": "unicode", "messages": [
        {"role": U, "content": "Ünïcödé: 日本語, emoji 😀, עברית"},
        {"role": A, "content": "Réponse — naïve café ✓ 🚀"}]},
    {"name": "code_braces", "messages": [
        {"role": U, "content": "Explain {{ name }} and {% if x %} in Jinja."},
        {"role": A, "content": "```python\ndef f(d):\n    return {'a': {'b': d}}\n```\nUse `{{ value }}` or {%- raw %}{{ x }}{% endraw %}."}]},
    {"name": "whitespace", "messages": [
        {"role": S, "content": "  spaced system  \n"},
        {"role": U, "content": "  padded question  \n\n"},
        {"role": A, "content": "\n\n  indented answer, trailing spaces   \n\n"}]},
    {"name": "empty_answer", "messages": [
        {"role": U, "content": "Say nothing."},
        {"role": A, "content": ""}]},
    {"name": "tool_role", "messages": [
        {"role": U, "content": "Weather in Paris?"},
        {"role": A, "content": "Let me check."},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": A, "content": "It is 21 °C."}]},
    {"name": "with_tools", "tools": TOOLS, "messages": [
        {"role": U, "content": "Weather in Paris?"},
        {"role": A, "content": "Calling the tool."}]},
    {"name": "date_kwarg", "kwargs": {"date_string": "01 Jan 2030"}, "messages": [
        {"role": U, "content": "What day is it?"},
        {"role": A, "content": "New year."}]},
    {"name": "thinking", "kwargs": {"enable_thinking": False}, "messages": [
        {"role": U, "content": "2 + 2?"},
        {"role": A, "content": "<think>\nSimple.\n</think>\n\nFour."},
        {"role": U, "content": "And 3 + 3?"},
        {"role": A, "content": "<think>\nAlso simple.\n</think>\n\n\nSix."}]},
]


def blank_tokenizer():
    """A minimal tokenizer object: apply_chat_template(tokenize=False) only reads the template
    and the named special tokens."""
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return tk


def render_all():
    cases = []
    for name, tokens in TEMPLATE_TOKENS.items():
        with open(os.path.join(TEMPLATES, name + ".jinja"), encoding="utf-8") as f:
            source = f.read()
        tok = PreTrainedTokenizerFast(tokenizer_object=blank_tokenizer(), **tokens)
        assert tok.special_tokens_map == tokens, (name, tok.special_tokens_map)
        for conv in CONVERSATIONS:
            for agp in (False, True):
                case = {"template": name, "conversation": conv["name"], "add_generation_prompt": agp}
                try:
                    case["text"] = tok.apply_chat_template(
                        conv["messages"], chat_template=source, tokenize=False,
                        add_generation_prompt=agp, tools=conv.get("tools"), **conv.get("kwargs", {}))
                except Exception as e:  # the template's own raise_exception, or a jinja2 error
                    case["error"] = str(e)
                    case["error_type"] = type(e).__name__
                cases.append(case)
    return {
        "generated_by": "scripts/reference/make_chat_fixtures.py",
        "now_unix": NOW_UNIX,
        "special_tokens": TEMPLATE_TOKENS,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }


TINY_CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "system user assistant tool Hello! Hi, how can I help? Tell me a joke.",
    "def f(d):\n    return {'a': {'b': d}}\n\n\ndef g():\n    return 1\n",
    "Write g. Indent? Say nothing. \n\n\n\n",
    "Question: Answer: Paris is the answer.  Indented  text\n\n  with spaces   ",
    "Réponse naïve café, 日本語 emoji",
]


def train_tiny(folder, smollm2_template):
    """Byte-level BPE in the GPT-2 style (as SmolLM2's), small enough to commit."""
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=420,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(TINY_CORPUS * 3, trainer=trainer)
    os.makedirs(folder, exist_ok=True)
    tk.save(os.path.join(folder, "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": {"__type": "AddedToken", "content": "<|im_start|>", "lstrip": False,
                      "normalized": False, "rstrip": False, "single_word": False, "special": True},
        "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "chat_template": smollm2_template,
    }
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)


def _byte_decoder():
    """GPT-2's byte-level alphabet, inverted: the printable character that stands for each byte."""
    alphabet = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = alphabet[:]
    n = 0
    for b in range(256):
        if b not in alphabet:
            alphabet.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(alphabet, chars)}


def token_byte_offsets(tok, ids, text):
    """Byte offsets of each token in `text`, from the tokens' own bytes (added tokens are their
    text; the others are GPT-2 byte-level strings). Independent of the tokenizer's offset logic."""
    decoder = _byte_decoder()
    added = {t.content for t in tok.added_tokens_decoder.values()}
    offsets, pos = [], 0
    for piece in tok.convert_ids_to_tokens(ids):
        n = len(piece.encode("utf-8")) if piece in added else len(bytes(decoder[c] for c in piece))
        offsets.append((pos, pos + n))
        pos += n
    assert pos == len(text.encode("utf-8")), "tokens do not cover the text"
    return offsets


def response_tokens(tok, ids, text, start, end):
    """Include = tokens overlapping the response's bytes [start, end), Exclude = tokens inside them
    (both as [first, end) token ranges), and the first token at or after `end`."""
    offsets = token_byte_offsets(tok, ids, text)
    overlapping = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    inside = [i for i, (s, e) in enumerate(offsets) if s >= start and e <= end]
    at_start = next(i for i, (s, e) in enumerate(offsets) if e > start)
    include = [overlapping[0], overlapping[-1] + 1] if overlapping else [at_start, at_start]
    exclude = [inside[0], inside[-1] + 1] if inside else [include[0], include[0]]
    after = next((i for i, (s, e) in enumerate(offsets) if s >= end), len(ids))
    return include, exclude, after


def token_cases(tok, conversations):
    """ids from apply_chat_template(tokenize=True), and the response's tokens found from each
    token's bytes (see response_tokens)."""
    out = []
    for conv in conversations:
        msgs = conv["messages"]
        text = tok.apply_chat_template(msgs, tokenize=False)
        ids = tok.apply_chat_template(msgs, tokenize=True, return_dict=False)
        prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
        content = msgs[-1]["content"]
        # These ChatML templates print the prompt, then the content unchanged, then <|im_end|>.
        assert text.startswith(prompt + content + "<|im_end|>"), conv["name"]
        assert tok(text, add_special_tokens=False)["input_ids"] == ids
        start = len(prompt.encode("utf-8"))
        end = start + len(content.encode("utf-8"))
        include, exclude, eot = response_tokens(tok, ids, text, start, end)
        out.append({
            "name": conv["name"],
            "messages": msgs,
            "text": text,
            "ids": ids,
            "response_text": content,
            "response_include": include,
            "response_exclude": exclude,
            "straddles": include != exclude,
            "end_of_turn": [eot, eot + 1],
        })
    return out


def plain_cases(tok):
    """Template-free renderings: "{user_prefix}{user}{separator}{assistant_prefix}{assistant}",
    tokenized as tokenizer(text) does (with the post-processor's special tokens)."""
    out = []
    for user_prefix, assistant_prefix in (("", ""), ("Question: ", "Answer: ")):
        user, answer = "What?", "Paris is the answer."
        prompt = f"{user_prefix}{user}\n{assistant_prefix}"
        text = prompt + answer
        ids = tok(text)["input_ids"]
        start = len(prompt.encode("utf-8"))
        include, exclude, _ = response_tokens(tok, ids, text, start, start + len(answer.encode("utf-8")))
        out.append({"user_prefix": user_prefix, "assistant_prefix": assistant_prefix,
                    "messages": [{"role": U, "content": user}, {"role": A, "content": answer}],
                    "text": text, "ids": ids, "response_include": include,
                    "response_exclude": exclude, "straddles": include != exclude})
    return out


TOKEN_CONVERSATIONS = [c for c in CONVERSATIONS if c["name"] in (
    "no_system", "explicit_system", "multi_turn", "unicode", "code_braces", "empty_answer")] + [
    {"name": "leading_newlines", "messages": [
        {"role": U, "content": "Write g."},
        {"role": A, "content": "\n\ndef g():\n    return 1\n"}]},
    {"name": "trailing_spaces", "messages": [
        {"role": U, "content": "Indent?"},
        {"role": A, "content": "  Indented  text   "}]},
]


def main():
    smollm2_template = None
    gguf = os.path.join(GGUF_DIR, GGUF_NAME)
    if os.path.exists(gguf):
        from gguf import GGUFReader
        smollm2_template = GGUFReader(gguf).fields["tokenizer.chat_template"].contents()
        with open(os.path.join(TEMPLATES, "smollm2-135m-instruct.jinja"), "w", encoding="utf-8") as f:
            f.write(smollm2_template)
    else:
        print(f"{gguf} missing (scripts/fetch-smollm2.sh): keeping the stored SmolLM2 template", file=sys.stderr)
        with open(os.path.join(TEMPLATES, "smollm2-135m-instruct.jinja"), encoding="utf-8") as f:
            smollm2_template = f.read()

    renders = render_all()
    with open(os.path.join(OUT, "renders.json"), "w", encoding="utf-8") as f:
        json.dump(renders, f, ensure_ascii=False, indent=1)

    tiny = os.path.join(OUT, "tiny-chatml")
    train_tiny(tiny, smollm2_template)
    tok = AutoTokenizer.from_pretrained(tiny)
    tiny_cases = token_cases(tok, TOKEN_CONVERSATIONS)
    with open(os.path.join(OUT, "tiny_tokens.json"), "w", encoding="utf-8") as f:
        json.dump({"generated_by": "scripts/reference/make_chat_fixtures.py", "cases": tiny_cases,
                   "plain": plain_cases(tok)},
                  f, ensure_ascii=False, indent=1)

    if os.path.exists(gguf):
        tok = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_NAME)
        cases = token_cases(tok, TOKEN_CONVERSATIONS)
        with open(os.path.join(OUT, "smollm2_tokens.json"), "w", encoding="utf-8") as f:
            json.dump({"generated_by": "scripts/reference/make_chat_fixtures.py",
                       "gguf": GGUF_NAME, "special_tokens": tok.special_tokens_map, "cases": cases},
                      f, ensure_ascii=False, indent=1)
    n_err = sum("error" in c for c in renders["cases"])
    print(f"{len(renders['cases'])} renders ({n_err} errors), {len(tiny_cases)} tiny-tokenizer cases")


if __name__ == "__main__":
    main()
