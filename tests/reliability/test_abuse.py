"""Abuse on loopback against a real ``wattwatch serve``: idle and slow (slowloris) connections on
HTTP and MQTT, a connection flood beyond the caps, oversized bodies. A legitimate device keeps
uploading over HTTP and MQTT throughout, and what it sends is stored.

Bounded and fast: the server runs with small caps and short deadlines (a few seconds), and every
socket a test opens is closed at its end.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.broker.conftest import connect, wait_until
from tests.conftest import ServerProcess, login

from wattwatch.domain import now_ms

HTTP_MAX = 60
MQTT_MAX = 60
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
API_BODY = 16 * 1024
UPLOAD_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "WATTWATCH_HTTP_MAX_CONNECTIONS": str(HTTP_MAX),
        "WATTWATCH_HTTP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "WATTWATCH_HTTP_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "WATTWATCH_HTTP_KEEP_ALIVE_S": "30",
        "WATTWATCH_HTTP_MAX_API_BODY_BYTES": str(API_BODY),
        "WATTWATCH_MAX_BODY_BYTES": str(UPLOAD_BODY),
        "WATTWATCH_MQTT_MAX_CONNECTIONS": str(MQTT_MAX),
        "WATTWATCH_MQTT_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        srv = ServerProcess(tmp_path_factory.mktemp("abuse") / "data").start()
    try:
        yield srv
    finally:
        srv.stop()


class Legit:
    """A device that uploads over HTTP (one keep-alive connection) and MQTT (QoS 1)."""

    def __init__(self, srv: ServerProcess, uid: str) -> None:
        self.srv = srv
        self.api = login(srv.url, "owner@localhost", srv.password or "")
        made = self.api.post("/api/v1/devices", json={"name": uid, "uid": uid}).json()
        self.uid = uid
        self.id = made["id"]
        self.token = made["token"]
        self.http = httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        self.mqtt: Any = None
        self.ts = now_ms() - 3_600_000

    def upload(self) -> tuple[int, float]:
        """One HTTP reading; (ts, seconds the request took)."""
        self.ts += 1000
        started = time.monotonic()
        r = self.http.post("/api/v1/telemetry", json=[{"ts": self.ts, "power_w": 42.0}])
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 1
        return self.ts, time.monotonic() - started

    def connect_mqtt(self) -> None:
        self.mqtt = connect(self.srv.mqtt_port, self.uid, self.uid, self.token)
        assert self.mqtt.ok, self.mqtt.rc

    def publish(self) -> tuple[int, float]:
        self.ts += 1000
        started = time.monotonic()
        self.mqtt.publish_acked(
            f"wattwatch/{self.uid}/telemetry", json.dumps({"ts": self.ts, "power_w": 43.0})
        )
        return self.ts, time.monotonic() - started

    def stored(self, ts: int) -> bool:
        r = self.api.get(
            f"/api/v1/devices/{self.id}/readings",
            params={"from": ts, "to": ts + 1, "interval": "raw"},
        )
        assert r.status_code == 200, r.text
        return [p["ts"] for p in r.json()["points"]] == [ts]

    def metric(self, name: str, labels: str) -> float:
        for line in self.api.get("/metrics").text.splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
        raise AssertionError(f"{name}{{{labels}}} not in /metrics")

    def close(self) -> None:
        if self.mqtt is not None:
            self.mqtt.close()
        self.http.close()
        self.api.close()


def _open(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        out.append(s)
    return out


def _closed_by_server(s: socket.socket, within_s: float) -> bytes | None:
    """What the server sent before closing ``s`` within ``within_s`` (None: still open)."""
    s.settimeout(within_s)
    data = b""
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk
    except (TimeoutError, BlockingIOError):
        return None
    except ConnectionError:
        return data
    return None


def _close_all(sockets: list[socket.socket]) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.close()


class Trickler(threading.Thread):
    """Sends ``payload`` one byte at a time, ``interval_s`` apart, to every socket, until the
    server closes it; records when each was closed."""

    def __init__(self, sockets: list[socket.socket], payload: bytes, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.sockets = sockets
        self.payload = payload
        self.interval_s = interval_s
        self.closed_after: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        i = 0
        while not self.stop.is_set() and len(self.closed_after) < len(self.sockets):
            byte = self.payload[i % len(self.payload) : i % len(self.payload) + 1]
            for n, s in enumerate(self.sockets):
                if n in self.closed_after:
                    continue
                try:
                    s.send(byte)
                except OSError:
                    self.closed_after[n] = time.monotonic() - started
            i += 1
            self.stop.wait(self.interval_s)


def test_idle_and_slow_connections_do_not_starve_a_device(server: ServerProcess) -> None:
    dev = Legit(server, "abuse-slow-1")
    slow: list[socket.socket] = []
    trickler: Trickler | None = None
    try:
        dev.connect_mqtt()
        before = dev.metric("wattwatch_http_connections_closed_total", 'reason="header_timeout"')
        n = HTTP_MAX // 3
        # HTTP: connections that never send a byte, and ones trickling request headers.
        http_idle = _open(server.http_port, n)
        http_slow = _open(server.http_port, n)
        # MQTT: connections that never send CONNECT, and ones trickling one.
        mqtt_idle = _open(server.mqtt_port, MQTT_MAX // 3)
        mqtt_slow = _open(server.mqtt_port, MQTT_MAX // 3)
        slow = http_idle + http_slow + mqtt_idle + mqtt_slow
        header = (
            b"POST /api/v1/telemetry HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 4000 + b"\r\n\r\n"
        )
        connect_packet = b"\x10\xff\x7f\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00" * 1000
        trickler = Trickler(http_slow + mqtt_slow, header + connect_packet, 0.2)
        trickler.start()
        opened = time.monotonic()
        # The device is served at once, over HTTP (a new connection too) and MQTT.
        ts_http, took_http = dev.upload()
        ts_mqtt, took_mqtt = dev.publish()
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            assert fresh.get("/healthz").status_code == 200
        assert took_http < 5.0 and took_mqtt < 5.0, (took_http, took_mqtt)
        assert dev.stored(ts_http) and dev.stored(ts_mqtt)
        # The idle and the trickling connections are closed by the deadlines.
        for s in http_idle + mqtt_idle:
            left = max(
                0.5, opened + max(HEADER_TIMEOUT_S, CONNECT_TIMEOUT_S) + 5 - time.monotonic()
            )
            assert _closed_by_server(s, left) is not None, "an idle connection was kept"
        wait_until(
            lambda: len(trickler.closed_after) == len(trickler.sockets),  # type: ignore[union-attr]
            timeout=HEADER_TIMEOUT_S + 8,
            what="the trickling connections to be closed",
        )
        assert max(trickler.closed_after.values()) < max(HEADER_TIMEOUT_S, CONNECT_TIMEOUT_S) + 6
        after = dev.metric("wattwatch_http_connections_closed_total", 'reason="header_timeout"')
        assert after - before >= 2 * n
        # And the device still works on the connections it had all along.
        ts_http, _ = dev.upload()
        ts_mqtt, _ = dev.publish()
        assert dev.stored(ts_http) and dev.stored(ts_mqtt)
    finally:
        if trickler is not None:
            trickler.stop.set()
            trickler.join(5)
        _close_all(slow)
        dev.close()


def test_a_connection_flood_beyond_the_caps_is_refused_while_devices_keep_working(
    server: ServerProcess,
) -> None:
    dev = Legit(server, "abuse-flood-1")
    flood: list[socket.socket] = []
    try:
        dev.connect_mqtt()
        dev.upload()  # the device's keep-alive HTTP connection is established
        refused_before = dev.metric("wattwatch_http_connections_closed_total", 'reason="refused"')
        # Twice the caps: the first ones are accepted (and idle), the rest refused at once.
        http_flood = _open(server.http_port, 2 * HTTP_MAX)
        mqtt_flood = _open(server.mqtt_port, 2 * MQTT_MAX)
        flood = http_flood + mqtt_flood
        answers = [_closed_by_server(s, 3.0) for s in http_flood[-HTTP_MAX // 2 :]]
        assert all(a is not None and a.startswith(b"HTTP/1.1 503") for a in answers), answers[:3]
        assert b"too many connections" in (answers[0] or b"")
        mqtt_answers = [_closed_by_server(s, 3.0) for s in mqtt_flood[-MQTT_MAX // 2 :]]
        assert all(a == b"" for a in mqtt_answers), mqtt_answers[:3]
        # Established connections keep working meanwhile.
        for _ in range(3):
            ts_http, took_http = dev.upload()
            ts_mqtt, took_mqtt = dev.publish()
            assert took_http < 5.0 and took_mqtt < 5.0
            assert dev.stored(ts_http) and dev.stored(ts_mqtt)
        refused = dev.metric("wattwatch_http_connections_closed_total", 'reason="refused"')
        assert refused - refused_before >= HTTP_MAX // 2
        _close_all(flood)
        flood = []
        # Once the flood is gone, new connections are served again.
        wait_until(_http_accepts(server), timeout=5, what="HTTP to accept again")
        fresh = connect(server.mqtt_port, dev.uid + "-b", dev.uid, dev.token)
        try:
            assert not fresh.ok  # a native device connects with its uid as client id…
            assert fresh.rc is not None  # …but it got a CONNACK: the broker accepts again
        finally:
            fresh.close()
    finally:
        _close_all(flood)
        dev.close()


def _http_accepts(server: ServerProcess) -> Any:
    def check() -> bool:
        try:
            return httpx.get(server.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def test_a_body_trickled_past_its_deadline_is_answered_408(server: ServerProcess) -> None:
    dev = Legit(server, "abuse-body-timeout-1")
    s = socket.create_connection(("127.0.0.1", server.http_port), timeout=5)
    try:
        started = time.monotonic()
        s.sendall(
            b"POST /api/v1/telemetry HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {dev.token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{"
        )
        answer = _closed_by_server(s, BODY_TIMEOUT_S + 5)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"code":"timeout"' in answer
        assert time.monotonic() - started >= BODY_TIMEOUT_S - 0.1
        closed = dev.metric("wattwatch_http_connections_closed_total", 'reason="body_timeout"')
        assert closed >= 1
    finally:
        s.close()
        dev.close()


def _chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        yield b" " * part
        sent += part


def test_bodies_over_the_limits_are_answered_413(server: ServerProcess) -> None:
    dev = Legit(server, "abuse-body-1")
    try:
        auth = {"Authorization": f"Bearer {dev.token}", "Content-Type": "application/json"}
        # An upload over its limit, declared and chunked: 413, nothing stored.
        big = json.dumps(
            [{"ts": dev.ts + i, "power_w": 1.0} for i in range(UPLOAD_BODY // 20)]
        ).encode()
        assert len(big) > UPLOAD_BODY
        for content in (big, _chunks(len(big))):
            r = httpx.post(server.url + "/api/v1/telemetry", content=content, headers=auth)
            assert r.status_code == 413, r.text
            assert r.json()["error"]["code"] == "too_large"
        assert not dev.stored(dev.ts)
        # A JSON API route has a smaller limit than uploads: declared and chunked.
        owner = dict(dev.api.headers)
        body = json.dumps({"name": "x" * (API_BODY + 10), "timezone": "UTC"}).encode()
        for content in (body, _chunks(API_BODY + 100)):
            r = httpx.post(
                server.url + "/api/v1/sites",
                content=content,
                headers={**owner, "Content-Type": "application/json"},
            )
            assert r.status_code == 413, r.text
            error = r.json()["error"]
            assert error["code"] == "too_large"
            assert f"larger than {API_BODY} bytes" in error["message"]
        # Under the limits all is well.
        assert dev.api.post("/api/v1/sites", json={"name": "ok", "timezone": "UTC"}).is_success
        dev.upload()
    finally:
        dev.close()


def test_a_batch_over_the_row_limit_is_refused_clearly(client: Any) -> None:
    from wattwatch.ingest.http import MAX_BATCH_READINGS

    made = client.post("/api/v1/devices", json={"name": "rows", "uid": "rows-1"}).json()
    body = b"[" + b",".join([b"{}"] * (MAX_BATCH_READINGS + 1)) + b"]"
    r = client.post(
        "/api/v1/telemetry",
        content=body,
        headers={"Authorization": f"Bearer {made['token']}", "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert f"at most {MAX_BATCH_READINGS}" in r.json()["error"]["message"]
