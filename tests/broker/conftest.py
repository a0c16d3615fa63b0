"""A running wattwatch with its embedded broker (in a background event loop) and paho helpers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import DeviceProtocol, Role
from wattwatch.registry.service import Principal

T = TypeVar("T")
SERVICE_PASSWORD = "service-password-for-tests"


class App:
    """``Wattwatch`` with MQTT enabled, started in a thread of its own."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.ww = Wattwatch.open(
            Settings(
                data_dir=data_dir,
                mqtt_port=0,
                mqtt_service_password=SERVICE_PASSWORD,
                mqtt_last_seen_interval_s=0,
                **settings,
            ),
            lock=True,
        )
        self.mqtt = self.ww.enable_mqtt()
        self.ww.registry.bootstrap_owner()
        org = self.ww.registry.db.first_org_id()
        assert org is not None
        self.owner = Principal(user_id=1, org_id=org, role=Role.OWNER, email="owner@localhost")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.ww.start())

    def call(self, coro: Awaitable[T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def run(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the app's loop thread (broker state is not thread-safe)."""

        async def wrapper() -> T:
            return fn()

        return self.call(wrapper())

    @property
    def port(self) -> int:
        broker = self.mqtt.embedded
        assert broker is not None
        return broker.port

    @property
    def broker(self) -> Any:
        embedded = self.mqtt.embedded
        assert embedded is not None
        return embedded.broker

    def device(
        self,
        uid: str,
        protocol: DeviceProtocol = DeviceProtocol.NATIVE,
        topic: str | None = None,
        **kw: Any,
    ) -> tuple[dict[str, Any], str]:
        return self.ww.registry.create_device(
            self.owner, name=uid, site_id=None, uid=uid, protocol=protocol, topic=topic, **kw
        )

    def readings(self, device_id: int) -> list[dict[str, Any]]:
        chans = [c["id"] for c in self.ww.store.registry.list_channels(device_id)]
        return self.ww.store.query_raw(chans, 0, 2**62, 100_000)

    def record(self, uid: str) -> dict[str, Any]:
        record = self.ww.store.registry.device_by(uid=uid)
        assert record is not None
        return record

    def outcome_count(self, outcome: str) -> float:
        value = self.ww.stats.registry.get_sample_value(
            "wattwatch_messages_total", {"transport": "mqtt", "outcome": outcome}
        )
        return value or 0.0

    def flush_presence(self) -> None:
        self.call(self.mqtt.ingest.presence.flush())

    def stop(self) -> None:
        try:
            self.call(self.ww.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            self.ww.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One running app per test module (starting one takes a second); tests use their own
    device uids, and compare counters before and after."""
    running = App(tmp_path_factory.mktemp("app") / "data")
    yield running
    running.stop()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """An app with other settings (limits…)."""
    started: list[App] = []

    def make(**settings: Any) -> App:
        running = App(tmp_path / f"data{len(started)}", **settings)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


@dataclass
class Client:
    """A paho client connected (or refused) and what it has seen."""

    paho: mqtt.Client
    rc: Any = None
    session_present: bool | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    disconnected: threading.Event = field(default_factory=threading.Event)
    disconnect_rc: Any = None
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    subacks: dict[int, list[Any]] = field(default_factory=dict)
    pubacks: dict[int, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.rc is not None and not self.rc.is_failure

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> Any:
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        return info

    def publish_acked(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        info = self.publish(topic, payload, qos)
        info.wait_for_publish(10)
        assert info.is_published(), f"no PUBACK for {topic}"

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5) -> list[Any]:
        rc, mid = self.paho.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        deadline = time.monotonic() + timeout
        while mid not in self.subacks:
            assert time.monotonic() < deadline, "no SUBACK"
            time.sleep(0.01)
        return self.subacks[mid]

    def wait_message(
        self, predicate: Callable[[mqtt.MQTTMessage], bool], timeout: float = 5
    ) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in list(self.messages):
                if predicate(message):
                    return message
            time.sleep(0.01)
        raise AssertionError("expected message did not arrive")

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()  # returns at once when the loop was never started


def connect(
    port: int,
    client_id: str,
    user: str | None,
    password: str | None,
    *,
    clean: bool = True,
    v5: bool = False,
    will: tuple[str, bytes, bool] | None = None,
    keepalive: int = 60,
    properties: Properties | None = None,
) -> Client:
    """Connect with paho and wait for the CONNACK (or the refusal)."""
    kwargs: dict[str, Any] = {"client_id": client_id}
    if v5:
        kwargs["protocol"] = mqtt.MQTTv5
    else:
        kwargs["protocol"] = mqtt.MQTTv311
        kwargs["clean_session"] = clean
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, **kwargs)
    paho.reconnect_delay_set(60, 120)  # a refused client must not retry during the test
    client = Client(paho)
    if user is not None:
        paho.username_pw_set(user, password)
    if will is not None:
        paho.will_set(will[0], will[1], qos=1, retain=will[2])

    def on_connect(c: Any, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            c.disconnect()  # no reconnect back-off for loop_stop to sit through
        client.rc = rc
        client.session_present = flags.session_present
        client.connected.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        client.disconnect_rc = rc
        client.disconnected.set()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        client.messages.append(message)

    def on_subscribe(_c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        client.subacks[mid] = list(codes)

    def on_publish(_c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        client.pubacks[mid] = rc

    paho.on_connect = on_connect
    paho.on_disconnect = on_disconnect
    paho.on_message = on_message
    paho.on_subscribe = on_subscribe
    paho.on_publish = on_publish
    if v5:
        paho.connect(
            "127.0.0.1",
            port,
            keepalive=keepalive,
            clean_start=clean,
            properties=properties,
        )
    else:
        paho.connect("127.0.0.1", port, keepalive=keepalive)
    paho.loop_start()
    if not client.connected.wait(10):
        client.close()
        raise AssertionError("no CONNACK")
    if not client.ok:
        client.close()
    return client


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
