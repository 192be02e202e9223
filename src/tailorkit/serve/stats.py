"""What GET /metrics reports: requests by route and status, latency quantiles per route (over
the last `window` requests), and the sizes of the batches the model really ran."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque

import numpy as np


class Stats:
    def __init__(self, window: int = 10_000) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self.batches: Counter[int] = Counter()

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(route, status)] += 1
            self.latency[route].append(seconds)

    def batch(self, size: int) -> None:
        with self.lock:
            self.batches[size] += 1

    def snapshot(self) -> dict:
        with self.lock:
            requests: dict[str, dict[str, int]] = defaultdict(dict)
            for (route, status), n in sorted(self.requests.items()):
                requests[route][str(status)] = n
            latency = {route: {f"p{q}_ms": round(float(np.percentile(list(v), q)) * 1000, 2)
                               for q in (50, 95, 99)} | {"count": len(v)}
                       for route, v in self.latency.items() if v}
            total = sum(self.batches.values())
            mean = sum(k * v for k, v in self.batches.items()) / total if total else 0
            batches = {"count": total, "sizes": {str(k): v for k, v in sorted(self.batches.items())},
                       "mean_size": round(mean, 2)}
        return {"requests": requests, "latency": latency, "batches": batches}
