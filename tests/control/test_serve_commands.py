"""Against a real ``wattwatch serve`` (its own process, embedded broker): a Tasmota plug
switched through the HTTP API and through ``wattwatch device command --server``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import ServerProcess, login
from tests.control.fakes import TasmotaPlug
from typer.testing import CliRunner

from wattwatch.cli import app


def test_commands_through_a_running_server(tmp_path: Path, server_factory: Any) -> None:
    srv: ServerProcess = server_factory(tmp_path / "data")
    assert srv.password
    api = login(srv.url, "owner@localhost", srv.password)
    try:
        created = api.post(
            "/api/v1/devices",
            json={"name": "Coffee", "kind": "plug", "protocol": "tasmota", "topic": "coffee"},
        ).json()
        plug = TasmotaPlug(srv.mqtt_port, created["uid"], created["token"], "coffee").start()
        try:
            r = api.post(f"/api/v1/devices/{created['id']}/commands", json={"action": "on"})
            assert r.status_code == 200, r.text
            assert r.json()["state"] == 1 and plug.state == 1
            key = api.post("/api/v1/api-keys", json={"name": "cli", "scope": "admin"}).json()["key"]
            r = CliRunner().invoke(
                app,
                [
                    "device",
                    "command",
                    str(created["id"]),
                    "off",
                    "--server",
                    srv.url,
                    "--token",
                    key,
                    "--json",
                ],
            )
            assert r.exit_code == 0, r.output
            assert json.loads(r.stdout)["state"] == 0 and plug.state == 0
            plug.answer = False
            r = CliRunner().invoke(
                app,
                [
                    "device",
                    "command",
                    str(created["id"]),
                    "on",
                    "--server",
                    srv.url,
                    "--token",
                    key,
                    "--timeout",
                    "0.3",
                ],
            )
            assert r.exit_code == 3 and "did not answer" in r.output
            trail = api.get(f"/api/v1/devices/{created['id']}/commands").json()
            assert [c["status"] for c in trail] == ["timeout", "ok", "ok"]
            assert trail[1]["actor"] == "owner@localhost (API key 'cli')"
        finally:
            plug.stop()
    finally:
        api.close()
