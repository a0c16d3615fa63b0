"""The store contract, on every backend: exact round trip, duplicates, rollups in any order."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tests.store.conftest import open_url

from wattwatch.domain import Interval
from wattwatch.store import rollups
from wattwatch.store.base import StoredRow
from wattwatch.store.sqlstore import SqlStore

T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
DAY = 86_400_000


def make_device(store: SqlStore, tz: str = "Europe/Madrid", channels: int = 2) -> list[int]:
    db = store.registry
    org = db.create_org("org")
    site = db.create_site(org, "site", tz, {"price_per_kwh": 0.2}, None)
    uid = f"dev-{random.random()}"
    dev = db.create_device(
        {
            "uid": uid,
            "org_id": org,
            "site_id": site,
            "name": "meter",
            "kind": "monitor",
            "protocol": "native",
            "topic": uid,
            "identifiers": {},
            "key_map": {},
        },
        [f"c{i}" for i in range(channels)],
    )
    return sorted(db.channel_ids_of(dev).values())


def series(ch: int, n: int, start: int = T0, step: int = 5000, seed: int = 1) -> list[StoredRow]:
    rng = random.Random(seed + ch)
    e = 1_000_000
    out = []
    for i in range(n):
        e = rng.randint(0, 500) if i == n // 2 else e + rng.randint(0, 4000)  # one reset
        out.append(
            StoredRow(ch, start + i * step, rng.randint(0, 3_000_000), e, 230_000, 4_000, None)
        )
    return out


def expected_buckets(rows: list[StoredRow], tz: str) -> dict[str, rollups.Buckets]:
    minutes: rollups.Buckets = {}
    by_ch: dict[int, list[StoredRow]] = {}
    for r in rows:
        by_ch.setdefault(r.channel_id, []).append(r)
    for ch, rs in by_ch.items():
        rs.sort(key=lambda r: r.ts_ms)
        rollups.add_channel(minutes, ch, [(r.ts_ms, r.power_mw, r.energy_mwh) for r in rs], [])
    hours, days = rollups.roll_up(minutes, dict.fromkeys(by_ch, tz))
    return {"1m": minutes, "1h": hours, "1d": days}


def stored_buckets(store: SqlStore, chans: list[int], interval: Interval) -> rollups.Buckets:
    out: rollups.Buckets = {}
    for p in store.query_rollup(chans, interval, 0, 2**62, 10_000_000):
        out[(p["channel_id"], p["ts"])] = [
            p["count"],
            p["pn"],
            p["psum"],
            p["pmin"],
            p["pmax"],
            p["energy_mwh"],
        ]
    return out


def assert_rollups_match(store: SqlStore, chans: list[int], rows: list[StoredRow]) -> None:
    want = expected_buckets(rows, "Europe/Madrid")
    for name, interval in (("1m", Interval.MINUTE), ("1h", Interval.HOUR), ("1d", Interval.DAY)):
        got = stored_buckets(store, chans, interval)
        # Buckets that only carry an energy correction have count 0 on one side only.
        assert {k: v for k, v in got.items() if v[0]} == {
            k: v for k, v in want[name].items() if v[0]
        }, name
        for key, acc in want[name].items():
            assert got.get(key, [0] * 6)[5] == acc[5], (name, key)


def test_round_trip_is_exact(store: SqlStore) -> None:
    ch, ch2 = make_device(store)
    rows = series(ch, 300)
    rows[7] = StoredRow(ch, rows[7].ts_ms, None, None, 229_500, None, '{"power_factor": 0.93}')
    assert store.write_readings(rows) == []
    got = store.query_raw([ch], T0, T0 + DAY, 10_000)
    assert len(got) == 300
    assert got[7] == {
        "ts": rows[7].ts_ms,
        "channel_id": ch,
        "power_w": None,
        "energy_wh": None,
        "voltage_v": 229.5,
        "current_a": None,
        "power_factor": 0.93,
    }
    assert got[0]["power_w"] == rows[0].power_mw / 1000
    assert got[0]["energy_wh"] == rows[0].energy_mwh / 1000
    only = store.query_raw([ch], T0, T0 + DAY, 10, metrics=["power_w"])
    assert set(only[0]) == {"ts", "channel_id", "power_w"}
    assert store.count_readings() == 300
    assert store.table_counts()["readings"] == 300
    assert store.storage_bytes() > 0
    assert store.query_raw([ch2], T0, T0 + DAY, 10) == []


def test_duplicates_in_batch_and_against_stored(store: SqlStore) -> None:
    (ch,) = make_device(store, channels=1)
    rows = series(ch, 100)
    assert store.write_readings(rows[:60]) == []
    batch = [rows[10], *rows[60:], rows[61], rows[59]]  # old, new..., repeat, old
    assert store.write_readings(batch) == [0, 41, 42]
    assert store.count_readings() == 100
    # A late batch that mixes stored and new readings.
    assert store.write_readings(rows) == list(range(100))
    assert_rollups_match(store, [ch], rows)


def test_any_arrival_order_gives_in_order_rollups(store: SqlStore) -> None:
    chans = make_device(store, channels=3)
    rows = [r for ch in chans for r in series(ch, 2000, step=7000)]
    rng = random.Random(5)
    chunks = [rows[i : i + 250] for i in range(0, len(rows), 250)]
    rng.shuffle(chunks)
    dups = sent = 0
    for chunk in chunks:
        batch = [*chunk, *rng.sample(rows, 3)]  # resends, some of rows not yet seen
        dups += len(store.write_readings(batch))
        sent += len(batch)
    assert store.count_readings() == len(rows)
    assert dups == sent - len(rows)  # every reading stored exactly once
    assert_rollups_match(store, chans, rows)


def test_rollup_pages_and_daily_energy(store: SqlStore) -> None:
    chans = make_device(store, channels=2)
    rows = [r for ch in chans for r in series(ch, 3 * 17_280 // 10, step=50_000)]
    store.write_readings(rows)
    full = store.query_rollup(chans, Interval.HOUR, T0 - DAY, T0 + 5 * DAY, 100_000)
    walked: list[dict[str, Any]] = []
    after = None
    while True:
        page = store.query_rollup(chans, Interval.HOUR, T0 - DAY, T0 + 5 * DAY, 17, after)
        walked.extend(page)
        if len(page) < 17:
            break
        after = (page[-1]["ts"], page[-1]["channel_id"])
    assert walked == full
    assert [(p["ts"], p["channel_id"]) for p in full] == sorted(
        (p["ts"], p["channel_id"]) for p in full
    )
    days = store.daily_energy(chans, T0 - DAY, T0 + 5 * DAY)
    want = expected_buckets(rows, "Europe/Madrid")["1d"]
    assert {(d, ch): (n, e) for d, ch, n, e in days} == {
        (d, ch): (acc[0], acc[5]) for (ch, d), acc in want.items()
    }
    # Local days: Madrid midnight is 23:00 UTC in winter.
    assert all(d % DAY == 23 * 3_600_000 for d, *_ in days)


def test_reopened_store_extends_the_series(store_url: str, tmp_path: Path) -> None:
    s = open_url(store_url)
    (ch,) = make_device(s, channels=1)
    rows = series(ch, 400)
    s.write_readings(rows[:200])
    s.close()
    s2 = open_url(store_url)
    try:
        assert s2.write_readings(rows[190:]) == list(range(10))
        assert_rollups_match(s2, [ch], rows)
    finally:
        s2.close()


def test_retention_drops_raw_and_keeps_rollups(store: SqlStore) -> None:
    (ch,) = make_device(store, channels=1)
    old = series(ch, 500, start=T0, step=60_000)  # January 2025
    june = T0 + 160 * DAY
    new = series(ch, 500, start=june, step=60_000, seed=9)
    store.write_readings(old + new)
    before = store.query_rollup([ch], Interval.DAY, 0, 2**62, 10_000)
    cutoff = T0 + 59 * DAY  # 2025-03-01: all of January is older
    assert store.drop_raw_before(cutoff) == 500
    assert store.count_readings() == 500
    assert store.query_raw([ch], 0, cutoff, 10) == []
    assert store.query_rollup([ch], Interval.DAY, 0, 2**62, 10_000) == before
    # Raw data inside the kept range is untouched, and ingest goes on.
    assert len(store.query_raw([ch], june, june + DAY, 10_000)) == 500
    later = series(ch, 10, start=june + 600 * 60_000, seed=3)
    assert store.write_readings(later) == []


def test_extreme_plausible_values_round_trip(store: SqlStore) -> None:
    """The edges of domain.METRICS fit the stored column types of every backend."""
    (ch,) = make_device(store, channels=1)
    rows = [
        StoredRow(ch, T0, -1_000_000_000, 0, 0, -10_000_000, None),
        StoredRow(ch, T0 + 1000, 1_000_000_000, 10**16, 1_000_000, 10_000_000, None),
    ]
    assert store.write_readings(rows) == []
    got = store.query_raw([ch], T0, T0 + DAY, 10)
    assert [(p["power_w"], p["energy_wh"], p["voltage_v"], p["current_a"]) for p in got] == [
        (-1e6, 0.0, 0.0, -1e4),
        (1e6, 1e13, 1000.0, 1e4),
    ]
