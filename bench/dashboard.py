"""Dashboard benchmark: the device page over one year of 5 s readings (6.3 M), in headless Chromium.

Loads the device page on each history range and prints the time from navigation start until
its chart is drawn (median of 5, by the browser's clock), next to a baseline measured in the
same run: fetching just 100,000 raw readings of the same device over the API — what one page of
raw data would cost if the chart did not read the rollup that fits the range.
Usage: python bench/dashboard.py [--step-s 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.browser.conftest import chromium_path, launch, log_in, make_demo
from tests.conftest import ServerProcess

RANGES = ("1h", "24h", "7d", "30d", "1y")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-s", type=float, default=5.0, help="reading interval of the year")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if chromium_path() is None:
        sys.exit("needs Debian's chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="ww-bench-dash-"))
    try:
        started = time.perf_counter()
        demo = make_demo(tmp / "data", year_step_ms=int(args.step_s * 1000))
        print(
            f"wrote {demo.rows:,} readings (a year at {args.step_s:g} s) "
            f"in {time.perf_counter() - started:.0f} s"
        )
        srv = ServerProcess(demo.data_dir).start()
        try:
            with sync_playwright() as p:
                browser = launch(p)
                ctx = browser.new_context(viewport={"width": 1280, "height": 900})
                page = ctx.new_page()
                log_in(page, srv.url, demo.email, demo.password)
                results = {}
                for name in RANGES:
                    times = []
                    for _ in range(args.runs):
                        page.goto(f"{srv.url}/devices/{demo.panel_id}?range={name}")
                        page.wait_for_selector("#history-chart[data-state=ready]")
                        chart = page.locator("#history-chart")
                        times.append(int(chart.get_attribute("data-ready-at") or 0))
                    results[name] = (
                        statistics.median(times),
                        chart.get_attribute("data-interval"),
                        chart.get_attribute("data-points"),
                    )
                browser.close()
            r = httpx.post(
                srv.url + "/api/v1/auth/login",
                json={"email": demo.email, "password": demo.password},
            )
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            base = []
            for _ in range(3):
                t = time.perf_counter()
                got = httpx.get(
                    f"{srv.url}/api/v1/devices/{demo.panel_id}/readings",
                    params={"from": 0, "interval": "raw", "limit": 100_000},
                    headers=auth,
                    timeout=120,
                )
                base.append((time.perf_counter() - t) * 1000)
                assert len(got.json()["points"]) == 100_000
            baseline_ms = statistics.median(base)
        finally:
            srv.stop()
        print(f"baseline: 100,000 raw readings over the API: {baseline_ms:.0f} ms")
        print(
            f"{'range':>6} {'rollup':>7} {'points':>7} {'page ready (ms)':>16} {'vs baseline':>12}"
        )
        for name, (ms, interval, points) in results.items():
            print(f"{name:>6} {interval:>7} {points:>7} {ms:>16.0f} {ms / baseline_ms:>11.2f}x")
        worst = max(ms for ms, _, _ in results.values())
        verdict = "within" if worst <= 1000 else "OVER"
        print(f"slowest range: {worst:.0f} ms ({verdict} the 1 s budget)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
