"""compute_report on hand-made matrices: sub-meters, opening windows, periods (no database)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from wattwatch.errors import InvalidInput
from wattwatch.reports.compute import SLOT_MS, ChannelMeta, ReportInput, compute_report
from wattwatch.reports.periods import Period, PeriodKind, resolve_period
from wattwatch.reports.settings import OpeningWindow, ReportSettings
from wattwatch.tariffs import Tariff

TZ = "Europe/Madrid"


def report_of(channels: list[ChannelMeta], watts: list[float], days: int = 7) -> dict[str, object]:
    period = Period(PeriodKind.CUSTOM, date(2026, 6, 1), date(2026, 6, 1 + days), TZ)
    slots = (period.to_ms - period.from_ms) // SLOT_MS
    energy = np.array([[w / 4] * slots for w in watts], dtype=float)  # Wh per 15 min
    return compute_report(
        ReportInput(
            scope={"kind": "site", "id": 1, "name": "s"},
            site={"id": 1, "name": "s", "timezone": TZ},
            period=period,
            tariff=Tariff(price_per_kwh=0.5),
            settings=ReportSettings(),
            channels=channels,
            energy_wh=energy,
            now_ms=period.to_ms + 1,
        )
    )


def test_submeters_are_not_counted_twice() -> None:
    chans = [
        ChannelMeta(1, "mains", 1, "Main panel"),
        ChannelMeta(2, "mains", 2, "Coffee machine", submeter=True),
        ChannelMeta(3, "ac01", 3, "Panel B", submeter=True, appliance="Air conditioning"),
    ]
    rep = report_of(chans, [1000, 200, 300])
    summary: dict = rep["summary"]  # type: ignore[assignment]
    assert summary["energy_kwh"] == pytest.approx(168.0)  # 1 kW for a week, mains only
    assert summary["cost"]["energy"] == pytest.approx(84.0)
    top = {t["name"]: t["share"] for t in rep["top_consumers"]}  # type: ignore[attr-defined]
    assert top == {"Not sub-metered": 0.5, "Panel B / ac01": 0.3, "Coffee machine": 0.2}
    appliances = rep["breakdown"]["appliances"]  # type: ignore[index]
    assert [a["name"] for a in appliances] == ["(not labelled)", "Air conditioning"]
    # A scope of sub-meters only (an area of plugs) counts them.
    only = report_of(chans[1:], [200, 300])
    assert only["summary"]["energy_kwh"] == pytest.approx(84.0)  # type: ignore[index]


def test_base_load_and_always_on() -> None:
    rep = report_of([ChannelMeta(1, "mains", 1, "Server")], [500])
    s: dict = rep["summary"]  # type: ignore[assignment]
    assert s["base_load_kw"] == pytest.approx(0.5) and s["base_load_share"] == pytest.approx(1.0)
    assert s["peak"]["kw"] == pytest.approx(0.5)
    kinds = [f["kind"] for f in rep["findings"]]  # type: ignore[attr-defined]
    assert "base_load" in kinds
    assert rep["profile"]["weekday_kw"] == [0.5] * 24  # type: ignore[index]


def test_opening_windows() -> None:
    madrid = ZoneInfo(TZ)
    night = OpeningWindow(days=[4], start="22:00", end="06:00")  # Friday night shift
    assert night.covers(4, 23 * 60)
    assert night.covers(5, 5 * 60 + 45)  # Saturday early morning belongs to Friday's shift
    assert not night.covers(5, 6 * 60) and not night.covers(4, 5 * 60)
    settings = ReportSettings(business_hours=[OpeningWindow(start="08:30", end="24:00")])
    assert settings.is_open(datetime(2026, 6, 1, 23, 59, tzinfo=madrid))  # a Monday
    assert not settings.is_open(datetime(2026, 6, 1, 8, 15, tzinfo=madrid))
    with pytest.raises(ValueError):
        OpeningWindow(start="08:10")
    with pytest.raises(ValueError):
        OpeningWindow(days=[7])


def test_periods() -> None:
    today = date(2026, 11, 23)
    assert resolve_period("month", TZ, today=today).start == date(2026, 10, 1)
    assert resolve_period("quarter", TZ, today=today).start == date(2026, 7, 1)
    week = resolve_period("week", TZ, today=today)
    assert (week.start, week.end) == (date(2026, 11, 16), date(2026, 11, 23))
    q = resolve_period("quarter", TZ, start=date(2026, 2, 14))
    assert (q.start, q.end) == (date(2026, 1, 1), date(2026, 4, 1))
    assert q.previous().start == date(2025, 10, 1) and q.last_year().start == date(2025, 1, 1)
    assert q.label == "Q1 2026"
    assert (q.to_ms - q.from_ms) == (90 * 24 - 1) * 3_600_000  # March loses an hour
    leap = resolve_period("custom", TZ, start=date(2028, 2, 29), end=date(2028, 2, 29))
    assert leap.last_year().start == date(2027, 2, 28)
    w53 = resolve_period("week", TZ, start=date(2026, 12, 31))  # ISO week 53 of 2026
    assert w53.last_year().start == date(2025, 12, 22)
    for bad in ({"kind": "year"}, {"kind": "custom", "start": date(2026, 1, 1)}):
        with pytest.raises(InvalidInput):
            resolve_period(bad.pop("kind"), TZ, **bad)  # type: ignore[arg-type]
