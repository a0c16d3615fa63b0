"""``wattwatch demo`` as a new user runs it: data visible within 30 s, live devices over MQTT
and HTTP, and a restart on the same data dir that creates nothing twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import free_port

HOUR = 3_600_000


class DemoProcess:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.http_port = free_port()
        self.mqtt_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log_path = log
        self._log = log.open("w+")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wattwatch",
                "demo",
                "--data-dir",
                str(data_dir),
                "--http-port",
                str(self.http_port),
                "--mqtt-port",
                str(self.mqtt_port),
                "--history-days",
                "1",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = re.search(pattern, self.output())
            if m:
                return m
            assert self.proc.poll() is None, f"demo exited:\n{self.output()}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout_s} s:\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return int(self.proc.returncode)


def until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, AssertionError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout_s} s (last: {last!r})")


def login(demo: DemoProcess) -> httpx.Client:
    m = demo.wait_for(r"login:\s+(\S+)\s+password:\s+(\S+)", 60)
    r = httpx.post(
        demo.url + "/api/v1/auth/login", json={"email": m.group(1), "password": m.group(2)}
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    return httpx.Client(base_url=demo.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def newest_ts(api: httpx.Client, device_id: int, since_ms: int) -> int:
    r = api.get(
        f"/api/v1/devices/{device_id}/readings",
        params={"from": since_ms, "interval": "raw", "limit": 100_000},
    )
    assert r.status_code == 200, r.text
    return max((p["ts"] for p in r.json()["points"]), default=0)


def test_demo_new_user_then_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "wattwatch-data"
    demo = DemoProcess(data_dir, tmp_path / "demo-1.log")
    try:
        api = login(demo)
        assert f"dashboard: {demo.url}/" in demo.output()
        assert f"mqtt://127.0.0.1:{demo.mqtt_port}" in demo.output()
        sites = api.get("/api/v1/sites").json()
        assert sorted(s["name"] for s in sites) == ["Office (demo)", "Restaurant (demo)"]
        devices = api.get("/api/v1/devices").json()
        assert len(devices) == 22
        now = int(time.time() * 1000)

        def site_energy() -> bool:
            for site in sites:
                r = api.get(
                    f"/api/v1/sites/{site['id']}/energy",
                    params={"from": now - 2 * 86_400_000, "interval": "1h"},
                )
                if not sum(p["energy_wh"] for p in r.json()["points"]) > 0:
                    return False
            return True

        # A newcomer sees data within 30 s of starting the demo.
        until(site_energy, 30 - (time.monotonic() - demo.started), "history through the API")
        assert time.monotonic() - demo.started < 30

        # Live: MQTT devices (each protocol) and HTTP devices report readings from now on.
        demo.wait_for(r"live: 22 devices", 60)
        by_protocol = {d["protocol"]: d for d in devices}
        assert set(by_protocol) == {"native", "thingsboard", "tasmota", "shelly", "http"}
        for proto, dev in by_protocol.items():
            until(lambda d=dev: newest_ts(api, d["id"], now) > now, 30, f"live {proto} reading")
        # The panel reports every circuit, and sub-meters are out of the site totals.
        panel = next(d for d in devices if d["uid"] == "demo-office-panel")
        channels = api.get(f"/api/v1/devices/{panel['id']}").json()["channels"]
        assert {c["name"] for c in channels} >= {"phase_a", "phase_b", "phase_c"}
        assert all(c["submeter"] == (not c["name"].startswith("phase_")) for c in channels)
        api.close()
    finally:
        assert demo.stop() == 0, demo.output()
    stopped_ms = int(time.time() * 1000)

    # Restart on the same data dir: the same organisation, sites, devices and login; only the
    # minutes since the stop are filled in, with counters that carry on.
    again = DemoProcess(data_dir, tmp_path / "demo-2.log")
    try:
        api = login(again)
        # Restarted within a minute of the stop, nothing is missing at the history's 60 s step.
        filled = again.wait_for(r"history: (?:([\d,]+) readings|up to date)", 60).group(1)
        assert "(reused from the data dir)" in again.output()
        if filled is not None:
            assert int(filled.replace(",", "")) < 22 * 20 * 60  # a few minutes, not a day
        assert len(api.get("/api/v1/sites").json()) == 2
        assert len(api.get("/api/v1/devices").json()) == 22
        again.wait_for(r"live: 22 devices", 60)
        panel_id = panel["id"]
        until(lambda: newest_ts(api, panel_id, stopped_ms) > stopped_ms, 30, "live after restart")
        # No counter went back at the restart: that would show as a huge energy in one hour.
        r = api.get(
            f"/api/v1/devices/{panel_id}/readings",
            params={"from": stopped_ms - 2 * HOUR, "interval": "1h", "channel": "phase_a"},
        )
        hours = [p["energy_wh"] for p in r.json()["points"]]
        assert hours and max(hours) < 100_000, hours  # a phase of a small office: < 100 kWh/h
        api.close()
    finally:
        assert again.stop() == 0, again.output()
