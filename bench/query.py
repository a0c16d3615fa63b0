"""Query benchmark: one device-year of 5 s data (6.3 M readings), then typical queries.

Prints the load rate, the time of a daily-energy query over the year and of a 24 h raw query,
and the bytes stored per reading (data file incl. indexes and rollups). Baseline in the same
run: a bare SQLite ``SUM`` over the same year of raw rows, which is what a store without
rollups would have to do. Usage: python bench/query.py [--days 365]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Interval, Role
from wattwatch.registry.service import Principal
from wattwatch.store.base import StoredRow

DAY = 86_400_000


def timed(fn: object, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--database-url", default=None, help="an empty PostgreSQL database")
    args = ap.parse_args()
    run(args.days, args.database_url)


def run(days: int, database_url: str | None) -> dict[str, float]:
    n = days * 17_280
    backend = "PostgreSQL" if database_url else "SQLite"
    with tempfile.TemporaryDirectory() as tmp:
        ww = Wattwatch.open(Settings(data_dir=Path(tmp), database_url=database_url), lock=True)
        owner = Principal(0, ww.registry.db.create_org("bench"), Role.OWNER, "bench")
        site = ww.registry.create_site(owner, "Bench", "Europe/Madrid", {"price_per_kwh": 0.2})
        device, _ = ww.registry.create_device(owner, name="meter", site_id=site["id"])
        ch = device["channels"][0]["id"]
        t0 = 1_735_686_000_000  # 2025-01-01 00:00 Madrid
        rng = np.random.default_rng(1)
        chunk = 17_280 * 7
        started = time.perf_counter()
        energy = 0
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            ts = t0 + (np.arange(start, start + k, dtype=np.int64) * 5000)
            p = rng.integers(50_000, 3_000_000, k)  # mW
            e = energy + np.cumsum(p * 5000 // 3_600_000)
            energy = int(e[-1])
            v = rng.integers(225_000, 235_000, k)
            a = p * 1000 // v
            rows = [
                StoredRow(ch, *vals, None)
                for vals in zip(
                    ts.tolist(), p.tolist(), e.tolist(), v.tolist(), a.tolist(), strict=True
                )
            ]
            ww.store.write_readings(rows)
        load_s = time.perf_counter() - started
        ww.store.checkpoint()
        size = ww.store.storage_bytes()
        year_end = t0 + n * 5000
        q_daily = timed(
            lambda: ww.queries.site_energy(
                owner.org_id, site["id"], from_ms=t0, to_ms=year_end, interval=Interval.DAY
            )
        )
        q_raw = timed(
            lambda: ww.queries.readings(
                owner.org_id, device["id"], from_ms=year_end - DAY, to_ms=year_end
            )
        )
        m = ww.store.mark
        with ww.store.read_engine.connect() as conn:
            bare = timed(
                lambda: conn.exec_driver_sql(
                    f"SELECT sum(p) FROM readings WHERE ch = {m} AND ts >= {m} AND ts < {m}",
                    (ch, t0, year_end),
                ).all(),
                repeat=1,
            )
        count = ww.store.count_readings()
        ww.close()
    b = f"[{backend}]"
    print(f"{b} readings: {count:,} ({days} days at 5 s), loaded at {count / load_s:,.0f}/s")
    print(f"{b} daily energy + cost for the year: {q_daily * 1000:8.1f} ms")
    ratio = bare / q_daily
    print(f"{b} bare SUM over the raw year:       {bare * 1000:8.1f} ms  (ratio {ratio:.0f}x)")
    print(f"{b} 24 h raw query (17,280 points):   {q_raw * 1000:8.1f} ms")
    print(f"{b} storage: {size / count:.1f} bytes per reading incl. indexes and rollups")
    return {
        "load": count / load_s,
        "daily_ms": q_daily * 1000,
        "bare_ms": bare * 1000,
        "raw_ms": q_raw * 1000,
        "bytes_per_reading": size / count,
    }


if __name__ == "__main__":
    main()
