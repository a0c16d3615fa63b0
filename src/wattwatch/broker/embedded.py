"""The embedded MQTT broker: amqtt, hardened, with published readings going straight to ingest.

``WattwatchBroker`` subclasses amqtt's ``Broker`` where amqtt is weak (see docs/broker.md for
the list): the CONNECT is read under a timeout and a size limit, credentials are checked
before any existing session is looked at, a client id belongs to the identity that first used
it, connections are counted (total, per address, per device), and routing is ours: a device's
PUBLISH goes to the ingest sink in-process (acknowledged after commit, ``handler.py``) and to
the service account's subscriptions; server publishes (commands) go only to the addressed
device's sessions, which is what keeps ThingsBoard's shared ``v1/devices/me/…`` names apart.
Retained messages are never stored. ``EmbeddedBroker`` is the facade the app uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import BrokerConfig, ListenerConfig, ListenerType
from amqtt.events import BrokerEvents
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

from wattwatch.broker import codec
from wattwatch.broker.auth import (
    IDENTITY_KEY,
    THINGSBOARD_ROOT,
    Authenticator,
    Identity,
    Refusal,
    RegistryAuthPlugin,
)
from wattwatch.broker.codec import Connect, Reason
from wattwatch.broker.handler import SessionHandler
from wattwatch.broker.rpc import ReplyWaiters, RequestReply
from wattwatch.broker.sink import Done, Inbound, MessageSink, Outcome
from wattwatch.domain import DeviceProtocol

log = logging.getLogger(__name__)

# Session attribute: the topic filters a session holds, with the QoS granted.
FILTERS_KEY = "wattwatch.filters"
_PLUGIN_PATH = f"{RegistryAuthPlugin.__module__}.{RegistryAuthPlugin.__qualname__}"


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Limits stock amqtt does not have (or has off by default)."""

    connect_timeout_s: float = 10.0
    max_packet_bytes: int = 1024 * 1024
    max_connections: int = 10_000
    max_connections_per_ip: int = 0  # 0: no limit (NAT puts whole sites behind one address)
    max_connections_per_device: int = 4
    max_inflight: int = 64  # unacknowledged QoS 1/2 PUBLISHes per connection being committed
    max_subscriptions: int = 32  # topic filters per session
    max_queued_messages: int = 1000  # per offline persistent service session
    session_expiry_s: int = 24 * 3600
    max_bindings_per_owner: int = 16


class ClientIdBindings:
    """Which identity a client id belongs to: the first that used it.

    A binding lasts while its session exists and ``ttl_s`` after the last connection ended,
    and an identity holds at most ``per_owner`` of them (its oldest idle one is dropped), so
    firmware that picks a new id at every boot cannot grow the table without bound.
    """

    def __init__(self, ttl_s: float, per_owner: int) -> None:
        self.ttl_s = ttl_s
        self.per_owner = per_owner
        # client id → (owner, idle since (monotonic) or None while connected)
        self._owner: dict[str, tuple[str, float | None]] = {}
        self._by_owner: dict[str, dict[str, None]] = {}

    def owner(self, client_id: str) -> str | None:
        entry = self._owner.get(client_id)
        if entry is None:
            return None
        owner, idle_since = entry
        if idle_since is not None and time.monotonic() - idle_since > self.ttl_s:
            self._drop(client_id)
            return None
        return owner

    def bind(self, client_id: str, owner: str) -> None:
        self._owner[client_id] = (owner, None)
        held = self._by_owner.setdefault(owner, {})
        held.pop(client_id, None)
        held[client_id] = None
        while len(held) > self.per_owner:
            oldest = next((c for c in held if self._owner[c][1] is not None), None)
            if oldest is None:
                break
            self._drop(oldest)

    def release(self, client_id: str) -> None:
        entry = self._owner.get(client_id)
        if entry is not None:
            self._owner[client_id] = (entry[0], time.monotonic())

    def _drop(self, client_id: str) -> None:
        owner, _ = self._owner.pop(client_id)
        held = self._by_owner.get(owner)
        if held is not None:
            held.pop(client_id, None)
            if not held:
                del self._by_owner[owner]


class LogThrottle:
    """At most ``burst`` log lines per key and minute: a misbehaving client cannot flood logs.

    The broker and MQTT ingest each keep one.
    """

    def __init__(self, burst: int = 5, window_s: float = 60.0) -> None:
        self.burst = burst
        self.window_s = window_s
        self._seen: dict[str, tuple[float, int]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        start, count = self._seen.get(key, (now, 0))
        if now - start > self.window_s:
            start, count = now, 0
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = (start, count + 1)
        return count < self.burst


class _SessionState:
    """The three-state machine amqtt's ``Session.transitions`` is, without ``transitions``.

    Building a ``transitions.Machine`` per session costs milliseconds of CPU; with a thousand
    devices reconnecting after a power cut that is seconds of a stalled event loop.
    """

    __slots__ = ("_session", "state")

    def __init__(self, session: FastSession) -> None:
        self._session = session
        self.state = "new"

    def connect(self) -> None:
        if self.state == "connected":
            raise ValueError("session is already connected")
        self.state = "connected"
        self._session._on_enter_connected()

    def disconnect(self) -> None:
        if self.state != "disconnected":
            self.state = "disconnected"
            self._session._on_enter_disconnected()

    def is_connected(self) -> bool:
        return self.state == "connected"


class FastSession(Session):  # type: ignore[misc]
    def _init_states(self) -> None:
        self.transitions = _SessionState(self)


class WattwatchBroker(Broker):  # type: ignore[misc]
    def __init__(
        self,
        *,
        host: str,
        port: int,
        authenticator: Authenticator,
        sink: MessageSink,
        replies: ReplyWaiters,
        limits: BrokerLimits,
    ) -> None:
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        config = BrokerConfig(
            listeners={"default": ListenerConfig(type=ListenerType.TCP, bind=bind)},
            plugins={_PLUGIN_PATH: {}},
            session_expiry_interval=limits.session_expiry_s,
        )
        super().__init__(config)
        for plugin in self.plugins_manager.plugins:
            if isinstance(plugin, RegistryAuthPlugin):
                plugin.attach(authenticator)
        self.authenticator = authenticator
        self.sink = sink
        self.replies = replies
        self.limits = limits
        self._connections = 0
        self._per_ip: Counter[str] = Counter()
        self._device_handlers: dict[int, set[SessionHandler]] = {}
        self._live: dict[str, tuple[SessionHandler, asyncio.Event]] = {}
        self._service_sessions: dict[str, Session] = {}
        self._bindings = ClientIdBindings(limits.session_expiry_s, limits.max_bindings_per_owner)
        self._throttle = LogThrottle()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- bookkeeping ----------------------------------------------------------------------
    @property
    def port(self) -> int:
        server = self._servers["default"].instance
        sockets = getattr(server, "sockets", None) or ()
        return int(sockets[0].getsockname()[1]) if sockets else 0

    @property
    def connection_count(self) -> int:
        return self._connections

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for messages being processed and deliveries under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def note_problem(self, handler: SessionHandler | None, message: str, peer: str = "") -> None:
        who = handler.identity.name if handler is not None else ""
        where = handler.peer if handler is not None else peer
        if self._throttle.allow(who or where):
            log.info("mqtt %s %s: %s", where, who, message)

    def refuse_publish(self, handler: SessionHandler, topic: str) -> None:
        self.sink.count(Outcome.FORBIDDEN)
        self.note_problem(handler, f"may not publish to {topic[:120]!r}: dropped")

    # -- connections ----------------------------------------------------------------------
    async def stream_connected(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        listener_name: str,
    ) -> None:
        await self._serve(
            StreamReaderAdapter(reader),
            StreamWriterAdapter(writer),
            writer.transport,
            listener_name,
        )

    async def _serve(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        transport: asyncio.BaseTransport,
        listener_name: str,
    ) -> None:
        info = writer.get_peer_info()
        ip, port = info if info is not None else ("?", 0)
        peer = f"{ip}:{port}"
        limit_ip = self.limits.max_connections_per_ip
        if self._connections >= self.limits.max_connections or (
            limit_ip and self._per_ip[ip] >= limit_ip
        ):
            # Refused before reading anything: a flood costs one accept and one close.
            self.sink.count(Outcome.CONNECT_REFUSED)
            if self._throttle.allow("connection-limit"):
                log.warning(
                    "mqtt %s: connection refused: %d connections open (limits: %d total, %s per "
                    "address)",
                    peer,
                    self._connections,
                    self.limits.max_connections,
                    limit_ip or "no limit",
                )
            transport.close()
            return
        self._connections += 1
        self._per_ip[ip] += 1
        try:
            await self._connection(reader, writer, transport, peer, listener_name)
        except Exception:
            log.exception("mqtt %s: connection failed", peer)
        finally:
            self._connections -= 1
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            transport.close()

    async def _read_connect(
        self, reader: ReaderAdapter, writer: WriterAdapter, peer: str
    ) -> Connect | None:
        try:
            first, body = await asyncio.wait_for(
                codec.read_packet(reader, self.limits.max_packet_bytes),
                self.limits.connect_timeout_s,
            )
            return codec.parse_connect(first, body)
        except TimeoutError:
            self.note_problem(
                None, f"closed: no CONNECT within {self.limits.connect_timeout_s:g} s", peer
            )
        except codec.UnsupportedProtocol as exc:
            writer.write(codec.connack(False, Reason.UNSUPPORTED_VERSION, v5=False))
            self.note_problem(None, f"refused: {exc}", peer)
        except codec.PacketTooLarge as exc:
            self.sink.count(Outcome.TOO_LARGE)
            self.note_problem(None, f"closed: CONNECT {exc}", peer)
        except codec.ProtocolError as exc:
            self.sink.count(Outcome.PROTOCOL_ERROR)
            self.note_problem(None, f"closed: bad CONNECT: {exc}", peer)
        except (EOFError, ConnectionError):
            pass
        return None

    async def _refuse(
        self, writer: WriterAdapter, connect: Connect, peer: str, refusal: Refusal
    ) -> None:
        self.sink.count(Outcome.CONNECT_REFUSED)
        self.note_problem(
            None, f"connection of client {connect.client_id[:64]!r} refused: {refusal.why}", peer
        )
        writer.write(codec.connack(False, refusal.reason, connect.v5))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), 2)

    async def _connection(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        transport: asyncio.BaseTransport,
        peer: str,
        listener_name: str,
    ) -> None:
        connect = await self._read_connect(reader, writer, peer)
        if connect is None:
            return
        # 1. Who is it? Checked before any session object exists or an existing one is
        # looked at, so a refused CONNECT costs one registry read and changes nothing.
        verdict = await asyncio.to_thread(
            self.authenticator.check, connect.username, connect.password
        )
        if isinstance(verdict, Refusal):
            await self._refuse(writer, connect, peer, verdict)
            return
        identity = verdict
        try:
            await asyncio.to_thread(self.sink.warm, identity)
        except Exception:  # only an optimisation: the first message loads what it needs
            log.exception("mqtt %s: could not preload device data", peer)
        refusal, client_id, assigned = self._admit_client_id(connect, identity)
        if refusal is not None:
            await self._refuse(writer, connect, peer, refusal)
            return
        if connect.will is not None and not identity.may_publish(connect.will.topic):
            await self._refuse(
                writer,
                connect,
                peer,
                Refusal(Reason.NOT_AUTHORIZED, f"will topic {connect.will.topic!r} not allowed"),
            )
            return
        # 2. A live connection with this client id (the same owner: checked above) is taken
        # over; wait until it has wound down so the session is ours alone.
        live = self._live.get(client_id)
        if live is not None:
            old_handler, finished = live
            old_handler.close_for_takeover()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), 5)
        if not assigned:
            self._bindings.bind(client_id, identity.owner)
        # 3. Resume or start the session (amqtt's _initialize_client_session rules).
        session_present = False
        session: Session
        if connect.clean_start:
            await self._delete_session(client_id)
            session = FastSession()
        elif client_id in self._sessions:
            session = self._sessions[client_id][0]
            session_present = True
        else:
            session = FastSession()
        session.client_id = client_id
        session.username = connect.username
        session.password = None
        session.attributes[IDENTITY_KEY] = identity
        session.keep_alive = connect.keep_alive_s
        address, _, port = peer.rpartition(":")
        session.remote_address = address
        session.remote_port = int(port) if port.isdigit() else 0
        will = connect.will
        session.will_flag = will is not None
        session.will_topic = will.topic if will else None
        session.will_message = will.payload if will else None
        session.will_qos = will.qos if will else None
        session.will_retain = False  # never stored as retained
        expiry = connect.properties.get(codec.PROP_SESSION_EXPIRY, 0)
        session.clean_session = connect.clean_start if not connect.v5 else expiry == 0
        session.parent = 1 if session_present else 0
        if session.transitions.is_connected():
            session.transitions.disconnect()
        session.transitions.connect()

        handler = SessionHandler(self.plugins_manager, self, connect, identity, peer, transport)
        handler.attach(session, reader, writer)
        self._sessions[client_id] = (session, handler)
        finished = asyncio.Event()
        self._live[client_id] = (handler, finished)
        if identity.kind == "service":
            self._service_sessions[client_id] = session
        device_id = identity.device_id
        if device_id is not None:
            handlers = self._device_handlers.setdefault(device_id, set())
            handlers.add(handler)
            if len(handlers) == 1:
                self.sink.connected(identity)
        props: dict[int, Any] = {
            codec.PROP_RETAIN_AVAILABLE: 0,
            codec.PROP_SHARED_AVAILABLE: 0,
            codec.PROP_SUBSCRIPTION_ID_AVAILABLE: 0,
            codec.PROP_MAXIMUM_PACKET_SIZE: self.limits.max_packet_bytes,
            codec.PROP_RECEIVE_MAXIMUM: self.limits.max_inflight,
        }
        if expiry > self.limits.session_expiry_s:
            props[codec.PROP_SESSION_EXPIRY] = self.limits.session_expiry_s
        if assigned:
            props[codec.PROP_ASSIGNED_CLIENT_ID] = client_id
        writer.write(codec.connack(session_present, Reason.SUCCESS, connect.v5, props))
        try:
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_CONNECTED, client_id=client_id, client_session=session
            )
            await handler.start()
            await self._publish_session_retained_messages(session)
            await self._client_message_loop(session, handler)
        finally:
            if self._live.get(client_id, (None,))[0] is handler:
                del self._live[client_id]
                self._bindings.release(client_id)
            finished.set()
            if device_id is not None:
                handlers = self._device_handlers.get(device_id, set())
                handlers.discard(handler)
                if not handlers:
                    self._device_handlers.pop(device_id, None)
                    if not handler.taken_over:
                        self.sink.disconnected(identity)

    def disconnect_device(self, device_id: int) -> int:
        handlers = list(self._device_handlers.get(device_id, ()))
        for handler in handlers:
            handler.close(Reason.ADMINISTRATIVE_ACTION)
        return len(handlers)

    def _admit_client_id(
        self, connect: Connect, identity: Identity
    ) -> tuple[Refusal | None, str, bool]:
        """(refusal or None, the client id to use, whether we assigned it)."""
        client_id = connect.client_id
        if not client_id:
            if not connect.clean_start and not connect.v5:
                return (
                    Refusal(Reason.CLIENT_ID_NOT_VALID, "an empty client id needs a clean session"),
                    client_id,
                    False,
                )
            return None, f"ww-{secrets.token_hex(8)}", True
        ref = identity.ref
        if ref is not None and ref.protocol is DeviceProtocol.NATIVE and client_id != ref.uid:
            return (
                Refusal(
                    Reason.CLIENT_ID_NOT_VALID,
                    f"a native device connects with its uid as client id, not {client_id[:64]!r}",
                ),
                client_id,
                False,
            )
        owners = {self._bindings.owner(client_id)}
        existing = self._sessions.get(client_id)
        if existing is not None:
            held = existing[0].attributes.get(IDENTITY_KEY)
            if isinstance(held, Identity):
                owners.add(held.owner)
        owners.discard(None)
        if owners and owners != {identity.owner}:
            log.warning(
                "mqtt: %s tried client id %r, which belongs to %s: refused",
                identity.owner,
                client_id[:64],
                ", ".join(sorted(o for o in owners if o)),
            )
            return (
                Refusal(Reason.CLIENT_ID_NOT_VALID, "client id belongs to another device"),
                client_id,
                False,
            )
        device_id = identity.device_id
        if device_id is not None:
            others = [
                h
                for h in self._device_handlers.get(device_id, ())
                if h.session is not None and h.session.client_id != client_id
            ]
            if len(others) >= self.limits.max_connections_per_device:
                return (
                    Refusal(
                        Reason.QUOTA_EXCEEDED,
                        f"device already has {len(others)} connections "
                        f"(limit {self.limits.max_connections_per_device})",
                    ),
                    client_id,
                    False,
                )
        return None, client_id, False

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any],
    ) -> None:
        if isinstance(handler, SessionHandler) and handler.taken_over:
            # The device reconnected: it is not gone, so no will message.
            await self._stop_handler(handler)
            client_session.transitions.disconnect()
            return
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)

    async def _delete_session(self, client_id: str) -> None:
        self._service_sessions.pop(client_id, None)
        await super()._delete_session(client_id)

    async def _cleanup_session(self, client_id: str) -> None:
        self._service_sessions.pop(client_id, None)
        await super()._cleanup_session(client_id)

    # -- subscriptions --------------------------------------------------------------------
    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        topic_filter, qos = subscription
        identity = session.attributes.get(IDENTITY_KEY)
        filters: dict[str, int] = session.attributes.setdefault(FILTERS_KEY, {})
        if topic_filter.startswith("$share/"):
            return Reason.SHARED_NOT_SUPPORTED
        if not isinstance(identity, Identity) or not identity.may_subscribe(topic_filter):
            self.sink.count(Outcome.FORBIDDEN)
            if isinstance(identity, Identity) and self._throttle.allow(identity.name):
                log.info("mqtt %s: may not subscribe to %r", identity.name, topic_filter[:120])
            return Reason.NOT_AUTHORIZED
        if topic_filter not in filters and len(filters) >= self.limits.max_subscriptions:
            return Reason.QUOTA_EXCEEDED
        # Deliveries are capped at QoS 1: QoS 2 buys nothing for readings and commands.
        granted = int(await super().add_subscription((topic_filter, min(qos, 1)), session))
        if granted < 0x80:
            filters[topic_filter] = granted
        return granted

    def _del_subscription(self, a_filter: str, session: Session) -> int:
        session.attributes.get(FILTERS_KEY, {}).pop(a_filter, None)
        return int(super()._del_subscription(a_filter, session))

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        """Retained messages are refused: nothing is ever stored for later subscribers."""

    # -- routing --------------------------------------------------------------------------
    def accept(
        self, handler: SessionHandler, pub: codec.Publish, received_ms: int, done: Done
    ) -> None:
        self.accept_message(handler.identity, pub.topic, pub.payload, pub.qos, received_ms, done)

    def accept_message(
        self,
        identity: Identity,
        topic: str,
        payload: bytes,
        qos: int,
        received_ms: int,
        done: Done,
    ) -> None:
        """A device (or the service account) published this and the ACL allowed it."""
        if self.replies.wants(topic):
            self.replies.offer(topic, payload, identity.device_id)
        if self._service_sessions and not topic.startswith(THINGSBOARD_ROOT):
            for session in list(self._service_sessions.values()):
                granted = self._granted(session, topic)
                if granted is not None:
                    self._send(session, topic, payload, min(qos, granted))
        self.sink.submit(Inbound(topic, payload, qos, received_ms, identity), done)

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        """amqtt calls this for will messages and internal broadcasts."""
        if topic is None or data is None:
            return
        identity = session.attributes.get(IDENTITY_KEY) if session is not None else None
        if isinstance(identity, Identity):
            # A will (Tasmota's LWT "Offline"): ingest it like a publish of the device.
            self.accept_message(identity, topic, bytes(data), force_qos or 0, _now_ms(), _ignore)
            return
        self.deliver(topic, bytes(data), force_qos or 0)

    def deliver(self, topic: str, payload: bytes, qos: int, *, device_id: int | None = None) -> int:
        """Send a server message to the sessions subscribed to ``topic``; return how many.

        With ``device_id`` only that device's sessions are considered; ThingsBoard topics
        name no device, so they need it. Offline device sessions get nothing: a command
        delivered hours late is worse than one that timed out.
        """
        thingsboard = topic.startswith(THINGSBOARD_ROOT)
        if thingsboard and device_id is None:
            raise ValueError("a v1/devices/me/… message needs the device it is for")
        sent = 0
        for session, _ in list(self._sessions.values()):
            identity = session.attributes.get(IDENTITY_KEY)
            if not isinstance(identity, Identity):
                continue
            if device_id is not None and identity.device_id != device_id:
                continue
            if identity.kind == "service" and thingsboard:
                continue
            granted = self._granted(session, topic)
            if granted is not None and self._send(session, topic, payload, min(qos, granted)):
                sent += 1
        return sent

    def _granted(self, session: Session, topic: str) -> int | None:
        filters: dict[str, int] | None = session.attributes.get(FILTERS_KEY)
        if not filters:
            return None
        best: int | None = None
        for topic_filter, qos in filters.items():
            if self._matches(topic, topic_filter) and (best is None or qos > best):
                best = qos
        return best

    def _send(self, session: Session, topic: str, payload: bytes, qos: int) -> bool:
        handler = self._get_handler(session)
        if session.transitions.state != "connected" or not isinstance(handler, SessionHandler):
            identity = session.attributes.get(IDENTITY_KEY)
            if (
                isinstance(identity, Identity)
                and identity.kind == "service"
                and not session.clean_session
                and qos > 0
                and session.retained_messages.qsize() < self.limits.max_queued_messages
            ):
                session.retained_messages.put_nowait(
                    RetainedApplicationMessage(None, topic, payload, qos)
                )
                return True
            return False
        task = asyncio.get_running_loop().create_task(
            _quietly(handler.mqtt_publish(topic, payload, qos, retain=False))
        )
        self.track(task)
        return True


async def _quietly(delivery: Awaitable[Any]) -> None:
    """A delivery that times out waiting for PUBACK (client gone) is not our error."""
    try:
        await delivery
    except (TimeoutError, ConnectionError, asyncio.CancelledError):
        pass
    except Exception as exc:
        log.debug("delivery failed: %r", exc)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ignore(outcome: Outcome) -> None:
    """Nobody waits for a will message's outcome."""


class EmbeddedBroker(RequestReply):
    """The running embedded broker: start/stop, server-side publish and request/response."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        authenticator: Authenticator,
        sink: MessageSink,
        limits: BrokerLimits | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.authenticator = authenticator
        self.sink = sink
        self.limits = limits or BrokerLimits()
        self.replies = ReplyWaiters()
        self._broker: WattwatchBroker | None = None

    @property
    def broker(self) -> WattwatchBroker:
        if self._broker is None:
            raise RuntimeError("the embedded broker is not running")
        return self._broker

    @property
    def port(self) -> int:
        return self.broker.port

    async def start(self) -> None:
        self._broker = WattwatchBroker(
            host=self.host,
            port=self.requested_port,
            authenticator=self.authenticator,
            sink=self.sink,
            replies=self.replies,
            limits=self.limits,
        )
        await self._broker.start()

    async def stop(self) -> None:
        broker = self._broker
        if broker is None:
            return
        await broker.shutdown()
        await broker.drain()  # commits of messages already read finish before the store closes
        self._broker = None

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, device_id: int | None = None
    ) -> int:
        return self.broker.deliver(topic, payload, qos, device_id=device_id)

    def disconnect_device(self, device_id: int) -> int:
        """Close every live connection of a device (its token changed); return how many.

        Call on the broker's event loop. The device must authenticate again to come back.
        """
        if self._broker is None:
            return 0
        return self._broker.disconnect_device(device_id)
