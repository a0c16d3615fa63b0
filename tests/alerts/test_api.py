"""Alert API: rules and alerts per DESIGN §5, roles, tenant isolation, clear 4xx for bad input."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from wattwatch.app import Wattwatch
from wattwatch.domain import Role, now_ms


def _login(client: TestClient, email: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _wait_for(client: TestClient, path: str, n: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = client.get(path).json()
        if len(got) >= n:
            return got  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"{path}: fewer than {n} after 10 s")


def test_rule_alert_ack_flow_with_roles_and_tenancy(client: TestClient, ww: Wattwatch) -> None:
    r = client.post("/api/v1/devices", json={"name": "heater"})
    device_id, token = r.json()["id"], r.json()["token"]
    body = {
        "name": "heater left on",
        "kind": "threshold",
        "device_id": device_id,
        "channel": None,
        "metric": "power_w",
        "op": ">",
        "value": 2000,
        "for_s": 0,
        "severity": "warning",
        "notify": [],
    }
    r = client.post("/api/v1/alert-rules", json=body)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["kind"] == "threshold" and rule["value"] == 2000 and rule["for_s"] == 0
    assert [x["id"] for x in client.get("/api/v1/alert-rules").json()] == [rule["id"]]

    t = now_ms() - 60_000
    rows = [{"ts": t, "power_w": 2500.0}, {"ts": t + 1000, "power_w": 2600.0}]
    client.post("/api/v1/telemetry", json=rows, headers={"Authorization": f"Bearer {token}"})
    (alert,) = _wait_for(client, "/api/v1/alerts?state=active")
    assert alert["rule_id"] == rule["id"] and alert["device_id"] == device_id

    # A viewer reads rules and alerts, but neither creates rules nor acknowledges.
    ww.registry.add_user("viewer@example.com", "viewer-password", Role.VIEWER)
    viewer = _login(client, "viewer@example.com", "viewer-password")
    assert len(client.get("/api/v1/alerts", headers=viewer).json()) == 1
    assert len(client.get("/api/v1/alert-rules", headers=viewer).json()) == 1
    assert client.post("/api/v1/alert-rules", json=body, headers=viewer).status_code == 403
    r = client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=viewer)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"

    # Another organisation sees nothing and gets 404s.
    other_org = ww.registry.db.create_org("Other")
    ww.registry.add_user("other@example.com", "other-password", Role.OWNER, other_org)
    other = _login(client, "other@example.com", "other-password")
    assert client.get("/api/v1/alerts", headers=other).json() == []
    assert client.get("/api/v1/alert-rules", headers=other).json() == []
    assert client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=other).status_code == 404
    assert client.get(f"/api/v1/alert-rules/{rule['id']}", headers=other).status_code == 404
    r = client.post("/api/v1/alert-rules", json=body, headers=other)  # not their device
    assert r.status_code == 422 and "device not found" in r.json()["error"]["message"]

    r = client.post(f"/api/v1/alerts/{alert['id']}/ack")
    assert r.status_code == 200, r.text
    acked = r.json()
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "owner@localhost"
    assert [h["action"] for h in acked["history"]] == ["raised", "acknowledged"]
    assert (
        client.post(f"/api/v1/alerts/{alert['id']}/ack").json()["acknowledged_ms"]
        == (acked["acknowledged_ms"])
    )
    assert client.get("/api/v1/alerts?state=active").json() == []
    # Back to normal: the acknowledged alert clears and keeps who acknowledged it.
    client.post(
        "/api/v1/telemetry",
        json=[{"ts": t + 2000, "power_w": 100.0}],
        headers={"Authorization": f"Bearer {token}"},
    )
    (cleared,) = _wait_for(client, "/api/v1/alerts?state=cleared")
    assert cleared["acknowledged_by"] == "owner@localhost" and cleared["cleared_ms"] == t + 2000

    assert client.delete(f"/api/v1/alert-rules/{rule['id']}").status_code == 204
    assert client.get("/api/v1/alerts").json() == []


def test_bad_rules_get_clear_4xx(client: TestClient) -> None:
    device_id = client.post("/api/v1/devices", json={"name": "d"}).json()["id"]
    base = {"name": "x", "device_id": device_id}
    bad = [
        ({**base, "kind": "nonsense"}, "kind"),
        ({**base, "kind": "threshold"}, "value"),
        ({**base, "kind": "threshold", "value": 1, "metric": "watts"}, "metric"),
        ({**base, "kind": "threshold", "value": 1, "for_s": -5}, "for_s"),
        ({"name": "x", "kind": "threshold", "value": 1}, "exactly one of device_id"),
        ({**base, "kind": "threshold", "value": 1, "site_id": 1}, "exactly one of device_id"),
        ({**base, "kind": "range", "min": 253, "max": 207}, "min must be below max"),
        ({**base, "kind": "offline", "after_s": 0}, "after_s"),
        ({**base, "kind": "after_hours", "open_hours": {"monday": []}}, "unknown weekday"),
        ({**base, "kind": "after_hours", "open_hours": {"mon": [["18:00", "08:00"]]}}, "end"),
        ({**base, "kind": "after_hours", "open_hours": {}, "closed_dates": ["25/12"]}, "date"),
        ({**base, "kind": "threshold", "value": 1, "notify": [999]}, "webhook 999 not found"),
        ({**base, "kind": "threshold", "value": 1, "notify": [{"email": "nope"}]}, "email"),
        ({**base, "kind": "threshold", "value": 1, "notify": [{"kind": "pager"}]}, "pager"),
        ({**base, "kind": "threshold", "value": 1, "device_id": 99999}, "device not found"),
        ({**base, "kind": "threshold", "value": 1, "extra": 1}, "extra"),
    ]
    for body, words in bad:
        r = client.post("/api/v1/alert-rules", json=body)
        assert r.status_code == 422, (body, r.text)
        assert words in r.json()["error"]["message"], (words, r.json())
    assert client.post("/api/v1/alert-rules", content=b"{oops").status_code == 422
    assert client.get("/api/v1/alerts?state=open").status_code == 422
    assert client.post("/api/v1/alerts/12345/ack").status_code == 404
    assert client.get("/api/v1/alerts/nope").status_code == 422
