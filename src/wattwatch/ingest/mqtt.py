"""MQTT ingest: device message → protocol adapter → pipeline; presence; commands over MQTT.

``MqttIngest`` is the broker's message sink. The embedded broker tells it who sent a message
(the device bound to the session); messages from an external broker carry no sender, so the
device is found from the topic (``protocols.identify`` → registry by uid or by protocol and
topic, cached). A message is decoded by the device's adapter, its readings go through the one
ingest pipeline and ``handle`` returns once they are committed (that is when the broker may
acknowledge it); presence (online, last seen, firmware) is tracked in memory and written in
batches by ``PresenceTracker``. Bad input is counted (``wattwatch_messages{transport="mqtt"}``)
and logged with its reason, at most a few lines a minute per device.

``MqttService`` owns the broker side for one running wattwatch (embedded or external) and
offers the control code ``publish``, ``request`` and ``send_command``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from wattwatch.broker.auth import Authenticator, Identity, device_ref
from wattwatch.broker.embedded import BrokerLimits, EmbeddedBroker, LogThrottle
from wattwatch.broker.external import ExternalBroker
from wattwatch.broker.rpc import Match, Transport
from wattwatch.broker.sink import Done, Inbound, Outcome
from wattwatch.config import Settings
from wattwatch.domain import (
    DEFAULT_CHANNEL,
    MAX_FUTURE_MS,
    METRICS,
    MIN_TS_MS,
    CommandResult,
    DeviceProtocol,
    DeviceRef,
    Rejection,
    now_ms,
)
from wattwatch.ingest.limits import DeviceRateLimiter
from wattwatch.ingest.pipeline import IngestPipeline, normalise
from wattwatch.ingest.stats import IngestStats
from wattwatch.periodic import BackgroundTask
from wattwatch.protocols import adapter_for, command_answer, identify, native
from wattwatch.store.base import ChannelDirectory, StoredRow
from wattwatch.store.registry import SqlRegistry

log = logging.getLogger(__name__)

Device = dict[str, Any]
# (device id, org id, online, ts_ms): ``Wattwatch.device_status``.
PresenceListener = Callable[[int, int, bool, int], None]
# Attribute keys that carry a firmware version, by protocol habit.
_FIRMWARE_KEYS = ("firmware", "fw_version", "current_fw_version", "Version")
_RANGES = {name: (spec.lo, spec.hi) for name, spec in METRICS.items()}


def plain_native_row(
    payload: bytes, received_ms: int, device_id: int, channels: ChannelDirectory
) -> StoredRow | None:
    """The stored row of the commonest message there is, or None for the general path.

    A native telemetry message holding one JSON object of canonical metric names with
    plain numbers in range, an integer epoch-ms ``ts`` (or none) and no ``channel``: what
    ``native.decode_telemetry`` + ``pipeline.normalise`` make of it, without the Reading and
    Decoded objects in between (about a third of the per-message cost on the embedded
    broker). Anything else, including every message with a problem to report, returns None
    and takes the general path, which says what is wrong (tests/ingest/test_mqtt_fast.py
    checks the two agree).
    """
    if len(payload) > 4096:
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if data.__class__ is not dict:
        return None
    ts = received_ms
    p = e = v = a = None
    extra: dict[str, float] | None = None
    for key, raw in data.items():
        cls = raw.__class__
        if key == "ts":
            if raw is None:
                continue
            if cls is not int or not MIN_TS_MS <= raw <= received_ms + MAX_FUTURE_MS:
                return None  # seconds, ISO text, out of range: the general path decides
            ts = raw
            continue
        if cls is not float and cls is not int:
            return None  # a string, a boolean, null, a nested value or a channel name
        bounds = _RANGES.get(key)
        if bounds is None or not bounds[0] <= raw <= bounds[1]:
            return None
        value = float(raw)
        if key == "power_w":
            p = round(value * 1000)
        elif key == "energy_wh":
            e = round(value * 1000)
        elif key == "voltage_v":
            v = round(value * 1000)
        elif key == "current_a":
            a = round(value * 1000)
        else:
            if extra is None:
                extra = {}
            extra[key] = value
    if p is None and e is None and v is None and a is None and extra is None:
        return None
    ch = channels.resolve_channel(device_id, DEFAULT_CHANNEL)
    return StoredRow(ch, ts, p, e, v, a, None if extra is None else orjson.dumps(extra).decode())


class DeviceCache:
    """Devices by (protocol, topic address), for messages whose sender the broker did not say.

    Hits live ``ttl_s`` (a token rotation does not matter here: the broker authenticated the
    sender), misses ``miss_ttl_s``, so a flood of unknown topics costs one query per topic
    per few seconds, not one per message.
    """

    def __init__(
        self, registry: SqlRegistry, *, ttl_s: float = 30.0, miss_ttl_s: float = 5.0
    ) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self.miss_ttl_s = miss_ttl_s
        self._cache: dict[tuple[DeviceProtocol, str], tuple[float, Device | None]] = {}

    def put(self, device: Device) -> None:
        protocol = DeviceProtocol(device["protocol"])
        address = device["uid"] if protocol is DeviceProtocol.NATIVE else device["topic"]
        if device["org_id"] is not None:
            self._cache[(protocol, address)] = (time.monotonic() + self.ttl_s, device)

    def lookup(self, protocol: DeviceProtocol, address: str) -> Device | None:
        key = (protocol, address)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now < hit[0]:
            return hit[1]
        if protocol is DeviceProtocol.NATIVE:
            device = self.registry.device_by(uid=address)
        else:
            device = self.registry.device_by(protocol=str(protocol), topic=address)
        if device is not None and (device["protocol"] != protocol or device["org_id"] is None):
            device = None
        if len(self._cache) > 100_000:
            self._cache.clear()
        self._cache[key] = (now + (self.ttl_s if device else self.miss_ttl_s), device)
        return device


class PresenceTracker(BackgroundTask):
    """Online / last-seen / firmware per device, kept in memory and written in batches.

    ``last_seen_ms`` is written at most every ``last_seen_interval_s`` per device (a device
    reporting every second must not cost a registry write every second); a change of
    ``online`` is written at the next flush, within ``flush_interval_s``.
    """

    def __init__(
        self,
        registry: SqlRegistry,
        *,
        last_seen_interval_s: float = 60.0,
        flush_interval_s: float = 1.0,
        on_change: PresenceListener | None = None,
    ) -> None:
        self.registry = registry
        # Told of every online/offline change at once (offline alert rules, hooks, live view).
        self.on_change = on_change
        self.last_seen_interval_ms = int(last_seen_interval_s * 1000)
        self.flush_interval_s = flush_interval_s
        # device id → [online, last_seen written (ms), firmware]
        self._known: dict[int, list[Any]] = {}
        self._pending: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()

    def _state(self, device: Mapping[str, Any]) -> list[Any]:
        state = self._known.get(device["id"])
        if state is None:
            state = [device.get("online"), device.get("last_seen_ms") or 0, device.get("firmware")]
            self._known[device["id"]] = state
        return state

    def seen(self, device: Mapping[str, Any], ts_ms: int) -> None:
        state = self._state(device)
        if ts_ms - state[1] >= self.last_seen_interval_ms:
            state[1] = ts_ms
            self._pending.setdefault(device["id"], {})["last_seen_ms"] = ts_ms

    def set_online(self, device: Mapping[str, Any], online: bool, ts_ms: int) -> None:
        state = self._state(device)
        if state[0] is online:
            return
        state[0] = online
        values = self._pending.setdefault(device["id"], {})
        values.update(online=online, status_changed_ms=ts_ms)
        if online:
            state[1] = ts_ms
            values["last_seen_ms"] = ts_ms
        self._wake.set()
        if self.on_change is not None and device.get("org_id") is not None:
            try:
                self.on_change(device["id"], device["org_id"], online, ts_ms)
            except Exception:  # a listener must never break ingest
                log.exception("presence listener failed")

    def set_firmware(self, device: Mapping[str, Any], firmware: str) -> None:
        state = self._state(device)
        if state[2] != firmware:
            state[2] = firmware
            self._pending.setdefault(device["id"], {})["firmware"] = firmware

    def online(self, device_id: int) -> bool | None:
        state = self._known.get(device_id)
        return None if state is None else state[0]

    task_name = "mqtt-presence"

    async def stop(self) -> None:
        await super().stop()
        await self.flush()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            # A burst of connects (a site's power comes back) is written as one batch.
            await asyncio.sleep(0.05)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await asyncio.to_thread(self.registry.record_device_status, list(batch.items()))
        except Exception:
            log.exception("could not record the status of %d devices; retrying", len(batch))
            for device_id, values in batch.items():
                self._pending.setdefault(device_id, {}).update(
                    {k: v for k, v in values.items() if k not in self._pending[device_id]}
                )


class CommitBatcher:
    """Gathers the rows of the messages read in one event-loop turn into one submission.

    Many connections' messages arrive together (one epoll wake-up); submitting them as one
    batch costs one queue slot, one future and one wake-up instead of one of each per
    message. ``done`` callbacks run when the batch is committed.
    """

    def __init__(self, pipeline: IngestPipeline, *, max_rows: int = 5000) -> None:
        self.pipeline = pipeline
        self.max_rows = max_rows
        self.pending_rows = 0  # added, not committed yet
        self._items: list[tuple[Device, list[StoredRow], int, Done]] = []
        self._rows = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._room: asyncio.Event | None = None

    @property
    def limit(self) -> int:
        return self.pipeline.queue_readings

    def add(self, device: Device, rows: list[StoredRow], n_rejected: int, done: Done) -> None:
        self._items.append((device, rows, n_rejected, done))
        self._rows += len(rows)
        self.pending_rows += len(rows)
        if self._rows >= self.max_rows:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._items:
            return
        items, self._items, self._rows = self._items, [], 0
        task = asyncio.get_running_loop().create_task(self._commit(items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit(self, items: list[tuple[Device, list[StoredRow], int, Done]]) -> None:
        n_rows = sum(len(rows) for _, rows, _, _ in items)
        try:
            duplicates = await self.pipeline.ingest_rows_many(
                [(device, rows) for device, rows, _, _ in items]
            )
        except Exception:
            log.exception("mqtt: store write of %d readings failed: not acknowledged", n_rows)
            for *_, done in items:
                done(Outcome.ERROR)
            return
        finally:
            self.pending_rows -= n_rows
            if self._room is not None and self.pending_rows < self.limit:
                self._room.set()
        for (_, rows, n_rejected, done), dups in zip(items, duplicates, strict=True):
            if len(dups) < len(rows):
                done(Outcome.PARTIAL if n_rejected else Outcome.ACCEPTED)
            else:
                done(Outcome.DUPLICATE)

    async def room(self) -> None:
        while self.pending_rows >= self.limit:
            self._room = asyncio.Event()
            await self._room.wait()

    async def drain(self) -> None:
        self._flush()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class MqttIngest:
    """The message sink: decode with the device's adapter, ingest, track presence."""

    def __init__(
        self,
        pipeline: IngestPipeline,
        registry: SqlRegistry,
        stats: IngestStats,
        presence: PresenceTracker,
        limits: DeviceRateLimiter | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.limits = limits if limits is not None else DeviceRateLimiter(0, 1)
        # Messages waiting for their device's rate limit (call_later handles).
        self._held: dict[int, asyncio.TimerHandle] = {}
        self._held_seq = 0
        self.stats = stats
        self.presence = presence
        self.registry = registry
        self.devices = DeviceCache(registry)
        self.batcher = CommitBatcher(pipeline)
        self.transport: Transport | None = None  # for answering device-side RPC
        self._throttle = LogThrottle()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._counters: dict[Outcome, Any] = {}
        # What the broker allows a connection (told to ThingsBoard devices that ask).
        self.session_limits: dict[str, int] = {}

    def count(self, outcome: Outcome) -> None:
        counter = self._counters.get(outcome)
        if counter is None:
            # The labelled child, looked up once: labels() per message shows in profiles.
            counter = self._counters[outcome] = self.stats.messages.labels("mqtt", outcome.value)
        counter.inc()

    def preload(self, limit: int = 100_000) -> int:
        """Blocking (a worker thread): look up every device and its channels ahead of its
        first message — what an external-broker worker does at start. Returns how many."""
        devices = self.registry.all_devices()[:limit]  # by id
        for device in devices:
            self.devices.put(device)
        if devices:
            self.registry.cache_channels(devices[-1]["id"])
        return len(devices)

    def warm(self, identity: Identity) -> None:
        if identity.device is None:
            return
        device_id = identity.device["id"]
        for name in self.registry.channel_ids_of(device_id):
            self.registry.resolve_channel(device_id, name)  # fills the registry's cache

    def connected(self, identity: Identity) -> None:
        if identity.device is not None:
            self.presence.set_online(identity.device, True, now_ms())

    def disconnected(self, identity: Identity) -> None:
        if identity.device is not None:
            self.presence.set_online(identity.device, False, now_ms())

    @property
    def saturated(self) -> bool:
        return self.batcher.pending_rows >= self.batcher.limit

    async def room(self) -> None:
        await self.batcher.room()

    async def drain(self) -> None:
        # Messages held by the rate limit are not acknowledged: their senders send them again.
        for handle in self._held.values():
            handle.cancel()
        self._held.clear()
        await self.batcher.drain()

    def _note(self, key: str, message: str, *args: Any) -> None:
        if self._throttle.allow(key):
            log.info(message, *args)

    def _sender(self, message: Inbound) -> tuple[Device, DeviceRef] | Outcome:
        identity = message.identity
        if identity is not None and identity.device is not None and identity.ref is not None:
            return identity.device, identity.ref
        topic = message.topic
        found = identify(topic)
        if found is None:
            self._note("topic", "mqtt: no protocol has a topic like %r: dropped", topic[:120])
            return Outcome.UNKNOWN_TOPIC
        protocol, address = found
        if address is None:
            if protocol is DeviceProtocol.THINGSBOARD:
                self._note(
                    "tb",
                    "mqtt: %r names no device; ThingsBoard devices need the embedded broker",
                    topic[:120],
                )
                return Outcome.UNKNOWN_DEVICE
            return Outcome.IGNORED  # a Shelly answer on wattwatch/rpc: only a waiter wants it
        device = self.devices.lookup(protocol, address)
        if device is None:
            self._note(
                "unknown-device",  # one budget for all: a scan of made-up topics is one story
                "mqtt: no %s device %r (topic %r): dropped",
                protocol,
                address,
                topic[:120],
            )
            return Outcome.UNKNOWN_DEVICE
        ref = device_ref(device)
        if not adapter_for(protocol).topic_allowed(ref, topic, publish=True):
            self._note(f"dev:{address}", "mqtt: devices do not publish on %r: dropped", topic[:120])
            return Outcome.FORBIDDEN
        return device, ref

    def submit(self, message: Inbound, done: Done) -> None:
        try:
            outcome = self._take(message, done)
        except Exception:
            log.exception("mqtt: message on %r could not be processed", message.topic[:120])
            outcome = Outcome.ERROR
        if outcome is not None:
            self.count(outcome)
            done(outcome)

    async def handle(self, message: Inbound) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self.submit(message, done)
        return await future

    def _take(self, message: Inbound, done: Done) -> Outcome | None:
        """The outcome now, or None when ``done`` will be called after the commit."""
        sender = self._sender(message)
        if isinstance(sender, Outcome):
            return sender
        device, ref = sender
        received = message.received_ms
        native_telemetry = ref.protocol is DeviceProtocol.NATIVE and message.topic.endswith(
            "/telemetry"
        )
        if native_telemetry and not ref.key_map:
            row = plain_native_row(message.payload, received, device["id"], self.pipeline.channels)
            if row is not None:
                self.presence.seen(device, received)
                if self.limits.enabled and message.identity is not None:
                    return self._limited(device, message, 1, [row], 0, done)
                self.batcher.add(device, [row], 0, self._counted(done))
                return None
        if native_telemetry:
            # The topic was checked (ACL or lookup): skip parsing it again, the common case.
            decoded = native.decode_telemetry(
                message.payload, received_ms=received, key_map=ref.key_map
            )
        else:
            decoded = adapter_for(ref.protocol).decode(
                message.topic, message.payload, received_ms=received, key_map=ref.key_map
            )
        self.presence.seen(device, received)
        outcome = Outcome.IGNORED
        if decoded.online is not None:
            self.presence.set_online(device, decoded.online, received)
            outcome = Outcome.STATUS
        if decoded.attributes:
            self._attributes(device, decoded.attributes)
            outcome = Outcome.STATUS
        if decoded.command_result is not None:
            outcome = Outcome.STATUS  # a waiter got the raw reply from the transport
        if decoded.rpc_request is not None:
            self._answer_rpc(device, *decoded.rpc_request)
            outcome = Outcome.STATUS
        rejected = decoded.rejected
        if decoded.readings:
            rows, _, bad = normalise(
                device["id"], decoded.readings, self.pipeline.channels, received
            )
            n_sent = len(decoded.readings) + len(rejected)
            rejected = [*rejected, *bad]
            if rows:
                self._rejected(device, message.topic, rejected)
                if self.limits.enabled and message.identity is not None:
                    return self._limited(device, message, n_sent, rows, len(rejected), done)
                self.batcher.add(device, rows, len(rejected), self._counted(done))
                return None
        if rejected:
            self._rejected(device, message.topic, rejected)
            if outcome is Outcome.IGNORED:
                outcome = Outcome.REJECTED
        return outcome

    def _limited(
        self,
        device: Device,
        message: Inbound,
        n_sent: int,
        rows: list[StoredRow],
        n_rejected: int,
        done: Done,
    ) -> Outcome | None:
        """The per-device rate limit on the embedded broker (docs/reliability.md).

        QoS 1/2: the message is held until the device's bucket covers it, then committed;
        its acknowledgement waits with it, and the connection's in-flight window (then TCP)
        slows the device down. Nothing is lost and other devices' messages are not held.
        QoS 0 has no acknowledgement to hold: over the limit it is dropped and counted.
        (Messages from an external broker are not limited here: the broker acknowledged them
        to the device already, so holding them would only stall the shared subscription.)
        """
        device_id = device["id"]
        if message.qos == 0:
            if self.limits.try_take(device_id, n_sent) > 0:
                self.stats.rate_limited("mqtt", "dropped", n_sent)
                self._note(
                    f"limit:{device_id}",
                    "mqtt: device %s over its rate limit (%g readings/s): QoS 0 message dropped",
                    device["uid"],
                    self.limits.rate_per_s,
                )
                return Outcome.RATE_LIMITED
            self.batcher.add(device, rows, n_rejected, self._counted(done))
            return None
        wait = self.limits.reserve(device_id, n_sent)
        if wait <= 0:
            self.batcher.add(device, rows, n_rejected, self._counted(done))
            return None
        self.stats.rate_limited("mqtt", "delayed", n_sent)
        key = self._held_seq = self._held_seq + 1
        self._held[key] = asyncio.get_running_loop().call_later(
            wait, self._release, key, device, rows, n_rejected, done
        )
        return None

    def _release(
        self, key: int, device: Device, rows: list[StoredRow], n_rejected: int, done: Done
    ) -> None:
        self._held.pop(key, None)
        self.batcher.add(device, rows, n_rejected, self._counted(done))

    def _counted(self, done: Done) -> Done:
        def counted(outcome: Outcome) -> None:
            self.count(outcome)
            done(outcome)

        return counted

    def _rejected(self, device: Device, topic: str, rejected: Sequence[Rejection]) -> None:
        if not rejected:
            return
        self.stats.rejected(len(rejected))
        self._note(
            f"rej:{device['id']}",
            "mqtt: device %s: on %r rejected: %s",
            device["uid"],
            topic[:120],
            "; ".join(f"[{r.index}] {r.reason}" for r in rejected[:3]),
        )

    def _attributes(self, device: Device, attributes: Mapping[str, Any]) -> None:
        for key in _FIRMWARE_KEYS:
            value = attributes.get(key)
            if isinstance(value, str) and 0 < len(value) <= 60:
                self.presence.set_firmware(device, value)
                return

    def _answer_rpc(self, device: Device, request_id: str, body: Mapping[str, Any]) -> None:
        """Answer a device's own RPC (ThingsBoard client-side RPC): the time, session limits."""
        method = body.get("method")
        if method in ("getCurrentTime", "getTime"):
            answer: dict[str, Any] = {"time": now_ms()}
        elif method == "getSessionLimits":
            # The ThingsBoard SDK asks on connect; no rate limits, our packet and window sizes.
            answer = {"rateLimits": {}, **self.session_limits}
        else:
            answer = {"error": f"method {str(method)[:60]!r} is not supported"}
        transport = self.transport
        if transport is None:
            return
        task = asyncio.get_running_loop().create_task(
            transport.publish(
                f"v1/devices/me/rpc/response/{request_id}",
                orjson.dumps(answer),
                1,
                device_id=device["id"],
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class MqttService:
    """MQTT for one running wattwatch: the embedded broker or an external one, with ingest.

    ``consume=False`` (an API replica with an external broker) publishes and requests but
    leaves consuming to the workers.
    """

    def __init__(self, transport: EmbeddedBroker | ExternalBroker, ingest: MqttIngest) -> None:
        self.transport = transport
        self.ingest = ingest
        ingest.transport = transport
        self._preload: asyncio.Task[int] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        pipeline: IngestPipeline,
        registry: SqlRegistry,
        stats: IngestStats,
        *,
        client_id: str | None = None,
        consume: bool = True,
        on_presence: PresenceListener | None = None,
        limits: DeviceRateLimiter | None = None,
    ) -> MqttService:
        presence = PresenceTracker(
            registry,
            last_seen_interval_s=settings.mqtt_last_seen_interval_s,
            on_change=on_presence,
        )
        ingest = MqttIngest(pipeline, registry, stats, presence, limits)
        transport: EmbeddedBroker | ExternalBroker
        if settings.broker_url:
            transport = ExternalBroker(
                settings.broker_url,
                sink=ingest if consume else None,
                client_id=client_id or settings.mqtt_client_id,
                share_group=settings.mqtt_share_group,
                session_expiry_s=settings.mqtt_session_expiry_s,
                receive_maximum=settings.mqtt_receive_maximum,
            )
        else:
            password = settings.mqtt_service_password
            transport = EmbeddedBroker(
                host=settings.mqtt_host,
                port=settings.mqtt_port,
                authenticator=Authenticator(
                    registry,
                    service_user=settings.mqtt_service_user,
                    service_password=password.get_secret_value() if password else None,
                ),
                sink=ingest,
                limits=BrokerLimits(
                    connect_timeout_s=settings.mqtt_connect_timeout_s,
                    max_packet_bytes=settings.mqtt_max_packet_bytes,
                    max_connections=settings.mqtt_max_connections,
                    max_connections_per_ip=settings.mqtt_max_connections_per_ip,
                    max_connections_per_device=settings.mqtt_max_connections_per_device,
                    max_inflight=settings.mqtt_max_inflight,
                    session_expiry_s=settings.mqtt_session_expiry_s,
                ),
            )
        ingest.session_limits = {
            "maxPayloadSize": settings.mqtt_max_packet_bytes,
            "maxInflightMessages": settings.mqtt_max_inflight,
        }
        return cls(transport, ingest)

    @property
    def embedded(self) -> EmbeddedBroker | None:
        return self.transport if isinstance(self.transport, EmbeddedBroker) else None

    def describe(self) -> str:
        if isinstance(self.transport, EmbeddedBroker):
            return f"MQTT on mqtt://{self.transport.host}:{self.transport.port} (embedded broker)"
        return f"MQTT via {self.transport.describe()}"

    async def start(self) -> None:
        self.ingest.presence.start()
        await self.transport.start()
        if isinstance(self.transport, ExternalBroker) and self.transport.sink is not None:
            # Messages name devices by topic: find them all now, in a thread, rather than
            # one registry query on the event loop per device's first message.
            self._preload = asyncio.create_task(asyncio.to_thread(self.ingest.preload))

    async def stop(self) -> None:
        if self._preload is not None:
            with contextlib.suppress(Exception):
                await self._preload
        await self.transport.stop()
        await self.ingest.drain()
        await self.ingest.presence.stop()

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, device_id: int | None = None
    ) -> int:
        return await self.transport.publish(topic, payload, qos, device_id=device_id)

    async def request(
        self,
        topic: str,
        payload: bytes,
        reply_topic: str,
        *,
        qos: int = 1,
        timeout_s: float = 10.0,
        device_id: int | None = None,
        match: Match | None = None,
    ) -> bytes:
        return await self.transport.request(
            topic,
            payload,
            reply_topic,
            qos=qos,
            timeout_s=timeout_s,
            device_id=device_id,
            match=match,
        )

    async def send_command(
        self, device: Mapping[str, Any], action: str, command_id: str, *, timeout_s: float = 10.0
    ) -> CommandResult:
        """Ask a device to switch and return its answer (``DeviceTimeout`` when none comes).

        Encoding and decoding are the device's protocol adapter's; the answer is matched by
        the device, the reply topic and, where the protocol carries one, the request id.
        """
        ref = device_ref(device)
        outbound = adapter_for(ref.protocol).encode_command(ref, action, command_id)

        def result_of(payload: bytes) -> CommandResult | None:
            return command_answer(ref, outbound, payload, received_ms=now_ms())

        reply = await self.request(
            outbound.topic,
            outbound.payload,
            outbound.reply_topic,
            timeout_s=timeout_s,
            device_id=ref.id,
            match=lambda payload: result_of(payload) is not None,
        )
        result = result_of(reply)
        assert result is not None  # the match above accepted it
        return result
