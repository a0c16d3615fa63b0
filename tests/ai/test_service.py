"""The AI service on a real store: labels, training from plugs and labels, model versions,
timelines and what is on now, candidates, forecasts, the anomaly check raising alerts."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from tests.ai.houses import MINUTE_MS, QUICK_NILM, make_house, runs, write_power
from tests.registry.accounts import account

from wattwatch.ai.service import NILM_KIND, AiService, local_to_ms
from wattwatch.alerts.rules import AnomalyRule
from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import now_ms
from wattwatch.errors import InvalidInput, NoModel, NotFound

DAY_MS = 86_400_000


def _service(ww: Wattwatch) -> AiService:
    assert ww.ai is not None
    ww.ai.nilm_params = QUICK_NILM
    return ww.ai


def test_plug_and_labels_train_a_versioned_model_that_finds_the_appliances(ww: Wattwatch) -> None:
    house = make_house(ww, days=3)
    ai = _service(ww)
    ai.keep_models = 1
    mid = house.monitor["id"]
    # the user marks every microwave run of the first three days (a complete labelling period)
    spans = runs(house.micro_w, house.start_ms, 200.0)
    first3 = [s for s in spans if s[1] <= house.start_ms + 2 * DAY_MS]
    ai.add_labels(house.owner, mid, [("microwave", s, e) for s, e in first3])
    listed = ai.list_labels(house.owner, mid)
    assert len(listed["labels"]) == len(first3)
    assert listed["labels"][0]["appliance"] == "Microwave"  # canonical spelling
    assert listed["labels"][0]["source"] == "user"
    assert listed["plugs"] == [
        {
            "appliance": "Kettle",
            "channel_ids": [
                ww.store.registry.channel_ids_of(house.plug["id"])["plug"]  # type: ignore[index]
            ],
        }
    ]

    result = ai.train(house.owner, mid)
    kinds = {m["kind"]: m for m in result["models"]}
    nilm = kinds[NILM_KIND]
    assert nilm["version"] == 1
    apps = nilm["metrics"]["appliances"]
    assert apps["Kettle"]["source"] == "plug" and apps["Microwave"]["source"] == "user"
    assert apps["Kettle"]["on_minutes"] == int((house.kettle_w >= 2000).sum())
    assert apps["Kettle"]["cv_f1"] > 0.8
    assert nilm["metrics"]["minutes"] == 3 * 1440

    # the last day, which the model saw only as aggregate when scoring the timeline
    lo = house.end_ms - DAY_MS
    out = ai.appliances(house.owner, mid, lo, house.end_ms)
    summary = {a["name"]: a for a in out["appliances"]}
    truth_kettle_wh = house.kettle_w[-1440:].sum() / 60
    assert summary["Kettle"]["energy_wh"] == pytest.approx(truth_kettle_wh, rel=0.25)
    truth_runs = runs(house.kettle_w[-1440:], lo, 2000.0)
    found = [t for t in out["timeline"] if t["appliance"] == "Kettle"]
    assert abs(len(found) - len(truth_runs)) <= 1
    for t in found:
        assert lo <= t["start"] < t["end"] <= house.end_ms
    assert out["now"] is not None and out["now"]["delay_min"] == 61
    assert out["now"]["ts"] == house.end_ms - MINUTE_MS - 61 * MINUTE_MS

    # versions count up, only the newest `keep_models` stay, the newest is used
    ai.train(house.owner, mid, days=2)
    versions = [m["version"] for m in ai.list_models(house.owner, mid) if m["kind"] == NILM_KIND]
    assert versions == [2]
    hour = ai.appliances(house.owner, mid, house.end_ms - 3_600_000, house.end_ms)
    assert hour["model"]["version"] == 2


def test_seed_labels_alone_train_and_bad_labels_are_refused(ww: Wattwatch) -> None:
    house = make_house(ww, days=3, with_plug=False)
    ai = _service(ww)
    mid = house.monitor["id"]
    with pytest.raises(NoModel):
        ai.appliances(house.owner, mid, house.end_ms - DAY_MS, house.end_ms)
    spans = runs(house.kettle_w, house.start_ms, 2000.0)
    ai.add_labels(house.owner, mid, [("Kettle", s, e) for s, e in spans], source="seed")
    result = ai.train(house.owner, mid)
    nilm = next(m for m in result["models"] if m["kind"] == NILM_KIND)
    assert nilm["metrics"]["appliances"]["Kettle"]["source"] == "seed"
    with pytest.raises(InvalidInput):
        ai.add_labels(house.owner, mid, [("Kettle", 10, 5)])
    with pytest.raises(InvalidInput):
        ai.add_labels(house.owner, mid, [("Kettle", 0, 10)], source="guess")
    with pytest.raises(InvalidInput):
        ai.appliances(house.owner, mid, house.end_ms, house.end_ms - 1)
    with pytest.raises(InvalidInput):
        ai.appliances(house.owner, mid, house.end_ms - 40 * DAY_MS, house.end_ms)
    label = ai.list_labels(house.owner, mid)["labels"][0]
    ai.delete_label(house.owner, mid, label["id"])
    with pytest.raises(NotFound):
        ai.delete_label(house.owner, mid, label["id"])
    # another organisation sees none of it
    other, _ = account(ww, "other@org.example")
    with pytest.raises(NotFound):
        ai.list_labels(other, mid)
    with pytest.raises(NotFound):
        ai.train(other, mid)


def test_a_device_without_runs_gets_candidates_only_and_naming_one_labels_its_events(
    ww: Wattwatch,
) -> None:
    house = make_house(ww, days=6, with_plug=False)
    ai = _service(ww)
    mid = house.monitor["id"]
    result = ai.train(house.owner, mid)
    assert [m["kind"] for m in result["models"]] == ["clusters"]
    assert result["skipped"][0]["kind"] == NILM_KIND
    cands = ai.candidates(house.owner, mid)["candidates"]
    assert cands, "the kettle and microwave runs form clusters"
    kettle = max(cands, key=lambda c: c["power_w"])
    assert kettle["power_w"] > 2000
    named = ai.name_candidate(house.owner, mid, kettle["cluster_id"], "kettle")
    assert named["name"] == "Kettle" and named["labels_created"] == kettle["n_events"]
    labels = ai.list_labels(house.owner, mid, appliance="Kettle")["labels"]
    assert len(labels) == kettle["n_events"]
    assert any(c["name"] == "Kettle" for c in ai.candidates(house.owner, mid)["candidates"])
    with pytest.raises(NotFound):
        ai.name_candidate(house.owner, mid, 99, "Toaster")
    # the named runs are labels: now a NILM model can be trained from them
    result = ai.train(house.owner, mid)
    assert NILM_KIND in {m["kind"] for m in result["models"]}


def test_forecasts_for_device_and_site_with_the_tariff(ww: Wattwatch) -> None:
    tariff = {"currency": "EUR", "price_per_kwh": 0.25, "standing_charge_per_day": 0.5}
    house = make_house(ww, days=15, with_plug=False, timezone="Europe/Madrid", tariff=tariff)
    ai = _service(ww)
    day = ai.forecast_device(house.owner, house.monitor["id"], "24h")
    assert len(day["points"]) == 24 and day["currency"] == "EUR"
    for p in day["points"]:
        assert p["lo"] <= p["energy_wh"] <= p["hi"]
        assert p["cost"] == pytest.approx(p["energy_wh"] / 1000 * 0.25, abs=1e-3)
    assert day["points"][0]["ts"] - day["origin"] == 3_600_000
    # the house uses ~ 4-5 kWh a day: the hourly forecast is in that range
    assert 2000 < sum(p["energy_wh"] for p in day["points"]) < 9000
    week = ai.forecast_site(house.owner, house.site_id, "7d")
    assert len(week["points"]) == 7
    assert all(p["lo"] <= p["energy_wh"] <= p["hi"] for p in week["points"])
    month = ai.forecast_site(house.owner, house.site_id, "month")["month"]
    assert month["energy_lo_wh"] <= month["energy_wh"] <= month["energy_hi_wh"]
    days_in_month = month["days_elapsed"] + month["days_remaining"]
    assert month["bill"] == pytest.approx(
        month["energy_wh"] / 1000 * 0.25 + 0.5 * days_in_month, abs=0.02
    )
    with pytest.raises(InvalidInput):
        ai.forecast_device(house.owner, house.monitor["id"], "1y")
    short = make_house(ww, days=3, with_plug=False, email="short@house.example")
    with pytest.raises(NoModel):
        ai.forecast_device(short.owner, short.monitor["id"], "24h")


def test_local_time_round_trip_over_daylight_saving() -> None:
    # 2026-10-25 01:30 UTC is 02:30 CET after the clocks went back; 00:30 UTC is 02:30 CEST
    ms = np.array([1792888200000, 1792891800000])
    from wattwatch.ai.service import local_index

    idx = local_index(ms, "Europe/Madrid")
    assert idx[0] == idx[1]  # the same wall-clock time twice
    assert local_to_ms(idx[:1], "Europe/Madrid")[0] == ms[0]


def test_base_load_step_in_stored_readings_fires_an_anomaly_rule(ww: Wattwatch) -> None:
    owner, _ = account(ww, "owner@anomaly.example")
    site = ww.registry.create_site(owner, "Shop", "Europe/Madrid", {})
    device, _ = ww.registry.create_device(owner, name="shop monitor", site_id=site["id"])
    rng = np.random.default_rng(3)
    days = 20
    n = days * 1440
    end = now_ms() // MINUTE_MS * MINUTE_MS
    start = end - n * MINUTE_MS
    minute = np.arange(n) % 1440
    watts = 150 + 30 * np.sin(2 * np.pi * minute / 1440) + rng.normal(0, 4, n)
    busy = rng.random(n) < 0.03
    watts[busy] += 1500
    watts[-30 * 60 :] += 250  # a 250 W base-load step 30 h ago
    write_power(ww, device["id"], "mains", start, watts)
    assert ww.alerts is not None and ww.ai_scheduler is not None
    ww.ai_scheduler.anomaly_interval_s = 3600

    async def main() -> list[dict[str, object]]:
        await ww.start()
        try:
            rule = AnomalyRule(
                name="equipment check", kind="anomaly", device_id=device["id"], severity="warning"
            )
            await asyncio.to_thread(ww.alerts.create_rule, owner, rule)  # type: ignore[union-attr]
            await ww.alerts.engine.reload()  # type: ignore[union-attr]
            await asyncio.to_thread(ww.ai_scheduler.run_due, time.time(), {})  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
            await ww.alerts.engine.drain()  # type: ignore[union-attr]
            return ww.alerts.list_alerts(owner, None)  # type: ignore[union-attr]
        finally:
            await ww.stop()

    alerts = asyncio.run(main())
    base = [a for a in alerts if a["details"].get("finding") == "base_load_creep"]
    assert len(base) == 1, alerts
    assert "base load rose from" in str(base[0]["message"])
    assert str(base[0]["message"]).startswith("equipment check: shop monitor: ")
    assert base[0]["kind"] == "anomaly"
    # detected after the step, within a day of it
    assert end - 30 * 3_600_000 < int(base[0]["details"]["detected_ms"]) <= end
    # the next check does not raise the same finding again
    assert ww.ai is not None
    raised: list[object] = []
    rules = [r for r in ww.alerts.store.enabled_rules() if r["kind"] == "anomaly"]
    assert ww.ai.check_anomalies(rules, lambda d, f: raised.append(f)) == 0


def test_an_older_data_dir_gains_the_ai_tables(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    Wattwatch.open(settings, lock=True).close()
    db = sqlite3.connect(settings.data_dir / "wattwatch.db")
    db.execute("DROP TABLE ai_labels")
    db.execute("DROP TABLE ai_models")
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.commit()
    db.close()
    ww = Wattwatch.open(settings, lock=True)
    try:
        house = make_house(ww, days=1, with_plug=False)
        assert ww.ai is not None
        ww.ai.add_labels(house.owner, house.monitor["id"], [("Kettle", 0, 60_000)])
        assert len(ww.ai.list_labels(house.owner, house.monitor["id"])["labels"]) == 1
    finally:
        ww.close()
    db = sqlite3.connect(settings.data_dir / "wattwatch.db")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
    db.close()


def test_model_lifecycle_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    ww = Wattwatch.open(Settings(data_dir=tmp_path / "data", database_url=pg_url), lock=True)
    try:
        house = make_house(ww, days=3)
        ai = _service(ww)
        ai.keep_models = 1
        mid = house.monitor["id"]
        first = ai.train(house.owner, mid)
        assert first["models"][0]["kind"] == "nilm"
        ai.train(house.owner, mid, days=2)
        nilm = [m for m in ai.list_models(house.owner, mid) if m["kind"] == "nilm"]
        assert [m["version"] for m in nilm] == [2]
        ai._cache.clear()  # the blob comes back from PostgreSQL
        out = ai.appliances(house.owner, mid, house.end_ms - DAY_MS, house.end_ms)
        assert any(t["appliance"] == "Kettle" for t in out["timeline"])
        assert out["model"]["version"] == 2
    finally:
        ww.close()


def test_scheduled_retraining_trains_due_devices_once_per_interval(ww: Wattwatch) -> None:
    house = make_house(ww, days=2)
    ai = _service(ww)
    # a device whose only label cannot train a model: tried, then left alone for the interval
    lone = ww.registry.create_device(house.owner, name="lone", site_id=None)[0]
    write_power(ww, lone["id"], "mains", house.start_ms, house.aggregate_w)
    ai.add_labels(house.owner, lone["id"], [("Kettle", house.start_ms, house.start_ms + 60_000)])
    assert {d["id"] for d in ai.trainable_devices()} == {house.monitor["id"], lone["id"]}
    assert ww.ai_scheduler is not None
    last: dict[str, float] = {}
    ww.ai_scheduler.run_due(time.time(), last)
    assert ww.ai_scheduler.runs["retrain"] == 1
    nilm = [m for m in ai.list_models(house.owner, house.monitor["id"]) if m["kind"] == NILM_KIND]
    assert [m["version"] for m in nilm] == [1]
    assert not [m for m in ai.list_models(house.owner, lone["id"]) if m["kind"] == NILM_KIND]
    # due again only after the interval
    assert ai.retrain_due(3600) == []
    ai.clock = lambda: now_ms() + 7 * DAY_MS + 60_000
    again = ai.retrain_due(7 * 86400)
    assert sorted(r["device_id"] for r in again) == sorted([house.monitor["id"], lone["id"]])
    nilm = [m for m in ai.list_models(house.owner, house.monitor["id"]) if m["kind"] == NILM_KIND]
    assert [m["version"] for m in nilm] == [2, 1]


def test_the_background_task_runs_with_the_app_and_stops_with_it(ww: Wattwatch) -> None:
    scheduler = ww.ai_scheduler
    assert scheduler is not None
    scheduler.first_delay_s, scheduler.poll_s = 0.0, 0.05
    scheduler.anomaly_interval_s = 1

    async def main() -> None:
        await ww.start()
        try:
            for _ in range(200):
                if scheduler.runs["anomaly"] >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            await ww.stop()

    asyncio.run(main())
    assert scheduler.runs["anomaly"] >= 2 and scheduler.runs["retrain"] == 1
    assert scheduler._task is None
