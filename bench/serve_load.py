"""Bounded localhost load test of `tailor serve`: C concurrent clients send single-text
/v1/predict requests to a `tailor serve` process; requests/s and p50/p95 latency with dynamic
batching on and off (the server runs in its own process, so clients do not share its GIL).

    .venv/bin/python bench/serve_load.py runs/quickstart --requests 160 --clients 16
    .venv/bin/python bench/serve_load.py runs/quickstart --requests 320 --clients 16 --words 12
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


def load(url: str, texts: list[str], clients: int) -> dict:
    def one(text: str) -> float:
        started = time.perf_counter()
        httpx.post(f"{url}/v1/predict", json={"texts": [text]}, timeout=300).raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        latencies = np.array(list(pool.map(one, texts)))
    wall = time.perf_counter() - started
    return {"requests": len(texts), "requests_per_s": round(len(texts) / wall, 2),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1)}


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
    args = parser.parse_args()
    texts = pd.read_csv(f"{args.run_dir}/predictions_test.csv")["text"].astype(str).tolist()
    if args.words:
        texts = [" ".join(t.split()[: args.words]) for t in texts]
    texts = (texts * (args.requests // len(texts) + 1))[: args.requests]
    for name, flags in (("batching on (max 16, 10 ms)", ["--max-batch-size", "16", "--max-wait-ms", "10"]),
                        ("batching off", ["--max-batch-size", "1", "--max-wait-ms", "0"])):
        proc, url = serve(args.run_dir, [*flags, "--threads", str(args.threads)])
        try:
            load(url, texts[:16], args.clients)  # warm-up
            result = load(url, texts, args.clients)
            batches = httpx.get(f"{url}/metrics.json").json()["batches"]["mean_size"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        row = {"setting": name, "clients": args.clients, "words": args.words, **result, "mean_batch": batches}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
