"""Report benchmark: a monthly site report over 50 devices at 5 s resolution (26.8 M readings).

Loads October 2026 (Europe/Madrid, 31 local days incl. the 25-hour one) once into a data dir
through ``write_readings`` in big batches (reused with --data-dir on later runs), then times
building the report (all figures: totals, TOU cost, 15-min peak, profiles, breakdowns, gaps,
comparisons) and rendering it as HTML and PDF. Baseline in the same run: the portable
``GROUP BY`` quarter-hour query over the 1-minute rollups (what the PostgreSQL path runs), against
the SQLite streaming query the report uses. Usage:
    python bench/report.py [--devices 50] [--step-s 5] [--days 31] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from sqlalchemy import insert

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Role
from wattwatch.registry.service import Principal
from wattwatch.store.base import StoredRow
from wattwatch.store.reports import _QUARTER_SQL
from wattwatch.store.schema import areas

TZ = "Europe/Madrid"
START = date(2026, 10, 1)
TARIFF = {
    "currency": "EUR",
    "price_per_kwh": 0.12,
    "standing_charge_per_day": 1.2,
    "periods": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00", "price_per_kwh": 0.24}],
}


def local_ms(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(TZ)).timestamp() * 1000)


def build(ww: Wattwatch, devices: int, step_s: int, days: int) -> tuple[int, int, int]:
    """Create the site and load the readings; return (org_id, site_id, readings)."""
    org = ww.registry.db.create_org("bench")
    owner = Principal(0, org, Role.OWNER, "bench")
    site = ww.registry.create_site(owner, "Bench site", TZ, TARIFF)
    area_ids = []
    for name in ("Ground floor", "First floor", "Workshop", "Kitchen", "Server room"):
        with ww.store.engine.begin() as conn:
            area_ids.append(
                int(
                    conn.execute(
                        insert(areas).values(site_id=site["id"], name=name)
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
            )
    rng = np.random.default_rng(3)
    channels, base_w, work_w, counters = [], [], [], []
    for i in range(devices):
        record, _ = ww.registry.create_device(
            owner, name=f"load-{i:02d}", site_id=site["id"], area_id=area_ids[i % len(area_ids)]
        )
        channels.append(record["channels"][0]["id"])
        base_w.append(rng.uniform(5, 300))
        work_w.append(rng.uniform(0, 2000))
        counters.append(i % 2 == 0)
    energy_mwh = np.full(devices, 1_000_000, dtype=np.int64)
    total = 0
    started = time.perf_counter()
    for d in range(days):
        day = START + timedelta(days=d)
        lo, hi = local_ms(day), local_ms(day + timedelta(days=1))
        ts = np.arange(lo, hi, step_s * 1000, dtype=np.int64)
        local_h = ((ts - lo) // 3_600_000).astype(np.int64)  # hour since midnight, fine for a load
        working = (day.weekday() < 5) & (local_h >= 8) & (local_h < 19)
        rows: list[StoredRow] = []
        for i, ch in enumerate(channels):
            p = base_w[i] + work_w[i] * working + rng.normal(0, 10, len(ts))
            p_mw = np.maximum(p, 0).astype(np.int64) * 1000
            if counters[i]:
                e = energy_mwh[i] + np.cumsum(p_mw * step_s // 3600)
                energy_mwh[i] = e[-1]
                e_list: list[int | None] = e.tolist()
            else:
                e_list = [None] * len(ts)
            rows.extend(
                StoredRow(ch, t, pw, en, 230_000, None, None)
                for t, pw, en in zip(ts.tolist(), p_mw.tolist(), e_list, strict=True)
            )
        ww.store.write_readings(rows)
        total += len(rows)
        rate = total / (time.perf_counter() - started)
        print(f"  loaded {day} ({total / 1e6:.1f} M readings, {rate:,.0f}/s)", flush=True)
    return org, site["id"], total


CPU: dict[str, float] = {}


def timed(fn: object, repeat: int, name: str = "") -> tuple[float, float]:
    """(first run, median of the rest) in wall seconds; the median CPU seconds go to CPU[name].

    CPU time is what the report costs on an idle machine (all of it, SQLite included, runs in
    this process); wall time also holds what other processes took from us.
    """
    times, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    CPU[name] = statistics.median(cpu[1:] or cpu)
    return times[0], statistics.median(times[1:] or times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=50)
    ap.add_argument("--step-s", type=int, default=5)
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--data-dir", type=Path, help="build here once, reuse on later runs")
    args = ap.parse_args()
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory()
        args.data_dir = Path(tmp.name)
    marker = args.data_dir / "bench-report.done"
    ww = Wattwatch.open(Settings(data_dir=args.data_dir), lock=True)
    try:
        if marker.exists():
            org, site_id, n = map(int, marker.read_text().split())
            print(f"reusing {args.data_dir}: {n / 1e6:.1f} M readings")
        else:
            print(f"loading {args.devices} devices × {args.days} days at {args.step_s} s …")
            org, site_id, n = build(ww, args.devices, args.step_s, args.days)
            ww.store.checkpoint()
            marker.write_text(f"{org} {site_id} {n}")
        assert ww.reports is not None
        service = ww.reports

        def build_report() -> dict[str, object]:
            return service.build(org, site_id=site_id, period="month", start=START)

        report = build_report()
        cold, warm = timed(build_report, args.repeat, "build")
        _, html = timed(lambda: service.render(report, "html"), args.repeat, "html")
        pdf_first, pdf = timed(lambda: service.render(report, "pdf"), 3, "pdf")
        scope = service.scope(org, site_id=site_id)
        ids = [c.id for c in scope.channels]
        period = service.period_for(scope, "month", START, None)

        def group_by() -> None:
            with ww.store.read_engine.connect() as conn:
                conn.execute(
                    _QUARTER_SQL, {"chs": ids, "lo": period.from_ms, "hi": period.to_ms}
                ).all()

        def streaming() -> None:
            service.reports.quarter_energy(ids, period.from_ms, period.to_ms)

        _, base = timed(group_by, 2, "group_by")
        _, ours = timed(streaming, 2, "streaming")
        s = report["summary"]
        print(
            f"site report, month, {args.devices} devices at {args.step_s} s "
            f"({n / 1e6:.1f} M readings): {s['energy_kwh']:,.0f} kWh, "  # type: ignore[index]
            f"peak {s['peak']['kw']:.1f} kW"  # type: ignore[index]
        )
        load = os.getloadavg()[0]
        print(f"  (machine load average {load:.1f} on {os.cpu_count()} CPUs; wall / CPU seconds)")
        print(f"  build (JSON figures): {warm:.2f} / {CPU['build']:.2f} s (first run {cold:.2f} s)")
        print(f"  + HTML: {html:.2f} / {CPU['html']:.2f} s")
        print(f"  + PDF: {pdf:.2f} / {CPU['pdf']:.2f} s (first PDF {pdf_first:.2f} s)")
        print(f"  total as PDF: {warm + pdf:.2f} / {CPU['build'] + CPU['pdf']:.2f} s")
        print(
            f"  quarter-hour query: {ours:.2f} / {CPU['streaming']:.2f} s streaming vs "
            f"{base:.2f} / {CPU['group_by']:.2f} s GROUP BY baseline "
            f"({CPU['group_by'] / CPU['streaming']:.1f}x less CPU)"
        )
    finally:
        ww.close()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
