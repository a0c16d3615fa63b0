"""The dashboard in real headless Chromium against a real ``wattwatch serve``: one server and one
browser for the module."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from tests.browser.conftest import (
    VIEWER_PASSWORD,
    Demo,
    chromium_path,
    launch,
    log_in,
    make_demo,
    serve_options,
)
from tests.conftest import ServerProcess, free_port

from wattwatch.domain import now_ms

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason="Chromium is not installed here (apt-get install chromium); .ci/run installs it",
)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Page load budget for the device page over a year of history (issue 9).
LOAD_BUDGET_S = 1.0
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    # A year at 5 min steps plus the last 6 h at 5 s: the same rollups a year of 5 s data
    # has, written in about a second (bench/dashboard.py loads the full 6.3 M readings).
    return make_demo(tmp_path_factory.mktemp("dash") / "data", year_step_ms=300_000)


@pytest.fixture(scope="module")
def server(demo: Demo) -> Iterator[ServerProcess]:
    srv = ServerProcess(demo.data_dir)
    if getattr(srv, "mqtt_port", None) is None and "--mqtt-port" in serve_options():
        # the embedded broker must not try the (taken) default port
        port = free_port()
        srv.extra = (*srv.extra, "--mqtt-port", str(port))
        setattr(srv, "mqtt_port", port)  # noqa: B010
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api_routes(server: ServerProcess) -> set[str]:
    spec = httpx.get(server.url + "/openapi.json", timeout=10).json()
    return {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def owner_state(browser: Any, server: ServerProcess, demo: Demo) -> dict[str, Any]:
    """Log in once through the form; later pages reuse the session cookie."""
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    log_in(page, server.url, demo.email, demo.password)
    state: dict[str, Any] = ctx.storage_state()
    ctx.close()
    return state


@pytest.fixture
def page(browser: Any, owner_state: dict[str, Any]) -> Iterator[Any]:
    ctx = browser.new_context(viewport=DESKTOP, storage_state=owner_state)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    # The AI panels ask for a device's appliances and forecast; a device without a trained
    # model or with under a week of history gets the documented 409 and the panel says why
    # ("Not available: ..."). Chromium logs every non-2xx fetch; only those are expected here.
    errors = [e for e in errors if "status of 409 (Conflict)" not in e]
    ctx.close()
    assert not errors, f"browser console errors (CSP violations included): {errors}"


def upload(server: ServerProcess, token: str, rows: list[dict[str, Any]]) -> None:
    r = httpx.post(
        server.url + "/api/v1/telemetry",
        json=rows,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["accepted"] == len(rows), r.text


def api_client(server: ServerProcess, demo: Demo) -> httpx.Client:
    r = httpx.post(
        server.url + "/api/v1/auth/login",
        json={"email": demo.email, "password": demo.password},
        timeout=10,
    )
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {r.json()['access_token']}"},
        timeout=10,
    )


def shoot(page: Any, name: str) -> None:
    """Refresh docs/screenshots when asked (WATTWATCH_SCREENSHOTS=1), never in CI by default."""
    if os.environ.get("WATTWATCH_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_login_logout_and_live_values(browser: Any, server: ServerProcess, demo: Demo) -> None:
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    page.goto(server.url + "/login")
    page.get_by_label("Email").fill(demo.email)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    assert "wrong email or password" in page.locator("#login-error").inner_text()
    log_in(page, server.url, demo.email, demo.password)
    cookie = next(c for c in ctx.cookies() if c["name"] == "ww_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    # Overview: the site's power now follows what the panel reports.
    assert page.get_by_role("heading", name="Office").is_visible()
    page.wait_for_selector("#overview[data-live=live]")
    upload(server, demo.panel_token, [{"ts": now_ms(), "power_w": 2222.0}])
    site_power = page.locator(f"[data-site-power='{demo.site_id}']")
    sync_api.expect(site_power).to_have_text("2.22 kW", timeout=5000)
    sync_api.expect(page.locator(f"[data-device-power='{demo.panel_id}']")).to_have_text("2.22 kW")

    # Device page: the newest value and the live chart change as the device publishes.
    page.goto(f"{server.url}/devices/{demo.panel_id}")
    page.wait_for_selector("#device[data-live=live]")
    cell = page.locator("#values tr[data-channel=mains] [data-metric=power_w]")
    before = int(page.locator("#live-chart").get_attribute("data-points") or 0)
    upload(server, demo.panel_token, [{"ts": now_ms(), "power_w": 1234.5, "voltage_v": 231.2}])
    sync_api.expect(cell).to_have_text("1234.5 W", timeout=5000)
    sync_api.expect(
        page.locator("#values tr[data-channel=mains] [data-metric=voltage_v]")
    ).to_have_text("231.2 V")
    assert int(page.locator("#live-chart").get_attribute("data-points") or 0) > before
    assert page.locator("#last-seen").inner_text().endswith("s ago")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto(server.url + "/overview")
    assert "/login" in page.url  # the session is gone, not just the cookie
    ctx.close()


def test_history_reads_the_rollup_for_the_range_and_a_year_loads_fast(
    page: Any, server: ServerProcess, demo: Demo
) -> None:
    asked: list[dict[str, list[str]]] = []

    def on_request(req: Any) -> None:
        if "/readings?" in req.url:
            asked.append(parse_qs(urlparse(req.url).query))

    page.on("request", on_request)
    chart = page.locator("#history-chart")

    # The whole device page, opened on the one-year view, until its chart is drawn: by the
    # browser's clock from navigation start, median of three loads (the machine is shared).
    loads_ms = []
    for _ in range(3):
        asked.clear()
        page.goto(f"{server.url}/devices/{demo.panel_id}?range=1y")
        page.wait_for_selector("#history-chart[data-state=ready]")
        loads_ms.append(int(chart.get_attribute("data-ready-at") or 0))
        # the year as daily rollups, and only the live chart's last 10 minutes as raw
        assert sorted(q["interval"][0] for q in asked) == ["1d", "raw"]
    median_ms = sorted(loads_ms)[1]
    print(
        f"\ndevice page over a year of history ({demo.rows} readings): chart drawn "
        f"{loads_ms} ms after navigation start, median {median_ms} ms"
    )
    assert 0 < median_ms <= LOAD_BUDGET_S * 1000
    assert 360 <= int(chart.get_attribute("data-points") or 0) <= 367  # one point a day

    expected = {"1 h": "raw", "6 h": "raw", "3 d": "1m", "30 d": "1h", "60 d": "1h", "1 y": "1d"}
    for label, interval in expected.items():
        asked.clear()
        page.get_by_label(label, exact=True).check()
        sync_api.expect(chart).to_have_attribute("data-interval", interval)
        page.wait_for_selector("#history-chart[data-state=ready]")
        assert asked and asked[-1]["interval"] == [interval], (label, asked)
    # At most a few thousand points ever travel, whatever the range.
    assert int(chart.get_attribute("data-points") or 0) < 5000

    # Zoom: drag across a month of the year view and the chart asks for hourly rollups.
    box = page.locator("#history-chart .u-over").bounding_box()
    asked.clear()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.80, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.88, y, steps=5)
    page.mouse.up()
    sync_api.expect(chart).to_have_attribute("data-interval", "1h")
    page.wait_for_selector("#history-chart[data-state=ready]")
    assert page.get_by_role("button", name="Reset zoom").is_visible()

    # Metrics kept only raw are offered for short ranges, and asked for by name.
    page.get_by_role("button", name="Reset zoom").click()
    page.get_by_label("Metric").select_option("voltage_v")
    sync_api.expect(page.locator("#history-info")).to_contain_text("only as raw readings")
    asked.clear()
    page.get_by_label("1 h", exact=True).check()
    page.wait_for_selector("#history-chart[data-interval=raw][data-state=ready]")
    assert asked[-1]["metrics"] == ["voltage_v"] and asked[-1]["channel"] == ["mains"]
    assert int(chart.get_attribute("data-points") or 0) > 600  # 5 s data for an hour


def test_phone_layout_and_screenshots(
    browser: Any, server: ServerProcess, demo: Demo, owner_state: dict[str, Any]
) -> None:
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        ctx = browser.new_context(
            viewport=viewport,
            storage_state=owner_state,
            device_scale_factor=1 if name == "desktop" else 2,
        )
        page = ctx.new_page()
        for what, path in (
            ("overview", "/overview"),
            ("device", f"/devices/{demo.panel_id}?range=7d"),
        ):
            page.goto(server.url + path)
            if what == "device":
                page.wait_for_selector("#history-chart[data-state=ready]")
                page.wait_for_selector("#device[data-live=live]")
            else:
                page.wait_for_selector("#overview[data-live=live]")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{what} scrolls sideways on a {viewport['width']} px screen"
            shoot(page, f"{what}-{name}")
        ctx.close()


UNLABELLED_CONTROLS_JS = """
[...document.querySelectorAll('input:not([type=hidden]), select, button, a[href]')]
  .filter(el => el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
  .map(el => el.outerHTML.slice(0, 80))
"""


def test_keyboard_and_labels(page: Any, server: ServerProcess, demo: Demo) -> None:
    for path in (f"/devices/{demo.panel_id}", "/admin", "/overview", "/sites", "/reports"):
        page.goto(server.url + path)
        assert page.evaluate(UNLABELLED_CONTROLS_JS) == [], path
    # The first Tab reaches the skip link; the history range is a radio group the arrow
    # keys move through, and the chart follows.
    page.goto(f"{server.url}/devices/{demo.panel_id}")
    page.wait_for_selector("#history-chart[data-state=ready]")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.get_by_label("24 h", exact=True).focus()
    page.keyboard.press("ArrowRight")
    assert page.get_by_label("3 d", exact=True).is_checked()
    sync_api.expect(page.locator("#history-chart")).to_have_attribute("data-interval", "1m")


def test_viewer_sees_no_controls(browser: Any, server: ServerProcess, demo: Demo) -> None:
    ctx = browser.new_context(viewport=PHONE)
    page = ctx.new_page()
    log_in(page, server.url, "viewer@example.com", VIEWER_PASSWORD)
    page.goto(f"{server.url}/devices/{demo.plug_id}")
    assert page.locator("#switch").count() == 0
    page.goto(server.url + "/admin")
    assert page.get_by_role("button", name="Add user").count() == 0
    assert page.get_by_role("button", name="Register").count() == 0
    assert page.get_by_role("link", name="Add device").count() == 0
    page.goto(server.url + "/claim")
    assert page.locator("#claim-form").count() == 0
    # The API refuses a state-changing call made with the cookie but without the CSRF header.
    status = page.evaluate(
        "fetch('/api/v1/sites', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({name: 'x'})}).then(r => r.status)"
    )
    assert status == 403
    ctx.close()


def test_toggle_plug_shows_the_state_the_device_reported(
    page: Any, server: ServerProcess, demo: Demo, api_routes: set[str]
) -> None:
    if "POST /api/v1/devices/{device_id}/commands" not in api_routes and not any(
        re.fullmatch(r"POST /api/v1/devices/\{[^}]+\}/commands", r) for r in api_routes
    ):
        pytest.skip("the commands API (POST /api/v1/devices/{id}/commands) is not there yet")
    mqtt = pytest.importorskip("paho.mqtt.client")
    port = getattr(server, "mqtt_port", None)
    if port is None:
        m = re.search(r"MQTT on mqtt://[^:\s]+:(\d+)", server.read_output())
        if not m:
            pytest.skip("serve does not say which port its MQTT broker listens on")
        port = int(m.group(1))
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=demo.plug_uid)
    device.username_pw_set(demo.plug_uid, demo.plug_token)

    def answer(client: Any, _: Any, msg: Any) -> None:
        import json

        cmd = json.loads(msg.payload)
        state = {"on": 1, "off": 0}.get(cmd["action"], 1)
        client.publish(
            f"wattwatch/{demo.plug_uid}/command/result",
            json.dumps({"id": cmd["id"], "ok": True, "state": state}),
            qos=1,
        )

    device.on_message = answer
    device.connect("127.0.0.1", port)
    device.subscribe(f"wattwatch/{demo.plug_uid}/command", qos=1)
    device.loop_start()
    try:
        page.goto(f"{server.url}/devices/{demo.plug_id}")
        switch = page.get_by_role("switch")
        switch.click()
        sync_api.expect(page.locator("#switch-result")).to_have_text(
            "device reported on", timeout=15000
        )
        sync_api.expect(switch).to_have_attribute("aria-checked", "true")
        switch.click()
        sync_api.expect(page.locator("#switch-result")).to_have_text(
            "device reported off", timeout=15000
        )
        # The audit trail shows both, newest first, with who sent them.
        page.get_by_text("Recent commands").click()
        log = page.locator("#command-log tbody tr")
        sync_api.expect(log).to_have_count(2)
        assert "off" in log.nth(0).inner_text() and "on" in log.nth(1).inner_text()
        assert demo.email in log.nth(0).inner_text()
    finally:
        device.loop_stop()
        device.disconnect()


def test_acknowledge_an_alert(
    page: Any, server: ServerProcess, demo: Demo, api_routes: set[str]
) -> None:
    if (
        "POST /api/v1/alerts/{alert_id}/ack" not in api_routes
        or "POST /api/v1/alert-rules" not in api_routes
    ):
        pytest.skip(
            "the alerts API (/api/v1/alert-rules, /api/v1/alerts/{id}/ack) is not there yet"
        )
    with api_client(server, demo) as api:
        r = api.post(
            "/api/v1/alert-rules",
            json={
                "name": "panel over 9 kW",
                "kind": "threshold",
                "device_id": demo.panel_id,
                "metric": "power_w",
                "op": ">",
                "value": 9000,
                "for_s": 0,
                "severity": "warning",
            },
        )
        assert r.status_code == 201, r.text
        upload(server, demo.panel_token, [{"ts": now_ms(), "power_w": 9500.0}])
        deadline = time.monotonic() + 10
        while not api.get("/api/v1/alerts", params={"state": "active"}).json():
            assert time.monotonic() < deadline, "no alert was raised"
            time.sleep(0.2)
    page.goto(server.url + "/alerts")
    row = page.locator("#open-alerts tr[data-state=active]").first
    sync_api.expect(row).to_contain_text("Main panel")
    row.get_by_role("button", name=re.compile("Acknowledge")).click()
    sync_api.expect(page.locator("#alerts-status")).to_have_text("Alert acknowledged.")
    sync_api.expect(page.locator("#past-alerts tr[data-state=acknowledged]").first).to_be_visible()


def test_download_a_report(
    page: Any, server: ServerProcess, demo: Demo, api_routes: set[str], tmp_path: Path
) -> None:
    if not any(r.startswith("GET /api/v1/sites/{") and "/reports" in r for r in api_routes):
        pytest.skip("the reports API (/api/v1/sites/{id}/reports/...) is not there yet")
    page.goto(server.url + "/reports")
    page.get_by_label("Period").select_option("month")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    path = info.value.path()
    assert path and Path(path).stat().st_size > 0
    text = Path(path).read_text(errors="replace")
    assert "," in text.splitlines()[0]


def test_claim_a_device_on_a_phone(
    browser: Any,
    server: ServerProcess,
    demo: Demo,
    api_routes: set[str],
    owner_state: dict[str, Any],
) -> None:
    if "POST /api/v1/claims" not in api_routes:
        pytest.skip("the claims API (POST /api/v1/claims) is not there yet")
    code = demo.extra.get("claim_code")
    if not code:
        pytest.skip("the registry cannot pre-register a device with a claim code yet")
    ctx = browser.new_context(
        viewport=PHONE, storage_state=owner_state, is_mobile=True, has_touch=True
    )
    page = ctx.new_page()
    page.goto(server.url + "/claim")
    page.get_by_label("Claim code").fill(code)
    page.get_by_label("Site").select_option(str(demo.site_id))
    page.get_by_role("button", name="Claim device").tap()
    sync_api.expect(page.locator("#claim-result")).to_contain_text(
        "Claimed Boxed plug", timeout=10000
    )
    assert (
        page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        <= 0
    )
    page.get_by_role("link", name="Open its page").tap()
    page.wait_for_selector("#device")
    assert "Office" in page.locator(".crumbs").inner_text()
    ctx.close()
