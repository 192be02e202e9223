"""GET /metrics in Prometheus' text exposition format, written by the `prometheus_client`
package from the server's Stats (one collector per app, so several servers in one process keep
their own numbers):

tailor_requests_total{route,model,status}   counter; `model` only for a served model's name
tailor_request_duration_seconds{route}      summary: p50/p95/p99 over the last 10,000 requests,
                                            _count and _sum since start
tailor_batch_size{kind}                     histogram of the inputs per /v1/predict model call
                                            (kind="predict") and the requests per batched generate
                                            call (kind="generate")
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from tailorkit.serve.stats import Stats

CONTENT_TYPE = CONTENT_TYPE_LATEST


class StatsCollector:
    def __init__(self, stats: Stats, max_batch_size: int) -> None:
        self.stats = stats
        # powers of two up to the largest batch the server makes, then that size itself
        self.bounds = sorted({2**i for i in range(max_batch_size.bit_length()) if 2**i < max_batch_size}
                             | {max_batch_size})

    def collect(self):
        requests, quantiles, totals, batches = self.stats.copy()
        counts = CounterMetricFamily("tailor_requests", "HTTP requests answered, by route, served model "
                                     "and status code", labels=["route", "model", "status"])
        for (route, model, status), n in sorted(requests.items()):
            counts.add_metric([route, model, str(status)], n)
        yield counts
        latency = Metric("tailor_request_duration_seconds", "Request latency: quantiles over the last "
                         "10,000 requests per route; count and sum since start", "summary")
        for route, (count, total) in sorted(totals.items()):
            for q, seconds in quantiles.get(route, {}).items():
                labels = {"route": route, "quantile": str(q / 100)}
                latency.add_sample("tailor_request_duration_seconds", labels, seconds)
            latency.add_sample("tailor_request_duration_seconds_count", {"route": route}, count)
            latency.add_sample("tailor_request_duration_seconds_sum", {"route": route}, total)
        yield latency
        sizes = HistogramMetricFamily("tailor_batch_size", "Inputs per /v1/predict model call (kind "
                                      "predict) and requests per generate call (kind generate): dynamic "
                                      "batching", labels=["kind"])
        for kind, counts in batches.items():
            buckets = [(floatToGoString(b), sum(n for size, n in counts.items() if size <= b))
                       for b in self.bounds]
            buckets.append(("+Inf", sum(counts.values())))
            sizes.add_metric([kind], buckets, sum_value=sum(size * n for size, n in counts.items()))
        yield sizes


def registry_for(stats: Stats, max_batch_size: int) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, max_batch_size))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
