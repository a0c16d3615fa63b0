"""Report figures against the simulator's ground truth: totals, DST days, gaps, demand, cost."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from tests.reports.conftest import TZ, Month
from tests.reports.simdata import SimDevice, load, local_ms, true_daily_wh

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Role
from wattwatch.errors import InvalidInput, NotFound
from wattwatch.registry.service import Principal
from wattwatch.reports.service import ReportService

OCT = date(2026, 10, 1)


def reports(ww: Wattwatch) -> ReportService:
    assert ww.reports is not None
    return ww.reports


@pytest.fixture(scope="module")
def october(month: Month) -> dict[str, Any]:
    return reports(month.ww).build(
        month.owner.org_id, site_id=month.site["id"], period="month", start=OCT
    )


def in_october(dev: SimDevice) -> float:
    lo, hi = local_ms(OCT, TZ), local_ms(date(2026, 11, 1), TZ)
    inside = (dev.ts >= lo) & (dev.ts < hi)
    return float(dev.true_wh[inside].sum()) / 1000


def test_month_total_equals_ground_truth(month: Month, october: dict[str, Any]) -> None:
    truth_kwh = sum(in_october(d) for d in month.devices)
    assert october["summary"]["energy_kwh"] == pytest.approx(truth_kwh, rel=1e-3)
    by_device = {d["name"]: d for d in october["breakdown"]["devices"]}
    for dev in month.devices:
        assert by_device[dev.name]["energy_kwh"] == pytest.approx(in_october(dev), rel=1e-3)
    # A counter (reset half-way, batches written out of order) and integrated power agree.
    assert by_device["HVAC"]["energy_kwh"] == pytest.approx(
        by_device["HVAC twin"]["energy_kwh"], rel=1e-3
    )
    assert october["completeness"]["coverage"] == 1.0
    assert october["completeness"]["gaps"] == []


def test_daily_buckets_follow_local_days_across_dst(month: Month, october: dict[str, Any]) -> None:
    daily = october["daily"]
    assert [d["date"] for d in daily] == [(OCT + timedelta(days=i)).isoformat() for i in range(31)]
    hours = {d["date"]: d["hours"] for d in daily}
    assert hours["2026-10-25"] == 25  # clocks go back in Madrid
    assert {h for day, h in hours.items() if day != "2026-10-25"} == {24}
    assert len(october["hourly"]) == 31 * 24 + 1
    assert october["report"]["period"]["hours"] == 745
    truth = sum(true_daily_wh(d, TZ, OCT, 31) for d in month.devices) / 1000
    got = np.array([d["energy_kwh"] for d in daily])
    np.testing.assert_allclose(got, truth, rtol=2e-3)
    # A constant 100 W fridge: 2.4 kWh a day, 2.5 kWh on the 25-hour day.
    fridge = next(d for d in month.devices if d.name == "Fridge")
    dev = reports(month.ww).build(
        month.owner.org_id, device_id=fridge.device_id, period="month", start=OCT
    )
    per_day = {d["date"]: d["energy_kwh"] for d in dev["daily"]}
    assert per_day["2026-10-25"] == pytest.approx(2.5, rel=1e-3)
    assert per_day["2026-10-24"] == pytest.approx(2.4, rel=1e-3)
    assert dev["report"]["scope"] == {"kind": "device", "id": fridge.device_id, "name": "Fridge"}


def test_demand_business_hours_cost_and_comparison(month: Month, october: dict[str, Any]) -> None:
    s = october["summary"]
    # Weekdays 08-18 everything runs: 2 × 2.8 kW + 0.55 + 0.1 + 0.45 kW (server noise averages out).
    assert s["peak"]["kw"] == pytest.approx(6.7, rel=0.02)
    peak_local = datetime.fromisoformat(s["peak"]["local"])
    assert peak_local.weekday() < 5 and 8 <= peak_local.hour < 18
    assert s["base_load_kw"] == pytest.approx(0.3 + 0.3 + 0.15 + 0.1 + 0.4, rel=0.05)
    # Business hours (default Mon-Fri 08-18) are exactly when the loads work.
    zone = ZoneInfo(TZ)
    outside = 0.0
    lo, hi = local_ms(OCT, TZ), local_ms(date(2026, 11, 1), TZ)
    for dev in month.devices:
        m = (dev.ts >= lo) & (dev.ts < hi)
        minutes = np.unique(dev.ts[m] // 60_000)
        closed = {
            int(x)
            for x in minutes
            if not (
                (t := datetime.fromtimestamp(int(x) * 60, zone)).weekday() < 5 and 8 <= t.hour < 18
            )
        }
        mask = np.array([int(t) // 60_000 in closed for t in dev.ts[m]])
        outside += float(dev.true_wh[m][mask].sum()) / 1000
    assert s["business_hours"]["outside_kwh"] == pytest.approx(outside, rel=0.01)
    # Flat 0.20 EUR/kWh plus 1.50 EUR a day.
    assert s["cost"]["energy"] == pytest.approx(s["energy_kwh"] * 0.2, rel=1e-3)
    assert s["cost"]["standing"] == pytest.approx(31 * 1.5)
    assert s["co2_kg"] == pytest.approx(s["energy_kwh"] * 0.25, rel=1e-3)
    # September has 3 days of data: compared, and said so; no data a year earlier.
    prev = october["comparison"]["previous"]
    assert prev["days_with_data"] == 3 and prev["days"] == 30
    sept = sum(float(d.true_wh[d.ts < local_ms(OCT, TZ)].sum()) for d in month.devices) / 1000
    assert prev["energy_kwh"] == pytest.approx(sept, rel=2e-3)
    assert october["comparison"]["last_year"] is None
    kinds = [f["kind"] for f in october["findings"]]
    assert "peak" in kinds and "compare_previous" in kinds
    # Printers draw 150 W after hours against 550 W open: flagged; the fridge runs 24/7.
    texts = " ".join(f["text"] for f in october["findings"])
    assert "Printers used" in texts and "outside business hours" in texts
    assert "Running around the clock" in texts and "Fridge" in texts


def test_breakdown_areas_and_area_report(month: Month, october: dict[str, Any]) -> None:
    areas = {a["name"]: a for a in october["breakdown"]["areas"]}
    assert set(areas) == {"Office", "Print room", "Kitchen", "(no area)"}
    office = [d for d in month.devices if d.area == "Office"]
    assert areas["Office"]["energy_kwh"] == pytest.approx(
        sum(in_october(d) for d in office), rel=1e-3
    )
    assert sum(a["share"] for a in areas.values()) == pytest.approx(1.0, abs=1e-3)
    area_id = areas["Office"]["id"]
    rep = reports(month.ww).build(month.owner.org_id, area_id=area_id, period="month", start=OCT)
    assert rep["report"]["scope"]["kind"] == "area"
    assert {d["name"] for d in rep["breakdown"]["devices"]} == {"HVAC", "HVAC twin"}
    assert rep["summary"]["energy_kwh"] == pytest.approx(areas["Office"]["energy_kwh"], rel=1e-6)
    assert rep["summary"]["cost"]["standing"] == 0  # the standing charge belongs to the site
    top = october["top_consumers"]
    assert top[0]["name"] in ("HVAC", "HVAC twin") and len(top) == 5


def test_week_quarter_and_custom_periods(month: Month) -> None:
    svc, org, site = reports(month.ww), month.owner.org_id, month.site["id"]
    week = svc.build(org, site_id=site, period="week", start=date(2026, 10, 7))
    assert week["report"]["period"]["start"] == "2026-10-05"  # the Monday
    assert len(week["daily"]) == 7
    assert week["comparison"]["previous"]["days_with_data"] == 7
    quarter = svc.build(org, site_id=site, period="quarter", start=date(2026, 11, 15))
    assert quarter["report"]["period"]["start"] == "2026-10-01"
    assert len(quarter["daily"]) == 92
    custom = svc.build(
        org, site_id=site, period="custom", start=date(2026, 10, 24), end=date(2026, 10, 25)
    )
    assert [d["hours"] for d in custom["daily"]] == [24, 25]
    with pytest.raises(InvalidInput):
        svc.build(org, site_id=site, period="custom", start=date(2026, 10, 24))
    with pytest.raises(InvalidInput):
        svc.build(org, site_id=site, period="fortnight")
    other_org = month.ww.registry.db.create_org("Someone else")
    with pytest.raises(NotFound):
        svc.build(other_org, site_id=site, period="month", start=OCT)


def test_time_of_use_tariff(month: Month) -> None:
    """Peak price 08-18 on weekdays: cost = energy in each slot at its local price."""
    svc = reports(month.ww)
    db = month.ww.registry.db
    tariff = {
        "currency": "EUR",
        "price_per_kwh": 0.1,
        "periods": [
            {"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00", "price_per_kwh": 0.3}
        ],
    }
    site = month.site
    db.update_site(month.owner.org_id, site["id"], {"tariff": tariff})
    try:
        rep = svc.build(month.owner.org_id, site_id=site["id"], period="month", start=OCT)
    finally:
        db.update_site(month.owner.org_id, site["id"], {"tariff": site["tariff"]})
    bh = rep["summary"]["business_hours"]
    expected = bh["inside_kwh"] * 0.3 + bh["outside_kwh"] * 0.1
    assert rep["summary"]["cost"]["energy"] == pytest.approx(expected, rel=1e-3)


def test_a_missing_day_is_reported_not_zero(tmp_path: Path) -> None:
    ww = Wattwatch.open(Settings(data_dir=tmp_path / "gap"), lock=True)
    try:
        gap_day = date(2026, 3, 11)
        devices = [
            SimDevice("Lights", 50, 600, counter=False, missing_days=[gap_day]),
            SimDevice("Boiler", 200, 1500, counter=True, missing_days=[gap_day]),
            SimDevice("Router", 20),
        ]
        # March: Madrid springs forward on the 29th (a 23-hour day).
        owner, site = load(ww, devices, tz=TZ, start=date(2026, 3, 9), days=21, step_s=60)
        svc = reports(ww)
        rep = svc.build(owner.org_id, site_id=site["id"], period="week", start=date(2026, 3, 9))
        comp = rep["completeness"]
        assert comp["coverage"] == pytest.approx(1 - 2 / 21, abs=1e-4)
        assert comp["partial_days"] == ["2026-03-11"] and comp["missing_days"] == []
        gaps = {(g["device"], g["from_local"], g["to_local"], g["hours"]) for g in comp["gaps"]}
        assert gaps == {
            (name, "2026-03-11T00:00+01:00", "2026-03-12T00:00+01:00", 24.0)
            for name in ("Lights", "Boiler")
        }
        day = rep["daily"][2]
        assert day["status"] == "partial" and day["coverage"] == pytest.approx(1 / 3, abs=1e-4)
        assert rep["findings"][0]["kind"] == "data_gap"
        by_device = {d["name"]: d for d in rep["breakdown"]["devices"]}
        assert by_device["Lights"]["missing_days"] == ["2026-03-11"]
        assert by_device["Router"]["missing_days"] == []
        # The boiler's counter carried the gap's energy over: its total is still right, and
        # the catch-up is neither a demand peak nor hidden.
        boiler = devices[1]
        assert by_device["Boiler"]["energy_kwh"] == pytest.approx(
            float(boiler.true_wh[boiler.ts < local_ms(date(2026, 3, 16), TZ)].sum()) / 1000,
            rel=1e-3,
        )
        assert by_device["Boiler"]["peak_kw"] == pytest.approx(1.7, rel=0.01)
        # The simulated counter saw the 200 W base load across the gap: 4.8 kWh.
        assert comp["catch_up_kwh"] == pytest.approx(4.8, rel=0.05)
        lights = svc.build(
            owner.org_id, device_id=devices[0].device_id, period="week", start=date(2026, 3, 9)
        )
        assert lights["daily"][2]["status"] == "missing"
        assert lights["daily"][2]["energy_kwh"] is None
        assert lights["completeness"]["missing_days"] == ["2026-03-11"]
        spring = svc.build(owner.org_id, site_id=site["id"], period="week", start=date(2026, 3, 23))
        assert [d["hours"] for d in spring["daily"]][-1] == 23
        assert spring["completeness"]["coverage"] == 1.0
    finally:
        ww.close()


@pytest.mark.postgres
def test_postgresql_store_gives_the_same_report(tmp_path: Path) -> None:
    """The PostgreSQL path (GROUP BY quarter hours) against SQLite's, on a DST week with a gap."""
    from tests.pgdb import fresh_database

    def week_report(settings: Settings) -> dict[str, Any]:
        ww = Wattwatch.open(settings, lock=True)
        try:
            devices = [
                SimDevice("Lights", 50, 600, counter=False, missing_days=[date(2026, 3, 25)]),
                SimDevice("Boiler", 200, 1500, reset_at=0.5),
            ]
            owner, site = load(ww, devices, tz=TZ, start=date(2026, 3, 23), days=7, seed=3)
            return reports(ww).build(
                owner.org_id, site_id=site["id"], period="week", start=date(2026, 3, 23)
            )
        finally:
            ww.close()

    lite = week_report(Settings(data_dir=tmp_path / "lite"))
    with fresh_database("ww_reports") as url:
        pg = week_report(Settings(data_dir=tmp_path / "pg", database_url=url))
    for key in ("summary", "completeness", "daily", "profile", "breakdown"):
        assert pg[key] == lite[key], key
    assert [d["hours"] for d in pg["daily"]][-1] == 23
    assert pg["completeness"]["gaps"][0]["hours"] == 24


def test_site_without_devices_and_a_month_in_progress(month: Month) -> None:
    ww = month.ww
    owner = Principal(0, ww.registry.db.create_org("Empty"), Role.OWNER, "e@x.es")
    site = ww.registry.create_site(owner, "Empty", "America/New_York", {})
    svc = reports(ww)
    rep = svc.build(owner.org_id, site_id=site["id"], period="month", start=date(2026, 3, 1))
    assert {d["status"] for d in rep["daily"]} == {"missing"}
    assert rep["summary"]["energy_kwh"] == 0 and rep["summary"]["peak"] is None
    assert [d["hours"] for d in rep["daily"]][7] == 23  # New York springs forward on 8 March
    assert svc.render(rep, "html").content
    # A period that has not ended: the days to come are "future", not missing.
    fridge = next(d for d in month.devices if d.name == "Fridge")
    now = local_ms(date(2026, 10, 20), TZ, 12)
    later = ReportService(svc.store, svc.db, svc.reports, clock=lambda: now)
    rep = later.build(month.owner.org_id, device_id=fridge.device_id, period="month")
    assert rep["report"]["period"]["start"] == "2026-09-01"  # the last complete month
    rep = later.build(month.owner.org_id, device_id=fridge.device_id, start=OCT)
    status = [d["status"] for d in rep["daily"]]
    assert status == ["complete"] * 19 + ["partial"] + ["future"] * 11
    assert rep["daily"][19]["energy_kwh"] == pytest.approx(1.2, rel=0.01)  # half a day
    assert rep["summary"]["energy_kwh"] == pytest.approx(19.5 * 2.4, rel=1e-3)
    assert rep["completeness"]["coverage"] == 1.0
