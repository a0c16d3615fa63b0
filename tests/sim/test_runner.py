"""The simulator against real servers: HTTP batches into ``wattwatch serve``, each protocol's
MQTT messages through a real broker (decoded by wattwatch's own adapters), plug commands."""

from __future__ import annotations

import asyncio
import queue
import time
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import ServerProcess, login

from wattwatch.domain import DeviceKind, DeviceProtocol, DeviceRef
from wattwatch.protocols import adapter_for
from wattwatch.sim import Site, to_readings
from wattwatch.sim.provision import ApiRegistrar, SimDevice, plan_devices, provision
from wattwatch.sim.runner import HttpSender, MqttSender, Runner, mqtt_reachable
from wattwatch.sim.schedules import SiteKind
from wattwatch.sim.simulate import FleetSpec, simulate_remote

HOUR = 3_600_000


def energy_series(api: httpx.Client, device_id: int, t0: int, t1: int) -> dict[str, list[float]]:
    r = api.get(
        f"/api/v1/devices/{device_id}/readings",
        params={"from": t0, "to": t1, "interval": "raw", "metrics": "energy_wh", "limit": 10**6},
    )
    assert r.status_code == 200, r.text
    out: dict[str, list[float]] = {}
    for p in r.json()["points"]:
        out.setdefault(p["channel"], []).append(p["energy_wh"])
    return out


def test_http_backfill_live_and_rerun(tmp_path: Path, server_factory: Any) -> None:
    srv: ServerProcess = server_factory(tmp_path / "data")
    assert srv.password
    api = login(srv.url, "owner@localhost", srv.password)
    registrar = ApiRegistrar(api)
    fleet = FleetSpec(SiteKind.HOME, devices=3, seed=5, timezone="Europe/Madrid")
    t_start = int(time.time() * 1000)
    first = asyncio.run(
        simulate_remote(
            registrar, fleet, url=srv.url, backfill_days=0.1, duration_s=2.5, connections=4
        )
    ).to_json()
    assert first["devices"] == {"created": 3, "reused": 0, "resumed": 0}
    backfill, live = first["backfill"], first["live"]
    assert backfill["readings"] > 3 * 1500 and backfill["accepted"] == backfill["readings"]
    assert backfill["duplicates"] == backfill["rejected"] == backfill["errors"] == 0
    assert live["readings"] > 0 and live["accepted"] == live["readings"] and live["errors"] == 0

    devices = api.get("/api/v1/devices").json()
    assert len(devices) == 3
    paths = api.get("/openapi.json").json()["paths"]
    if "patch" in paths.get("/api/v1/devices/{device_id}", {}):
        # The CT monitor is the home's supply, the plugs sub-meters of it.
        for dev in devices:
            (ch,) = api.get(f"/api/v1/devices/{dev['id']}").json()["channels"]
            assert ch["submeter"] == (dev["kind"] == "plug"), dev["uid"]
    t_end = int(time.time() * 1000) + 1000
    total = 0
    for dev in devices:
        series = energy_series(api, dev["id"], t_start - 3 * HOUR, t_end)
        for values in series.values():
            total += len(values)
            drops = [(a, b) for a, b in pairwise(values) if b < a]
            # A counter only goes back at a power cut, and then it restarts near zero.
            assert all(b < 50 for _, b in drops), drops
    assert total == backfill["readings"] + live["readings"]

    # Run again: the devices are found by uid, their counters continue from the stored
    # values, and only what is missing since the last reading is sent.
    second = asyncio.run(
        simulate_remote(
            registrar, fleet, url=srv.url, backfill_days=0.1, duration_s=0, connections=4
        )
    ).to_json()
    assert second["devices"] == {"created": 0, "reused": 3, "resumed": 3}
    assert second["backfill"]["duplicates"] == 0
    assert second["backfill"]["readings"] < 3 * 60  # a few seconds' worth, not the history
    assert len(api.get("/api/v1/devices").json()) == 3
    for dev in devices:
        series = energy_series(api, dev["id"], t_start - 3 * HOUR, int(time.time() * 1000) + 1)
        for values in series.values():
            assert all(b >= a or b < 50 for a, b in pairwise(values))
    api.close()
    registrar.close()


class Listener:
    """A plain MQTT client that watches the simulated devices' topics."""

    def __init__(self, host: str, port: int, topics: list[str], user: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4()}")
        if user:
            self.client.username_pw_set(user)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        subscribed: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_a: subscribed.put(True)
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe([(t, 1) for t in topics])
        subscribed.get(timeout=10)

    def drain(self, settle_s: float = 0.5) -> list[tuple[str, bytes]]:
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=settle_s))
            except queue.Empty:
                return out

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def device_topics(dev: SimDevice) -> list[str]:
    return {
        DeviceProtocol.NATIVE: [f"wattwatch/{dev.uid}/#"],
        DeviceProtocol.TASMOTA: [f"tele/{dev.address}/#", f"stat/{dev.address}/#"],
        DeviceProtocol.SHELLY: [f"{dev.address}/#", "wattwatch/rpc"],
        DeviceProtocol.THINGSBOARD: ["v1/devices/me/#"],
    }[dev.protocol]


@pytest.mark.mosquitto
def test_each_protocol_over_a_real_broker(tmp_path: Path) -> None:
    """Published messages decode, with wattwatch's adapters, to the readings the devices took;
    plugs obey commands as their firmware does and report the relay state afterwards."""
    if not mqtt_reachable("127.0.0.1", 1883):
        pytest.skip("no Mosquitto on 127.0.0.1:1883")
    name = f"mq-{uuid.uuid4().hex[:8]}"
    site = Site("office", 6, seed=21, name=name)
    twin = Site("office", 6, seed=21, name=name)  # the same physics, for the expected values
    devices = [d for d in plan_devices([site]) if d.protocol != DeviceProtocol.HTTP]
    assert {d.protocol for d in devices} == {"native", "thingsboard", "tasmota", "shelly"}
    for d in devices:
        d.token = "anything"  # Mosquitto here accepts any credentials
    listener = Listener("127.0.0.1", 1883, [t for d in devices for t in device_topics(d)])
    t1 = (int(time.time() * 1000) // 60_000) * 60_000
    for d in devices:
        d.next_ms = t1 - 30_000
    # The broker is shared (ThingsBoard's v1/devices/me/… topics with every other client):
    # answers are matched by their reply topic, with a command id nobody else uses.
    command_id = str(uuid.uuid4().int % 10**9)
    sent: dict[str, Any] = {}

    async def run() -> None:
        http = HttpSender("http://127.0.0.1:9")  # unused: no HTTP devices here
        sender = MqttSender("127.0.0.1", 1883, http)
        runner = Runner(devices, http, sender)
        try:
            await sender.start(devices, runner.stats)
            await runner.tick(t1)
            assert runner.stats.errors == 0, runner.stats.last_error
            # Commands, as wattwatch's adapters encode them, while the devices are connected.
            for d in devices:
                ref = DeviceRef(1, d.uid, d.protocol, d.address)
                msg = adapter_for(d.protocol).encode_command(ref, "off", command_id)
                sent[d.uid] = msg
                listener.publish(msg.topic, msg.payload)
            deadline = time.monotonic() + 20
            while runner.stats.commands < len(devices) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert runner.stats.commands >= len(devices)
            await runner.tick(t1 + 30_000)
        finally:
            await sender.close()
            await http.close()

    try:
        asyncio.run(run())
        received = listener.drain()
    finally:
        listener.close()

    for d in devices:
        adapter = adapter_for(d.protocol)
        expected = to_readings(next(twin.generate(t1 - 30_000, t1, 5.0, devices=[d.uid]))[1])
        mine = [
            (topic, payload)
            for topic, payload in received
            if any(_matches(topic, f) for f in device_topics(d))
            and (
                d.protocol != DeviceProtocol.SHELLY
                or d.address.encode() in payload + topic.encode()
            )
        ]
        decoded = [adapter.decode(t, p, received_ms=t1) for t, p in mine]
        readings = [r for dec in decoded for r in dec.readings if "power_w" in r.values]
        exact = d.protocol in (DeviceProtocol.NATIVE, DeviceProtocol.THINGSBOARD)
        if exact:  # this device's own readings: on its grid (others may share the topics)
            grid = set(twin.grid(d.uid, t1 - 30_000, t1 + 30_000, 5.0).tolist())
            readings = [r for r in readings if r.ts_ms in grid]
        first = readings[: len(expected)]
        assert len(first) == len(expected), (d.protocol, mine[:3])
        for got, want in zip(first, expected, strict=True):
            if exact:
                assert got.ts_ms == want.ts_ms and got.values == want.values
                assert (got.channel or "mains") == want.channel
            else:  # Tasmota/Shelly: firmware resolution, receive time
                assert abs(got.values["power_w"] - want.values["power_w"]) <= 0.5
                assert abs(got.values["energy_wh"] - want.values["energy_wh"]) <= 0.5
        reply = sent[d.uid].reply_topic
        results = [
            dec.command_result
            for (topic, _), dec in zip(mine, decoded, strict=True)
            if dec.command_result is not None and topic == reply
        ]
        assert results, (d.protocol, d.kind, mine[-3:])
        if d.kind == DeviceKind.PLUG:
            assert results[-1].ok and results[-1].state == 0
            after = [r for r in readings[len(expected) :] if "power_w" in r.values]
            assert after and all(r.values["power_w"] == 0 for r in after), (d.protocol, after)
            assert not d.site.relay_on(d.spec.channels[0].appliances[0])
        else:  # a meter has no relay: its firmware says so
            assert not results[-1].ok


def _matches(topic: str, pattern: str) -> bool:
    if pattern.endswith("/#"):
        return topic == pattern[:-2] or topic.startswith(pattern[:-1])
    return topic == pattern


def test_mqtt_devices_into_wattwatch(tmp_path: Path, server_factory: Any) -> None:
    """Each protocol's devices connect to wattwatch's own broker with their credentials, their
    readings are stored, and plugs switched through the commands API answer and go quiet."""
    srv: ServerProcess = server_factory(tmp_path / "data")
    assert srv.password
    api = login(srv.url, "owner@localhost", srv.password)
    registrar = ApiRegistrar(api)
    devices = FleetSpec(SiteKind.OFFICE, devices=6, seed=8, name="mqtt-office").build()
    t0 = int(time.time() * 1000)
    provision(registrar, devices, start_ms=t0)
    plugs = [d for d in devices if d.has_relay and d.protocol != DeviceProtocol.HTTP]
    assert {d.protocol for d in plugs} == {"tasmota", "shelly", "native"}
    switched: dict[str, int] = {}

    async def run() -> dict[str, Any]:
        http = HttpSender(srv.url)
        sender = MqttSender("127.0.0.1", srv.mqtt_port, http)
        runner = Runner(devices, http, sender)
        try:
            await sender.start(devices, runner.stats)
            stop = asyncio.Event()
            live = asyncio.create_task(runner.live(stop=stop))
            await asyncio.sleep(1.5)
            async with httpx.AsyncClient(base_url=srv.url, headers=api.headers, timeout=30) as c:
                for d in plugs:
                    path = f"/api/v1/devices/{d.device_id}/commands"
                    r = await c.post(path, json={"action": "off"})
                    assert r.status_code == 200, (d.protocol, r.text)
                    assert r.json()["ok"] and r.json()["state"] == 0, (d.protocol, r.json())
                    switched[d.uid] = int(time.time() * 1000)
                panel = next(d for d in devices if d.kind == DeviceKind.PANEL)
                path = f"/api/v1/devices/{panel.device_id}/commands"
                r = await c.post(path, json={"action": "on"})
                assert r.status_code == 422 and "only plugs" in r.text  # a meter has no relay
            await asyncio.sleep(6)  # every device reports again (5 s steps)
            stop.set()
            await live
        finally:
            await sender.close()
            await http.close()
        return runner.stats.to_json()

    live = asyncio.run(run())
    assert live["errors"] == 0, live["last_error"]
    assert live["commands"] == len(plugs)
    stored = 0
    for d in devices:
        r = api.get(
            f"/api/v1/devices/{d.device_id}/readings",
            params={"from": t0 - 60_000, "interval": "raw", "limit": 100_000},
        )
        points = r.json()["points"]
        assert points, d.protocol
        # Command answers also report the relay state (a reading of state alone).
        stored += sum(p["power_w"] is not None for p in points)
        if d.uid in switched:
            # Readings taken after the switch (a reading is generated at its time, and the
            # relay opened before the command's answer): no power. Relay-only messages
            # (Tasmota's stat/POWER) carry a state and no power.
            after = [p for p in points if p["ts"] > switched[d.uid] and p["power_w"] is not None]
            assert after and all(p["power_w"] == 0 for p in after), (d.protocol, after)
    # Every reading published with QoS 1 was acknowledged after commit, so it is stored.
    assert stored == live["readings"]
    api.close()
    registrar.close()
