"""What the server counts: requests by route, served model and status, latency per route
(cumulative count and sum, and quantiles over the last `window` requests), and the sizes of the
batches the model really ran (inputs per /v1/predict call, requests per generate call).
GET /metrics.json shows it as JSON; GET /metrics in Prometheus'
text format (serve/prometheus.py)."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque

import numpy as np

QUANTILES = (50, 95, 99)


class Stats:
    def __init__(self, window: int = 10_000) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (route, model or "", status)
        self.latency: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.latency_total: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])  # count, sum
        self.batches: dict[str, Counter[int]] = {"predict": Counter(), "generate": Counter()}

    def request(self, route: str, status: int, seconds: float, model: str = "") -> None:
        with self.lock:
            self.requests[(route, model, status)] += 1
            self.latency[route].append(seconds)
            total = self.latency_total[route]
            total[0] += 1
            total[1] += seconds

    def batch(self, size: int, kind: str = "predict") -> None:
        """One model call of `size` inputs; kind: predict or generate."""
        with self.lock:
            self.batches[kind][size] += 1

    def copy(self) -> tuple[dict, dict, dict, dict]:
        """A consistent copy: request counts, latency quantiles (seconds) per route, cumulative
        latency count and sum per route, batch-size counts per kind (predict, generate)."""
        with self.lock:
            quantiles = {route: dict(zip(QUANTILES, np.percentile(list(v), QUANTILES).tolist(), strict=True))
                         for route, v in self.latency.items() if v}
            return (dict(self.requests), quantiles, {r: tuple(t) for r, t in self.latency_total.items()},
                    {kind: dict(counts) for kind, counts in self.batches.items()})

    def snapshot(self) -> dict:
        requests_, quantiles, _, all_batches = self.copy()
        with self.lock:
            window = {route: len(v) for route, v in self.latency.items()}
        requests: dict[str, dict[str, int]] = defaultdict(dict)
        models: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for (route, model, status), n in sorted(requests_.items()):
            requests[route][str(status)] = requests[route].get(str(status), 0) + n
            if model:
                models[model][str(status)] += n
        latency = {route: {f"p{q}_ms": round(s * 1000, 2) for q, s in qs.items()}
                   | {"count": window.get(route, 0)} for route, qs in quantiles.items()}
        return {"requests": requests, "models": {m: dict(v) for m, v in models.items()}, "latency": latency,
                "batches": _batches(all_batches["predict"]),
                "generation_batches": _batches(all_batches["generate"])}


def _batches(counts: dict[int, int]) -> dict:
    total = sum(counts.values())
    mean = sum(k * v for k, v in counts.items()) / total if total else 0
    return {"count": total, "sizes": {str(k): v for k, v in sorted(counts.items())},
            "mean_size": round(mean, 2)}
