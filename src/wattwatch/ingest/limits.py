"""Per-device ingest rate limits: one token bucket of readings per device, for every transport.

A device may send ``rate_per_s`` readings a second on average and ``burst`` at once. The bucket
holds up to ``burst`` tokens and refills at ``rate_per_s``. A batch of ``n`` readings needs
``min(n, burst)`` tokens to go through and then takes ``n``: a batch larger than the burst
(a day of backlog in one upload) is let through from a full bucket and leaves the bucket in
debt, which the device then pays back at ``rate_per_s`` before its next batch. So no batch is
ever impossible, and over time no device sends more than ``burst + rate_per_s × t`` readings.

Two ways to take tokens:

- ``try_take`` (HTTP): all or nothing. A refused batch takes nothing and the caller is told
  how long to wait (``Retry-After``); nothing of the batch is stored, so the retry is clean.
- ``reserve`` (MQTT QoS 1/2): always takes, and says how long the caller must hold the message
  before committing it. Holding delays the acknowledgement, which is the sender's backpressure.

The limiter is called on the event loop (HTTP handlers and the broker share it) and from worker
threads; a lock keeps the arithmetic whole. The state is one small list per device that sent
something: devices are registered and authenticated, so it is bounded by the registry.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from wattwatch.errors import RateLimited
from wattwatch.ingest.stats import IngestStats


class DeviceRateLimiter:
    """Token buckets of readings, one per device id. ``rate_per_s <= 0`` turns limiting off."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        stats: IngestStats | None = None,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1 reading")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self.clock = clock
        self.stats = stats
        # device id → [tokens, time of that balance]
        self._buckets: dict[int, list[float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def _balance(self, device_id: int, now: float) -> list[float]:
        bucket = self._buckets.get(device_id)
        if bucket is None:
            if len(self._buckets) > 200_000:
                self._forget_full(now)
            bucket = self._buckets[device_id] = [self.burst, now]
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate_per_s
            bucket[0] = tokens if tokens < self.burst else self.burst
            bucket[1] = now
        return bucket

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: a full bucket and no bucket are the same."""
        rate, burst = self.rate_per_s, self.burst
        self._buckets = {
            k: b for k, b in self._buckets.items() if b[0] + (now - b[1]) * rate < burst
        }

    def try_take(self, device_id: int, n: int) -> float:
        """Take ``n`` readings' tokens and answer 0, or take nothing and answer the seconds
        to wait before the same batch would go through."""
        if self.rate_per_s <= 0 or n <= 0:
            return 0.0
        with self._lock:
            bucket = self._balance(device_id, self.clock())
            need = n if n < self.burst else self.burst
            if bucket[0] >= need:
                bucket[0] -= n
                return 0.0
            return (need - bucket[0]) / self.rate_per_s

    def check(self, device_id: int, n: int, transport: str = "http") -> None:
        """``try_take``, raising ``RateLimited`` (HTTP 429 with Retry-After) when refused;
        refusals are counted in ``wattwatch_rate_limited_total{action="refused"}``."""
        wait = self.try_take(device_id, n)
        if wait > 0:
            if self.stats is not None:
                self.stats.rate_limited(transport, "refused", n)
            raise RateLimited(
                f"device rate limit: {n} readings now would exceed {self.rate_per_s:g} "
                f"readings/s (burst {self.burst:g}); nothing of this batch was stored, "
                f"send it again in {math.ceil(wait)} s",
                retry_after_s=wait,
            )

    def reserve(self, device_id: int, n: int) -> float:
        """Take ``n`` readings' tokens (maybe into debt); answer how many seconds the caller
        must wait before the readings may be committed (0: at once)."""
        if self.rate_per_s <= 0 or n <= 0:
            return 0.0
        with self._lock:
            bucket = self._balance(device_id, self.clock())
            need = n if n < self.burst else self.burst
            wait = (need - bucket[0]) / self.rate_per_s if bucket[0] < need else 0.0
            bucket[0] -= n
            return wait

    @property
    def tracked(self) -> int:
        """How many devices the limiter keeps a bucket for (full ones are dropped in time)."""
        return len(self._buckets)
