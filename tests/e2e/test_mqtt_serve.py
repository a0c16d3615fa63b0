"""``wattwatch serve`` with its embedded broker: devices made over HTTP publish over MQTT."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from tests.broker.conftest import connect, wait_until
from tests.conftest import ServerProcess, login
from typer.testing import CliRunner

from wattwatch.cli import app as cli
from wattwatch.domain import now_ms


def test_serve_ingests_mqtt_from_devices_made_over_http(
    tmp_path: Path, server_factory: Any
) -> None:
    srv: ServerProcess = server_factory(tmp_path / "data")
    assert f"MQTT on mqtt://127.0.0.1:{srv.mqtt_port}" in srv.read_output()
    api = login(srv.url, "owner@localhost", srv.password or "")
    try:
        made = api.post("/api/v1/devices", json={"name": "panel", "uid": "panel-1"}).json()
        plug = api.post(
            "/api/v1/devices",
            json={"name": "kettle", "uid": "plug-1", "protocol": "tasmota", "topic": "kettle"},
        ).json()
        panel = connect(srv.mqtt_port, "panel-1", "panel-1", made["token"])
        kettle = connect(srv.mqtt_port, "DVES_0A0B0C", "plug-1", plug["token"])
        try:
            ts = now_ms() - 60_000
            panel.publish_acked(
                "wattwatch/panel-1/telemetry",
                json.dumps([{"ts": ts, "power_w": 812.5}, {"ts": ts + 5000, "power_w": 820}]),
            )
            kettle.publish_acked("tele/kettle/SENSOR", '{"ENERGY": {"Power": 2000, "Total": 3}}')
        finally:
            panel.close()
            kettle.close()
        points = api.get(
            f"/api/v1/devices/{made['id']}/readings", params={"from": ts - 1, "interval": "raw"}
        ).json()["points"]
        assert [(p["ts"], p["power_w"]) for p in points] == [(ts, 812.5), (ts + 5000, 820.0)]
        points = api.get(
            f"/api/v1/devices/{plug['id']}/readings", params={"from": ts, "interval": "raw"}
        ).json()["points"]
        assert [(p["power_w"], p["energy_wh"]) for p in points] == [(2000.0, 3000.0)]
        # The plug disconnected cleanly: offline (and it was online while it talked).
        device = wait_until(
            lambda: (d := api.get(f"/api/v1/devices/{plug['id']}").json())["online"] is False and d,
            what="the plug to be offline",
        )
        assert device["last_seen_ms"] >= ts
        metrics = api.get("/metrics").text
        assert 'wattwatch_messages_total{outcome="accepted",transport="mqtt"} 2.0' in metrics
    finally:
        api.close()


def test_serve_says_when_the_mqtt_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli,
            [
                "serve",
                "--data-dir",
                str(tmp_path / "d"),
                "--http-port",
                "0",
                "--mqtt-port",
                str(port),
            ],
        )
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert f"MQTT port {port} on 127.0.0.1 is already in use" in text
    assert "--mqtt-port N" in text and "WATTWATCH_MQTT_PORT=N" in text
