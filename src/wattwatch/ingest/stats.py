"""Prometheus counters of the ingest path, one registry per running app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# (transport, action) of ``wattwatch_rate_limited_total``.
LIMIT_ACTIONS = (("http", "refused"), ("mqtt", "delayed"), ("mqtt", "dropped"))


class IngestStats:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.readings = Counter(
            "wattwatch_readings", "Readings by outcome", ["outcome"], registry=r
        )
        self.batch_seconds = Histogram(
            "wattwatch_store_batch_seconds",
            "Time to commit one store batch",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.queue = Gauge(
            "wattwatch_ingest_queue_readings", "Readings waiting for the store", registry=r
        )
        self.messages = Counter(
            "wattwatch_messages",
            "Device messages by transport and outcome",
            ["transport", "outcome"],
            registry=r,
        )
        # Per-device rate limit (ingest/limits.py): uploads refused (HTTP 429), MQTT
        # messages held before commit (QoS 1/2: the acknowledgement waits) or dropped (QoS 0).
        self.limited = Counter(
            "wattwatch_rate_limited",
            "Device uploads and messages held back by the per-device rate limit",
            ["transport", "action"],
            registry=r,
        )
        self.limited_readings = Counter(
            "wattwatch_rate_limited_readings",
            "Readings in uploads and messages held back by the per-device rate limit",
            ["transport", "action"],
            registry=r,
        )
        # Create the label sets up front so a scrape shows zeros, not absence.
        for outcome in ("accepted", "rejected", "duplicate"):
            self.readings.labels(outcome)
        for transport, action in LIMIT_ACTIONS:
            self.limited.labels(transport, action)
            self.limited_readings.labels(transport, action)

    def committed(self, accepted: int, duplicates: int, seconds: float) -> None:
        self.readings.labels("accepted").inc(accepted)
        self.readings.labels("duplicate").inc(duplicates)
        self.batch_seconds.observe(seconds)

    def rejected(self, n: int) -> None:
        if n:
            self.readings.labels("rejected").inc(n)

    def queue_depth(self, n: int) -> None:
        self.queue.set(n)

    def message(self, transport: str, outcome: str) -> None:
        self.messages.labels(transport, outcome).inc()

    def rate_limited(self, transport: str, action: str, readings: int) -> None:
        self.limited.labels(transport, action).inc()
        self.limited_readings.labels(transport, action).inc(readings)
