"""The demo's history fill: a first start writes the history, a restart only what is missing
and says so when nothing is (a restart within the history's step)."""

from __future__ import annotations

from pathlib import Path

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.sim.demo import Demo, DemoPlan

PLAN = DemoPlan(history_days=0.25, recent_days=0.1, office_devices=3, restaurant_devices=2)
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, on every step's grid


def test_restart_fills_only_the_gap_and_says_when_nothing_is_missing(tmp_path: Path) -> None:
    said: list[str] = []
    ww = Wattwatch.open(Settings(data_dir=tmp_path))
    try:
        demo = Demo(ww, PLAN)
        demo.prepare(now=T0)
        first = demo.fill_history(said.append, now=T0)
        assert sum(r.readings for r in first) > 0
        assert said and all(s.startswith("history: ") and "readings" in s for s in said)
    finally:
        ww.close()

    for later_s, missing in ((600, True), (600, False)):  # the second restart: same minute
        said.clear()
        ww = Wattwatch.open(Settings(data_dir=tmp_path))
        try:
            demo = Demo(ww, PLAN)
            demo.prepare(now=T0 + later_s * 1000)
            reports = demo.fill_history(said.append, now=T0 + later_s * 1000)
        finally:
            ww.close()
        filled = sum(r.readings for r in reports)
        if missing:  # ten minutes at 60 s steps, every device, nothing more
            assert 0 < filled < 11 * 5 * 40, said
            assert "readings" in said[-1]
        else:
            assert filled == 0
            assert said == ["history: up to date, nothing missing since the last run"]
