"""The reports API in-process: formats, org scoping, bad input as 4xx, settings and schedules."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.reports.conftest import PASSWORD, Month
from tests.reports.smtp import smtp_server

from wattwatch.domain import Role
from wattwatch.registry.service import Principal
from wattwatch.reports.mail import ReportMailer, SmtpSettings
from wattwatch.web.server import create_api


@pytest.fixture(scope="module")
def api(month: Month) -> Iterator[TestClient]:
    with TestClient(create_api(month.ww)) as c:
        r = c.post("/api/v1/auth/login", json={"email": month.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield c


def test_site_report_formats(api: TestClient, month: Month) -> None:
    url = f"/api/v1/sites/{month.site['id']}/reports/month?start=2026-10-01"
    r = api.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["report"]["period"]["label"] == "October 2026"
    assert len(body["daily"]) == 31
    r = api.get(url + "&format=csv&table=devices")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    names = {row["name"] for row in csv.DictReader(io.StringIO(r.text))}
    assert "Fridge" in names
    r = api.get(url + "&format=html")
    assert r.status_code == 200 and "<svg" in r.text
    assert r.headers["content-disposition"].startswith("inline")
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    r = api.get(url + "&format=pdf")
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    assert r.headers["content-type"] == "application/pdf"


def test_device_and_area_variants(api: TestClient, month: Month) -> None:
    fridge = next(d for d in month.devices if d.name == "Fridge")
    r = api.get(f"/api/v1/devices/{fridge.device_id}/reports/week?start=2026-10-19")
    assert r.status_code == 200
    body = r.json()
    assert body["report"]["scope"]["kind"] == "device"
    assert [d["hours"] for d in body["daily"]][-2:] == [24, 25]
    areas = api.get(f"/api/v1/sites/{month.site['id']}/reports/month?start=2026-10-01").json()
    office = next(a for a in areas["breakdown"]["areas"] if a["name"] == "Office")
    r = api.get(f"/api/v1/areas/{office['id']}/reports/month?start=2026-10-01")
    assert r.status_code == 200 and r.json()["summary"]["energy_kwh"] == office["energy_kwh"]
    r = api.get(f"/api/v1/sites/{month.site['id']}/reports/custom?start=2026-10-24&end=2026-10-26")
    assert r.status_code == 200 and len(r.json()["daily"]) == 3


def test_other_organisations_records_are_not_found(api: TestClient, month: Month) -> None:
    ww = month.ww
    other = Principal(0, ww.registry.db.create_org("Other"), Role.OWNER, "x@y.es")
    site = ww.registry.create_site(other, "Theirs", "UTC", {})
    device, _ = ww.registry.create_device(other, name="theirs", site_id=site["id"])
    for url in (
        f"/api/v1/sites/{site['id']}/reports/month",
        f"/api/v1/devices/{device['id']}/reports/week",
        f"/api/v1/sites/{site['id']}/report-settings",
        "/api/v1/areas/999999/reports/month",
    ):
        r = api.get(url)
        assert r.status_code == 404, (url, r.text)
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "query",
    [
        "reports/fortnight",
        "reports/month?start=October",
        "reports/month?start=2026-10-01&format=docx",
        "reports/month?start=2026-10-01&format=csv&table=nope",
        "reports/month?start=2026-10-01&format=json&table=daily",
        "reports/custom?start=2026-10-01",
        "reports/custom?start=2026-10-05&end=2026-10-01",
        "reports/custom?start=2020-01-01&end=2026-01-01",
        "reports/week?start=2026-10-01&end=2026-10-07",
    ],
)
def test_bad_requests_are_4xx(api: TestClient, month: Month, query: str) -> None:
    r = api.get(f"/api/v1/sites/{month.site['id']}/{query}")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"]


def test_report_settings(api: TestClient, month: Month) -> None:
    url = f"/api/v1/sites/{month.site['id']}/report-settings"
    default = api.get(url).json()
    assert default["co2_kg_per_kwh"] == 0.25
    assert default["business_hours"] == [
        {"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}
    ]
    assert api.put(url, json={"business_hours": [{"start": "08:10"}]}).status_code == 422
    new = {
        "business_hours": [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "00:00", "end": "24:00"}],
        "co2_kg_per_kwh": 0.1,
    }
    try:
        assert api.put(url, json=new).status_code == 200
        rep = api.get(f"/api/v1/sites/{month.site['id']}/reports/week?start=2026-10-05").json()
        assert rep["summary"]["business_hours"]["outside_kwh"] == 0
        assert rep["summary"]["co2_kg"] == pytest.approx(rep["summary"]["energy_kwh"] * 0.1, 0.01)
    finally:
        api.put(url, json=default)


def test_schedules_over_http(api: TestClient, month: Month) -> None:
    scheduler = month.ww.report_scheduler
    assert scheduler is not None
    bad = api.post("/api/v1/report-schedules", json={"site_id": 1, "recipients": ["x"]})
    assert bad.status_code == 422
    with smtp_server() as (inbox, port):
        saved = scheduler.mailer
        scheduler.mailer = ReportMailer(SmtpSettings("127.0.0.1", port))
        try:
            r = api.post(
                "/api/v1/report-schedules",
                json={
                    "site_id": month.site["id"],
                    "period": "month",
                    "cron": "0 8 1 * *",
                    "recipients": ["boss@sim.example", "it@sim.example"],
                },
            )
            assert r.status_code == 201, r.text
            schedule: dict[str, Any] = r.json()
            assert schedule["name"] == "month report of Sim office"
            listed = api.get("/api/v1/report-schedules").json()
            assert schedule["id"] in [s["id"] for s in listed]
            sent = api.post(f"/api/v1/report-schedules/{schedule['id']}/send")
            assert sent.status_code == 200 and sent.json()["status"] == "sent"
            assert sorted(inbox.envelopes[0].rcpt_tos) == ["boss@sim.example", "it@sim.example"]
            history = api.get(f"/api/v1/report-schedules/{schedule['id']}/deliveries").json()
            assert [h["status"] for h in history] == ["sent"]
            assert api.delete(f"/api/v1/report-schedules/{schedule['id']}").status_code == 204
            assert api.get(f"/api/v1/report-schedules/{schedule['id']}").status_code == 404
        finally:
            scheduler.mailer = saved
