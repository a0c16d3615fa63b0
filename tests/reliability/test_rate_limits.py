"""Per-device rate limits on ingest: HTTP 429 with Retry-After (nothing of the batch stored),
MQTT QoS 1 held until the bucket covers it (the PUBACK waits), QoS 0 dropped and counted;
a day of backlog from a 1 s device passes the default limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.broker.conftest import App, connect, wait_until

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import now_ms
from wattwatch.web.server import create_api


def _client(ww: Wattwatch) -> TestClient:
    boot = ww.registry.bootstrap_owner()
    assert boot is not None
    client = TestClient(create_api(ww))
    client.__enter__()
    r = client.post("/api/v1/auth/login", json={"email": boot.email, "password": boot.password})
    client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
    return client


@pytest.fixture
def api(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """An in-process app; indirect parametrisation gives it other settings."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    ww = Wattwatch.open(Settings(data_dir=tmp_path / "data", **overrides), lock=True)
    client = _client(ww)
    try:
        yield client
    finally:
        client.__exit__(None, None, None)
        ww.close()


def _device(api: TestClient, uid: str) -> tuple[int, str]:
    made = api.post("/api/v1/devices", json={"name": uid, "uid": uid}).json()
    return made["id"], made["token"]


def _batch(t0: int, n: int, step_ms: int = 1000) -> list[dict[str, Any]]:
    return [{"ts": t0 + i * step_ms, "power_w": 100.0 + i % 50} for i in range(n)]


def _stored(api: TestClient, device_id: int, t0: int) -> int:
    r = api.get(
        f"/api/v1/devices/{device_id}/readings",
        params={"from": t0, "interval": "raw", "limit": 1_000_000},
    )
    assert r.status_code == 200, r.text
    return len(r.json()["points"])


@pytest.mark.parametrize(
    "api", [{"device_rate_readings_per_s": 1000, "device_burst_readings": 1000}], indirect=True
)
def test_http_upload_over_the_limit_is_refused_whole_with_retry_after(api: TestClient) -> None:
    device_id, token = _device(api, "limited-1")
    _, other_token = _device(api, "limited-2")
    auth = {"Authorization": f"Bearer {token}"}
    t0 = now_ms() - 3_600_000
    r = api.post("/api/v1/telemetry", json=_batch(t0, 1000), headers=auth)
    assert r.status_code == 200 and r.json()["accepted"] == 1000
    # The bucket is empty: 600 more are refused whole, with when to come back.
    late = _batch(t0 + 1_000_000, 600)
    r = api.post("/api/v1/telemetry", json=late, headers=auth)
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "rate_limited"
    assert "nothing of this batch was stored" in error["message"]
    assert "1000 readings/s" in error["message"]
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert _stored(api, device_id, t0) == 1000
    # CSV is counted the same way (rows, whatever their fate).
    csv = "ts,power_w\n" + "".join(f"{t0 + 2_000_000 + i},5\n" for i in range(600))
    r = api.post("/api/v1/telemetry", content=csv, headers={**auth, "Content-Type": "text/csv"})
    assert r.status_code == 429
    # Another device is not held back by this one.
    r = api.post(
        "/api/v1/telemetry",
        json=_batch(t0, 1000),
        headers={"Authorization": f"Bearer {other_token}"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1000
    # Waiting as told is enough, and the retry is clean: all 600 stored, no duplicates.
    time.sleep(retry_after)
    r = api.post("/api/v1/telemetry", json=late, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 600, "duplicates": 0, "rejected": []}
    assert _stored(api, device_id, t0) == 1600
    metrics = api.get("/metrics").text
    assert 'wattwatch_rate_limited_total{action="refused",transport="http"} 2.0' in metrics
    assert 'wattwatch_rate_limited_readings_total{action="refused",transport="http"} 1200.0' in (
        metrics
    )


def test_a_day_of_backlog_from_a_1_s_device_passes_the_default_limits(api: TestClient) -> None:
    """Offline for a day, reporting every second: 86,400 readings uploaded back to back in
    the batches a collector makes, right after the device's live readings."""
    device_id, token = _device(api, "back-from-a-day-offline")
    auth = {"Authorization": f"Bearer {token}"}
    start = now_ms() - 86_400_000 - 60_000
    for i in range(0, 86_400, 9_600):
        r = api.post("/api/v1/telemetry", json=_batch(start + i * 1000, 9_600), headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 9_600
    for i in range(60):  # and live again, one reading a second
        r = api.post("/api/v1/telemetry", json=_batch(start + (86_400 + i) * 1000, 1), headers=auth)
        assert r.status_code == 200, r.text
    assert _stored(api, device_id, start) == 86_460


@pytest.fixture
def mqtt_app(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[App]:
    running = App(tmp_path / "data", **request.param)
    try:
        yield running
    finally:
        running.stop()


def _readings_message(t0: int, n: int) -> str:
    return json.dumps([{"ts": t0 + i * 1000, "power_w": 50.0} for i in range(n)])


def _limited(app: App, action: str) -> float:
    value = app.ww.stats.registry.get_sample_value(
        "wattwatch_rate_limited_total", {"transport": "mqtt", "action": action}
    )
    return value or 0.0


@pytest.mark.parametrize(
    "mqtt_app", [{"device_rate_readings_per_s": 50, "device_burst_readings": 50}], indirect=True
)
def test_mqtt_qos1_over_the_limit_waits_for_its_puback_and_is_stored(mqtt_app: App) -> None:
    app = mqtt_app
    greedy, greedy_token = app.device("greedy-1")
    calm, calm_token = app.device("calm-1")
    fast = connect(app.port, "greedy-1", "greedy-1", greedy_token)
    other = connect(app.port, "calm-1", "calm-1", calm_token)
    try:
        t0 = now_ms() - 3_600_000
        started = time.monotonic()
        # 20 messages of 10 readings: 50 go at once, 150 at 50/s = 3 s of held PUBACKs.
        infos = [
            fast.publish("wattwatch/greedy-1/telemetry", _readings_message(t0 + k * 10_000, 10))
            for k in range(20)
        ]
        wait_until(lambda: _limited(app, "delayed") > 0, what="a held message")
        # Meanwhile another device is served at once.
        calm_started = time.monotonic()
        other.publish_acked("wattwatch/calm-1/telemetry", _readings_message(t0, 5))
        assert time.monotonic() - calm_started < 2.0
        assert not infos[-1].is_published()
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
        took = time.monotonic() - started
        assert took >= 2.5, f"held PUBACKs came after {took:.2f} s"
        assert len(app.readings(greedy["id"])) == 200
        assert len(app.readings(calm["id"])) == 5
        assert _limited(app, "delayed") >= 14
        assert _limited(app, "dropped") == 0
    finally:
        fast.close()
        other.close()


@pytest.mark.parametrize(
    "mqtt_app", [{"device_rate_readings_per_s": 1, "device_burst_readings": 50}], indirect=True
)
def test_mqtt_qos0_over_the_limit_is_dropped_and_counted(mqtt_app: App) -> None:
    app = mqtt_app
    device, token = app.device("chatty-0")
    client = connect(app.port, "chatty-0", "chatty-0", token)
    try:
        t0 = now_ms() - 3_600_000
        for k in range(10):
            client.publish(
                "wattwatch/chatty-0/telemetry", _readings_message(t0 + k * 10_000, 10), qos=0
            )
        wait_until(
            lambda: app.outcome_count("accepted") + app.outcome_count("rate_limited") >= 10,
            what="all ten messages handled",
        )
        stored = len(app.readings(device["id"]))
        dropped = _limited(app, "dropped")
        # 50 at once, then one reading a second: a ten-reading message needs 10 s.
        assert stored in (50, 60)
        assert dropped == 10 - stored // 10
        assert app.outcome_count("rate_limited") == dropped
        value = app.ww.stats.registry.get_sample_value(
            "wattwatch_rate_limited_readings_total", {"transport": "mqtt", "action": "dropped"}
        )
        assert value == dropped * 10
    finally:
        client.close()
