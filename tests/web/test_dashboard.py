"""Dashboard in-process: sessions, CSRF, security headers, role-aware pages, features by route,
and the live stream's fan-out."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.conftest import login

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import DeviceKind, Role, now_ms
from wattwatch.ingest.pipeline import CommittedBatch
from wattwatch.live import SUBSCRIBER_QUEUE_EVENTS, LiveHub
from wattwatch.registry.service import LoginLimiter, Principal
from wattwatch.web.dashboard import views
from wattwatch.web.server import create_api

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def site_ww(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wattwatch]:
    """One data dir for the module: password hashing makes set-up the slow part."""
    ww = Wattwatch.open(Settings(data_dir=tmp_path_factory.mktemp("dash") / "data"))
    boot = ww.registry.bootstrap_owner()
    assert boot is not None
    org = ww.registry.db.first_org_id()
    assert org is not None
    ww.registry.add_user("admin@example.com", PASSWORD, Role.ADMIN, org)
    ww.registry.add_user("viewer@example.com", PASSWORD, Role.VIEWER, org)
    owner = Principal(0, org, Role.OWNER, boot.email)
    site = ww.registry.create_site(owner, "Office", "UTC", {"price_per_kwh": 0.5})
    ww.registry.create_device(owner, name="Panel", site_id=site["id"])
    ww.registry.create_device(owner, name="Kettle", site_id=site["id"], kind=DeviceKind.PLUG)
    yield ww
    ww.close()


@pytest.fixture(scope="module")
def module_client(site_ww: Wattwatch) -> Iterator[TestClient]:
    with TestClient(create_api(site_ww), follow_redirects=False) as c:
        yield c


@pytest.fixture
def app_client(module_client: TestClient, site_ww: Wattwatch) -> TestClient:
    site_ww.registry.limiter = LoginLimiter()  # these tests log in more than a person would
    module_client.cookies.clear()
    return module_client


def login_form(c: TestClient, email: str, password: str = PASSWORD) -> Any:
    c.cookies.clear()  # log in afresh, as someone else if need be
    page = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    return c.post(
        "/login", data={"email": email, "password": password, "csrf_token": token.group(1)}
    )


def csrf_of(html: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def test_pages_need_a_session_and_login_sets_a_safe_cookie(app_client: TestClient) -> None:
    r = app_client.get("/overview")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/overview"
    r = app_client.get("/devices/1")
    assert r.headers["location"].startswith("/login")

    r = login_form(app_client, "admin@example.com", "wrong password!")
    assert r.status_code == 401 and "wrong email or password" in r.text
    r = login_form(app_client, "admin@example.com")
    assert r.status_code == 303 and r.headers["location"] == "/overview"
    cookie = r.headers["set-cookie"]
    assert "ww_session=wwu_" in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    page = app_client.get("/overview")
    assert page.status_code == 200 and "Office" in page.text and "Panel" in page.text


def test_login_form_needs_its_csrf_cookie_and_next_cannot_leave_the_site(
    app_client: TestClient,
) -> None:
    r = app_client.post(
        "/login", data={"email": "admin@example.com", "password": PASSWORD, "csrf_token": "x" * 43}
    )
    assert r.status_code == 403 and "expired" in r.text
    page = app_client.get("/login", params={"next": "//evil.example/x"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    r = app_client.post(
        "/login",
        data={
            "email": "admin@example.com",
            "password": PASSWORD,
            "csrf_token": token.group(1),
            "next": "https://evil.example/",
        },
    )
    assert r.headers["location"] == "/overview"


def test_https_session_cookie_is_secure(app_client: TestClient) -> None:
    app_client.base_url = httpx.URL("https://ww.example")
    try:
        r = login_form(app_client, "admin@example.com")
        assert "Secure" in r.headers["set-cookie"]
    finally:
        app_client.base_url = httpx.URL("http://testserver")


def test_security_headers_on_pages_and_static(app_client: TestClient) -> None:
    for path in ("/login", "/static/js/app.js", "/static/vendor/uPlot.iife.min.js"):
        r = app_client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0]
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
    # Swagger UI loads its own scripts: it keeps working without the dashboard's CSP.
    assert "content-security-policy" not in app_client.get("/docs").headers
    # No inline scripts anywhere in the templates.
    login = app_client.get("/login").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", login)


def test_api_accepts_the_session_cookie_with_csrf_for_unsafe_methods(
    app_client: TestClient,
) -> None:
    assert app_client.get("/api/v1/sites").status_code == 401
    login_form(app_client, "admin@example.com")
    assert app_client.get("/api/v1/sites").json()[0]["name"] == "Office"  # safe: cookie alone
    body = {"name": "Lab", "timezone": "UTC"}
    r = app_client.post("/api/v1/sites", json=body)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
    r = app_client.post("/api/v1/sites", json=body, headers={"X-CSRF-Token": "0" * 64})
    assert r.status_code == 403
    token = csrf_of(app_client.get("/overview").text)
    r = app_client.post("/api/v1/sites", json=body, headers={"X-CSRF-Token": token})
    assert r.status_code == 201, r.text


def test_logout_revokes_the_session(app_client: TestClient) -> None:
    login_form(app_client, "admin@example.com")
    stolen = app_client.cookies.get("ww_session")
    token = csrf_of(app_client.get("/overview").text)
    assert app_client.post("/logout", data={"csrf_token": "nope"}).status_code == 303
    assert app_client.get("/overview").status_code == 200  # a forged logout did nothing
    r = app_client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert app_client.get("/overview").status_code == 303
    r = app_client.get("/api/v1/sites", headers={"Authorization": f"Bearer {stolen}"})
    assert r.status_code == 401


def _with_fake_commands_route(client: TestClient) -> None:
    """Stand in for the control engineer's route so the page's gating can be seen."""
    app: Any = client.app

    @app.post("/api/v1/devices/{device_id}/commands")
    def _commands(device_id: int) -> dict[str, Any]:  # pragma: no cover - never called
        return {}


def test_switch_is_shown_to_admins_only_and_only_when_commands_exist(
    app_client: TestClient, site_ww: Wattwatch
) -> None:
    org = site_ww.registry.db.first_org_id()
    kettle = next(d for d in site_ww.registry.db.list_devices(org) if d["name"] == "Kettle")
    login_form(app_client, "admin@example.com")
    if not views.available_features(app_client.app)["commands"]:  # type: ignore[arg-type]
        page = app_client.get(f"/devices/{kettle['id']}").text
        assert 'role="switch"' not in page and "Switching: not available yet" in page
        _with_fake_commands_route(app_client)
    page = app_client.get(f"/devices/{kettle['id']}").text
    assert 'role="switch"' in page
    login_form(app_client, "viewer@example.com")
    page = app_client.get(f"/devices/{kettle['id']}").text
    assert 'role="switch"' not in page and 'id="state-readonly"' in page


def test_optional_pages_follow_the_mounted_routes(app_client: TestClient) -> None:
    login_form(app_client, "admin@example.com")
    features = views.available_features(app_client.app)  # type: ignore[arg-type]
    for path, name, marker in (
        ("/reports", "reports", "report-form"),
        ("/claim", "claims", "claim-form"),
        ("/alerts", "alerts", 'id="alerts"'),
    ):
        page = app_client.get(path)
        assert page.status_code == 200
        if features[name]:
            assert marker in page.text
        else:
            assert "not available yet" in page.text and marker not in page.text


def test_admin_adds_users_and_devices_and_viewers_cannot(app_client: TestClient) -> None:
    login_form(app_client, "admin@example.com")
    token = csrf_of(app_client.get("/admin").text)
    r = app_client.post(
        "/admin/users",
        data={
            "email": "new@example.com",
            "password": PASSWORD,
            "role": "viewer",
            "csrf_token": token,
        },
    )
    assert r.status_code == 200 and "Added new@example.com as viewer" in r.text
    r = app_client.post(
        "/admin/users",
        data={
            "email": "boss@example.com",
            "password": PASSWORD,
            "role": "owner",
            "csrf_token": token,
        },
    )
    assert r.status_code == 403  # an admin cannot make owners
    r = app_client.post("/admin/devices", data={"name": "Boiler", "csrf_token": token})
    assert r.status_code == 200
    device_token = re.search(r'id="new-token">(wwd_[^<]+)<', r.text)
    assert device_token
    # The token shown once works for uploads.
    up = app_client.post(
        "/api/v1/telemetry",
        json=[{"power_w": 5}],
        headers={"Authorization": f"Bearer {device_token.group(1)}"},
    )
    assert up.status_code == 200 and up.json()["accepted"] == 1
    r = app_client.post("/admin/devices", data={"name": "Forged", "csrf_token": "bad"})
    assert r.status_code == 403 and "Forged" not in app_client.get("/admin").text
    assert app_client.get("/overview").status_code == 200  # and the session lives on

    login_form(app_client, "viewer@example.com")
    token = csrf_of(app_client.get("/admin").text)
    r = app_client.post("/admin/devices", data={"name": "Sneaky", "csrf_token": token})
    assert r.status_code == 403 and "admin role" in r.text


def test_overview_shows_power_now_and_todays_energy_and_cost(
    app_client: TestClient, site_ww: Wattwatch
) -> None:
    login_form(app_client, "admin@example.com")
    org = site_ww.registry.db.first_org_id()
    panel = next(d for d in site_ww.registry.db.list_devices(org) if d["name"] == "Panel")
    assert org is not None
    token = site_ww.registry.rotate_device_token(Principal(0, org, Role.OWNER, "t"), panel["id"])
    now = now_ms()
    t = max(now - 120_000, views.local_day_start_ms("UTC", now))  # all of it today
    rows = [{"ts": t + i * 5000, "power_w": 1200.0} for i in range(20)]
    r = app_client.post(
        "/api/v1/telemetry", json=rows, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.json()["accepted"] == 20
    page = app_client.get("/overview").text
    assert "1.20 kW" in page  # power now (from the live hub)
    sites, _ = views.overview(site_ww, org)
    office = sites[0]
    assert office.today_kwh == pytest.approx(1200 * 95 / 3600 / 1000, rel=1e-3)  # 95 s at 1.2 kW
    assert office.today_cost == pytest.approx(office.today_kwh * 0.5, abs=1e-4)
    assert office.online == 1 and office.offline == 1
    # After a restart the hub is empty: power now comes from the minute rollups.
    site_ww.live = LiveHub()
    again = views.device_now(site_ww, org, panel, now_ms())
    assert again.power_w == pytest.approx(1200.0) and again.online


def _batch(device_id: int, org_id: int, *powers_w: float) -> CommittedBatch:
    rows = [(1, 1_000 + i, round(p * 1000), None, None, None, None) for i, p in enumerate(powers_w)]
    return CommittedBatch(device_id, org_id, rows, {1: "mains"})  # type: ignore[arg-type]


def test_live_hub_fans_out_by_org_and_device_and_never_blocks() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        async with (
            hub.subscribe(1) as everything,
            hub.subscribe(1, [7]) as one_device,
            hub.subscribe(2) as other_org,
        ):
            hub.on_batch(_batch(7, 1, 100.0, 150.0))
            hub.on_batch(_batch(8, 1, 5.0))
            first = await everything.queue.get()
            assert first is not None and first.type == "readings"
            assert [p["power_w"] for p in first.data["points"]] == [100.0, 150.0]
            assert first.data["points"][0]["channel"] == "mains"
            assert everything.queue.qsize() == 1  # device 8's batch
            assert one_device.queue.qsize() == 1 and other_org.queue.empty()
            assert hub.latest(7)["mains"]["power_w"] == 150.0
            assert hub.last_seen_ms(7) == 1001
            # A subscriber that never reads loses its oldest events; ingest goes on.
            for i in range(SUBSCRIBER_QUEUE_EVENTS + 10):
                hub.publish("alert.raised", 1, {"n": i})
            assert one_device.queue.qsize() == 1  # org-wide events skip device watchers
            assert everything.queue.full() and everything.dropped == 11
            hub.close()
            assert await other_org.queue.get() is None
        assert hub.subscribers == 0

    asyncio.run(scenario())


def test_stream_endpoint_refuses_strangers(app_client: TestClient) -> None:
    assert app_client.get("/api/v1/stream").status_code == 401
    login_form(app_client, "viewer@example.com")
    assert app_client.get("/api/v1/stream", params={"device_id": 999}).status_code == 404


def test_stream_over_real_http_and_a_quick_stop_with_streams_open(server_factory: Any) -> None:
    srv = server_factory()
    api = login(srv.url, "owner@localhost", srv.password)
    with api:
        dev = api.post("/api/v1/devices", json={"name": "Meter"}).json()
        other = api.post("/api/v1/devices", json={"name": "Other"}).json()
        with httpx.stream(
            "GET",
            srv.url + "/api/v1/stream",
            params={"device_id": dev["id"]},
            headers=api.headers,
            timeout=10,
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert "event: hello" in [next(lines), next(lines)]
            for device, power in ((other, 1.0), (dev, 812.5)):
                r = httpx.post(
                    srv.url + "/api/v1/telemetry",
                    json=[{"power_w": power, "voltage_v": 230.1}],
                    headers={"Authorization": f"Bearer {device['token']}"},
                )
                assert r.json()["accepted"] == 1
            event = data = None
            for line in lines:
                if line.startswith("event: ") and line != "event: hello":
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    data = json.loads(line[6:])
                    break
            assert event == "readings" and data is not None
            assert data["device_id"] == dev["id"]  # the other device was filtered out
            assert data["points"][0]["power_w"] == 812.5
            assert data["points"][0]["voltage_v"] == 230.1
            # SIGTERM with the stream still open: the server ends it and stops promptly.
            started = time.monotonic()
            assert srv.proc is not None
            srv.proc.send_signal(signal.SIGTERM)
            # uvicorn re-raises the signal once it has shut down cleanly
            assert srv.proc.wait(timeout=10) in (0, -signal.SIGTERM)
            stopped_s = time.monotonic() - started
            assert stopped_s < 5, f"stop took {stopped_s:.1f} s with a stream open"


@dataclass
class _AlertEvent:
    name: str
    org_id: int
    ts_ms: int
    alert: dict[str, Any]


def test_live_hub_takes_alert_events_from_other_threads() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        hub.open()  # remembers the running loop
        async with hub.subscribe(1, [4]) as device_page, hub.subscribe(1) as overview:
            details = {7: "int keys, as alert details may have", "when": datetime(2026, 1, 1)}
            event = _AlertEvent("alert.raised", 1, 5, {"id": 3, "device_id": 4, "d": details})
            worker = threading.Thread(target=hub.on_alert, args=(event,))
            worker.start()
            worker.join()
            for sub in (device_page, overview):
                got = await asyncio.wait_for(sub.queue.get(), 2)
                assert got is not None and got.type == "alert.raised"
                assert got.data["alert"]["id"] == 3
                assert got.sse().startswith(b"event: alert.raised\ndata: {")
                assert b'"7":"int keys' in got.sse() and b"2026-01-01" in got.sse()

    asyncio.run(scenario())


def test_sites_tree_groups_devices_by_area(app_client: TestClient, site_ww: Wattwatch) -> None:
    create_area = getattr(site_ww.registry, "create_area", None)
    if create_area is None:
        pytest.skip("the registry has no areas yet")
    org = site_ww.registry.db.first_org_id()
    assert org is not None
    owner = Principal(0, org, Role.OWNER, "t")
    site = site_ww.registry.db.list_sites(org)[0]
    kitchen = create_area(owner, site["id"], "Kitchen", "room", None)
    kettle = next(d for d in site_ww.registry.db.list_devices(org) if d["name"] == "Kettle")
    site_ww.registry.db.update_device(kettle["id"], {"area_id": kitchen["id"]})
    login_form(app_client, "viewer@example.com")
    page = app_client.get("/sites").text
    area_at = page.index("Kitchen")
    assert page.index("Office") < area_at < page.index(">Kettle<")
    assert page.index(">Panel<") > page.index(">Kettle<")  # not in an area: after the areas
    assert "Kitchen" in app_client.get(f"/devices/{kettle['id']}").text
