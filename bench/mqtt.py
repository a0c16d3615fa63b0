"""MQTT ingest benchmark: single-reading QoS 1 messages from many device connections.

Measured in one run, with the same publishers (``--publishers`` processes, one TCP connection
per device, each keeping ``--window`` messages in flight; pre-encoded PUBLISHes written by an
asyncio Protocol per connection, every PUBACK matched to a packet id in flight, so the load
side costs a few µs a message and is not the limit):

1. wattwatch embedded broker (``wattwatch serve``): devices authenticate with uid/token and
   publish ``wattwatch/<uid>/telemetry``; the broker acknowledges a message only after its
   reading is committed, so first PUBLISH → last PUBACK is publish → committed. The store is
   counted afterwards.
2. bare routing of the brokers: a stock ``amqtt.broker.Broker`` (anonymous, on uvloop like
   serve; MQTT 3.1.1 only, skip it with ``--mqtt 5``), and Mosquitto; the same publishers,
   one plain QoS 1 subscriber on ``wattwatch/+/telemetry``: first PUBLISH → last message
   received by the subscriber.
3. Mosquitto + W ``wattwatch worker`` processes (shared subscription, manual ack after
   commit): a private Mosquitto on a free port (the tuned configuration of docs/scale-out.md),
   first PUBLISH → the store holds every reading. One worker uses SQLite (it owns the data
   dir); more need PostgreSQL (``--pg-url``).

Every line reports the rate, the CPU the system under test used meanwhile (msg per
CPU-second: what an idle core would sustain, whatever else runs on the machine) and the CPU
of the load side.

Usage: python bench/mqtt.py [--devices 1000] [--messages 50] [--publishers 2] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import ServerProcess, free_port

from wattwatch.broker import codec

Device = tuple[str, str | None, str | None]  # client id = uid, user, password


# --- load generator (its own processes) -------------------------------------------------
#
# Publishers and the subscriber are asyncio Protocols on uvloop: every PUBLISH is encoded
# before the start signal, and one read callback parses all the acknowledgements that arrived
# and answers them with one write of the next packets. They are still honest MQTT clients
# (CONNECT/CONNACK, QoS 1 with a window of packet ids in flight, every PUBACK matched to a
# packet id in flight and its reason code checked), just without a task, a future and a
# write per message, which is what capped the previous generator near 10,000 msg/s.


def connect_packet(
    client_id: str, user: str | None, password: str | None, v5: bool = False
) -> bytes:
    flags = 0x02
    payload = len(client_id.encode()).to_bytes(2, "big") + client_id.encode()
    if user is not None:
        flags |= 0x80
        payload += len(user.encode()).to_bytes(2, "big") + user.encode()
    if password is not None:
        flags |= 0x40
        payload += len(password.encode()).to_bytes(2, "big") + password.encode()
    level = b"\x05" if v5 else b"\x04"
    props = b"\x00" if v5 else b""
    body = b"\x00\x04MQTT" + level + bytes((flags,)) + (600).to_bytes(2, "big") + props + payload
    return codec.frame(0x10, body)


class LoadError(RuntimeError):
    pass


def split_packets(buf: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """Complete MQTT packets at the start of ``buf``: [(first byte, body start, body end)]
    and the number of bytes they take."""
    out: list[tuple[int, int, int]] = []
    pos, n = 0, len(buf)
    while pos + 2 <= n:
        length, mult, i = 0, 1, pos + 1
        while True:
            if i >= n:
                return out, pos
            b = buf[i]
            i += 1
            length += (b & 0x7F) * mult
            if b < 0x80:
                break
            mult <<= 7
            if mult > 1 << 21:
                raise LoadError("malformed remaining length")
        end = i + length
        if end > n:
            break
        out.append((buf[pos], i, end))
        pos = end
    return out, pos


class _Publisher(asyncio.Protocol):
    """One device connection: CONNECT, then QoS 1 PUBLISHes with ``window`` in flight."""

    def __init__(self, connect: bytes, packets: list[bytes], window: int, v5: bool) -> None:
        self.connect = connect
        self.packets = packets
        self.window = window
        self.v5 = v5
        self.buf = b""
        self.sent = 0
        self.acked = 0
        self.inflight: set[int] = set()
        loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[None] = loop.create_future()
        self.finished: asyncio.Future[float] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is no subclass of asyncio.Transport, only shaped like one.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.write(self.connect)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.connack, self.finished):
            if not fut.done():
                fut.set_exception(LoadError(f"connection lost after {self.acked} acks: {exc!r}"))

    def _fail(self, why: str) -> None:
        for fut in (self.connack, self.finished):
            if not fut.done():
                fut.set_exception(LoadError(why))
        if self.transport is not None:
            self.transport.close()

    def _send(self, k: int) -> None:
        start = self.sent
        end = min(start + k, len(self.packets))
        if end <= start:
            return
        for i in range(start, end):
            self.inflight.add(i % 65535 + 1)
        self.sent = end
        assert self.transport is not None
        self.transport.write(b"".join(self.packets[start:end]))

    def go(self) -> None:
        self._send(self.window)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        packets, used = split_packets(buf)
        self.buf = buf[used:]
        acks = 0
        inflight = self.inflight
        for first, start, end in packets:
            kind = first >> 4
            if kind == 4:  # PUBACK: packet id, then (MQTT 5) a reason code when not success
                pid = buf[start] << 8 | buf[start + 1]
                if end - start > 2 and buf[start + 2] >= 0x80:
                    return self._fail(f"PUBACK {pid} with reason 0x{buf[start + 2]:02x}")
                if pid not in inflight:
                    return self._fail(f"PUBACK for packet id {pid}, which is not in flight")
                inflight.discard(pid)
                acks += 1
            elif kind == 2:  # CONNACK
                if buf[start + 1] != 0:
                    return self._fail(f"CONNACK refused: 0x{buf[start + 1]:02x}")
                if not self.connack.done():
                    self.connack.set_result(None)
            elif kind == 14:  # DISCONNECT (MQTT 5)
                return self._fail("the broker disconnected us")
            elif kind != 13:  # PINGRESP is fine; nothing else is expected
                return self._fail(f"unexpected packet type {kind}")
        if acks:
            self.acked += acks
            if self.acked >= len(self.packets):
                if not self.finished.done():
                    self.finished.set_result(time.time())
            else:
                self._send(acks)


def _publish_packets(uid: str, messages: int, ts0: int, v5: bool) -> list[bytes]:
    topic = f"wattwatch/{uid}/telemetry"
    return [
        codec.publish(
            topic,
            b'{"ts":%d,"power_w":%d.5,"voltage_v":230.1}' % (ts0 + i * 1000, 100 + i),
            1,
            i % 65535 + 1,
            v5=v5,
        )
        for i in range(messages)
    ]


def generate(
    host: str,
    port: int,
    devices: list[Device],
    messages: int,
    window: int,
    v5: bool,
    ts0: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Connect ``devices``, signal ``ready``, wait for ``go``, publish, report."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        connecting = asyncio.Semaphore(64)
        clients: list[_Publisher] = []

        async def open_one(device: Device) -> None:
            uid, user, password = device
            client = _Publisher(
                connect_packet(uid, user, password, v5),
                _publish_packets(uid, messages, ts0, v5),
                window,
                v5,
            )
            async with connecting:
                await loop.create_connection(lambda: client, host, port)
                await client.connack
            clients.append(client)

        await asyncio.gather(*(open_one(d) for d in devices))
        ready.set()
        await asyncio.to_thread(go.wait)
        cpu0 = time.process_time()
        first = time.time()
        for client in clients:
            client.go()
        last = max(await asyncio.gather(*(c.finished for c in clients)))
        cpu = time.process_time() - cpu0
        for client in clients:
            assert client.transport is not None
            client.transport.close()
        return {
            "connected": len(clients),
            "acked": sum(c.acked for c in clients),
            "first_publish": first,
            "last_ack": last,
            "cpu_s": cpu,
        }

    try:
        import uvloop

        results.put(uvloop.run(main()))
    except BaseException as exc:
        results.put({"error": repr(exc)})
        raise


class _Subscriber(asyncio.Protocol):
    """A plain QoS 1 subscriber on ``wattwatch/+/telemetry``, acknowledging every PUBLISH."""

    def __init__(self, expected: int, v5: bool) -> None:
        self.expected = expected
        self.v5 = v5
        self.buf = b""
        self.got = 0
        self.last = 0.0
        loop = asyncio.get_running_loop()
        self.suback: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport is no subclass of asyncio.Transport, only shaped like one.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.write(connect_packet(f"sub-{os.getpid()}", None, None, self.v5))
        topic = b"wattwatch/+/telemetry"
        props = b"\x00" if self.v5 else b""
        body = b"\x00\x01" + props + len(topic).to_bytes(2, "big") + topic + b"\x01"
        transport.write(codec.frame(0x82, body))

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.suback, self.done):
            if not fut.done():
                fut.set_exception(LoadError(f"subscriber lost its connection: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        packets, used = split_packets(buf)
        self.buf = buf[used:]
        acks: list[bytes] = []
        got = 0
        for first, start, end in packets:
            kind = first >> 4
            if kind == 3:
                got += 1
                if first & 0x06:
                    tlen = buf[start] << 8 | buf[start + 1]
                    acks.append(b"\x40\x02" + buf[start + 2 + tlen : start + 4 + tlen])
            elif kind == 9 and not self.suback.done():  # SUBACK
                code = buf[end - 1]
                if code >= 0x80:
                    self.suback.set_exception(LoadError(f"SUBACK 0x{code:02x}"))
                else:
                    self.suback.set_result(None)
        if acks:
            assert self.transport is not None
            self.transport.write(b"".join(acks))
        if got:
            self.got += got
            self.last = time.time()
            if self.got >= self.expected and not self.done.done():
                self.done.set_result(None)


def subscribe(host: str, port: int, expected: int, v5: bool, ready: Any, results: Any) -> None:
    """A plain QoS 1 subscriber counting what the broker routes to it."""

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        sub = _Subscriber(expected, v5)
        await loop.create_connection(lambda: sub, host, port)
        await sub.suback
        ready.set()
        cpu0 = time.process_time()
        await sub.done
        return {"received": sub.got, "last": sub.last, "cpu_s": time.process_time() - cpu0}

    try:
        import uvloop

        results.put(uvloop.run(main()))
    except BaseException as exc:
        results.put({"error": repr(exc)})
        raise


# --- the systems under test --------------------------------------------------------------


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    cpu_s: float = 0.0  # CPU time of the system under test (broker, workers) meanwhile
    load_cpu_s: float = 0.0  # CPU time of the publishers and the subscriber meanwhile

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def per_cpu_s(self) -> float:
        """Messages per CPU-second: what one idle core would do, whatever else runs."""
        return self.messages / self.cpu_s if self.cpu_s else 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (all their threads), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


@dataclass
class Load:
    """What the load side saw: the publishers (all processes together) and the subscriber."""

    first_publish: float
    last_ack: float
    acked: int
    load_cpu_s: float  # CPU of the publisher and subscriber processes while publishing
    sut_cpu0: float  # CPU-s the system under test had used at the start signal
    received: int = 0
    last_received: float = 0.0


@dataclass(frozen=True)
class LoadShape:
    messages: int  # per device
    window: int
    publishers: int  # processes
    v5: bool


def run_load(
    host: str,
    port: int,
    devices: list[Device],
    shape: LoadShape,
    *,
    subscriber: bool,
    sut_pids: list[int],
) -> Load:
    ctx = mp.get_context("spawn")
    go, sub_ready = ctx.Event(), ctx.Event()
    results, sub_results = ctx.Queue(), ctx.Queue()
    sub = None
    if subscriber:
        sub = ctx.Process(
            target=subscribe,
            args=(host, port, len(devices) * shape.messages, shape.v5, sub_ready, sub_results),
        )
        sub.start()
        if not sub_ready.wait(30):
            raise RuntimeError("subscriber did not start")
    ts0 = int(time.time() * 1000) - shape.messages * 1000 - 60_000
    procs, readies = [], []
    n = max(1, min(shape.publishers, len(devices)))
    for k in range(n):
        ready = ctx.Event()
        proc = ctx.Process(
            target=generate,
            args=(
                host,
                port,
                devices[k::n],
                shape.messages,
                shape.window,
                shape.v5,
                ts0,
                ready,
                go,
                results,
            ),
        )
        proc.start()
        procs.append(proc)
        readies.append(ready)
    try:
        for ready in readies:
            if not ready.wait(300):
                raise RuntimeError(f"publishers did not connect: {results.get(timeout=5)}")
        sut_cpu0 = cpu_seconds(sut_pids)
        go.set()
        outs = [results.get(timeout=600) for _ in procs]
        errors = [o["error"] for o in outs if "error" in o]
        if errors:
            raise RuntimeError(errors[0])
        sub_out = sub_results.get(timeout=600) if sub is not None else None
        if sub_out is not None and "error" in sub_out:
            raise RuntimeError(sub_out["error"])
    finally:
        for proc in [*procs, *([sub] if sub is not None else [])]:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return Load(
        first_publish=min(o["first_publish"] for o in outs),
        last_ack=max(o["last_ack"] for o in outs),
        acked=sum(o["acked"] for o in outs),
        load_cpu_s=sum(o["cpu_s"] for o in outs) + (sub_out["cpu_s"] if sub_out else 0.0),
        sut_cpu0=sut_cpu0,
        received=sub_out["received"] if sub_out else 0,
        last_received=sub_out["last"] if sub_out else 0.0,
    )


def make_devices(settings_kw: dict[str, Any], n: int, prefix: str) -> list[Device]:
    from wattwatch.app import Wattwatch
    from wattwatch.cli import owner_principal
    from wattwatch.config import Settings

    if "data_dir" in settings_kw:
        Path(settings_kw["data_dir"]).mkdir(parents=True, exist_ok=True)
    ww = Wattwatch.open(Settings(**settings_kw), lock=False)
    try:
        ww.registry.bootstrap_owner()
        principal = owner_principal(ww)
        devices: list[Device] = []
        for i in range(n):
            uid = f"{prefix}{i}"
            _, token = ww.registry.create_device(principal, name=uid, site_id=None, uid=uid)
            devices.append((uid, uid, token))
        return devices
    finally:
        ww.close()


def count_readings(settings_kw: dict[str, Any]) -> int:
    from wattwatch.app import open_store
    from wattwatch.config import Settings

    store = open_store(Settings(**settings_kw), lock=False)
    try:
        return int(store.count_readings())
    finally:
        store.close()


def bench_embedded(n: int, shape: LoadShape, tmp: Path) -> Result:
    data = tmp / "embedded"
    kw = {"data_dir": data}
    devices = make_devices(kw, n, "emb-")
    srv = ServerProcess(data)
    srv.start()
    assert srv.proc is not None
    pids = [srv.proc.pid]
    try:
        load = run_load("127.0.0.1", srv.mqtt_port, devices, shape, subscriber=False, sut_pids=pids)
        cpu = cpu_seconds(pids) - load.sut_cpu0
    finally:
        srv.stop()
    stored = count_readings(kw)
    total = n * shape.messages
    assert load.acked == total, load
    assert stored == total, f"store has {stored} readings, expected {total}"
    return Result(
        "wattwatch embedded broker (publish → committed)",
        total,
        load.last_ack - load.first_publish,
        cpu,
        load.load_cpu_s,
    )


_AMQTT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, uvloop
    from amqtt.broker import Broker

    async def main():
        broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:%d"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                        {"allow_anonymous": True}},
        })
        await broker.start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())
    """
)


@contextlib.contextmanager
def process(cmd: list[str], ready_line: str | None = None, **kw: Any) -> Iterator[Any]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    try:
        assert proc.stdout is not None
        if ready_line is not None:
            for line in proc.stdout:
                if ready_line in line:
                    break
            else:
                raise RuntimeError(f"{cmd[0]} exited before it was ready")
        # Keep reading its output: a full pipe would stop the process mid-benchmark.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def bench_bare_amqtt(n: int, shape: LoadShape) -> Result:
    port = free_port()
    devices: list[Device] = [(f"bare-{i}", None, None) for i in range(n)]
    with process([sys.executable, "-c", _AMQTT_SCRIPT % port], "ready") as broker:
        pids = [broker.pid]
        load = run_load("127.0.0.1", port, devices, shape, subscriber=True, sut_pids=pids)
        cpu = cpu_seconds(pids) - load.sut_cpu0
    return Result(
        "bare amqtt routing (publisher → plain subscriber)",
        load.received,
        load.last_received - load.first_publish,
        cpu,
        load.load_cpu_s,
    )


def bench_bare_mosquitto(n: int, shape: LoadShape, tmp: Path) -> Result:
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / f"mosquitto-bare-{port}.conf"
    mosquitto_conf(port, conf)
    devices: list[Device] = [(f"mbare-{i}", None, None) for i in range(n)]
    with process([mosq, "-c", str(conf)]) as broker:
        wait_port(port)
        pids = [broker.pid]
        load = run_load("127.0.0.1", port, devices, shape, subscriber=True, sut_pids=pids)
        cpu = cpu_seconds(pids) - load.sut_cpu0
    return Result(
        "bare Mosquitto routing (publisher → plain subscriber)",
        load.received,
        load.last_received - load.first_publish,
        cpu,
        load.load_cpu_s,
    )


def mosquitto_conf(port: int, path: Path) -> None:
    path.write_text(
        textwrap.dedent(
            f"""
            listener {port} 127.0.0.1
            allow_anonymous true
            persistence false
            max_queued_messages 1000000
            max_inflight_messages 0
            """
        )
    )


def bench_mosquitto(
    n: int, shape: LoadShape, workers: int, tmp: Path, pg_url: str | None
) -> Result:
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / f"mosquitto-{port}.conf"
    mosquitto_conf(port, conf)
    group = f"bench{uuid.uuid4().hex[:8]}"
    dbname = None
    if workers == 1 and pg_url is None:
        kw: dict[str, Any] = {"data_dir": tmp / f"worker-{port}"}
        store_args = ["--data-dir", str(kw["data_dir"])]
    else:
        if pg_url is None:
            raise SystemExit("more than one worker needs PostgreSQL: give --pg-url")
        dbname = f"wwbench_{uuid.uuid4().hex[:8]}"
        _pg_admin(pg_url, f"CREATE DATABASE {dbname}")
        url = pg_url.rsplit("/", 1)[0] + "/" + dbname
        kw = {"database_url": url}
        store_args = ["--database-url", url]
    try:
        devices = make_devices(kw, n, f"m{port}-")
        total = n * shape.messages
        env = {**os.environ, "WATTWATCH_LOG_LEVEL": "warning"}
        with contextlib.ExitStack() as stack:
            pids = [stack.enter_context(process([mosq, "-c", str(conf)])).pid]
            wait_port(port)
            for w in range(workers):
                worker = stack.enter_context(
                    process(
                        [
                            sys.executable,
                            "-m",
                            "wattwatch",
                            "worker",
                            "--broker-url",
                            f"mqtt://127.0.0.1:{port}",
                            "--worker-id",
                            f"{group}-{w}",
                            "--share-group",
                            group,
                            *store_args,
                        ],
                        "worker",
                        env=env,
                    )
                )
                pids.append(worker.pid)
            time.sleep(1.0)  # subscriptions in place
            from wattwatch.app import open_store
            from wattwatch.config import Settings

            store = open_store(Settings(**kw), lock=False)
            try:
                load = run_load("127.0.0.1", port, devices, shape, subscriber=False, sut_pids=pids)
                deadline = time.monotonic() + 600
                stored = 0
                while time.monotonic() < deadline:
                    stored = int(store.count_readings())
                    if stored >= total:
                        break
                    time.sleep(0.02)
                done = time.time()
                cpu = cpu_seconds(pids) - load.sut_cpu0
            finally:
                store.close()
        assert stored == total, f"store has {stored} readings, expected {total}"
        backend = "SQLite" if dbname is None else "PostgreSQL"
        return Result(
            f"Mosquitto + {workers} worker{'s' if workers > 1 else ''} ({backend}, → committed)",
            total,
            done - load.first_publish,
            cpu,
            load.load_cpu_s,
        )
    finally:
        if dbname is not None:
            _pg_admin(pg_url or "", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute(sql)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=50, help="per device")
    ap.add_argument("--window", type=int, default=4, help="QoS 1 messages in flight per device")
    ap.add_argument(
        "--publishers", type=int, default=2, help="publisher processes (devices dealt out)"
    )
    ap.add_argument("--mqtt", choices=["3.1.1", "5"], default="3.1.1", help="protocol version")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument(
        "--worker-store",
        choices=["auto", "postgresql"],
        default="auto",
        help="auto: SQLite for one worker (it owns the data dir), PostgreSQL for more",
    )
    ap.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["embedded", "bare", "mosquitto", "workers"],
        help="bare: stock amqtt; mosquitto: bare Mosquitto; workers: Mosquitto + workers",
    )
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    n, m = args.devices, args.messages
    shape = LoadShape(m, args.window, args.publishers, args.mqtt == "5")
    print(
        f"{n:,} device connections × {m} single-reading QoS 1 messages = {n * m:,} messages, "
        f"MQTT {args.mqtt}, {args.window} in flight per connection, {args.publishers} publisher "
        f"processes; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start "
        "(other processes share the CPUs)"
    )
    results: list[Result] = []

    def done(r: Result) -> None:
        results.append(r)
        print(f"  {r.name}: {r.rate:,.0f}/s (load average {os.getloadavg()[0]:.1f})", flush=True)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "embedded" not in args.skip:
            done(bench_embedded(n, shape, tmp))
        if "bare" not in args.skip:
            done(bench_bare_amqtt(n, shape))
        if "mosquitto" not in args.skip:
            done(bench_bare_mosquitto(n, shape, tmp))
        if "workers" not in args.skip:
            for w in args.workers:
                pg = None if w == 1 and args.worker_store == "auto" else args.pg_url
                done(bench_mosquitto(n, shape, w, tmp, pg))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"{'system':<58} {'messages':>9} {'seconds':>8} {'msg/s':>9} {'CPU s':>7} "
        f"{'msg/CPU-s':>10} {'load CPU s':>10}"
    )
    for r in results:
        print(
            f"{r.name:<58} {r.messages:>9,} {r.seconds:>8.2f} {r.rate:>9,.0f} {r.cpu_s:>7.1f} "
            f"{r.per_cpu_s:>10,.0f} {r.load_cpu_s:>10.1f}"
        )
    print(
        "(CPU s: broker / server / worker and Mosquitto processes, all threads, meanwhile; "
        "load CPU s: the publisher and subscriber processes)"
    )
    by_name = {r.name.split(" (")[0]: r for r in results}
    emb = by_name.get("wattwatch embedded broker")
    bare = by_name.get("bare amqtt routing")
    if emb and bare:
        print(
            f"\nembedded ingest / bare amqtt routing: {emb.rate / bare.rate:.2f}× by wall "
            f"clock, {emb.per_cpu_s / bare.per_cpu_s:.2f}× per CPU-second"
        )
    mosq = by_name.get("bare Mosquitto routing")
    if mosq:
        for r in results:
            if r.name.startswith("Mosquitto + "):
                print(
                    f"{r.name.split(' (')[0]} / bare Mosquitto routing: "
                    f"{r.rate / mosq.rate:.2f}× by wall clock"
                )


if __name__ == "__main__":
    main()
