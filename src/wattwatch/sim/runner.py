"""Driving simulated devices against a running wattwatch: live, sped up, or backfilling history.

The :class:`Runner` owns a clock and a set of :class:`~wattwatch.sim.provision.SimDevice`.
Every tick it asks each device for what it reported since its previous tick and hands that
to the device's transport:

- :class:`HttpSender`: ``POST /api/v1/telemetry`` JSON batches with the device token (the
  offline-first uploader's path, and every device's path for history: only a batch carries
  its readings' own timestamps for every protocol);
- :class:`MqttSender`: one paho-mqtt connection per device speaking its own protocol
  (native, ThingsBoard, Tasmota, Shelly; credentials per DESIGN.md §4), QoS 1 publishes
  that count only once the broker acknowledges them, and plugs that obey on/off commands
  and answer them as their firmware does. Devices whose protocol is ``http`` use HTTP.

Time: with ``speed`` 1 devices report at the wall clock. With ``speed`` S > 1 simulated
time runs S times faster from ``start_ms`` until it reaches the present, then goes on at
the wall clock (a reading from the future would be refused). Tasmota and Shelly messages
carry no usable timestamp, so the server stamps them on receipt: sped up, they still
measure throughput but not history. ``max_readings_per_s`` caps the send rate (a load
generator's rate control).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson

from wattwatch.domain import CommandAction, DeviceProtocol
from wattwatch.errors import RemoteError
from wattwatch.protocols import MAX_ITEMS
from wattwatch.sim import payloads
from wattwatch.sim.collector import retry_after_s
from wattwatch.sim.provision import SimDevice
from wattwatch.sim.site import Columns, to_readings

log = logging.getLogger(__name__)

# Readings per HTTP batch: big enough to amortise a request, small enough to commit quickly.
HTTP_BATCH_READINGS: Final = 5_000
# Items per native/ThingsBoard MQTT message (the server refuses more than MAX_ITEMS).
MQTT_BATCH_ITEMS: Final = min(500, MAX_ITEMS)
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
# Their messages carry no usable time: the server stamps each reading when it arrives.
_STAMPED_ON_RECEIPT: Final = frozenset({DeviceProtocol.TASMOTA, DeviceProtocol.SHELLY})


@dataclass
class RunStats:
    """Counters of one run (readings as sent; the server's verdicts where it gives them)."""

    readings: int = 0
    messages: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: int = 0
    commands: int = 0
    started: float = field(default_factory=time.monotonic)
    last_error: str | None = None

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def readings_per_s(self) -> float:
        s = self.seconds
        return self.readings / s if s > 0 else 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message

    def to_json(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "messages": self.messages,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors,
            "commands": self.commands,
            "seconds": round(self.seconds, 3),
            "readings_per_s": round(self.readings_per_s, 1),
            "last_error": self.last_error,
        }


def json_batch(columns: Columns, start: int = 0, stop: int | None = None) -> bytes:
    """Rows ``start:stop`` of generated columns as the JSON array body of a batch upload."""
    keys = ["ts" if k == "ts_ms" else k for k in columns]
    lists = [columns[k][start:stop].tolist() for k in columns]
    return orjson.dumps([dict(zip(keys, row, strict=True)) for row in zip(*lists, strict=True)])


class RateLimit:
    """A token bucket of readings per second (None: unlimited)."""

    def __init__(self, per_s: float | None) -> None:
        self.per_s = per_s
        self._allowance = 0.0
        self._at = time.monotonic()

    async def take(self, n: int) -> None:
        if not self.per_s:
            return
        now = time.monotonic()
        self._allowance = min(self.per_s, self._allowance + (now - self._at) * self.per_s)
        self._at = now
        self._allowance -= n
        if self._allowance < 0:
            await asyncio.sleep(-self._allowance / self.per_s)


# -- HTTP ----------------------------------------------------------------------------------------


class HttpSender:
    """Batch uploads over ``connections`` pooled HTTP connections, retried on 5xx/timeouts."""

    def __init__(
        self,
        url: str,
        *,
        connections: int = 16,
        batch_readings: int = HTTP_BATCH_READINGS,
        timeout_s: float = 120.0,
        retries: int = 5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.closing = False  # set when stopping: failed uploads are not retried
        self.batch_readings = batch_readings
        self.retries = retries
        self.connections = connections
        self._slots = asyncio.Semaphore(connections)
        self.client = httpx.AsyncClient(
            base_url=self.url,
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            transport=transport,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, dev: SimDevice, columns: Columns, stats: RunStats) -> None:
        """Upload everything in ``columns`` (several batches if needed, concurrently)."""
        n = int(columns["ts_ms"].size)
        step = self.batch_readings
        await asyncio.gather(
            *(self.post(dev, json_batch(columns, i, i + step), stats) for i in range(0, n, step))
        )

    async def post(self, dev: SimDevice, body: bytes, stats: RunStats) -> dict[str, Any] | None:
        """One batch; answers the server's ``{accepted, duplicates, rejected}`` (None: failed)."""
        if not dev.token:
            raise RemoteError(f"{dev.uid} has no device token: provision it first")
        headers = {"Authorization": f"Bearer {dev.token}", "Content-Type": "application/json"}
        delay = 0.2
        async with self._slots:
            for attempt in range(self.retries + 1):
                if attempt and self.closing:
                    break
                try:
                    r = await self.client.post("/api/v1/telemetry", content=body, headers=headers)
                except httpx.HTTPError as exc:
                    problem = f"{dev.uid}: upload failed: {exc!r}"
                else:
                    if r.status_code < 300:
                        answer: dict[str, Any] = r.json()
                        stats.messages += 1
                        stats.accepted += answer["accepted"]
                        stats.duplicates += answer["duplicates"]
                        stats.rejected += len(answer["rejected"])
                        if answer["rejected"]:
                            stats.error(f"{dev.uid}: rejected: {answer['rejected'][0]['reason']}")
                        return answer
                    problem = f"{dev.uid}: upload answered HTTP {r.status_code}: {r.text[:200]}"
                    if r.status_code not in _RETRY_STATUS:
                        stats.error(problem)
                        if r.status_code in (401, 403):
                            raise RemoteError(problem)
                        return None
                    told = retry_after_s(r)  # 429 (the device's rate limit) says when
                    if told > delay:
                        delay = told
                if attempt < self.retries and not self.closing:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            stats.error(problem)
            return None


# -- MQTT ----------------------------------------------------------------------------------------


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RemoteError("MQTT devices need paho-mqtt: pip install 'paho-mqtt>=2.0'") from exc
    return mqtt


class MqttDevice:
    """One device's MQTT connection, driven by the asyncio loop (paho's external-loop API:
    the loop watches the socket; no thread per connection, so thousands fit in one process)."""

    def __init__(
        self,
        dev: SimDevice,
        host: str,
        port: int,
        *,
        keepalive_s: int = 60,
        on_command: Callable[[MqttDevice, str, bytes], None] | None = None,
    ) -> None:
        mqtt = _paho()
        self.mqtt = mqtt
        self.dev = dev
        self.host = host
        self.port = port
        self.keepalive_s = keepalive_s
        self.on_command = on_command
        self.loop = asyncio.get_running_loop()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=dev.uid,  # the broker binds native devices to their uid
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if dev.protocol == DeviceProtocol.THINGSBOARD:
            self.client.username_pw_set(dev.token)
        else:
            self.client.username_pw_set(dev.uid, dev.token)
        will = offline_message(dev)
        if will is not None:
            self.client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_socket_open = self._on_socket_open
        self.client.on_socket_close = self._on_socket_close
        self.client.on_socket_register_write = self._on_register_write
        self.client.on_socket_unregister_write = self._on_unregister_write
        self._connected: asyncio.Future[int] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._misc: asyncio.Task[None] | None = None
        self._closing = False
        self.is_connected = False

    # paho's external event loop hooks: read/write when the socket is ready, misc each second.
    def _on_socket_open(self, client: Any, _userdata: Any, sock: socket.socket) -> None:
        self.loop.add_reader(sock, client.loop_read)
        self._misc = self.loop.create_task(self._misc_loop())

    def _on_socket_close(self, _client: Any, _userdata: Any, sock: socket.socket) -> None:
        self.loop.remove_reader(sock)
        if self._misc is not None:
            self._misc.cancel()

    def _on_register_write(self, client: Any, _userdata: Any, sock: socket.socket) -> None:
        self.loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, _client: Any, _userdata: Any, sock: socket.socket) -> None:
        self.loop.remove_writer(sock)

    async def _misc_loop(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while self.client.loop_misc() == self.mqtt.MQTT_ERR_SUCCESS:
                await asyncio.sleep(1.0)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(int(reason.value))
        self.is_connected = not reason.is_failure

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.is_connected = False
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(int(reason.value) or 1)
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(RemoteError(f"{self.dev.uid}: disconnected ({reason})"))
        self._acks.clear()

    def _on_publish(self, _c: Any, _u: Any, mid: int, _reason: Any, _props: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if self.on_command is not None:
            try:
                self.on_command(self, msg.topic, bytes(msg.payload))
            except Exception:  # a bad command must not kill the connection
                log.exception("%s: command on %s failed", self.dev.uid, msg.topic)

    async def connect(self, timeout_s: float = 10.0) -> None:
        self._connected = self.loop.create_future()
        # In the loop's thread: paho registers the socket with the loop from inside connect().
        # The TCP connect blocks at most ``connect_timeout`` (a LAN broker answers at once).
        try:
            self.client.connect(self.host, self.port, self.keepalive_s)
        except OSError as exc:
            raise RemoteError(
                f"{self.dev.uid}: cannot reach MQTT {self.host}:{self.port}: {exc}"
            ) from None
        try:
            code = await asyncio.wait_for(self._connected, timeout_s)
        except TimeoutError:
            self.client.disconnect()
            raise RemoteError(f"{self.dev.uid}: no CONNACK from {self.host}:{self.port}") from None
        if code != 0:
            raise RemoteError(f"{self.dev.uid}: MQTT connection refused (reason {code})")
        topics = command_topics(self.dev)
        if topics:
            self.client.subscribe([(t, 1) for t in topics])

    async def publish(self, msg: payloads.Publish, qos: int = 1, timeout_s: float = 60.0) -> None:
        """Publish; with QoS 1, return once the broker acknowledged (committed) it."""
        info = self.client.publish(msg.topic, msg.payload, qos=qos, retain=msg.retain)
        if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
            raise RemoteError(f"{self.dev.uid}: publish failed: {self.mqtt.error_string(info.rc)}")
        if qos == 0:
            return
        if info.is_published():
            return
        fut = self.loop.create_future()
        self._acks[info.mid] = fut
        try:
            await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            self._acks.pop(info.mid, None)
            raise RemoteError(f"{self.dev.uid}: no PUBACK within {timeout_s:g} s") from None

    async def publish_many(
        self, msgs: Sequence[payloads.Publish], qos: int = 1, timeout_s: float = 60.0
    ) -> None:
        """Publish in order without waiting in between (the broker may commit them together);
        return once every one is acknowledged."""
        pending: list[asyncio.Future[None]] = []
        for msg in msgs:
            info = self.client.publish(msg.topic, msg.payload, qos=qos, retain=msg.retain)
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                raise RemoteError(
                    f"{self.dev.uid}: publish failed: {self.mqtt.error_string(info.rc)}"
                )
            if qos and not info.is_published():
                fut = self.loop.create_future()
                self._acks[info.mid] = fut
                pending.append(fut)
        if not pending:
            return
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*pending, return_exceptions=True), timeout_s
            )
        except TimeoutError:
            raise RemoteError(f"{self.dev.uid}: no PUBACK within {timeout_s:g} s") from None
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def publish_nowait(self, msg: payloads.Publish, qos: int = 1) -> None:
        self.client.publish(msg.topic, msg.payload, qos=qos, retain=msg.retain)

    async def reconnect(self) -> None:
        self._connected = self.loop.create_future()
        self.client.reconnect()
        code = await asyncio.wait_for(self._connected, 10.0)
        if code != 0:
            raise RemoteError(f"{self.dev.uid}: MQTT connection refused (reason {code})")
        topics = command_topics(self.dev)
        if topics:
            self.client.subscribe([(t, 1) for t in topics])

    async def close(self, *, clean: bool = True) -> None:
        self._closing = True
        if self.is_connected:
            if clean:
                goodbye = offline_message(self.dev)
                if goodbye is not None:
                    with contextlib.suppress(RemoteError):
                        await self.publish(goodbye, timeout_s=5.0)
            self.client.disconnect()
            # Let the DISCONNECT go out and the socket close in the loop.
            for _ in range(50):
                if self.client.socket() is None:
                    break
                await asyncio.sleep(0.02)
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock)
                self.loop.remove_writer(sock)
            sock.close()
        if self._misc is not None:
            self._misc.cancel()


def command_topics(dev: SimDevice) -> list[str]:
    """What a device subscribes to for commands (every firmware listens, relay or not)."""
    p = dev.protocol
    if p == DeviceProtocol.NATIVE:
        return [f"wattwatch/{dev.uid}/command"]
    if p == DeviceProtocol.TASMOTA:
        return [f"cmnd/{dev.address}/#"]
    if p == DeviceProtocol.SHELLY:
        return [f"{dev.address}/rpc"]
    if p == DeviceProtocol.THINGSBOARD:
        return ["v1/devices/me/rpc/request/+"]
    return []


def online_message(dev: SimDevice) -> payloads.Publish | None:
    p = dev.protocol
    if p == DeviceProtocol.NATIVE:
        return payloads.encode_native_status(dev.uid, True, firmware="sim-1.0")
    if p == DeviceProtocol.TASMOTA:
        return payloads.encode_tasmota_lwt(dev.address, True)
    if p == DeviceProtocol.SHELLY:
        return payloads.encode_shelly_online(dev.address, True)
    return None


def offline_message(dev: SimDevice) -> payloads.Publish | None:
    p = dev.protocol
    if p == DeviceProtocol.NATIVE:
        return payloads.encode_native_status(dev.uid, False)
    if p == DeviceProtocol.TASMOTA:
        return payloads.encode_tasmota_lwt(dev.address, False)
    if p == DeviceProtocol.SHELLY:
        return payloads.encode_shelly_online(dev.address, False)
    return None


def answer_command(dev: SimDevice, topic: str, payload: bytes) -> list[payloads.Publish]:
    """Carry out a command as the device's firmware would and return its answer messages.

    Plugs switch their relay (the appliance behind stops drawing power); meters without a
    relay answer with their protocol's error. Unknown topics and garbage get no answer.
    """
    proto = dev.protocol
    try:
        if proto == DeviceProtocol.NATIVE:
            return _native_command(dev, payload)
        if proto == DeviceProtocol.TASMOTA:
            return _tasmota_command(dev, topic, payload)
        if proto == DeviceProtocol.SHELLY:
            return _shelly_command(dev, payload)
        if proto == DeviceProtocol.THINGSBOARD:
            return _thingsboard_command(dev, topic, payload)
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        return []
    return []


def _relay(dev: SimDevice) -> str:
    return dev.spec.channels[0].appliances[0]


def _switch(dev: SimDevice, action: CommandAction) -> int:
    """Apply ``action`` to a plug's relay; returns the new state (1 = on)."""
    appliance = _relay(dev)
    on = {CommandAction.ON: True, CommandAction.OFF: False}.get(
        action, not dev.site.relay_on(appliance)
    )
    dev.site.set_relay(appliance, on)
    return int(on)


def _native_command(dev: SimDevice, payload: bytes) -> list[payloads.Publish]:
    body = orjson.loads(payload)
    cid = body.get("id")
    reply = f"wattwatch/{dev.uid}/command/result"
    if not dev.has_relay:
        answer: dict[str, Any] = {"id": cid, "ok": False, "error": "this device has no relay"}
    else:
        answer = {"id": cid, "ok": True, "state": _switch(dev, CommandAction(body["action"]))}
    return [payloads.Publish(reply, orjson.dumps(answer))]


_TASMOTA_ACTIONS: Final = {
    "ON": CommandAction.ON,
    "1": CommandAction.ON,
    "OFF": CommandAction.OFF,
    "0": CommandAction.OFF,
    "TOGGLE": CommandAction.TOGGLE,
    "2": CommandAction.TOGGLE,
}


def _tasmota_command(dev: SimDevice, topic: str, payload: bytes) -> list[payloads.Publish]:
    command = topic.rsplit("/", 1)[-1].upper()
    base = f"stat/{dev.address}"
    if command not in ("POWER", "POWER1") or not dev.has_relay:
        return [payloads.Publish(f"{base}/RESULT", b'{"Command":"Unknown"}')]
    text = payload.decode(errors="replace").strip().upper()
    if text:
        action = _TASMOTA_ACTIONS.get(text)
        if action is None:
            return [payloads.Publish(f"{base}/RESULT", b'{"Command":"Error"}')]
        state = _switch(dev, action)
    else:  # an empty POWER is a query
        state = int(dev.site.relay_on(_relay(dev)))
    word = b"ON" if state else b"OFF"
    return [
        payloads.Publish(f"{base}/RESULT", b'{"POWER":"' + word + b'"}'),
        payloads.Publish(f"{base}/POWER", word),
    ]


def _shelly_command(dev: SimDevice, payload: bytes) -> list[payloads.Publish]:
    frame = orjson.loads(payload)
    rid, src = frame["id"], str(frame.get("src") or "wattwatch")
    head = {"id": rid, "src": dev.address, "dst": src}
    method = frame.get("method")
    params = frame.get("params") or {}
    if not dev.has_relay or method not in ("Switch.Set", "Switch.Toggle", "Switch.GetStatus"):
        err = {"code": -114 if dev.has_relay else -105, "message": f"no handler for {method}"}
        return [payloads.Publish(f"{src}/rpc", orjson.dumps({**head, "error": err}))]
    if params.get("id", 0) != 0:
        err = {"code": -103, "message": "Invalid argument 'id': no such component"}
        return [payloads.Publish(f"{src}/rpc", orjson.dumps({**head, "error": err}))]
    was_on = dev.site.relay_on(_relay(dev))
    if method == "Switch.Set":
        _switch(dev, CommandAction.ON if params.get("on") else CommandAction.OFF)
        result: dict[str, Any] = {"was_on": was_on}
    elif method == "Switch.Toggle":
        _switch(dev, CommandAction.TOGGLE)
        result = {"was_on": was_on}
    else:
        result = {"id": 0, "output": was_on}
    return [payloads.Publish(f"{src}/rpc", orjson.dumps({**head, "result": result}))]


def _thingsboard_command(dev: SimDevice, topic: str, payload: bytes) -> list[payloads.Publish]:
    request_id = topic.rsplit("/", 1)[-1]
    reply = f"v1/devices/me/rpc/response/{request_id}"
    body = orjson.loads(payload)
    method = body.get("method")
    if not dev.has_relay:
        return [payloads.Publish(reply, b'{"error":"this device has no relay"}')]
    if method == "setState":
        state = _switch(dev, CommandAction.ON if body.get("params") else CommandAction.OFF)
    elif method == "toggle":
        state = _switch(dev, CommandAction.TOGGLE)
    elif method == "getState":
        state = int(dev.site.relay_on(_relay(dev)))
    else:
        return [payloads.Publish(reply, orjson.dumps({"error": f"unknown method {method}"}))]
    return [payloads.Publish(reply, orjson.dumps({"state": bool(state)}))]


def mqtt_messages(dev: SimDevice, columns: Columns) -> list[payloads.Publish]:
    """What the device's firmware publishes for these readings."""
    readings = to_readings(columns)
    if dev.protocol in (DeviceProtocol.NATIVE, DeviceProtocol.THINGSBOARD):
        out: list[payloads.Publish] = []
        for i in range(0, len(readings), MQTT_BATCH_ITEMS):
            part = readings[i : i + MQTT_BATCH_ITEMS]
            if dev.protocol == DeviceProtocol.NATIVE:
                out.append(payloads.encode_native(dev.address, part))
                continue
            # ThingsBoard has no channels (a single-channel device just omits it), and
            # hand-written firmware uses short keys ("power", "powerFactor"…).
            for r in part:
                r.channel = None
            out.append(payloads.encode_thingsboard(part, payloads.THINGSBOARD_SHORT_KEYS))
        return out
    return payloads.encode_for(dev.protocol, dev.address, readings, tz=dev.site.tz)


class MqttSender:
    """Connections for the devices that speak MQTT; ``http`` devices go to ``http``."""

    def __init__(
        self, host: str, port: int, http: HttpSender, *, qos: int = 1, connect_concurrency: int = 32
    ) -> None:
        self.host = host
        self.port = port
        self.http = http
        self.qos = qos
        self.connect_concurrency = connect_concurrency
        self.conns: dict[str, MqttDevice] = {}
        self.stats: RunStats | None = None

    async def start(self, devices: Sequence[SimDevice], stats: RunStats) -> None:
        """Connect every MQTT device and announce it online."""
        self.stats = stats
        slots = asyncio.Semaphore(self.connect_concurrency)

        async def one(dev: SimDevice) -> None:
            async with slots:
                conn = MqttDevice(dev, self.host, self.port, on_command=self._command)
                await conn.connect()
                self.conns[dev.uid] = conn
                hello = online_message(dev)
                if hello is not None:
                    await conn.publish(hello, qos=self.qos)

        try:
            await asyncio.gather(*(one(d) for d in devices if d.protocol != DeviceProtocol.HTTP))
        except BaseException:
            await self.close(clean=False)
            raise

    def _command(self, conn: MqttDevice, topic: str, payload: bytes) -> None:
        answers = answer_command(conn.dev, topic, payload)
        if answers and self.stats is not None:
            self.stats.commands += 1
        for msg in answers:
            conn.publish_nowait(msg, qos=self.qos)

    async def send(self, dev: SimDevice, columns: Columns, stats: RunStats) -> None:
        conn = self.conns.get(dev.uid)
        if conn is None:
            await self.http.send(dev, columns, stats)
            return
        if not conn.is_connected:
            try:
                await conn.reconnect()
            except (RemoteError, OSError, TimeoutError) as exc:
                stats.error(f"{dev.uid}: reconnect failed: {exc}")
                return
        msgs = mqtt_messages(dev, columns)
        try:
            if dev.protocol in _STAMPED_ON_RECEIPT:
                # One at a time, as such firmware sends them: the server stamps each on
                # receipt, and two readings of one channel in the same millisecond would be
                # one reading (and a duplicate).
                for msg in msgs:
                    await conn.publish(msg, qos=self.qos)
            else:
                await conn.publish_many(msgs, qos=self.qos)
        except RemoteError as exc:
            stats.error(str(exc))
            return
        stats.messages += len(msgs)

    async def close(self, *, clean: bool = True) -> None:
        await asyncio.gather(
            *(c.close(clean=clean) for c in self.conns.values()), return_exceptions=True
        )
        self.conns.clear()


# -- the runner ----------------------------------------------------------------------------------


class Runner:
    """Devices reporting over their transports, tick by tick."""

    def __init__(
        self,
        devices: Sequence[SimDevice],
        http: HttpSender,
        mqtt: MqttSender | None = None,
        *,
        step_s: float = 5.0,
        speed: float = 1.0,
        tick_s: float = 1.0,
        max_readings_per_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if speed < 1.0:
            raise ValueError("speed must be at least 1")
        self.devices = list(devices)
        self.http = http
        self.mqtt = mqtt
        self.step_s = step_s
        self.speed = speed
        self.tick_s = tick_s
        self.rate = RateLimit(max_readings_per_s)
        self.clock = clock
        self.stats = RunStats()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def backfill(
        self,
        end_ms: int,
        *,
        chunk_s: float = 6 * 3600.0,
        progress: Callable[[int, RunStats], None] | None = None,
    ) -> RunStats:
        """Upload what every device reports from its ``next_ms`` to ``end_ms`` as HTTP batches
        at full speed (history keeps its timestamps whatever the device's live protocol)."""
        pending = [d for d in self.devices if d.next_ms < end_ms]
        if not pending:
            return self.stats
        chunk_ms = max(60_000, int(chunk_s * 1000))
        t = min(d.next_ms for d in pending)
        while t < end_ms:
            t_end = min(t + chunk_ms, end_ms)
            jobs = []
            for dev in pending:
                if dev.next_ms >= t_end:
                    continue
                cols = dev.take(t_end, self.step_s)
                if cols is None:
                    continue
                n = int(cols["ts_ms"].size)
                self.stats.readings += n
                await self.rate.take(n)
                jobs.append(self.http.send(dev, cols, self.stats))
            await asyncio.gather(*jobs)
            t = t_end
            if progress is not None:
                progress(t, self.stats)
        return self.stats

    async def tick(self, sim_ms: int) -> int:
        """Every device reports what it measured up to ``sim_ms``; returns readings sent."""
        sender = self.mqtt or self.http
        jobs = []
        sent = 0
        for dev in self.devices:
            cols = dev.take(sim_ms, self.step_s)
            if cols is None:
                continue
            n = int(cols["ts_ms"].size)
            sent += n
            await self.rate.take(n)
            jobs.append(sender.send(dev, cols, self.stats))
        self.stats.readings += sent
        await asyncio.gather(*jobs)
        return sent

    async def live(
        self,
        *,
        duration_s: float | None = None,
        start_ms: int | None = None,
        stop: asyncio.Event | None = None,
        on_tick: Callable[[int, RunStats], None] | None = None,
    ) -> RunStats:
        """Report until ``stop`` is set or ``duration_s`` (wall clock) has passed.

        Simulated time starts at ``start_ms`` (default: now at speed 1, else the earliest
        device's ``next_ms``) and runs ``speed`` times faster than the wall clock, never
        beyond it. Devices behind that time catch up at the first tick.
        """
        wall0 = self.clock()
        if start_ms is None:
            start_ms = (
                self._now_ms()
                if self.speed == 1.0
                else min((d.next_ms for d in self.devices), default=self._now_ms())
            )
        halt = stop or asyncio.Event()
        while not halt.is_set():
            t0 = self.clock()
            elapsed = t0 - wall0
            sim_ms = min(int(start_ms + elapsed * self.speed * 1000), self._now_ms())
            ticking = asyncio.create_task(self.tick(sim_ms))
            halted = asyncio.create_task(halt.wait())
            await asyncio.wait({ticking, halted}, return_when=asyncio.FIRST_COMPLETED)
            halted.cancel()
            if not ticking.done():
                self.http.closing = True  # stopping: finish what is in flight, retry nothing
            await ticking
            if on_tick is not None:
                on_tick(sim_ms, self.stats)
            if duration_s is not None and self.clock() - wall0 >= duration_s:
                break
            wait = max(0.0, self.tick_s - (self.clock() - t0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(halt.wait(), wait)
        return self.stats


def free_port(host: str = "127.0.0.1", preferred: int | None = None) -> int:
    """``preferred`` if nothing listens there, else a free ephemeral port."""
    if preferred:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def mqtt_reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
