"""Backfill benchmark: N days of a simulated fleet written in-process into a fresh store.

What ``wattwatch simulate --data-dir`` and the demo do: the simulator generates each
device's readings (appliance physics, meter noise, counters), converts them to store rows,
and the store writes them through its one write path (dedupe + incremental rollups). Prints
the total time and readings/s, the split between producing and writing, and two baselines
measured in the same run on one day of the same rows: the generator alone, and a bare
SQLite ``executemany`` of those rows into the same table layout (no dedupe, no rollups).

Usage: python bench/backfill.py [--days 30 --devices 50 --step 5 --site-type office]
       [--database-url postgresql://…]   (default: a fresh SQLite data dir in a temp dir)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Role
from wattwatch.registry.service import Principal
from wattwatch.sim.backfill import BackfillReport, backfill_store, stored_rows
from wattwatch.sim.provision import LocalRegistrar, plan_devices, provision
from wattwatch.sim.site import Site

DAY_MS = 86_400_000


def fleet(kind: str, devices: int, seed: int) -> Site:
    return Site(kind, devices, seed, "Europe/Madrid", name=f"bench-{kind}")


def baselines(kind: str, devices: int, seed: int, step_s: float, t0: int) -> tuple[float, float]:
    """(generator readings/s, bare executemany rows/s) over one day of the same fleet."""
    site = fleet(kind, devices, seed)
    plan = plan_devices([site])
    for i, d in enumerate(plan):
        d.next_ms = t0
        d.channel_ids = tuple(range(i * 100 + 1, i * 100 + 1 + len(d.channel_names)))
    started = time.perf_counter()
    rows = []
    n = 0
    for d in plan:
        cols = d.take(t0 + DAY_MS, step_s)
        if cols is not None:
            n += int(cols["ts_ms"].size)
            rows.extend(stored_rows(cols, d.channel_ids))
    gen_rate = n / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "bare.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(
            "CREATE TABLE readings (ch INTEGER NOT NULL, ts INTEGER NOT NULL, p INTEGER, "
            "e INTEGER, v INTEGER, a INTEGER, extra TEXT, PRIMARY KEY (ch, ts)) WITHOUT ROWID"
        )
        rows.sort(key=lambda r: (r[1], r[0]))  # as time-ordered batches arrive
        started = time.perf_counter()
        for i in range(0, len(rows), 100_000):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", rows[i : i + 100_000]
            )
            conn.execute("COMMIT")
        bare_rate = len(rows) / (time.perf_counter() - started)
        conn.close()
    return gen_rate, bare_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--step", type=float, default=5.0)
    ap.add_argument("--site-type", default="office")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the SQLite data dir")
    args = ap.parse_args()

    t_end = (int(time.time() * 1000) // DAY_MS) * DAY_MS
    t0 = t_end - int(args.days * DAY_MS)
    before = baselines(args.site_type, args.devices, args.seed, args.step, t0)

    tmp = Path(tempfile.mkdtemp(prefix="ww-bench-backfill-"))
    settings = Settings(data_dir=tmp, database_url=args.database_url)
    ww = Wattwatch.open(settings, lock=True)
    try:
        org = ww.registry.db.create_org("bench")
        owner = Principal(0, org, Role.OWNER, "bench")
        site = fleet(args.site_type, args.devices, args.seed)
        devices = plan_devices([site])
        provision(LocalRegistrar(ww, owner), devices, start_ms=t0, tokens=False, now=t_end)
        channels = sum(len(d.channel_names) for d in devices)
        print(
            f"backfill: {args.days:g} days x {len(devices)} devices ({channels} channels) "
            f"at {args.step:g} s into {ww.store.backend}",
            flush=True,
        )
        last = [0.0]

        def progress(r: BackfillReport) -> None:
            if r.seconds - last[0] >= 30:
                last[0] = r.seconds
                done = (r.reached_ms - t0) / (t_end - t0)
                print(
                    f"  {done:6.1%}  {r.readings:>12,} readings  {r.readings_per_s:>9,.0f}/s",
                    flush=True,
                )

        report = backfill_store(
            ww.store.write_readings, devices, t_end, args.step, progress=progress
        )
        size = ww.store.storage_bytes() if ww.store.backend == "sqlite" else 0
        rate = report.readings_per_s
        print(f"readings:          {report.readings:,} ({report.duplicates} duplicates)")
        print(f"total time:        {report.seconds:,.1f} s  ({rate:,.0f} readings/s)")
        print(f"  producing:       {report.produce_s:,.1f} s (generate + convert)")
        print(f"  store writes:    {report.write_s:,.1f} s")
        if size:
            print(
                f"database:          {size / 1e9:.2f} GB ({size / report.readings:.0f} B/reading)"
            )
        # Baselines before and after the run: on a shared machine the load changes meanwhile.
        after = baselines(args.site_type, args.devices, args.seed, args.step, t0)
        gen_rate = (before[0] + after[0]) / 2
        bare_rate = (before[1] + after[1]) / 2
        print(
            f"baseline generator alone:         {gen_rate:>10,.0f} readings/s "
            f"(before {before[0]:,.0f}, after {after[0]:,.0f})"
        )
        print(
            f"baseline bare SQLite executemany: {bare_rate:>10,.0f} rows/s "
            f"(before {before[1]:,.0f}, after {after[1]:,.0f})"
        )
        print(f"ratio backfill / bare executemany: {rate / bare_rate:.2f}")
        print(
            f"load average (1 min) at the end:   {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
    finally:
        ww.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
