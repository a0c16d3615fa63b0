"""External-broker mode against the real Mosquitto on 127.0.0.1:1883 (default conf, anonymous).

Every test uses its own device uids, shared-subscription group and client ids, so runs (and
other users of that Mosquitto) do not see each other's messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from wattwatch.app import Wattwatch, open_store
from wattwatch.broker.auth import Identity
from wattwatch.broker.external import ExternalBroker
from wattwatch.broker.sink import Done, Inbound, Outcome
from wattwatch.cli import owner_principal
from wattwatch.config import Settings
from wattwatch.domain import DeviceProtocol, now_ms

MOSQUITTO = "mqtt://127.0.0.1:1883"


def _mosquitto_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), 1):
            return True
    except OSError:
        return False


pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(not _mosquitto_up(), reason="no Mosquitto on 127.0.0.1:1883"),
]


def _publisher(run: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{run}")
    client.connect("127.0.0.1", 1883)
    client.loop_start()
    return client


def _publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


def _count(data_dir: Path) -> int:
    store = open_store(Settings(data_dir=data_dir), lock=False)
    try:
        return int(store.count_readings())
    finally:
        store.close()


def _wait_count(data_dir: Path, expected: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    count = _count(data_dir)
    while count < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        count = _count(data_dir)
    return count


class _Worker:
    def __init__(self, data_dir: Path, worker_id: str, group: str) -> None:
        env = {**os.environ, "WATTWATCH_LOG_LEVEL": "warning"}
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "wattwatch", "worker",
                "--broker-url", MOSQUITTO,
                "--data-dir", str(data_dir),
                "--worker-id", worker_id,
                "--share-group", group,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "worker" in line and "$share" in line, line + (self.proc.stdout.read() or "")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""


@pytest.fixture
def devices(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    run = uuid.uuid4().hex[:10]
    data = tmp_path / "data"
    ww = Wattwatch.open(Settings(data_dir=data), lock=True)
    try:
        ww.registry.bootstrap_owner()
        principal = owner_principal(ww)
        native, _ = ww.registry.create_device(principal, name="n", site_id=None, uid=f"n{run}")
        plug, _ = ww.registry.create_device(
            principal,
            name="p",
            site_id=None,
            uid=f"p{run}",
            protocol=DeviceProtocol.TASMOTA,
            topic=f"plug{run}",
        )
    finally:
        ww.close()
    yield data, run, {"native": native, "plug": plug}


def test_worker_acknowledges_after_commit_and_a_killed_worker_loses_nothing(
    devices: tuple[Path, str, dict[str, Any]],
) -> None:
    data, run, devs = devices
    uid, plug = devs["native"]["uid"], devs["plug"]["topic"]
    ts0 = now_ms() - 600_000
    worker = _Worker(data, f"worker-{run}", f"g{run}")
    publisher = _publisher(run)
    try:
        first = [
            (f"wattwatch/{uid}/telemetry", json.dumps({"ts": ts0 + i, "power_w": i}).encode())
            for i in range(10)
        ]
        first.append((f"tele/{plug}/SENSOR", b'{"ENERGY": {"Power": 40, "Total": 1.5}}'))
        first.append((f"wattwatch/{uid}/telemetry", b"{broken"))
        _publish_all(publisher, first)
        assert _wait_count(data, 11) == 11
        # The worker freezes: Mosquitto hands it messages it can neither commit nor ack…
        worker.proc.send_signal(signal.SIGSTOP)
        second = [
            (f"wattwatch/{uid}/telemetry", json.dumps({"ts": ts0 + 100 + i, "power_w": i}).encode())
            for i in range(30)
        ]
        _publish_all(publisher, second)
        time.sleep(0.5)
        assert _count(data) == 11
        # …and dies. Its session (same client id) is resumed by its replacement, and the
        # broker delivers again everything that was not acknowledged.
        worker.stop(signal.SIGKILL)
        worker = _Worker(data, f"worker-{run}", f"g{run}")
        assert _wait_count(data, 41) == 41
        time.sleep(0.3)
        assert _count(data) == 41  # redelivered duplicates were not stored twice
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        worker.stop()


class _RecordingSink:
    def __init__(self) -> None:
        self.topics: list[str] = []

    def submit(self, message: Inbound, done: Done) -> None:
        self.topics.append(message.topic)
        done(Outcome.ACCEPTED)

    async def handle(self, message: Inbound) -> Outcome:
        self.topics.append(message.topic)
        return Outcome.ACCEPTED

    @property
    def saturated(self) -> bool:
        return False

    async def room(self) -> None:
        pass

    def warm(self, identity: Identity) -> None:
        pass

    def connected(self, identity: Identity) -> None:
        pass

    def disconnected(self, identity: Identity) -> None:
        pass

    def count(self, outcome: Outcome) -> None:
        pass


def test_shared_subscription_splits_messages_between_workers() -> None:
    run = uuid.uuid4().hex[:10]
    sinks = [_RecordingSink(), _RecordingSink()]

    async def scenario() -> None:
        consumers = [
            ExternalBroker(
                MOSQUITTO, sink=sink, client_id=f"c{i}-{run}", share_group=f"s{run}",
                session_expiry_s=0,
            )
            for i, sink in enumerate(sinks)
        ]  # fmt: skip
        for consumer in consumers:
            await consumer.start()
        try:
            publisher = _publisher(run)
            try:
                messages = [(f"wattwatch/x{run}/telemetry", b'{"power_w": 1}')] * 40
                await asyncio.to_thread(_publish_all, publisher, messages)
            finally:
                publisher.disconnect()
                publisher.loop_stop()
            deadline = time.monotonic() + 10
            while sum(len(ours(s)) for s in sinks) < 40 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            for consumer in consumers:
                await consumer.stop()

    def ours(sink: _RecordingSink) -> list[str]:
        return [t for t in sink.topics if run in t]  # others use this Mosquitto too

    asyncio.run(scenario())
    counts = [len(ours(s)) for s in sinks]
    assert sum(counts) == 40 and min(counts) > 0, counts


def test_commands_through_mosquitto(devices: tuple[Path, str, dict[str, Any]]) -> None:
    """serve --broker-url: a command goes out via Mosquitto; the answer comes back to us."""
    data, run, devs = devices
    uid = devs["native"]["uid"]
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=uid)

    def answer(client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        reply = {"id": body["id"], "ok": True, "state": 0}
        client.publish(f"wattwatch/{uid}/command/result", json.dumps(reply), qos=1)

    device.on_message = answer
    device.connect("127.0.0.1", 1883)
    device.subscribe(f"wattwatch/{uid}/command", 1)
    device.loop_start()

    async def scenario() -> Any:
        settings = Settings(
            data_dir=data, broker_url=MOSQUITTO, mqtt_share_group=f"c{run}", mqtt_session_expiry_s=0
        )
        ww = Wattwatch.open(settings, lock=True)
        mqtt_service = ww.enable_mqtt(client_id=f"api-{run}")
        await ww.start()
        try:
            record = ww.store.registry.device_by(uid=uid)
            assert record is not None
            return await mqtt_service.send_command(record, "off", "c-9", timeout_s=5)
        finally:
            await ww.stop()
            ww.close()

    try:
        time.sleep(0.3)  # the device's subscription is in place
        result = asyncio.run(scenario())
    finally:
        device.disconnect()
        device.loop_stop()
    assert result.ok and result.state == 0 and result.id == "c-9"
    assert _wait_count(data, 1) == 1  # the answer's state reading, through the shared sub
