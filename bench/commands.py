"""Command round-trip latency on the embedded broker: HTTP POST → MQTT → plug → answer → audit.

A real ``wattwatch serve`` (its own process, embedded broker), simulated plugs in this process
that really answer over MQTT (a Tasmota plug on paho; a ThingsBoard device on the ThingsBoard
device SDK), and N sequential ``POST /api/v1/devices/{id}/commands`` over one keep-alive HTTP
connection. Reported per protocol: the client's HTTP round trip and the server's own
``latency_ms`` (command recorded → answer matched → outcome and device state committed).

Usage: python bench/commands.py [--commands 1000] [--protocols tasmota thingsboard]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import ServerProcess, login
from tests.control.fakes import TasmotaPlug, ThingsBoardPlug


def percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, max(0, round(q * len(sorted_ms)) - 1))]


def describe(name: str, samples: list[float]) -> str:
    s = sorted(samples)
    return (
        f"{name:<34} n={len(s):<5} median {statistics.median(s):6.1f} ms   "
        f"p90 {percentile(s, 0.90):6.1f} ms   p99 {percentile(s, 0.99):6.1f} ms   "
        f"max {s[-1]:6.1f} ms"
    )


def wait_answering(api: httpx.Client, device_id: int) -> None:
    """Until the plug is connected and subscribed: a command comes back ok."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = api.post(f"/api/v1/devices/{device_id}/commands", json={"action": "on", "timeout_s": 1})
        if r.status_code == 200 and r.json()["ok"]:
            return
    raise SystemExit(f"device {device_id} never answered")


def run(api: httpx.Client, device_id: int, n: int) -> tuple[list[float], list[float]]:
    http_ms, server_ms = [], []
    for i in range(n):
        started = time.perf_counter()
        r = api.post(f"/api/v1/devices/{device_id}/commands", json={"action": ("off", "on")[i % 2]})
        http_ms.append((time.perf_counter() - started) * 1000)
        body = r.json()
        if r.status_code != 200 or not body["ok"]:
            raise SystemExit(f"command {i} failed: {r.status_code} {body}")
        server_ms.append(float(body["latency_ms"]))
    return http_ms, server_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument(
        "--protocols",
        nargs="+",
        default=["tasmota", "thingsboard"],
        choices=["tasmota", "thingsboard"],
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = ServerProcess(Path(tmp) / "data").start()
        try:
            assert srv.password
            api = login(srv.url, "owner@localhost", srv.password)
            site = api.post("/api/v1/sites", json={"name": "Bench", "timezone": "UTC"}).json()
            results: dict[str, Any] = {}
            for protocol in args.protocols:
                body: dict[str, Any] = {
                    "name": f"{protocol} plug",
                    "kind": "plug",
                    "protocol": protocol,
                    "site_id": site["id"],
                }
                if protocol == "tasmota":
                    body["topic"] = "benchplug"
                created = api.post("/api/v1/devices", json=body).json()
                plug: Any
                if protocol == "tasmota":
                    plug = TasmotaPlug(srv.mqtt_port, created["uid"], created["token"], "benchplug")
                    plug.start()
                else:
                    plug = ThingsBoardPlug(srv.mqtt_port, created["token"])
                    plug.client.connect(timeout=10)
                try:
                    wait_answering(api, created["id"])
                    run(api, created["id"], 50)  # warm-up
                    results[protocol] = run(api, created["id"], args.commands)
                finally:
                    plug.stop()
            print(f"wattwatch serve (embedded broker), {args.commands} sequential commands each")
            for protocol, (http_ms, server_ms) in results.items():
                print(describe(f"{protocol}: HTTP round trip", http_ms))
                print(describe(f"{protocol}: server latency_ms", server_ms))
            api.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
