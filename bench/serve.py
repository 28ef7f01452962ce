"""Throughput of `erosion serve` (bench/serve.sh runs it): the same greedy chat requests answered
one by one, then from 1, 4 and 16 client threads at once (the server decodes requests together,
continuously: each joins the running batch). Prints one table row per mode: requests, generated tokens, wall time,
tokens/s, and the speed-up over one by one. Every answer is checked against the one-by-one
answer (greedy: the same text up to f32 rounding of a batch; a differing count is printed).

Usage: python serve.py BASE_URL MODEL_NAME N_REQUESTS MAX_TOKENS
"""

import concurrent.futures as cf
import sys
import time

import openai

base, name, n, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=3600)
prompts = [f"Write a short paragraph about the number {i}." for i in range(n)]


def ask(p):
    r = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": p}], temperature=0, max_tokens=max_tokens
    )
    return r.choices[0].message.content, r.usage.completion_tokens


ask(prompts[0])  # warm-up
rows = []
start = time.time()
alone = [ask(p) for p in prompts]
rows.append(("one by one", 1, time.time() - start, alone))
for threads in (1, 4, 16):
    start = time.time()
    with cf.ThreadPoolExecutor(threads) as pool:
        got = list(pool.map(ask, prompts))
    rows.append((f"{threads} concurrent", threads, time.time() - start, got))
print("| mode | requests | tokens | wall s | tokens/s | x one by one | answers unlike one by one |")
print("|---|---|---|---|---|---|---|")
t0 = rows[0][2]
for mode, _, wall, got in rows:
    tokens = sum(t for _, t in got)
    differ = sum(a[0] != b[0] for a, b in zip(got, alone))
    print(f"| {mode} | {n} | {tokens} | {wall:.2f} | {tokens / wall:.1f} | {t0 / wall:.2f} | {differ} |")
