"""Authentication, topic ACL and session ownership on the embedded broker, with paho clients."""

from __future__ import annotations

import json
import time

from tests.broker.conftest import App, connect, wait_until

from wattwatch.broker import codec
from wattwatch.domain import DeviceProtocol, now_ms


def test_anonymous_and_wrong_credentials_are_refused(app: App) -> None:
    _, token = app.device("sec-a1")
    refused = app.outcome_count("connect_refused")
    for user, password in [
        (None, None),  # anonymous
        ("sec-a1", "wwd_wrong"),  # wrong token
        ("sec-a1", None),  # no password
        ("nobody", token),  # right token, wrong uid
        ("wattwatch", "not-the-service-password"),
    ]:
        client = connect(app.port, "sec-a1", user, password)
        assert not client.ok, (user, password)
        assert client.rc.value in (4, 5, 0x86, 0x87)  # bad credentials / not authorised
    assert app.outcome_count("connect_refused") - refused == 5
    assert connect(app.port, "sec-a1", "sec-a1", "x", v5=True).rc.value == 0x86


def test_device_cannot_touch_another_devices_topics(app: App) -> None:
    device_a, token_a = app.device("sec-b1")
    device_b, token_b = app.device("sec-b2")
    a = connect(app.port, "sec-b1", "sec-b1", token_a)
    b = connect(app.port, "sec-b2", "sec-b2", token_b)
    try:
        assert b.subscribe("wattwatch/sec-b2/command")[0].value == 1
        forbidden = app.outcome_count("forbidden")
        # A publishes into B's data: acknowledged (3.1.1 cannot say no) and dropped.
        a.publish_acked("wattwatch/sec-b2/telemetry", json.dumps({"power_w": 666}))
        a.publish_acked("wattwatch/sec-b2/command", json.dumps({"id": "x", "action": "off"}))
        a.publish_acked("wattwatch/sec-b1/command", json.dumps({"id": "y", "action": "off"}))
        assert app.outcome_count("forbidden") - forbidden == 3
        assert app.readings(device_b["id"]) == []
        # A may not listen to B's commands, nor to everything.
        for topic_filter in ("wattwatch/sec-b2/command", "wattwatch/+/command", "#"):
            assert a.subscribe(topic_filter)[0].is_failure, topic_filter
        assert app.call(app.mqtt.publish("wattwatch/sec-b2/command", b'{"id":"z"}')) == 1
        b.wait_message(lambda m: m.topic == "wattwatch/sec-b2/command")
        time.sleep(0.2)
        assert a.messages == [] and len(b.messages) == 1
        # A Tasmota plug with the same rules: only its own topic.
        _, plug_token = app.device("sec-b3", DeviceProtocol.TASMOTA, topic="plug_b3")
        plug = connect(app.port, "DVES_B3", "sec-b3", plug_token)
        try:
            assert plug.subscribe("cmnd/plug_b3/#")[0].value == 1
            assert plug.subscribe("cmnd/tasmotas/#")[0].is_failure  # group topic
            assert plug.subscribe("cmnd/+/POWER")[0].is_failure
        finally:
            plug.close()
    finally:
        a.close()
        b.close()
    assert app.readings(device_a["id"]) == []


def test_rotated_token_is_refused_on_the_next_connect(app: App) -> None:
    device, token = app.device("sec-c1")
    client = connect(app.port, "sec-c1", "sec-c1", token)
    assert client.ok
    client.close()
    new_token = app.ww.registry.rotate_device_token(app.owner, device["id"])
    old = connect(app.port, "sec-c1", "sec-c1", token)
    assert not old.ok and old.rc.value == 0x86  # paho shows 3.1.1 codes as MQTT 5 ones
    fresh = connect(app.port, "sec-c1", "sec-c1", new_token)
    assert fresh.ok
    fresh.close()
    # ThingsBoard: the token is the user name.
    tb, tb_token = app.device("sec-c2", DeviceProtocol.THINGSBOARD)
    assert connect(app.port, "", tb_token, None, v5=True).ok is True
    app.ww.registry.rotate_device_token(app.owner, tb["id"])
    assert connect(app.port, "", tb_token, None, v5=True).ok is False


def test_client_id_belongs_to_the_device_that_first_used_it(app: App) -> None:
    """Tasmota picks its own client id (DVES_xxxxxx); nobody else may take it or its session."""
    device_b, token_b = app.device("sec-d1", DeviceProtocol.TASMOTA, topic="plug_d1")
    _, token_a = app.device("sec-d2", DeviceProtocol.TASMOTA, topic="plug_d2")
    shared = "DVES_D1D1D1"
    b = connect(app.port, shared, "sec-d1", token_b, clean=False)
    assert b.ok and b.session_present is False
    try:
        assert b.subscribe("cmnd/plug_d1/POWER")[0].value == 1
        # Before authentication: a wrong password with B's client id changes nothing.
        intruder = connect(app.port, shared, "sec-d1", "wwd_guess", clean=True)
        assert not intruder.ok
        # After authentication as another device: refused, both clean and persistent.
        for clean in (True, False):
            other = connect(app.port, shared, "sec-d2", token_a, clean=clean)
            assert not other.ok and other.rc.value == 0x85, clean  # identifier rejected
        time.sleep(0.2)
        assert not b.disconnected.is_set(), "B was kicked off"
        b.publish_acked("tele/plug_d1/SENSOR", json.dumps({"ENERGY": {"Power": 5}}))
    finally:
        b.close()
    # B is offline; its persistent session (with the subscription) is still B's alone.
    for clean in (True, False):
        other = connect(app.port, shared, "sec-d2", token_a, clean=clean)
        assert not other.ok
    again = connect(app.port, shared, "sec-d1", token_b, clean=False)
    try:
        assert again.ok and again.session_present is True
        assert app.call(app.mqtt.publish("cmnd/plug_d1/POWER", b"ON")) == 1
        again.wait_message(lambda m: m.topic == "cmnd/plug_d1/POWER")
        # The owner itself may take over its own live session.
        second = connect(app.port, shared, "sec-d1", token_b, clean=False)
        try:
            assert second.ok
            assert again.disconnected.wait(5)
        finally:
            second.close()
    finally:
        again.close()
    assert len(app.readings(device_b["id"])) == 1


def test_native_devices_use_their_uid_as_client_id(app: App) -> None:
    _, token = app.device("sec-e1")
    assert not connect(app.port, "someone-else", "sec-e1", token).ok
    assigned = connect(app.port, "", "sec-e1", token)  # empty: the broker assigns one
    assert assigned.ok
    assigned.close()
    # MQTT 5 tells the client which id it got.
    v5 = connect(app.port, "", "sec-e1", token, v5=True)
    assert v5.ok
    v5.close()


def test_per_device_connection_cap_and_will_acl(app: App) -> None:
    _, token = app.device("sec-f1", DeviceProtocol.THINGSBOARD)
    clients = [connect(app.port, f"tb-f1-{i}", token, None) for i in range(5)]
    try:
        assert [c.ok for c in clients] == [True, True, True, True, False]
    finally:
        for c in clients:
            c.close()
    _, plug_token = app.device("sec-f2", DeviceProtocol.TASMOTA, topic="plug_f2")
    bad_will = connect(
        app.port, "DVES_F2", "sec-f2", plug_token, will=("tele/plug_other/LWT", b"Offline", True)
    )
    assert not bad_will.ok and bad_will.rc.value == 0x87


def test_only_the_server_publishes_commands(app: App) -> None:
    _, token = app.device("sec-g1", DeviceProtocol.TASMOTA, topic="plug_g1")
    plug = connect(app.port, "DVES_G1", "sec-g1", token, v5=True)
    try:
        plug.subscribe("cmnd/plug_g1/POWER")
        info = plug.publish("cmnd/plug_g1/POWER", "ON")
        info.wait_for_publish(5)
        assert plug.pubacks[info.mid].value == codec.Reason.NOT_AUTHORIZED
        time.sleep(0.2)
        assert plug.messages == []
        before = now_ms()
        wait_until(lambda: app.call(app.mqtt.publish("cmnd/plug_g1/POWER", b"OFF")) == 1)
        assert plug.wait_message(lambda m: m.payload == b"OFF")
        assert now_ms() - before < 5000
    finally:
        plug.close()


def test_rotating_a_token_ends_the_live_connection(app: App) -> None:
    device, token = app.device("sec-h1")
    client = connect(app.port, "sec-h1", "sec-h1", token)
    try:
        assert client.ok
        ended = app.run(lambda: app.mqtt.embedded.disconnect_device(device["id"]))  # type: ignore[union-attr]
        assert ended == 1
        assert client.disconnected.wait(5)
    finally:
        client.close()
