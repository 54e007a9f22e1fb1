"""Prometheus metrics: request counts and latencies from the HTTP side, token and queue figures from the engine."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class EngineCollector:
    """Read at scrape time, so the engine thread only bumps plain integers."""

    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        engine = self.engine
        yield _counter("lmforge_prompt_tokens", "prompt tokens computed (prefix-cache hits excluded)",
                       engine.prompt_tokens)
        yield _counter("lmforge_generation_tokens", "tokens generated", engine.generation_tokens)
        yield _counter("lmforge_decode_steps", "batched decode steps", engine.steps)
        yield _counter("lmforge_draft_tokens", "prompt-lookup draft tokens proposed", engine.drafted)
        yield _counter("lmforge_draft_tokens_accepted", "prompt-lookup draft tokens the model confirmed",
                       engine.accepted)
        yield _counter("lmforge_prefix_cache_hits", "prompts that started from a cached prefix", engine.prefix.hits)
        yield _counter("lmforge_prefix_cache_reused_tokens", "prompt tokens taken from the prefix cache",
                       engine.prefix.reused_tokens)
        yield GaugeMetricFamily("lmforge_queue_depth", "requests waiting for a batch slot", value=len(engine.waiting))
        yield GaugeMetricFamily("lmforge_running_sequences", "sequences in the decode batch",
                                value=len(engine.running))


def _counter(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


class Metrics:
    def __init__(self, engine):
        self.registry = CollectorRegistry()
        self.registry.register(EngineCollector(engine))
        self.requests = Counter("lmforge_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("lmforge_request_latency_seconds", "time from request to last byte", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.first_token = Histogram("lmforge_time_to_first_token_seconds", "time from request to first token",
                                     buckets=LATENCY_BUCKETS, registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
