"""``wattwatch device command --broker-url``: the command goes out through an external broker
(the machine's Mosquitto on 127.0.0.1:1883) and the plug's answer comes back through it."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import pytest
from tests.control.fakes import TasmotaPlug
from typer.testing import CliRunner

from wattwatch.cli import app


def _mosquitto_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        return False
    return True


pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(not _mosquitto_up(), reason="no Mosquitto on 127.0.0.1:1883"),
]


def test_cli_command_through_an_external_broker(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    topic = f"cli_{uuid.uuid4().hex[:10]}"  # others use this Mosquitto too
    runner = CliRunner()
    r = runner.invoke(
        app,
        ["device", "add", "--name", "Lamp", "--kind", "plug", "--protocol", "tasmota", "--topic",
         topic, "--json", *data],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    device = json.loads(r.stdout)
    # Mosquitto's default configuration takes anyone; the plug still sends its credentials.
    plug = TasmotaPlug(1883, device["uid"], device["token"], topic).start()
    broker = ["--broker-url", "mqtt://127.0.0.1:1883"]
    try:
        r = runner.invoke(
            app, ["device", "command", str(device["id"]), "on", *broker, "--json", *data]
        )
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["state"] == 1 and plug.state == 1
        plug.answer = False
        r = runner.invoke(
            app,
            ["device", "command", str(device["id"]), "off", *broker, "--timeout", "0.5", *data],
        )
        assert r.exit_code == 3 and "did not answer" in r.output
    finally:
        plug.stop()
    r = runner.invoke(app, ["device", "commands", str(device["id"]), "--json", *data])
    trail = json.loads(r.stdout)
    assert [(c["source"], c["status"], c["actor"]) for c in trail] == [
        ("cli", "timeout", "cli"),
        ("cli", "ok", "cli"),
    ]
