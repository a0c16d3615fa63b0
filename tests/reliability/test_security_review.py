"""Security review, as tests: what the other suites do not already prove.

Already proven elsewhere (and referenced from docs/reliability.md, not repeated here):
- device impersonation on native and Tasmota topics, command topics, subscriptions, client-id
  take-over, token rotation on MQTT (next connect refused, live session ended):
  tests/broker/test_security.py;
- tenant isolation of every API route and dashboard page, generated from the app's routes:
  tests/web/test_isolation.py;
- HTTP token replay after rotation: tests/web/test_api.py::test_rotated_token_stops_working;
- session cookie HttpOnly/SameSite/Secure, CSRF, headers on /login and static files:
  tests/web/test_dashboard.py.

Here: Shelly and ThingsBoard impersonation, MQTT replay of a rotated token (all protocols) with
the HTTP one in the same run, password hashing, secrets absent from every log line, and the
security headers on every dashboard page (walked from the app's routes) and error answers.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from tests.broker.conftest import App, connect

from wattwatch.app import Wattwatch
from wattwatch.domain import DeviceProtocol, now_ms
from wattwatch.web.dashboard import session
from wattwatch.web.server import create_api


@pytest.fixture(scope="module")
def broker_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    running = App(tmp_path_factory.mktemp("secreview") / "data")
    yield running
    running.stop()


def stored(app: App, device: dict[str, Any]) -> list[dict[str, Any]]:
    return app.readings(device["id"])


# --- device impersonation across topics (Shelly, ThingsBoard) ---------------------------------


def test_a_shelly_plug_cannot_speak_for_another(broker_app: App) -> None:
    app = broker_app
    plug_a, token_a = app.device("imp-sh-a", DeviceProtocol.SHELLY, topic="shelly-a")
    plug_b, _ = app.device("imp-sh-b", DeviceProtocol.SHELLY, topic="shelly-b")
    a = connect(app.port, "shelly-a-client", "imp-sh-a", token_a)
    try:
        assert a.ok
        forged = json.dumps({"id": 0, "output": True, "apower": 666.0})
        a.publish_acked("shelly-b/status/switch:0", forged)  # B's status
        a.publish_acked("shelly-b/online", "true")
        a.publish_acked("shelly-b/rpc", json.dumps({"id": 1, "method": "Switch.Set"}))
        for topic_filter in ("shelly-b/rpc", "shelly-b/#", "+/rpc", "#"):
            assert a.subscribe(topic_filter)[0].is_failure, topic_filter
        a.publish_acked("shelly-a/status/switch:0", json.dumps({"id": 0, "apower": 5.0}))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not stored(app, plug_a):
            time.sleep(0.05)
    finally:
        a.close()
    assert stored(app, plug_b) == []
    assert [r["power_w"] for r in stored(app, plug_a)] == [5.0]


def test_a_thingsboard_device_is_only_ever_me(broker_app: App) -> None:
    """ThingsBoard topics name no device: the token is the identity, ``me`` is always self."""
    app = broker_app
    a, token_a = app.device("imp-tb-a", DeviceProtocol.THINGSBOARD)
    b, token_b = app.device("imp-tb-b", DeviceProtocol.THINGSBOARD)
    client = connect(app.port, "tb-a", token_a, None)
    try:
        assert client.ok
        client.publish_acked("v1/devices/me/telemetry", json.dumps({"power": 7.0}))
        # Another device's uid or token in the topic or payload changes nothing.
        client.publish_acked(f"v1/devices/{b['uid']}/telemetry", json.dumps({"power": 666}))
        client.publish_acked(f"v1/devices/{token_b}/telemetry", json.dumps({"power": 666}))
        client.publish_acked("wattwatch/imp-tb-b/telemetry", json.dumps({"power_w": 666}))
        for topic_filter in ("v1/devices/+/rpc/request/+", "wattwatch/imp-tb-b/command", "#"):
            assert client.subscribe(topic_filter)[0].is_failure, topic_filter
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not stored(app, a):
            time.sleep(0.05)
    finally:
        client.close()
    assert stored(app, b) == []
    assert [r["power_w"] for r in stored(app, a)] == [7.0]


# --- token replay after rotation, every transport ---------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "topic"),
    [
        (DeviceProtocol.NATIVE, None),
        (DeviceProtocol.TASMOTA, "replay_plug"),
        (DeviceProtocol.SHELLY, "replay-shelly"),
        (DeviceProtocol.THINGSBOARD, None),
    ],
)
def test_a_rotated_token_is_refused_on_mqtt_and_http(
    broker_app: App, protocol: DeviceProtocol, topic: str | None
) -> None:
    app = broker_app
    uid = f"replay-{protocol.value}"
    device, old = app.device(uid, protocol, topic=topic)

    def mqtt_ok(token: str) -> bool:
        if protocol is DeviceProtocol.THINGSBOARD:
            client = connect(app.port, "", token, None)
        else:
            client = connect(app.port, uid if protocol is DeviceProtocol.NATIVE else "", uid, token)
        ok = client.ok
        client.close()
        return ok

    assert mqtt_ok(old)
    new = app.ww.registry.rotate_device_token(app.owner, device["id"])
    assert new != old
    assert not mqtt_ok(old), "the old token still connects"
    assert mqtt_ok(new)
    # The HTTP upload of the same app takes the new token only.
    api = TestClient(create_api(app.ww, manage_lifecycle=False))
    body = [{"ts": now_ms() - 1000, "power_w": 1.0}]
    old_answer = api.post(
        "/api/v1/telemetry", json=body, headers={"Authorization": f"Bearer {old}"}
    )
    assert old_answer.status_code == 401
    assert old_answer.json()["error"]["code"] == "unauthorized"


# --- password hashing -------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2id_hashes(client: Any, ww: Wattwatch) -> None:
    password = "pässwörd-under-review-42"
    r = client.post(
        "/api/v1/users",
        json={"email": "hashed@example.com", "role": "viewer", "password": password},
    )
    assert r.status_code == 201, r.text
    assert password not in r.text
    row = ww.registry.db.user_by_email("hashed@example.com")
    assert row is not None
    stored_hash = row["password_hash"]
    assert stored_hash.startswith("$argon2id$"), stored_hash[:20]
    assert password not in stored_hash
    assert PasswordHasher().verify(stored_hash, password)
    # Salted: the same password twice gives two hashes.
    client.post(
        "/api/v1/users",
        json={"email": "hashed2@example.com", "role": "viewer", "password": password},
    )
    other = ww.registry.db.user_by_email("hashed2@example.com")
    assert other is not None and other["password_hash"] != stored_hash
    # The hash is never served.
    assert "argon2" not in client.get("/api/v1/users").text
    wrong = client.post(
        "/api/v1/auth/login", json={"email": "hashed@example.com", "password": password.upper()}
    )
    assert wrong.status_code == 401 and "access_token" not in wrong.text
    right = client.post(
        "/api/v1/auth/login", json={"email": "hashed@example.com", "password": password}
    )
    assert right.status_code == 200 and right.json()["access_token"]


# --- secrets absent from logs -----------------------------------------------------------------


def test_no_secret_reaches_a_log_line(
    ww: Wattwatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Everything that makes, shows or uses a secret, at DEBUG: no secret in any log record
    (message, arguments, exception text), nor in any file the data dir holds besides the
    database (which keeps hashes only)."""
    caplog.set_level(logging.DEBUG, logger="wattwatch")
    caplog.set_level(logging.INFO)
    secrets: dict[str, str] = {}
    boot = ww.registry.bootstrap_owner()
    assert boot is not None
    secrets["owner password"] = boot.password
    with TestClient(create_api(ww)) as api:
        r = api.post("/api/v1/auth/login", json={"email": boot.email, "password": boot.password})
        secrets["login token"] = r.json()["access_token"]
        owner = {"Authorization": f"Bearer {secrets['login token']}"}
        # A wrong password, and a wrong token: refusals are logged without what was tried.
        secrets["wrong password"] = "wrong-but-still-secret-77"
        api.post(
            "/api/v1/auth/login", json={"email": boot.email, "password": secrets["wrong password"]}
        )
        secrets["guessed token"] = "wwd_guessed-token-value-0123456789"
        api.post(
            "/api/v1/telemetry",
            json=[{"power_w": 1}],
            headers={"Authorization": f"Bearer {secrets['guessed token']}"},
        )
        secrets["user password"] = "user-password-under-review"
        api.post(
            "/api/v1/users",
            json={"email": "u1@example.com", "role": "admin", "password": secrets["user password"]},
            headers=owner,
        )
        invited = api.post(
            "/api/v1/users", json={"email": "u2@example.com", "role": "viewer"}, headers=owner
        ).json()
        one_time = invited.get("password") or invited.get("one_time_password")
        if one_time:
            secrets["one-time password"] = one_time
        device = api.post(
            "/api/v1/devices", json={"name": "Meter", "uid": "log-meter"}, headers=owner
        ).json()
        secrets["device token"] = device["token"]
        if device.get("claim_code"):
            secrets["claim code"] = device["claim_code"]
        rotated = api.post(f"/api/v1/devices/{device['id']}/token", headers=owner).json()
        secrets["rotated token"] = rotated["token"]
        for token in (secrets["device token"], secrets["rotated token"]):  # replay, then good
            api.post(
                "/api/v1/telemetry",
                json=[{"ts": now_ms() - 5000, "power_w": 12.5}, {"voltage_v": -1.0}],
                headers={"Authorization": f"Bearer {token}"},
            )
        key = api.post("/api/v1/api-keys", json={"name": "review"}, headers=owner).json()
        secrets["api key"] = key.get("key") or key.get("token") or key["secret"]
        api.get("/api/v1/sites", headers={"Authorization": f"Bearer {secrets['api key']}"})
        secrets["webhook secret"] = "whsec-under-review-0123456789"
        hook = api.post(
            "/api/v1/webhooks",
            json={
                "url": "http://127.0.0.1:9/hook",
                "events": ["alert.raised"],
                "secret": secrets["webhook secret"],
            },
            headers=owner,
        ).json()
        api.post(f"/api/v1/webhooks/{hook['id']}/ping", headers=owner)  # delivery fails: logged
        secrets["new password"] = "changed-password-under-review"
        api.post(
            "/api/v1/auth/password",
            json={"current_password": boot.password, "new_password": secrets["new password"]},
            headers=owner,
        )
        # The dashboard's form login (session cookie) with the new password.
        page = api.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        form = api.post(
            "/login",
            data={
                "email": boot.email,
                "password": secrets["new password"],
                "csrf_token": csrf.group(1),
            },
            follow_redirects=False,
        )
        cookie = form.cookies.get(session.SESSION_COOKIE)
        if cookie:
            secrets["session cookie"] = cookie
        time.sleep(1.0)  # let the failed webhook delivery be attempted and logged
    ours = [r for r in caplog.records if r.name.startswith("wattwatch")]
    # The rejected reading and the failed webhook delivery at least: the capture works.
    assert len(ours) >= 2, [r.getMessage() for r in caplog.records]
    leaks = []
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "") + repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        for what, secret in secrets.items():
            if secret and secret in text:
                leaks.append(f"{what} in {record.name}: {record.getMessage()[:200]}")
    for path in ww.settings.data_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("wattwatch.db"):
            content = path.read_bytes()
            for what, secret in secrets.items():
                if secret.encode() in content:
                    leaks.append(f"{what} in {path}")
    assert not leaks, "\n".join(leaks)
    assert len(secrets) >= 10


# --- security headers on every dashboard page and error answer --------------------------------

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


def _pages(routes: list[Any], prefix: str = "") -> Iterator[str]:
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            yield from _pages(original.routes, prefix + getattr(context, "prefix", ""))
            continue
        if "GET" in (getattr(route, "methods", None) or ()):
            yield prefix + getattr(route, "path", "")


def test_every_dashboard_page_and_error_has_the_security_headers(client: Any) -> None:
    documented = set(client.get("/openapi.json").json()["paths"])
    token = client.headers["Authorization"].split()[1]
    cookie = {"Cookie": f"{session.SESSION_COOKIE}={token}"}
    pages = sorted(
        path
        for path in set(_pages(list(client.app.routes)))
        if path not in documented
        and not path.startswith(("/static", "/docs", "/redoc", "/openapi"))
        and "{" not in path
    )
    assert len(pages) >= 5, pages
    problems = []
    for path in [*pages, "/devices/987654321", "/no-such-page"]:
        r = client.get(path, headers=cookie, follow_redirects=False)
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            continue
        for name, value in EXPECTED.items():
            if r.headers.get(name) != value:
                problems.append(f"{path} ({r.status_code}): {name}={r.headers.get(name)!r}")
        csp = r.headers.get("content-security-policy", "")
        if "frame-ancestors 'none'" not in csp or "script-src 'self'" not in csp:
            problems.append(f"{path} ({r.status_code}): CSP {csp!r}")
    # API answers (JSON, errors included) are never sniffed or framed either.
    for path in ("/api/v1/sites", "/api/v1/devices/987654321", "/api/v1/nope"):
        r = client.get(path)
        for name, value in EXPECTED.items():
            if r.headers.get(name) != value:
                problems.append(f"{path} ({r.status_code}): {name}={r.headers.get(name)!r}")
    assert not problems, "\n".join(problems)
