"""The ThingsBoard device SDK (tb-mqtt-client) against the embedded broker: telemetry and RPC."""

from __future__ import annotations

from typing import Any

from tb_device_mqtt import TBDeviceMqttClient
from tests.broker.conftest import App, wait_until

from wattwatch.domain import DeviceProtocol, now_ms


def _client(port: int, token: str, answers: list[Any]) -> TBDeviceMqttClient:
    client = TBDeviceMqttClient("127.0.0.1", port, username=token)

    def on_rpc(request_id: str, body: dict[str, Any]) -> None:
        answers.append((request_id, body))
        if body.get("method") == "setState":
            client.send_rpc_reply(request_id, {"state": body["params"]})

    client.set_server_side_rpc_request_handler(on_rpc)
    client.connect(keepalive=30)
    wait_until(client.is_connected, what="the ThingsBoard SDK to connect")
    return client


def test_thingsboard_sdk_sends_telemetry_and_answers_rpc(app: App) -> None:
    device, token = app.device("tb-1", DeviceProtocol.THINGSBOARD, key_map={"watts": "power_w"})
    _, other_token = app.device("tb-2", DeviceProtocol.THINGSBOARD)
    requests: list[Any] = []
    others: list[Any] = []
    tb = _client(app.port, token, requests)
    tb_other = _client(app.port, other_token, others)
    try:
        ts = now_ms() - 5000
        assert tb.send_telemetry({"power": 812.5, "voltage": 229.8}).get() == 0
        assert tb.send_telemetry({"ts": ts, "values": {"watts": 640, "rssi": -61}}).get() == 0
        rows = app.readings(device["id"])
        assert {r["power_w"] for r in rows} == {812.5, 640.0}
        assert any(r["ts"] == ts for r in rows)
        # Server-side RPC through the device's protocol adapter; only tb-1 may see it.
        result = app.call(app.mqtt.send_command(device, "on", "17", timeout_s=5))
        assert result.ok and result.state == 1 and result.id == "17"
        assert requests == [("17", {"method": "setState", "params": True})]
        assert [b for _, b in others if b.get("method") == "setState"] == []
        wait_until(lambda: any(r.get("state") == 1 for r in app.readings(device["id"])))
    finally:
        for client in (tb, tb_other):
            client.stop()
            client.disconnect()
