"""Incremental rollups: every arrival order gives the buckets of the in-order series."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from wattwatch.store import rollups
from wattwatch.store.rollups import Point, add_channel, energy_delta_mwh


def test_counter_reset_counts_from_zero_not_negative() -> None:
    assert energy_delta_mwh((0, 1000, 50_000), (5000, 1000, 50_400)) == 400
    assert energy_delta_mwh((0, 1000, 50_000), (5000, 1000, 300)) == 300


def test_power_is_integrated_without_counter_but_gaps_are_not_bridged() -> None:
    # 1000 W for 3.6 s = 1 Wh = 1000 mWh
    assert energy_delta_mwh((0, 1_000_000, None), (3600, 1_000_000, None)) == 1000
    gap = rollups.MAX_INTEGRATION_GAP_MS + 1
    assert energy_delta_mwh((0, 1_000_000, None), (gap, 1_000_000, None)) == 0


def _series(n: int, with_counter: bool, seed: int) -> list[Point]:
    rng = random.Random(seed)
    e = 10_000
    out = []
    ts = 1_700_000_000_000
    for i in range(n):
        ts += rng.choice([1000, 5000, 5000, 30_000])
        e = rng.randint(0, 100) if (with_counter and i == n // 2) else e + rng.randint(0, 4000)
        out.append((ts, rng.randint(0, 3_000_000), e if with_counter else None))
    return out


def _in_order(points: list[Point]) -> rollups.Buckets:
    buckets: rollups.Buckets = {}
    add_channel(buckets, 1, points, [])
    return buckets


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 120),
    with_counter=st.booleans(),
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.integers(0, 119), max_size=6),
    shuffle_seed=st.integers(0, 1000),
)
def test_any_arrival_order_gives_the_in_order_buckets(
    n: int, with_counter: bool, seed: int, cuts: list[int], shuffle_seed: int
) -> None:
    points = _series(n, with_counter, seed)
    expected = _in_order(points)
    # Split into batches at arbitrary points and deliver the batches in a random order,
    # computing each batch's contribution against what is stored so far.
    edges = sorted({0, n, *(c for c in cuts if c < n)})
    batches = [points[a:b] for a, b in itertools.pairwise(edges) if b > a]
    random.Random(shuffle_seed).shuffle(batches)
    stored: list[Point] = []
    got: rollups.Buckets = {}
    for batch in batches:
        first, last = batch[0][0], batch[-1][0]
        before = [p for p in stored if p[0] < first][-1:]
        inside = [p for p in stored if first <= p[0] <= last]
        after = [p for p in stored if p[0] > last][:1]
        contribution: rollups.Buckets = {}
        add_channel(contribution, 1, batch, [*before, *inside, *after])
        for key, acc in contribution.items():
            if key in got:
                rollups.merge_acc(got[key], acc)
            else:
                got[key] = list(acc)
        stored = sorted([*stored, *batch])
    assert {k: v[0] for k, v in got.items() if v[0]} == {k: v[0] for k, v in expected.items()}
    for key, acc in expected.items():
        assert got[key][5] == acc[5], key  # energy
        assert got[key][2:5] == acc[2:5], key  # power sum, min, max


def test_vectorised_path_matches_the_loop() -> None:
    for with_counter in (True, False):
        points = _series(500, with_counter, 3)
        prev, new = points[0], points[1:]
        fast: rollups.Buckets = {}
        assert rollups._add_in_order_numpy(fast, 1, new, prev)
        slow: rollups.Buckets = {}
        add_channel(slow, 1, new[:20], [prev])  # under 32 points: the loop
        add_channel(slow, 1, new[20:31], [new[19]])
        for i in range(31, len(new), 25):
            chunk = new[i : i + 25]
            part: rollups.Buckets = {}
            add_channel(part, 1, chunk, [new[i - 1]])
            for key, acc in part.items():
                if key in slow:
                    rollups.merge_acc(slow[key], acc)
                else:
                    slow[key] = acc
        assert fast == slow


def test_local_days_follow_dst() -> None:
    # Europe/Madrid 2026-03-29 has 23 hours, 2026-10-25 has 25.
    days = rollups.local_day_starts("Europe/Madrid", 1774648800000, 1774648800000 + 3 * 86_400_000)
    lengths = [b - a for a, b in itertools.pairwise(days)]
    assert 23 * 3_600_000 in lengths
