"""Simulated plugs that really answer over MQTT: a Tasmota plug (paho, as its firmware talks)
and a ThingsBoard device built on the ThingsBoard device SDK (``tb-mqtt-client``)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from wattwatch.app import Wattwatch


def wait_subscribed(
    ww: Wattwatch, device_id: int, topic_filter: str, timeout_s: float = 10
) -> None:
    """Until the embedded broker holds ``topic_filter`` for one of the device's sessions."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        broker = ww.mqtt.embedded.broker if ww.mqtt and ww.mqtt.embedded else None
        for handler in list(getattr(broker, "_device_handlers", {}).get(device_id, ())):
            session = handler.session
            if session is not None and topic_filter in session.attributes.get(
                "wattwatch.filters", {}
            ):
                return
        time.sleep(0.01)
    raise AssertionError(f"device {device_id} did not subscribe to {topic_filter}")


class TasmotaPlug:
    """A Tasmota plug with the default FullTopic: it takes ``cmnd/<topic>/POWER`` ON|OFF|TOGGLE
    (or an empty payload: a query) and answers on ``stat/<topic>/RESULT`` and ``…/POWER``.
    ``answer = False`` makes it swallow commands (a hung firmware)."""

    def __init__(self, port: int, uid: str, token: str, topic: str, *, state: int = 0) -> None:
        self.port = port
        self.uid = uid
        self.token = token
        self.topic = topic
        self.state = state
        self.answer = True
        self.received: list[str] = []
        self.disconnects = 0
        self.refusals = 0
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"DVES_{uuid.uuid4().hex[:6].upper()}",
            protocol=mqtt.MQTTv311,
        )
        self.client.username_pw_set(uid, token)
        self.client.will_set(f"tele/{topic}/LWT", "Offline", qos=1)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> TasmotaPlug:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError(f"{self.uid}: not subscribed (refused {self.refusals} times)")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refusals += 1
            return
        client.subscribe(f"cmnd/{self.topic}/#", qos=1)
        client.publish(f"tele/{self.topic}/LWT", "Online", qos=1)

    def _on_disconnect(self, *_a: Any) -> None:
        self.disconnects += 1

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        word = msg.payload.decode().strip().upper()
        self.received.append(word)
        if not self.answer or not msg.topic.endswith("/POWER"):
            return
        if word in ("ON", "1"):
            self.state = 1
        elif word in ("OFF", "0"):
            self.state = 0
        elif word in ("TOGGLE", "2"):
            self.state = 1 - self.state
        power = "ON" if self.state else "OFF"
        client.publish(f"stat/{self.topic}/RESULT", orjson.dumps({"POWER": power}), qos=1)
        client.publish(f"stat/{self.topic}/POWER", power, qos=1)


class ThingsBoardPlug:
    """A relay on the ThingsBoard device SDK: server-side RPC ``setState`` (params true/false)
    and ``toggle``; it replies ``{"state": true|false}`` with ``send_rpc_reply``."""

    def __init__(self, port: int, token: str, *, state: bool = False) -> None:
        from tb_device_mqtt import TBDeviceMqttClient

        self.state = state
        self.received: list[dict[str, Any]] = []
        self.answer = True
        self.client = TBDeviceMqttClient("127.0.0.1", port=port, username=token)
        self.client.set_server_side_rpc_request_handler(self._on_rpc)

    def start(self, ww: Wattwatch, device_id: int) -> ThingsBoardPlug:
        self.client.connect(timeout=10)
        wait_subscribed(ww, device_id, "v1/devices/me/rpc/request/+")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.stop()

    def _on_rpc(self, request_id: Any, body: dict[str, Any]) -> None:
        self.received.append(body)
        if not self.answer:
            return
        if body.get("method") == "setState":
            self.state = bool(body.get("params"))
        elif body.get("method") == "toggle":
            self.state = not self.state
        else:
            self.client.send_rpc_reply(request_id, {"error": "unknown method"})
            return
        self.client.send_rpc_reply(request_id, {"state": self.state})


class _PahoPlug:
    """A paho connection as a device with username = uid and password = token."""

    def __init__(self, port: int, uid: str, token: str, client_id: str, subscribe: str) -> None:
        self.port = port
        self.uid = uid
        self.state = 0
        self.answer = True
        self.received: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self._subscribe = subscribe
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.username_pw_set(uid, token)
        self.client.on_connect = lambda c, *_a: c.subscribe(self._subscribe, qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message

    def start(self) -> _PahoPlug:
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError(f"{self.uid}: not subscribed to {self._subscribe}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = orjson.loads(msg.payload)
        self.received.append(body)
        if self.answer:
            self.reply(client, body)

    def reply(self, client: mqtt.Client, body: dict[str, Any]) -> None:
        raise NotImplementedError


class NativePlug(_PahoPlug):
    """wattwatch's own protocol: ``{"id", "action"}`` in, ``{"id", "ok", "state"}`` out."""

    def __init__(self, port: int, uid: str, token: str) -> None:
        super().__init__(port, uid, token, uid, f"wattwatch/{uid}/command")

    def reply(self, client: mqtt.Client, body: dict[str, Any]) -> None:
        action = body.get("action")
        self.state = {"on": 1, "off": 0}.get(str(action), 1 - self.state)
        answer = {"id": body["id"], "ok": True, "state": self.state}
        client.publish(f"wattwatch/{self.uid}/command/result", orjson.dumps(answer), qos=1)


class ShellyPlug(_PahoPlug):
    """A Shelly Gen2 plug: RPC frames on ``<prefix>/rpc``, answers on ``<src>/rpc``."""

    def __init__(self, port: int, uid: str, token: str, prefix: str) -> None:
        super().__init__(port, uid, token, prefix, f"{prefix}/rpc")
        self.prefix = prefix

    def reply(self, client: mqtt.Client, body: dict[str, Any]) -> None:
        was_on = bool(self.state)
        if body.get("method") == "Switch.Set":
            self.state = int(bool(body["params"]["on"]))
        elif body.get("method") == "Switch.Toggle":
            self.state = 1 - self.state
        answer = {"id": body["id"], "src": self.prefix, "dst": body["src"],
                  "result": {"was_on": was_on}}  # fmt: skip
        client.publish(f"{body['src']}/rpc", orjson.dumps(answer), qos=1)

    def forge(self, request_id: int) -> None:
        """Publish an answer to a request this plug never got (another plug's command)."""
        answer = {"id": request_id, "src": self.prefix, "dst": "wattwatch",
                  "result": {"was_on": False}}  # fmt: skip
        self.client.publish("wattwatch/rpc", orjson.dumps(answer), qos=1)
