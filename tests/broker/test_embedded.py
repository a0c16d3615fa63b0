"""The embedded broker with real paho clients: ingest, PUBACK after commit, presence, limits."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.broker.conftest import SERVICE_PASSWORD, App, connect, wait_until

from wattwatch.broker import codec
from wattwatch.domain import DeviceProtocol, now_ms
from wattwatch.protocols import MAX_ITEMS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"


def test_native_telemetry_is_acknowledged_only_after_commit(app: App) -> None:
    device, token = app.device("meter-1")
    store = app.ww.store
    gate = threading.Event()
    original = store.write_readings

    def held_write(rows: Any) -> Any:
        gate.wait(10)  # the store is slow: the PUBACK must wait for it
        return original(rows)

    store.write_readings = held_write  # type: ignore[method-assign]
    accepted = app.outcome_count("accepted")
    client = connect(app.port, "meter-1", "meter-1", token)
    try:
        assert client.ok
        ts = now_ms() - 10_000
        info = client.publish(
            "wattwatch/meter-1/telemetry",
            json.dumps({"ts": ts, "power_w": 812.5, "voltage_v": 229.8}),
        )
        time.sleep(0.5)
        assert not info.is_published(), "PUBACK before the reading was committed"
        assert app.readings(device["id"]) == []
        gate.set()
        info.wait_for_publish(10)
        assert info.is_published()
        # Acknowledged means committed: readable at once, no waiting.
        rows = app.readings(device["id"])
        assert [(r["ts"], r["power_w"], r["voltage_v"]) for r in rows] == [(ts, 812.5, 229.8)]
        # An array with a channel, and a repeat (QoS 1 redelivery) that is a duplicate.
        batch = [{"ts": ts + 1000, "channel": "ac01", "power_w": 1210}, {"ts": ts, "power_w": 1}]
        client.publish_acked("wattwatch/meter-1/telemetry", json.dumps(batch))
        assert len(app.readings(device["id"])) == 2
        assert app.outcome_count("accepted") - accepted == 2
    finally:
        store.write_readings = original  # type: ignore[method-assign]
        client.close()


def test_tasmota_plug_sensor_lwt_and_presence(app: App) -> None:
    device, token = app.device("plug-7", DeviceProtocol.TASMOTA, topic="tasmota_A1B2C3")
    will = ("tele/tasmota_A1B2C3/LWT", b"Offline", True)
    plug = connect(app.port, "DVES_A1B2C3", "plug-7", token, will=will)
    assert plug.ok
    try:
        # Tasmota announces itself with a retained LWT; retain is refused, the message used.
        plug.publish_acked("tele/tasmota_A1B2C3/LWT", "Online")
        sensor = (FIXTURES / "tasmota" / "tele_SENSOR_energy.json").read_bytes()
        plug.publish_acked("tele/tasmota_A1B2C3/SENSOR", sensor)
        plug.publish_acked("stat/tasmota_A1B2C3/POWER", "ON")
        rows = app.readings(device["id"])
        assert any(r["energy_wh"] == 12345.0 and r["power_w"] == 812.0 for r in rows), rows
        app.flush_presence()
        record = app.record("plug-7")
        assert record["online"] is True and record["last_seen_ms"] is not None
        changed = record["status_changed_ms"]
        # Power cut: the TCP connection just dies; the broker publishes the will.
        sock = plug.paho.socket()
        assert sock is not None
        sock.close()
    finally:
        plug.paho.loop_stop()
    wait_until(lambda: app.run(lambda: app.mqtt.ingest.presence.online(device["id"])) is False)
    app.flush_presence()
    record = app.record("plug-7")
    assert record["online"] is False and record["status_changed_ms"] >= changed
    # The refused retain stored nothing: a later subscriber gets no retained LWT.
    watcher = connect(app.port, "svc-1", "wattwatch", SERVICE_PASSWORD)
    try:
        watcher.subscribe("tele/#")
        time.sleep(0.3)
        assert watcher.messages == []
    finally:
        watcher.close()


def test_malformed_payloads_are_counted_and_the_broker_carries_on(app: App) -> None:
    device, token = app.device("meter-2")
    client = connect(app.port, "meter-2", "meter-2", token)
    topic = "wattwatch/meter-2/telemetry"
    rejected, forbidden = app.outcome_count("rejected"), app.outcome_count("forbidden")
    try:
        bad = [
            b"{not json",
            b'{"power_w": "lots"}',
            b'{"power_w": NaN}',
            b'{"power_w": 1e999}',
            b'{"volts": 230}',
            orjson.dumps([{"power_w": 1}] * (MAX_ITEMS + 1)),
            b"\xff\xfe",
            b"",
        ]
        for payload in bad:
            client.publish_acked(topic, payload)
        client.publish_acked("wattwatch/meter-2/firmware", b"{}")  # not a native topic
        assert app.outcome_count("rejected") - rejected == len(bad)
        assert app.outcome_count("forbidden") - forbidden == 1
        assert app.readings(device["id"]) == []
        ts = now_ms() - 1000
        client.publish_acked(topic, json.dumps({"ts": ts, "power_w": 5}))
        assert [r["ts"] for r in app.readings(device["id"])] == [ts]
    finally:
        client.close()


def test_status_sets_presence_and_firmware(app: App) -> None:
    device, token = app.device("meter-3")
    presence = app.mqtt.ingest.presence
    assert presence.on_change == app.ww.device_status  # offline alert rules, hooks, live view
    told: list[tuple[int, int, bool, int]] = []
    presence.on_change = lambda *args: told.append(args)
    client = connect(app.port, "meter-3", "meter-3", token)
    try:
        client.publish_acked("wattwatch/meter-3/status", b'{"online": true, "firmware": "1.2.0"}')
        app.flush_presence()
        assert app.record("meter-3")["firmware"] == "1.2.0"
        assert app.record("meter-3")["online"] is True
        client.publish_acked("wattwatch/meter-3/status", b'{"online": false}')
        app.flush_presence()
        assert app.record("meter-3")["online"] is False
    finally:
        client.close()
        presence.on_change = app.ww.device_status
    # The app is shared by the module: an earlier test's device may go offline meanwhile.
    assert [(d, online) for d, _, online, _ in told if d == device["id"]] == [
        (device["id"], True),
        (device["id"], False),
    ]


def test_mqtt5_client_gets_reason_codes_and_retain_is_refused(app: App) -> None:
    device, token = app.device("meter-5")
    client = connect(app.port, "meter-5", "meter-5", token, v5=True)
    try:
        assert client.ok
        client.publish_acked("wattwatch/meter-5/telemetry", b'{"power_w": 3}')
        assert len(app.readings(device["id"])) == 1
        info = client.publish("wattwatch/other/telemetry", b'{"power_w": 3}')
        info.wait_for_publish(5)
        assert client.pubacks[info.mid].value == codec.Reason.NOT_AUTHORIZED
        info = client.publish("wattwatch/meter-5/telemetry", b'{"power_w": "x"}')
        info.wait_for_publish(5)
        assert client.pubacks[info.mid].is_failure
        client.publish("wattwatch/meter-5/telemetry", b'{"power_w": 4}', retain=True)
        assert client.disconnected.wait(5)
        assert client.disconnect_rc.value == codec.Reason.RETAIN_NOT_SUPPORTED
    finally:
        client.close()
    assert len(app.readings(device["id"])) == 1


def test_service_account_taps_device_data_but_sends_no_commands(app: App) -> None:
    _, token = app.device("meter-6")
    service = connect(app.port, "integration", "wattwatch", SERVICE_PASSWORD)
    device = connect(app.port, "meter-6", "meter-6", token)
    try:
        assert service.subscribe("wattwatch/+/telemetry")[0].value == 1
        assert service.subscribe("$share/g/wattwatch/#")[0].is_failure
        assert device.subscribe("wattwatch/meter-6/command")[0].value == 1
        device.publish_acked("wattwatch/meter-6/telemetry", b'{"power_w": 9}')
        seen = service.wait_message(lambda m: m.topic == "wattwatch/meter-6/telemetry")
        assert seen.payload == b'{"power_w": 9}'
        service.publish_acked("wattwatch/meter-6/command", b'{"id": "x", "action": "on"}')
        time.sleep(0.3)
        assert device.messages == [], "the service account must not command devices"
    finally:
        service.close()
        device.close()


def test_server_publish_and_request_reply(app: App) -> None:
    device, token = app.device("meter-8")
    client = connect(app.port, "meter-8", "meter-8", token)
    try:
        client.subscribe("wattwatch/meter-8/command")

        def answer(_c: Any, _u: Any, message: Any) -> None:
            body = json.loads(message.payload)
            if "id" not in body:
                return
            reply = {"id": body["id"], "ok": True, "state": 1 if body["action"] == "on" else 0}
            client.paho.publish("wattwatch/meter-8/command/result", json.dumps(reply), qos=1)

        client.paho.on_message = answer
        result = app.call(app.mqtt.send_command(device, "on", "c-1", timeout_s=5))
        assert result.ok and result.state == 1 and result.id == "c-1"
        delivered = app.call(app.mqtt.publish("wattwatch/meter-8/command", b"{}", 1))
        assert delivered == 1
        from wattwatch.errors import DeviceTimeout

        with pytest.raises(DeviceTimeout):
            app.call(
                app.mqtt.request(
                    "wattwatch/meter-8/nothing", b"{}", "wattwatch/meter-8/never", timeout_s=0.3
                )
            )
    finally:
        client.close()
    # The state answer was a reading too.
    wait_until(lambda: any(r.get("state") == 1 for r in app.readings(device["id"])))


def test_limits_connect_timeout_packet_size_connections(make_app: Any) -> None:
    app: App = make_app(
        mqtt_connect_timeout_s=0.3, mqtt_max_packet_bytes=2048, mqtt_max_connections=3
    )
    _, token = app.device("meter-9")
    # A client that connects and says nothing is dropped after the CONNECT timeout.
    with socket.create_connection(("127.0.0.1", app.port)) as idle:
        idle.settimeout(3)
        started = time.monotonic()
        assert idle.recv(10) == b""
        assert time.monotonic() - started < 2
    # A CONNECT that announces a huge packet is dropped before its body is read.
    with socket.create_connection(("127.0.0.1", app.port)) as big:
        big.settimeout(3)
        big.sendall(b"\x10\xff\xff\xff\x7f")
        assert big.recv(10) == b""
    client = connect(app.port, "meter-9", "meter-9", token)
    try:
        assert client.ok
        client.publish("wattwatch/meter-9/telemetry", b"[" + b"1," * 2000 + b"1]")
        assert client.disconnected.wait(5)
        assert app.outcome_count("too_large") >= 2
    finally:
        client.close()
    # Total connection limit: the fourth connection is refused at once.
    held = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(3)]
    try:
        wait_until(lambda: app.run(lambda: app.broker.connection_count) == 3)
        with socket.create_connection(("127.0.0.1", app.port)) as extra:
            extra.settimeout(3)
            assert extra.recv(10) == b""
    finally:
        for s in held:
            s.close()


def test_wildcard_publish_closes_the_connection(app: App) -> None:
    _, token = app.device("meter-10")
    errors = app.outcome_count("protocol_error")
    with socket.create_connection(("127.0.0.1", app.port)) as raw:
        raw.settimeout(3)
        body = (
            b"\x00\x04MQTT\x04\xc2\x00\x3c"
            + len(b"meter-10").to_bytes(2, "big")
            + b"meter-10"
            + len(b"meter-10").to_bytes(2, "big")
            + b"meter-10"
            + len(token).to_bytes(2, "big")
            + token.encode()
        )
        raw.sendall(codec.frame(0x10, body))
        assert raw.recv(4) == b"\x20\x02\x00\x00"
        raw.sendall(codec.publish("wattwatch/+/telemetry", b"{}", 1, 1))
        assert raw.recv(10) == b""
    assert app.outcome_count("protocol_error") - errors == 1
