"""The per-device token bucket: bounds, retry times that work, debt for oversized batches."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattwatch.errors import RateLimited
from wattwatch.ingest.limits import DeviceRateLimiter
from wattwatch.ingest.stats import IngestStats


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(10, 100, clock=clock)
    assert limiter.try_take(1, 100) == 0
    wait = limiter.try_take(1, 5)
    assert wait == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.try_take(1, 5) == 0
    # Another device has its own bucket.
    assert limiter.try_take(2, 100) == 0


def test_refused_batch_takes_nothing_and_its_wait_is_enough() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(100, 1000, clock=clock)
    assert limiter.try_take(7, 900) == 0
    wait = limiter.try_take(7, 500)
    assert wait == pytest.approx(4.0)
    # Refusing again takes nothing either: the same answer, less the time passed.
    clock.now += 1
    assert limiter.try_take(7, 500) == pytest.approx(3.0)
    clock.now += 3
    assert limiter.try_take(7, 500) == 0


def test_a_batch_larger_than_the_burst_goes_through_from_a_full_bucket_and_leaves_debt() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(1000, 50_000, clock=clock)
    # A day of backlog at 1 s in one upload: more than the burst, but never impossible.
    assert limiter.try_take(1, 86_400) == 0
    # Now in debt by 36,400: the next reading waits until the debt is paid (+1 token).
    assert limiter.try_take(1, 1) == pytest.approx(36.401)
    # A partly refilled bucket refuses the oversized batch until it is full again.
    clock.now += 40
    assert limiter.try_take(1, 86_400) == pytest.approx((50_000 - 3_600) / 1000)


def test_reserve_queues_behind_earlier_reservations() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(10, 20, clock=clock)
    assert limiter.reserve(3, 20) == 0
    assert limiter.reserve(3, 10) == pytest.approx(1.0)
    assert limiter.reserve(3, 10) == pytest.approx(2.0)
    clock.now += 2
    assert limiter.reserve(3, 10) == pytest.approx(1.0)


def test_off_when_rate_is_zero() -> None:
    limiter = DeviceRateLimiter(0, 1)
    assert not limiter.enabled
    assert limiter.try_take(1, 10**9) == 0
    assert limiter.reserve(1, 10**9) == 0
    assert limiter.tracked == 0


def test_check_raises_with_retry_after_and_counts() -> None:
    clock = Clock()
    stats = IngestStats()
    limiter = DeviceRateLimiter(10, 100, clock=clock, stats=stats)
    limiter.check(1, 100)
    with pytest.raises(RateLimited) as caught:
        limiter.check(1, 30)
    assert caught.value.retry_after_s == pytest.approx(3.0)
    assert "send it again in 3 s" in str(caught.value)
    assert "nothing of this batch was stored" in str(caught.value)
    sample = stats.registry.get_sample_value
    assert sample("wattwatch_rate_limited_total", {"transport": "http", "action": "refused"}) == 1
    labels = {"transport": "http", "action": "refused"}
    assert sample("wattwatch_rate_limited_readings_total", labels) == 30


@settings(max_examples=300, deadline=None)
@given(
    rate=st.integers(1, 1000),
    burst=st.integers(1, 5000),
    steps=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 10_000)), max_size=60),
)
def test_never_more_than_burst_plus_rate_times_time(
    rate: int, burst: int, steps: list[tuple[float, int]]
) -> None:
    clock = Clock()
    start = clock.now
    limiter = DeviceRateLimiter(rate, burst, clock=clock)
    taken = 0
    biggest = 0
    for dt, n in steps:
        clock.now += dt
        wait = limiter.try_take(1, n)
        if wait == 0:
            taken += n
            biggest = max(biggest, n)
        else:
            # The promised wait is enough: nothing else took tokens meanwhile.
            clock.now += wait + 1e-9
            assert limiter.try_take(1, n) == 0
            taken += n
            biggest = max(biggest, n)
        # A batch over the burst may overdraw once; on average the rate holds.
        assert taken <= rate * (clock.now - start) + max(burst, biggest) + 1e-6


def test_memory_of_idle_devices_is_dropped() -> None:
    clock = Clock()
    limiter = DeviceRateLimiter(10, 10, clock=clock)
    for device in range(200_001):
        limiter.try_take(device, 1)
    clock.now += 10  # every bucket has refilled
    limiter.try_take(10**9, 1)
    assert limiter.tracked == 1
