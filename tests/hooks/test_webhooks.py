"""Signed webhooks against a real local HTTP receiver: signature, retries, dead letters, replay."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from tests.conftest import free_port
from tests.hooks.conftest import add_device

from wattwatch.domain import now_ms
from wattwatch.hooks.notifiers import verify

SECRET = "s3cret-for-the-test-receiver"


def _rule(client: Any, device_id: int, notify: list[Any]) -> dict[str, Any]:
    r = client.post(
        "/api/v1/alert-rules",
        json={
            "name": "heater left on",
            "kind": "threshold",
            "device_id": device_id,
            "value": 2000,
            "notify": notify,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def _send(client: Any, auth: dict[str, str], *power_w: float, t0: int | None = None) -> None:
    t = t0 or now_ms() - 60_000
    rows = [{"ts": t + i * 1000, "power_w": p} for i, p in enumerate(power_w)]
    r = client.post("/api/v1/telemetry", json=rows, headers=auth)
    assert r.status_code == 200 and r.json()["accepted"] == len(rows), r.text


def test_alert_webhook_is_signed_and_verifies(app_client: Any, receiver: Any) -> None:
    _ww, client = app_client()
    device_id, auth = add_device(client)
    r = client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "events": ["alert.raised", "alert.cleared"], "secret": SECRET},
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"] == SECRET
    assert "secret" not in client.get("/api/v1/webhooks").json()[0]
    # The rule also names the webhook: it is subscribed already, so one delivery, not two.
    _rule(client, device_id, [hook["id"]])
    t0 = now_ms() - 60_000
    _send(client, auth, 2500.0, t0=t0)
    _send(client, auth, 100.0, t0=t0 + 5000)
    receiver.wait(2)
    time.sleep(0.2)
    assert len(receiver.requests) == 2
    # Deliveries run concurrently: the two may arrive in either order.
    raised, cleared = sorted(
        receiver.requests, key=lambda g: g.headers["X-Wattwatch-Event"], reverse=True
    )
    for got in (raised, cleared):
        header = got.headers["X-Wattwatch-Signature"]
        expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert header == f"sha256={expected}" and verify(SECRET, got.body, header)
        assert not verify("another secret!!", got.body, header)
    body = json.loads(raised.body)
    assert body["event"] == "alert.raised" == raised.headers["X-Wattwatch-Event"]
    assert body["data"]["alert"]["message"].startswith("heater left on: power_w 2,500 > 2,000")
    assert body["data"]["alert"]["raised_ms"] == t0 and isinstance(body["ts"], int)
    assert raised.headers["X-Wattwatch-Delivery"] == body["id"]
    assert json.loads(cleared.body)["data"]["alert"]["state"] == "cleared"


def test_receiver_failing_three_times_gets_the_event_once(app_client: Any, receiver: Any) -> None:
    receiver.fail_first = 3
    _ww, client = app_client()
    device_id, auth = add_device(client)
    client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": ["alert.raised"], "secret": SECRET}
    )
    _rule(client, device_id, [])
    _send(client, auth, 2500.0)
    (got,) = receiver.wait(1)
    time.sleep(0.5)  # nothing more may come
    assert len(receiver.requests) == 1 and receiver.attempts == 4
    body = json.loads(got.body)
    assert body["event"] == "alert.raised"
    # Every try carried the same delivery id: a receiver can tell a retry from a new event.
    assert receiver.attempt_ids == [body["id"]] * 4
    assert client.get("/api/v1/webhooks/dead-letters").json() == []


def test_dead_receiver_is_dead_lettered_without_blocking_ingest(
    app_client: Any, receiver: Any
) -> None:
    receiver.hang_s = 3.0  # longer than the 1 s delivery timeout: every try times out
    ww, client = app_client()
    _, auth = add_device(client)
    r = client.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "events": ["reading.batch"], "secret": SECRET},
    )
    hook_id = r.json()["id"]
    dead_url = f"http://127.0.0.1:{free_port()}/nobody-home"
    client.post("/api/v1/webhooks", json={"url": dead_url, "events": ["reading.batch"]})
    t0 = now_ms() - 600_000
    started = time.perf_counter()
    for i in range(20):
        _send(client, auth, 100.0 + i, t0=t0 + i * 10_000)
    elapsed = time.perf_counter() - started
    # Deliveries are still retrying, while all 20 batches were ingested: had ingest waited for
    # them it would have taken over 4 s a batch (4 tries of 1 s), 80 s in all.
    assert ww.hooks.deliverer.pending > 0
    assert elapsed < 10.0, elapsed
    deadline = time.monotonic() + 30
    letters: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        letters = client.get("/api/v1/webhooks/dead-letters?state=dead").json()
        if len(letters) == 40:
            break
        time.sleep(0.1)
    assert len(letters) == 40
    hanging = [x for x in letters if x["webhook_id"] == hook_id]
    refused = [x for x in letters if x["webhook_id"] != hook_id]
    assert len(hanging) == len(refused) == 20
    assert all(x["attempts"] == 4 and "no answer within 1 s" in x["last_error"] for x in hanging)
    assert all("ConnectError" in x["last_error"] for x in refused)
    assert refused[0]["target"]["url"] == dead_url and "secret" not in refused[0]["target"]
    batch = json.loads(hanging[0]["body"])
    assert batch["event"] == "reading.batch"
    assert batch["data"]["readings"][0]["channel"] == "mains"
    assert batch["data"]["readings"][0]["power_w"] in {100.0 + i for i in range(20)}

    # The receiver is mended: a replay delivers the same bytes, signed with the secret.
    receiver.hang_s = 0.0
    before = len(receiver.requests)
    letter = hanging[0]
    r = client.post(f"/api/v1/webhooks/dead-letters/{letter['id']}/replay")
    assert r.status_code == 202, r.text
    got = receiver.wait(before + 1)[-1]
    assert got.body == letter["body"].encode()
    assert verify(SECRET, got.body, got.headers["X-Wattwatch-Signature"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = client.get("/api/v1/webhooks/dead-letters?state=delivered").json()
        if state:
            break
        time.sleep(0.05)
    assert [x["id"] for x in state] == [letter["id"]]
    r = client.post(f"/api/v1/webhooks/dead-letters/{letter['id']}/replay")
    assert r.status_code == 409


def test_webhook_api_validation_roles_and_tenancy(app_client: Any, receiver: Any) -> None:
    from wattwatch.domain import Role

    ww, client = app_client()
    bad = [
        ({"url": "ftp://x/y", "events": ["alert.raised"]}, "http"),
        ({"url": receiver.url, "events": []}, "events"),
        ({"url": receiver.url, "events": ["alert.exploded"]}, "unknown events"),
        ({"url": receiver.url, "events": ["*"], "secret": "short"}, "secret"),
        ({"events": ["*"]}, "url"),
    ]
    for body, words in bad:
        r = client.post("/api/v1/webhooks", json=body)
        assert r.status_code == 422 and words in r.json()["error"]["message"], (body, r.text)
    r = client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["*"]})
    hook = r.json()
    assert len(hook["secret"]) >= 32  # generated and shown once
    assert client.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 202
    (ping,) = receiver.wait(1)
    assert json.loads(ping.body)["event"] == "ping"
    assert verify(hook["secret"], ping.body, ping.headers["X-Wattwatch-Signature"])

    ww.registry.add_user("viewer@example.com", "viewer-password", Role.VIEWER)
    r = client.post(
        "/api/v1/auth/login", json={"email": "viewer@example.com", "password": "viewer-password"}
    )
    viewer = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/api/v1/webhooks", headers=viewer).status_code == 403
    assert client.get("/api/v1/webhooks/dead-letters", headers=viewer).status_code == 403
    other_org = ww.registry.db.create_org("Other")
    ww.registry.add_user("other@example.com", "other-password", Role.OWNER, other_org)
    r = client.post(
        "/api/v1/auth/login", json={"email": "other@example.com", "password": "other-password"}
    )
    other = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert client.get("/api/v1/webhooks", headers=other).json() == []
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=other).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=other).status_code == 404
    assert client.post("/api/v1/webhooks/dead-letters/1/replay", headers=other).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert client.get("/api/v1/webhooks").json() == []
