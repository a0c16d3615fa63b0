"""MQTT ingest benchmark: single-reading QoS 1 messages from many device connections.

Measured in one run, with the same publishers (one asyncio process, one TCP connection per
device, each keeping ``--window`` messages in flight):

1. wattwatch embedded broker (``wattwatch serve``): devices authenticate with uid/token and
   publish ``wattwatch/<uid>/telemetry``; the broker acknowledges a message only after its
   reading is committed, so first PUBLISH → last PUBACK is publish → committed. The store is
   counted afterwards.
2. bare routing of the brokers: a stock ``amqtt.broker.Broker`` (anonymous, on uvloop like
   serve), and Mosquitto; the same publishers, one plain QoS 1 subscriber on
   ``wattwatch/+/telemetry``: first PUBLISH → last message received by the subscriber.
3. Mosquitto + W ``wattwatch worker`` processes (shared subscription, manual ack after
   commit): a private Mosquitto on a free port (the tuned configuration of docs/scale-out.md),
   first PUBLISH → the store holds every reading. One worker uses SQLite (it owns the data
   dir); more need PostgreSQL (``--pg-url``).

Usage: python bench/mqtt.py [--devices 1000] [--messages 20] [--workers 1 2]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import ServerProcess, free_port

from wattwatch.broker import codec

Device = tuple[str, str | None, str | None]  # client id = uid, user, password


# --- load generator (its own process) ---------------------------------------------------


def connect_packet(client_id: str, user: str | None, password: str | None) -> bytes:
    flags = 0x02
    payload = len(client_id.encode()).to_bytes(2, "big") + client_id.encode()
    if user is not None:
        flags |= 0x80
        payload += len(user.encode()).to_bytes(2, "big") + user.encode()
    if password is not None:
        flags |= 0x40
        payload += len(password.encode()).to_bytes(2, "big") + password.encode()
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + (600).to_bytes(2, "big") + payload
    return codec.frame(0x10, body)


async def _publisher(
    host: str,
    port: int,
    device: Device,
    messages: int,
    window: int,
    ts0: int,
    gate: asyncio.Event,
    connecting: asyncio.Semaphore,
    out: dict[str, Any],
) -> None:
    uid, user, password = device
    async with connecting:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(connect_packet(uid, user, password))
        connack = await reader.readexactly(4)
    if connack[3] != 0:
        raise RuntimeError(f"{uid}: CONNACK {connack[3]}")
    out["connected"] += 1
    await gate.wait()
    topic = f"wattwatch/{uid}/telemetry"
    sent = acked = 0

    def publish(i: int) -> bytes:
        payload = b'{"ts":%d,"power_w":%d.5,"voltage_v":230.1}' % (ts0 + i * 1000, 100 + i)
        return codec.publish(topic, payload, 1, i % 65535 + 1)

    while sent < min(window, messages):
        writer.write(publish(sent))
        sent += 1
    while acked < messages:
        ack = await reader.readexactly(4)
        if ack[0] != 0x40:
            raise RuntimeError(f"{uid}: expected PUBACK, got packet 0x{ack[0]:02x}")
        acked += 1
        if sent < messages:
            writer.write(publish(sent))
            sent += 1
    out["acked"] += acked
    out["last_ack"] = max(out["last_ack"], time.time())
    writer.close()


def generate(
    host: str,
    port: int,
    devices: list[Device],
    messages: int,
    window: int,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """Connect every device, signal ``ready``, wait for ``go``, publish, report."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"connected": 0, "acked": 0, "last_ack": 0.0}
        gate = asyncio.Event()
        connecting = asyncio.Semaphore(64)
        ts0 = int(time.time() * 1000) - messages * 1000 - 60_000
        tasks = [
            asyncio.create_task(
                _publisher(host, port, d, messages, window, ts0, gate, connecting, out)
            )
            for d in devices
        ]
        while out["connected"] < len(devices):
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
            await asyncio.sleep(0.05)
        ready.set()
        await asyncio.to_thread(go.wait)
        out["first_publish"] = time.time()
        cpu0 = time.process_time()
        gate.set()
        await asyncio.gather(*tasks)
        out["cpu_s"] = time.process_time() - cpu0
        return out

    try:
        import uvloop

        results.put(uvloop.run(main()))
    except BaseException as exc:
        results.put({"error": repr(exc)})
        raise


def subscribe(host: str, port: int, expected: int, ready: Any, results: Any) -> None:
    """A plain QoS 1 subscriber counting what the broker routes to it."""

    async def main() -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(connect_packet(f"sub-{os.getpid()}", None, None))
        await reader.readexactly(4)
        topic = b"wattwatch/+/telemetry"
        body = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x01"
        writer.write(codec.frame(0x82, body))
        await reader.readexactly(5)  # SUBACK
        ready.set()
        got = 0
        last = 0.0
        while got < expected:
            first, packet = await codec.read_packet(_Reader(reader), 1 << 20)
            if first >> 4 != codec.PUBLISH:
                continue
            got += 1
            last = time.time()
            qos = (first >> 1) & 3
            if qos:
                tlen = int.from_bytes(packet[:2], "big")
                pid = packet[2 + tlen : 4 + tlen]
                writer.write(b"\x40\x02" + pid)
        return {"received": got, "last": last}

    import uvloop

    results.put(uvloop.run(main()))


class _Reader:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    async def read(self, n: int = -1) -> bytes:
        return await self.reader.readexactly(n)


# --- the systems under test --------------------------------------------------------------


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    cpu_s: float = 0.0  # CPU time of the system under test (broker, workers) meanwhile

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


def run_load(
    host: str,
    port: int,
    devices: list[Device],
    messages: int,
    window: int,
    subscriber: bool,
    pids: list[int] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, float]:
    ctx = mp.get_context("spawn")
    ready, go, sub_ready = ctx.Event(), ctx.Event(), ctx.Event()
    results, sub_results = ctx.Queue(), ctx.Queue()
    sub = None
    if subscriber:
        sub = ctx.Process(
            target=subscribe, args=(host, port, len(devices) * messages, sub_ready, sub_results)
        )
        sub.start()
        if not sub_ready.wait(30):
            raise RuntimeError("subscriber did not start")
    gen = ctx.Process(
        target=generate, args=(host, port, devices, messages, window, ready, go, results)
    )
    gen.start()
    if not ready.wait(300):
        raise RuntimeError(f"publishers did not connect: {results.get(timeout=5)}")
    if pids is not None:
        pids.append(-int(cpu_seconds(pids) * 1000))  # CPU ms at the start, read by the caller
    go.set()
    out = results.get(timeout=600)
    if "error" in out:
        raise RuntimeError(out["error"])
    gen.join()
    sub_out = sub_results.get(timeout=600) if sub is not None else None
    if sub is not None:
        sub.join()
    return out, sub_out, out["first_publish"]


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


def bench_embedded(n: int, messages: int, window: int, tmp: Path) -> Result:
    data = tmp / "embedded"
    kw = {"data_dir": data}
    devices = make_devices(kw, n, "emb-")
    srv = ServerProcess(data)
    srv.start()
    assert srv.proc is not None
    pids = [srv.proc.pid]
    try:
        out, _, first = run_load("127.0.0.1", srv.mqtt_port, devices, messages, window, False, pids)
        cpu = cpu_seconds(pids[:1]) + pids[1] / 1000
    finally:
        srv.stop()
    stored = count_readings(kw)
    total = n * messages
    assert out["acked"] == total, out
    assert stored == total, f"store has {stored} readings, expected {total}"
    return Result(
        "wattwatch embedded broker (publish → committed)", total, out["last_ack"] - first, cpu
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


def bench_bare_amqtt(n: int, messages: int, window: int) -> Result:
    port = free_port()
    devices: list[Device] = [(f"bare-{i}", None, None) for i in range(n)]
    with process([sys.executable, "-c", _AMQTT_SCRIPT % port], "ready") as broker:
        pids = [broker.pid]
        _, sub, first = run_load("127.0.0.1", port, devices, messages, window, True, pids)
        cpu = cpu_seconds(pids[:1]) + pids[1] / 1000
    assert sub is not None
    return Result(
        "bare amqtt routing (publisher → plain subscriber)",
        sub["received"],
        sub["last"] - first,
        cpu,
    )


def bench_bare_mosquitto(n: int, messages: int, window: int, tmp: Path) -> Result:
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / f"mosquitto-bare-{port}.conf"
    mosquitto_conf(port, conf)
    devices: list[Device] = [(f"mbare-{i}", None, None) for i in range(n)]
    with process([mosq, "-c", str(conf)]) as broker:
        wait_port(port)
        pids = [broker.pid]
        _, sub, first = run_load("127.0.0.1", port, devices, messages, window, True, pids)
        cpu = cpu_seconds(pids[:1]) + pids[1] / 1000
    assert sub is not None
    return Result(
        "bare Mosquitto routing (publisher → plain subscriber)",
        sub["received"],
        sub["last"] - first,
        cpu,
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
    n: int, messages: int, window: int, workers: int, tmp: Path, pg_url: str | None
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
        total = n * messages
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
                _, _, first = run_load("127.0.0.1", port, devices, messages, window, False, pids)
                deadline = time.monotonic() + 600
                stored = 0
                while time.monotonic() < deadline:
                    stored = int(store.count_readings())
                    if stored >= total:
                        break
                    time.sleep(0.02)
                done = time.time()
                cpu = cpu_seconds(pids[:-1]) + pids[-1] / 1000
            finally:
                store.close()
        assert stored == total, f"store has {stored} readings, expected {total}"
        backend = "SQLite" if dbname is None else "PostgreSQL"
        return Result(
            f"Mosquitto + {workers} worker{'s' if workers > 1 else ''} ({backend}, → committed)",
            total,
            done - first,
            cpu,
        )
    finally:
        if dbname is not None:
            _pg_admin(pg_url or "", f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute(sql)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=20, help="per device")
    ap.add_argument("--window", type=int, default=4, help="QoS 1 messages in flight per device")
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument(
        "--worker-store",
        choices=["auto", "postgresql"],
        default="auto",
        help="auto: SQLite for one worker (it owns the data dir), PostgreSQL for more",
    )
    ap.add_argument("--skip", nargs="*", default=[], choices=["embedded", "bare", "mosquitto"])
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    n, m = args.devices, args.messages
    print(
        f"{n:,} device connections × {m} single-reading QoS 1 messages = {n * m:,} messages, "
        f"{args.window} in flight per connection; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start (other processes share the CPUs)"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "embedded" not in args.skip:
            results.append(bench_embedded(n, m, args.window, tmp))
            print(f"  {results[-1].name}: {results[-1].rate:,.0f}/s", flush=True)
        if "bare" not in args.skip:
            results.append(bench_bare_amqtt(n, m, args.window))
            print(f"  {results[-1].name}: {results[-1].rate:,.0f}/s", flush=True)
        if "mosquitto" not in args.skip:
            results.append(bench_bare_mosquitto(n, m, args.window, tmp))
            print(f"  {results[-1].name}: {results[-1].rate:,.0f}/s", flush=True)
            for w in args.workers:
                pg = None if w == 1 and args.worker_store == "auto" else args.pg_url
                results.append(bench_mosquitto(n, m, args.window, w, tmp, pg))
                print(f"  {results[-1].name}: {results[-1].rate:,.0f}/s", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    print(
        f"{'system':<58} {'messages':>9} {'seconds':>8} {'msg/s':>9} {'CPU s':>7} {'msg/CPU-s':>10}"
    )
    for r in results:
        print(
            f"{r.name:<58} {r.messages:>9,} {r.seconds:>8.2f} {r.rate:>9,.0f} {r.cpu_s:>7.1f} "
            f"{r.per_cpu_s:>10,.0f}"
        )
    print("(CPU s: broker / server / worker and Mosquitto processes, all threads, meanwhile)")
    by_name = {r.name.split(" (")[0]: r for r in results}
    emb = by_name.get("wattwatch embedded broker")
    bare = by_name.get("bare amqtt routing")
    if emb and bare:
        print(
            f"\nembedded ingest / bare amqtt routing: {emb.rate / bare.rate:.2f}× by wall "
            f"clock, {emb.per_cpu_s / bare.per_cpu_s:.2f}× per CPU-second"
        )


if __name__ == "__main__":
    main()
