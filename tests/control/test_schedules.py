"""Schedules: "printers of floor 2 off 19:00–07:00 on weekdays" in the site's timezone, fired
by an injected clock (no sleeping) against plugs that really answer over MQTT."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from tests.control.conftest import Plant
from tests.registry.accounts import account, bearer

from wattwatch.control.schedules import ScheduleEvent, next_fire_ms
from wattwatch.domain import Role

MADRID = ZoneInfo("Europe/Madrid")


def local_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=MADRID).timestamp() * 1000)


@pytest.mark.parametrize(
    ("days", "weekdays"),
    [
        ("mon-fri", "1,2,3,4,5"),
        ("weekdays", "1,2,3,4,5"),
        ("weekends", "0,6"),
        ("sat,sun", "0,6"),
        ("fri-mon", "0,1,5,6"),
        ("daily", "0,1,2,3,4,5,6"),
        ("Wed", "3"),
    ],
)
def test_at_and_days_become_cron(days: str, weekdays: str) -> None:
    event = ScheduleEvent(action="off", at="19:05", days=days)
    assert event.cron == f"5 19 * * {weekdays}"


@pytest.mark.parametrize(
    "body",
    [
        {"action": "off"},
        {"action": "off", "at": "19:00", "cron": "0 19 * * *"},
        {"action": "off", "at": "25:00"},
        {"action": "off", "at": "19:00", "days": "someday"},
        {"action": "off", "cron": "0 19 * *"},
        {"action": "toggle", "at": "19:00"},
    ],
)
def test_bad_events_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ScheduleEvent(**body)


def test_times_are_local_across_daylight_saving() -> None:
    cron = ScheduleEvent(action="off", at="19:00", days="mon-fri").cron
    assert cron is not None
    # Winter: 19:00 in Madrid is 18:00 UTC; summer: 17:00 UTC.
    winter = next_fire_ms(cron, "Europe/Madrid", local_ms("2026-01-12T12:00"))
    summer = next_fire_ms(cron, "Europe/Madrid", local_ms("2026-07-13T12:00"))
    assert datetime.fromtimestamp(winter / 1000, ZoneInfo("UTC")).hour == 18
    assert datetime.fromtimestamp(summer / 1000, ZoneInfo("UTC")).hour == 17
    # The Friday before and the Monday after the March change: still 19:00 local.
    before = next_fire_ms(cron, "Europe/Madrid", local_ms("2026-03-27T12:00"))
    after = next_fire_ms(cron, "Europe/Madrid", before)
    assert datetime.fromtimestamp(before / 1000, MADRID).isoformat() == "2026-03-27T19:00:00+01:00"
    assert datetime.fromtimestamp(after / 1000, MADRID).isoformat() == "2026-03-30T19:00:00+02:00"


def test_printers_off_at_night_on_weekdays(plant: Plant) -> None:
    now = [local_ms("2026-11-23T18:59")]  # a Monday
    scheduler = plant.ww.schedules
    assert scheduler is not None
    scheduler.clock = lambda: now[0]
    api = plant.api
    site = plant.site("Head office", "Europe/Madrid")
    floor2 = plant.area(site, "Floor 2")
    print_room = plant.area(site, "Print room", floor2)
    printers = [
        plant.tasmota(f"Printer {i}", area_id=print_room, appliance="printer") for i in range(2)
    ]
    printers.append(plant.thingsboard("Printer TB", area_id=floor2, appliance="Printer"))
    _, coffee = plant.tasmota("Coffee", area_id=floor2, appliance="coffee machine")
    for _, plug in printers:
        plug.state = 1 if isinstance(plug.state, int) else True

    r = api.post(
        "/api/v1/schedules",
        json={
            "name": "Printers off at night",
            "area_id": floor2,
            "appliance": "printer",
            "events": [
                {"action": "off", "at": "19:00", "days": "mon-fri"},
                {"action": "on", "at": "07:00", "days": "mon-fri"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    schedule = r.json()
    sid = schedule["id"]
    assert schedule["timezone"] == "Europe/Madrid" and schedule["site_id"] == site
    assert schedule["next_run"] == "2026-11-23T19:00:00+01:00"
    assert schedule["events"][0]["cron"] == "0 19 * * 1,2,3,4,5"

    def run_due() -> list[dict[str, Any]]:
        return list(api.portal.call(scheduler.run_due))

    assert run_due() == []  # 18:59: nothing yet

    now[0] = local_ms("2026-11-23T19:00:02")
    (run,) = run_due()
    assert run["action"] == "off" and run["status"] == "ok", run
    assert run["targets"] == 3 and run["succeeded"] == 3 and run["failed"] == 0
    assert all(not p.state for _, p in printers)
    assert coffee.received == []  # not a printer
    runs = api.get(f"/api/v1/schedules/{sid}/runs").json()
    assert [(x["action"], x["status"], x["due_ms"]) for x in runs] == [
        ("off", "ok", local_ms("2026-11-23T19:00"))
    ]
    assert {d["device_id"] for d in runs[0]["details"]["devices"]} == {d for d, _ in printers}
    assert api.get(f"/api/v1/schedules/{sid}").json()["next_run"] == "2026-11-24T07:00:00+01:00"
    trail = api.get("/api/v1/commands", params={"group_id": run["group_id"]}).json()
    assert len(trail) == 3 and {c["source"] for c in trail} == {"schedule"}
    assert {c["actor"] for c in trail} == {f"schedule {sid} (Printers off at night)"}
    assert all(c["schedule_id"] == sid and c["status"] == "ok" for c in trail)

    # A restart that lost the "next run" update (or a second replica) must not switch twice.
    scheduler.store.update_schedule(sid, {"next_run_ms": local_ms("2026-11-23T19:00")})
    sent = sum(len(p.received) for _, p in printers)
    assert run_due() == []
    assert sum(len(p.received) for _, p in printers) == sent
    assert len(api.get(f"/api/v1/schedules/{sid}/runs").json()) == 1

    now[0] = local_ms("2026-11-24T07:05")  # five minutes late still runs
    (run,) = run_due()
    assert run["action"] == "on" and run["status"] == "ok"
    assert all(p.state for _, p in printers)

    # Down from Tuesday morning to Saturday: every slot in between is recorded as missed,
    # and nothing is switched hours late.
    now[0] = local_ms("2026-11-28T10:00")
    sent = sum(len(p.received) for _, p in printers)
    missed = run_due()
    assert [(x["action"], x["status"]) for x in missed] == [
        ("off", "missed"),
        ("on", "missed"),
        ("off", "missed"),
        ("on", "missed"),
        ("off", "missed"),
        ("on", "missed"),
        ("off", "missed"),
    ]
    assert "not running" in missed[0]["details"]["reason"]
    assert sum(len(p.received) for _, p in printers) == sent
    # No events at the weekend: next is Monday 07:00.
    assert api.get(f"/api/v1/schedules/{sid}").json()["next_run"] == "2026-11-30T07:00:00+01:00"

    # A plug that does not answer makes the run partial, with its outcome recorded.
    printers[0][1].answer = False
    scheduler.timeout_s = 0.5
    now[0] = local_ms("2026-11-30T07:00:01")
    (run,) = run_due()
    assert run["status"] == "partial" and run["succeeded"] == 2 and run["failed"] == 1
    hung = [d for d in run["details"]["devices"] if d["status"] != "ok"]
    assert [d["device_id"] for d in hung] == [printers[0][0]]

    # Disabled: no next run, nothing fires.
    r = api.patch(f"/api/v1/schedules/{sid}", json={"enabled": False})
    assert r.json()["next_run"] is None
    now[0] = local_ms("2026-11-30T19:30")
    assert run_due() == []


def test_schedule_rules(plant: Plant) -> None:
    site = plant.site()
    floating = plant.device(name="Not placed")
    r = plant.api.post(
        "/api/v1/schedules",
        json={
            "name": "x",
            "device_id": floating["id"],
            "events": [{"action": "off", "at": "19:00"}],
        },
    )
    assert r.status_code == 422 and "site" in r.json()["error"]["message"]
    r = plant.api.post(
        "/api/v1/schedules",
        json={
            "name": "x",
            "site_id": site,
            "area_id": 1,
            "events": [{"action": "on", "at": "7:00"}],
        },
    )
    assert r.status_code == 422  # one target only
    _, token = account(plant.ww, "v@example.com", Role.VIEWER, plant.owner.org_id)
    body = {"name": "x", "site_id": site, "events": [{"action": "on", "at": "07:00"}]}
    assert plant.api.post("/api/v1/schedules", json=body, headers=bearer(token)).status_code == 403
    created = plant.api.post("/api/v1/schedules", json=body).json()
    assert (
        plant.api.get("/api/v1/schedules", headers=bearer(token)).json()[0]["id"] == created["id"]
    )
    r = plant.api.delete(f"/api/v1/schedules/{created['id']}", headers=bearer(token))
    assert r.status_code == 403
    assert plant.api.delete(f"/api/v1/schedules/{created['id']}").status_code == 204
    assert plant.api.get("/api/v1/schedules").json() == []
