"""`wattwatch broker export-acl`: rules mirror the adapters; a real Mosquitto obeys them."""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.broker.conftest import connect
from tests.conftest import free_port
from typer.testing import CliRunner

from wattwatch.app import Wattwatch
from wattwatch.broker.acl_export import RULES
from wattwatch.cli import app as cli
from wattwatch.cli import owner_principal
from wattwatch.config import Settings
from wattwatch.domain import DeviceProtocol, DeviceRef
from wattwatch.protocols import adapter_for

SERVICE_PASSWORD = "worker-password-0123456789"


@pytest.mark.parametrize("protocol", list(RULES))
def test_exported_rules_are_the_adapters_rules(protocol: DeviceProtocol) -> None:
    address = "dev/a" if protocol is DeviceProtocol.SHELLY else "dev_a"
    ref = DeviceRef(1, "dev_a", protocol, address)
    adapter = adapter_for(protocol)
    for access, pattern in RULES[protocol]:
        topic_filter = pattern.format(a=address)
        concrete = topic_filter.replace("+", "X").replace("#", "Y/Z")
        if access == "write":
            assert adapter.topic_allowed(ref, concrete, publish=True), concrete
            other = concrete.replace(address, "dev_b")
            assert other == concrete or not adapter.topic_allowed(ref, other, publish=True)
        else:
            assert adapter.topic_allowed(ref, topic_filter, publish=False), topic_filter
            assert not adapter.topic_allowed(ref, concrete, publish=True), concrete


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Any]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.skip("mosquitto is not installed")
    procs: list[subprocess.Popen[bytes]] = []

    def start(acl: Path, passwd: Path) -> int:
        port = free_port()
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
            f"acl_file {acl}\npersistence false\nuser root\n"
        )
        procs.append(subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_mosquitto_enforces_the_exported_acl(tmp_path: Path, mosquitto: Any) -> None:
    data = tmp_path / "data"
    ww = Wattwatch.open(Settings(data_dir=data), lock=True)
    try:
        ww.registry.bootstrap_owner()
        owner = owner_principal(ww)
        _, old_token = ww.registry.create_device(owner, name="a", site_id=None, uid="dev-a")
        ww.registry.create_device(owner, name="b", site_id=None, uid="dev-b")
        ww.registry.create_device(
            owner, name="t", site_id=None, uid="tb-1", protocol=DeviceProtocol.THINGSBOARD
        )
    finally:
        ww.close()
    out = tmp_path / "mosq"
    result = CliRunner().invoke(
        cli,
        [
            "broker",
            "export-acl",
            "--data-dir",
            str(data),
            "--output-dir",
            str(out),
            "--rotate-tokens",
        ],
        env={"WATTWATCH_MQTT_SERVICE_PASSWORD": SERVICE_PASSWORD},
    )
    assert result.exit_code == 0, result.output
    assert "skipped tb-1: ThingsBoard devices need the embedded broker" in result.output
    assert (out / "passwd").stat().st_mode & 0o777 == 0o600
    with (out / "tokens.csv").open() as f:
        tokens = {row["uid"]: row["token"] for row in csv.DictReader(f)}
    assert set(tokens) == {"dev-a", "dev-b"} and tokens["dev-a"] != old_token

    port = mosquitto(out / "acl", out / "passwd")
    assert not connect(port, "anon", None, None).ok
    assert not connect(port, "dev-a", "dev-a", old_token).ok  # rotated away
    worker = connect(port, "worker-1", "wattwatch", SERVICE_PASSWORD, v5=True)
    a = connect(port, "dev-a", "dev-a", tokens["dev-a"], v5=True)
    try:
        assert worker.ok and a.ok
        assert not worker.subscribe("$share/g/wattwatch/+/telemetry")[0].is_failure
        a.publish_acked("wattwatch/dev-b/telemetry", b'{"power_w": 666}')  # not A's
        a.publish_acked("wattwatch/dev-a/telemetry", b'{"power_w": 1}')
        seen = worker.wait_message(lambda m: True)
        assert (seen.topic, seen.payload) == ("wattwatch/dev-a/telemetry", b'{"power_w": 1}')
        a.subscribe("wattwatch/dev-b/command")
        worker.publish_acked("wattwatch/dev-b/command", b"{}")
        time.sleep(0.3)
        assert [m.topic for m in worker.messages] == ["wattwatch/dev-a/telemetry"]
        assert a.messages == []
    finally:
        worker.close()
        a.close()
