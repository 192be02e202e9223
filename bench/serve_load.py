"""Bounded localhost load test of `tailor serve`: C concurrent clients send single-text
/v1/predict requests (or, with --chat, greedy non-streaming /v1/chat/completions requests) to a
`tailor serve` process; requests/s and p50/p95 latency with dynamic batching on and off (the
server runs in its own process, so clients do not share its GIL). With --chat it also counts the
answers that differ between the two settings (greedy: batching should change none).

    .venv/bin/python bench/serve_load.py runs/quickstart --requests 160 --clients 16
    .venv/bin/python bench/serve_load.py runs/quickstart --requests 320 --clients 16 --words 12
    .venv/bin/python bench/serve_load.py runs/smollm2-lora-400 --chat --requests 64 --max-tokens 32
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

TAILOR = str(Path(sys.executable).parent / "tailor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# questions for --chat, of different lengths (so batches mix prompt lengths: left padding)
QUESTIONS = ["Hello!", "What is the capital of France?", "How do I boil an egg?",
             "Tell me a joke about computers.", "What is your favourite colour, and why?",
             "Explain in one sentence what a neural network is.", "Who wrote Hamlet?",
             "Give me three tips for learning a new language quickly and well.", "What is 12 times 12?",
             "Describe the sea.", "Why is the sky blue?", "Name a fruit that is yellow.",
             "What should I cook tonight if I only have rice, eggs and onions?", "Good morning!",
             "What is the tallest mountain in the world?", "Can you recommend a good book?"]


def load(url: str, inputs: list[str], clients: int, max_tokens: int | None) -> tuple[dict, list[str]]:
    """Timing of the requests, and each answer (chat: the generated text)."""
    def one(text: str) -> tuple[float, str]:
        started = time.perf_counter()
        if max_tokens is None:
            r = httpx.post(f"{url}/v1/predict", json={"texts": [text]}, timeout=600)
        else:
            r = httpx.post(f"{url}/v1/chat/completions", timeout=600,
                           json={"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                                 "temperature": 0})
        r.raise_for_status()
        answer = r.json()["choices"][0]["message"]["content"] if max_tokens else ""
        return time.perf_counter() - started, answer

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, inputs))
    wall = time.perf_counter() - started
    latencies = np.array([seconds for seconds, _ in results])
    return ({"requests": len(inputs), "requests_per_s": round(len(inputs) / wall, 2),
             "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
             "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1)},
            [answer for _, answer in results])


def serve(run_dir: str, flags: list[str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([TAILOR, "serve", run_dir, "--port", str(port), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("tailor serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--requests", type=int, default=160)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (default 1)")
    parser.add_argument("--words", type=int, default=None,
                        help="cut each text to its first N words (short requests: per-call overhead)")
    parser.add_argument("--chat", action="store_true", help="greedy chat requests to a causal-LM run")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of each chat request")
    args = parser.parse_args()
    if args.chat:
        texts, max_tokens = QUESTIONS, args.max_tokens
    else:
        texts = pd.read_csv(f"{args.run_dir}/predictions_test.csv")["text"].astype(str).tolist()
        max_tokens = None
    if args.words:
        texts = [" ".join(t.split()[: args.words]) for t in texts]
    texts = (texts * (args.requests // len(texts) + 1))[: args.requests]
    answers: dict[str, list[str]] = {}
    for name, flags in (("batching on (max 16, 10 ms)", ["--max-batch-size", "16", "--max-wait-ms", "10"]),
                        ("batching off", ["--max-batch-size", "1", "--max-wait-ms", "0"])):
        proc, url = serve(args.run_dir, [*flags, "--threads", str(args.threads)])
        try:
            load(url, texts[:16], args.clients, max_tokens)  # warm-up
            result, answers[name] = load(url, texts, args.clients, max_tokens)
            kind = "generation_batches" if args.chat else "batches"
            batches = httpx.get(f"{url}/metrics.json").json()[kind]["mean_size"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        row = {"setting": name, "clients": args.clients, "words": args.words, **result, "mean_batch": batches}
        print(json.dumps(row), flush=True)
    if args.chat:
        on, off = answers.values()
        differing = sum(a != b for a, b in zip(on, off, strict=True))
        print(json.dumps({"answers_differing_between_settings": differing, "of": len(on)}), flush=True)


if __name__ == "__main__":
    main()
