"""Device-side encoders: each protocol's shape, units and resolution; decoders read them back."""

from __future__ import annotations

import csv
import io
from importlib import import_module

import orjson
import pytest

from wattwatch.domain import DeviceProtocol, Reading
from wattwatch.sim.payloads import (
    THINGSBOARD_SHORT_KEYS,
    encode_csv,
    encode_for,
    encode_json_batch,
    encode_native,
    encode_native_status,
    encode_ndjson,
    encode_shelly_online,
    encode_shelly_status,
    encode_tasmota_lwt,
    encode_tasmota_sensor,
    encode_tasmota_state,
    encode_thingsboard,
)

TS = 1_750_000_000_000  # 2025-06-15T15:06:40Z
R = Reading(
    {
        "power_w": 812.4567,
        "energy_wh": 123456.789,
        "voltage_v": 229.84,
        "current_a": 3.5678,
        "power_factor": 0.9876,
        "frequency_hz": 50.012,
        "apparent_power_va": 822.63,
        "reactive_power_var": 128.9,
        "state": 1.0,
    },
    TS,
    "mains",
)
R2 = Reading({"power_w": 10.0, "energy_wh": 123456.8}, TS + 5000, "mains")


def test_native_object_and_array() -> None:
    one = encode_native("home-1-plug03", R)
    assert one.topic == "wattwatch/home-1-plug03/telemetry"
    obj = orjson.loads(one.payload)
    assert obj == {"ts": TS, "channel": "mains", **R.values}
    many = orjson.loads(encode_native("u", [R, R2]).payload)
    assert [o["ts"] for o in many] == [TS, TS + 5000]
    status = encode_native_status("u", True, firmware="1.2.0")
    assert status.retain and orjson.loads(status.payload) == {"online": True, "firmware": "1.2.0"}


def test_thingsboard_ts_values() -> None:
    msg = encode_thingsboard(R)
    assert msg.topic == "v1/devices/me/telemetry"
    assert orjson.loads(msg.payload) == {"ts": TS, "values": R.values}
    short = orjson.loads(encode_thingsboard([R, R2], THINGSBOARD_SHORT_KEYS).payload)
    assert short[1] == {"ts": TS + 5000, "values": {"power": 10.0, "energy": 123456.8}}
    assert orjson.loads(encode_thingsboard(Reading({"power_w": 1.0})).payload) == {"power_w": 1.0}


def test_tasmota_sensor_units_and_local_time() -> None:
    msg = encode_tasmota_sensor(
        "tasmota_ABC123", R, tz="Europe/Paris", today_kwh=1.2345, yesterday_kwh=3.0
    )
    assert msg.topic == "tele/tasmota_ABC123/SENSOR"
    body = orjson.loads(msg.payload)
    assert body["Time"] == "2025-06-15T17:06:40"  # local, no zone, as Tasmota prints it
    e = body["ENERGY"]
    assert e["Total"] == 123.457 and e["Today"] == 1.234 and e["Yesterday"] == 3.0
    assert e["Power"] == 812 and isinstance(e["Power"], int)
    assert e["Voltage"] == 230 and e["Current"] == 3.568 and e["Factor"] == 0.99
    assert e["ApparentPower"] == 823 and e["ReactivePower"] == 129
    state = orjson.loads(encode_tasmota_state("t", False, TS, uptime_s=90061).payload)
    assert state["POWER"] == "OFF" and state["Uptime"] == "1T01:01:01"
    assert encode_tasmota_lwt("t", False).payload == b"Offline"
    with pytest.raises(ValueError):
        encode_tasmota_sensor("t", Reading({"power_w": 1.0}))


def test_shelly_gen2_switch_status() -> None:
    msg = encode_shelly_status("shellyplusplugs-80646fc8fb9c", R)
    assert msg.topic == "shellyplusplugs-80646fc8fb9c/status/switch:0"
    body = orjson.loads(msg.payload)
    assert body["id"] == 0 and body["output"] is True and body["source"]
    assert body["apower"] == 812.5 and body["voltage"] == 229.8 and body["current"] == 3.568
    assert body["aenergy"]["total"] == 123456.789 and len(body["aenergy"]["by_minute"]) == 3
    assert body["aenergy"]["minute_ts"] == TS // 1000 // 60 * 60
    assert 20 < body["temperature"]["tC"] < 80
    off = orjson.loads(encode_shelly_status("p", Reading({"power_w": 0.0, "state": 0.0})).payload)
    assert off["output"] is False
    assert encode_shelly_online("p", True).payload == b"true"


def test_http_batch_bodies() -> None:
    arr = orjson.loads(encode_json_batch([R, R2]))
    assert arr[0]["power_w"] == R.values["power_w"] and arr[1]["ts"] == TS + 5000
    lines = encode_ndjson([R, R2]).splitlines()
    assert [orjson.loads(x)["ts"] for x in lines] == [TS, TS + 5000]
    rows = list(csv.DictReader(io.StringIO(encode_csv([R, R2]).decode())))
    assert rows[0]["ts"] == str(TS) and rows[0]["channel"] == "mains"
    assert float(rows[0]["power_w"]) == R.values["power_w"]
    assert rows[1]["voltage_v"] == ""  # R2 has no voltage


def test_encode_for_each_protocol() -> None:
    assert len(encode_for(DeviceProtocol.NATIVE, "u", [R, R2])) == 1
    assert len(encode_for("tasmota", "t", [R, R2])) == 2
    assert encode_for("shelly", "p", [R])[0].topic == "p/status/switch:0"
    assert encode_for("thingsboard", "x", [R])[0].topic == "v1/devices/me/telemetry"
    assert encode_for("native", "u", []) == []
    with pytest.raises(ValueError):
        encode_for("http", "u", [R])


@pytest.mark.parametrize(
    ("protocol", "address"),
    [
        ("native", "home-1-monitor"),
        ("thingsboard", "tb"),
        ("tasmota", "tasmota_ABC123"),
        ("shelly", "shellyplusplugs-1"),
    ],
)
def test_the_server_side_decoders_read_what_devices_send(protocol: str, address: str) -> None:
    module = pytest.importorskip(f"wattwatch.protocols.{protocol}")
    (msg,) = encode_for(protocol, address, [R])
    decoded = module.decode(msg.topic, msg.payload, received_ms=TS + 100)
    assert not decoded.rejected, decoded.rejected
    (reading,) = decoded.readings
    assert reading.values["power_w"] == pytest.approx(R.values["power_w"], abs=0.5)
    assert reading.values["energy_wh"] == pytest.approx(R.values["energy_wh"], abs=0.5)
    assert reading.values["voltage_v"] == pytest.approx(R.values["voltage_v"], abs=0.5)


def test_decoders_module_names_exist() -> None:
    # Guard against the parametrised round trip above silently skipping everything.
    import_module("wattwatch.protocols.native")
