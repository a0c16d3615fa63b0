"""Email over a real SMTP server (aiosmtpd) and MQTT through a real broker (Mosquitto)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from tests.conftest import free_port
from tests.hooks.conftest import add_device

from wattwatch.domain import now_ms


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def _rule(client: Any, device_id: int, notify: list[Any]) -> None:
    r = client.post(
        "/api/v1/alert-rules",
        json={
            "name": "heater left on",
            "kind": "threshold",
            "device_id": device_id,
            "value": 2000,
            "severity": "critical",
            "notify": notify,
        },
    )
    assert r.status_code == 201, r.text


def test_alert_email_through_a_real_smtp_server(app_client: Any) -> None:
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        _ww, client = app_client(smtp_host="127.0.0.1", smtp_port=port, smtp_from="ww@example.com")
        device_id, auth = add_device(client)
        _rule(client, device_id, [{"email": ["ops@example.com", "boss@example.com"]}])
        t = now_ms() - 60_000
        rows = [{"ts": t, "power_w": 2500.0}, {"ts": t + 5000, "power_w": 50.0}]
        client.post("/api/v1/telemetry", json=rows, headers=auth)
        deadline = time.monotonic() + 10
        while len(inbox.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(inbox.messages) == 2  # raised and cleared (sent concurrently)
        for sender, rcpts, _ in inbox.messages:
            assert sender == "ww@example.com"
            assert rcpts == ["ops@example.com", "boss@example.com"]
        mails = sorted(
            (message_from_bytes(m[2]) for m in inbox.messages), key=lambda m: m["Subject"]
        )
        assert [m["Subject"][:20] for m in mails] == [
            "[wattwatch] ALERT (c",
            "[wattwatch] cleared ",
        ]
        assert mails[0]["Subject"].startswith("[wattwatch] ALERT (critical): heater left on")
        text = mails[0].get_payload()
        assert "power_w 2,500 > 2,000" in text and f"device_id: {device_id}" in text
    finally:
        smtp.stop()


def test_email_without_smtp_server_is_dead_lettered(app_client: Any) -> None:
    _ww, client = app_client(smtp_host="127.0.0.1", smtp_port=free_port())  # nothing listens
    device_id, auth = add_device(client)
    _rule(client, device_id, [{"email": "ops@example.com"}])
    client.post(
        "/api/v1/telemetry", json=[{"ts": now_ms() - 1000, "power_w": 2500.0}], headers=auth
    )
    deadline = time.monotonic() + 10
    letters: list[dict[str, Any]] = []
    while not letters and time.monotonic() < deadline:
        letters = client.get("/api/v1/webhooks/dead-letters").json()
        time.sleep(0.05)
    (letter,) = letters
    assert letter["channel"] == "email" and letter["target"]["to"] == ["ops@example.com"]
    assert letter["event"] == "alert.raised" and letter["attempts"] == 4
    assert "Subject: [wattwatch] ALERT" in letter["body"]


@pytest.mark.mosquitto
def test_alert_published_to_an_integration_topic_through_mosquitto(app_client: Any) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topic = f"wattwatch-test/{uuid.uuid4().hex}/alerts"
    got: list[bytes] = []
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.on_message = lambda c, u, msg: got.append(msg.payload)
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()

    async def publish(topic: str, payload: bytes) -> None:
        info = pub.publish(topic, payload, qos=1)
        await asyncio.to_thread(info.wait_for_publish, 5)

    try:
        assert subscribed.wait(5)

        def wire(ww: Any) -> None:
            ww.hooks.context.publish = publish  # what the broker provides on a running server

        _ww, client = app_client(before_start=wire)
        device_id, auth = add_device(client)
        _rule(client, device_id, [{"mqtt": topic}])
        client.post(
            "/api/v1/telemetry", json=[{"ts": now_ms() - 1000, "power_w": 2500.0}], headers=auth
        )
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
        (payload,) = got
        event = json.loads(payload)
        assert event["event"] == "alert.raised"
        assert event["data"]["alert"]["device_id"] == device_id
    finally:
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
