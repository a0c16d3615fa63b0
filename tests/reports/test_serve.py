"""Against a real ``wattwatch serve``: a PDF report over HTTP, and a scheduled report by email."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import login
from tests.reports.simdata import SimDevice, load
from tests.reports.smtp import smtp_server

from wattwatch.app import Wattwatch
from wattwatch.config import Settings


def test_report_and_schedule_on_a_running_server(
    server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    first = server_factory(data)  # creates the owner and the organisation
    password = first.password
    assert password
    first.stop()
    ww = Wattwatch.open(Settings(data_dir=data), lock=True)
    try:
        org_id = ww.registry.db.first_org_id()
        devices = [SimDevice("Oven", 100, 3000, counter=False), SimDevice("Fridge", 120)]
        _, site = load(ww, devices, start=date(2026, 10, 19), days=7, org_id=org_id)
    finally:
        ww.close()
    with smtp_server() as (inbox, port):
        monkeypatch.setenv("WATTWATCH_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("WATTWATCH_SMTP_PORT", str(port))
        srv = server_factory(data)
        with login(srv.url, "owner@localhost", password) as api:
            r = api.get(f"/api/v1/sites/{site['id']}/reports/week?start=2026-10-19&format=pdf")
            assert r.status_code == 200 and r.content.startswith(b"%PDF")
            r = api.get(f"/api/v1/sites/{site['id']}/reports/week?start=2026-10-19")
            report = r.json()
            truth = sum(float(d.true_wh.sum()) for d in devices) / 1000
            assert report["summary"]["energy_kwh"] == pytest.approx(truth, rel=1e-3)
            assert report["daily"][-1]["hours"] == 25
            r = api.post(
                "/api/v1/report-schedules",
                json={"site_id": site["id"], "period": "week", "recipients": ["me@x.es"]},
            )
            assert r.status_code == 201, r.text
            sent = api.post(f"/api/v1/report-schedules/{r.json()['id']}/send")
            assert sent.status_code == 200 and sent.json()["status"] == "sent", sent.text
        [msg] = inbox.messages
        assert msg["To"] == "me@x.es"
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        # "Send now" mails the last complete week: the one before today, whatever its data.
        link = f"http://127.0.0.1:{srv.http_port}/api/v1/sites/{site['id']}/reports/week?start="
        assert link in body.get_content()
