"""HTTP API behaviour in-process: auth, roles, tenant isolation, clear 4xx for bad input."""

from __future__ import annotations

import math
from typing import Any

import orjson

from wattwatch.app import Wattwatch
from wattwatch.domain import Role, now_ms


def _device(client: Any, **extra: Any) -> tuple[int, str]:
    r = client.post("/api/v1/devices", json={"name": "plug", **extra})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["token"]


def test_login_errors_are_clear_and_rate_limited(client: Any) -> None:
    r = client.post("/api/v1/auth/login", json={"email": "owner@localhost", "password": "nope"})
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    for _ in range(12):
        r = client.post("/api/v1/auth/login", json={"email": "x@y.z", "password": "nope"})
    assert r.status_code == 429
    assert client.get("/api/v1/sites", headers={"Authorization": "Bearer bogus"}).status_code == 401


def test_bad_input_gets_4xx_never_500(client: Any) -> None:
    assert (
        client.post("/api/v1/sites", json={"name": "x", "timezone": "Mars/Base"}).status_code == 422
    )
    assert client.post("/api/v1/sites", content=b"{not json").status_code == 422
    dev_id, token = _device(client)
    q = f"/api/v1/devices/{dev_id}/readings"
    assert client.get(q, params={"from": "yesterday"}).status_code == 422
    assert client.get(q, params={"interval": "2h"}).status_code == 422
    assert client.get(q, params={"metrics": "watts"}).status_code == 422
    assert client.get(q, params={"cursor": "zzz"}).status_code == 422
    auth = {"Authorization": f"Bearer {token}"}
    for body, ctype in [
        (b"[1,2", "application/json"),
        (b"42", "application/json"),
        (b"", "text/csv"),
        (b"<xml/>", "application/xml"),
    ]:
        r = client.post("/api/v1/telemetry", content=body, headers={**auth, "content-type": ctype})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["message"]
    r = client.post(
        "/api/v1/telemetry", json=[{"power_w": 1}], headers={"Authorization": "Bearer x"}
    )
    assert r.status_code == 401


def test_uniform_batch_rejects_only_its_bad_rows(client: Any) -> None:
    _, token = _device(client)
    t = now_ms() - 60_000
    rows = [{"ts": t + i * 1000, "power_w": 100.0, "voltage_v": 230.0} for i in range(50)]
    rows[3]["voltage_v"] = 5000.0
    rows[7]["ts"] = t + 3_600_000
    rows[9]["power_w"] = 2e6
    r = client.post(
        "/api/v1/telemetry",
        content=orjson.dumps(rows),
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    body = r.json()
    assert body["accepted"] == 47
    assert [x["index"] for x in body["rejected"]] == [3, 7, 9]
    assert "voltage_v=5000.0 outside plausible range" in body["rejected"][0]["reason"]
    assert "future" in body["rejected"][1]["reason"]
    # NaN/Infinity are not JSON; in NDJSON they are refused per line.
    nd = b'{"power_w": NaN}\n{"power_w": 5}\n'
    r = client.post(
        "/api/v1/telemetry",
        content=nd,
        headers={"Authorization": f"Bearer {token}", "content-type": "application/x-ndjson"},
    )
    assert r.json()["accepted"] == 1 and r.json()["rejected"][0]["index"] == 0
    assert math.isfinite(1.0)


def test_other_organisations_see_nothing(client: Any, ww: Wattwatch) -> None:
    site = client.post("/api/v1/sites", json={"name": "A site"}).json()
    dev_id, _ = _device(client, site_id=site["id"])
    other_org = ww.registry.db.create_org("B")
    ww.registry.add_user("b@example.com", "b-password-123", Role.OWNER, org_id=other_org)
    tok = client.post(
        "/api/v1/auth/login", json={"email": "b@example.com", "password": "b-password-123"}
    ).json()["access_token"]
    b = {"Authorization": f"Bearer {tok}"}
    assert client.get("/api/v1/devices", headers=b).json() == []
    assert client.get("/api/v1/sites", headers=b).json() == []
    for path in (
        f"/api/v1/devices/{dev_id}",
        f"/api/v1/devices/{dev_id}/readings",
        f"/api/v1/sites/{site['id']}",
        f"/api/v1/sites/{site['id']}/energy",
    ):
        assert client.get(path, headers=b).status_code == 404, path
    assert client.post(f"/api/v1/devices/{dev_id}/token", headers=b).status_code == 404
    # and B cannot put a device on A's site
    r = client.post("/api/v1/devices", json={"name": "x", "site_id": site["id"]}, headers=b)
    assert r.status_code == 404


def test_viewer_cannot_manage(client: Any, ww: Wattwatch) -> None:
    ww.registry.add_user("v@example.com", "viewer-pass-1", Role.VIEWER)
    tok = client.post(
        "/api/v1/auth/login", json={"email": "v@example.com", "password": "viewer-pass-1"}
    ).json()["access_token"]
    v = {"Authorization": f"Bearer {tok}"}
    assert client.post("/api/v1/sites", json={"name": "x"}, headers=v).status_code == 403
    assert client.post("/api/v1/devices", json={"name": "x"}, headers=v).status_code == 403
    assert client.get("/api/v1/sites", headers=v).status_code == 200


def test_rotated_token_stops_working(client: Any) -> None:
    dev_id, token = _device(client)
    new = client.post(f"/api/v1/devices/{dev_id}/token").json()["token"]
    body = [{"power_w": 5}]
    assert (
        client.post(
            "/api/v1/telemetry", json=body, headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 401
    )
    assert (
        client.post(
            "/api/v1/telemetry", json=body, headers={"Authorization": f"Bearer {new}"}
        ).status_code
        == 200
    )


def test_metrics_and_health(client: Any) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert 'wattwatch_readings_total{outcome="accepted"}' in text
    assert "wattwatch_ingest_queue_readings" in text
