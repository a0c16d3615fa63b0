"""An external MQTT 5 broker (Mosquitto, EMQX…): shared-subscription consumer and publisher.

Every worker (``wattwatch worker``, or ``wattwatch serve --broker-url``) subscribes to the
device topics through the shared subscription ``$share/<group>/<filter>``, so the broker
hands each message to one member of the group. Messages are acknowledged by hand (paho
``manual_ack=True``, ``client.ack(mid, qos)``) only after their readings are committed; the
session is persistent (``clean_start=False``, a session expiry interval) under a stable client
id, so a worker that dies with messages in flight gets them again when it comes back with the
same id, and re-processing them is harmless: a repeated reading is a counted duplicate.

paho runs its network loop in its own thread; received messages cross to the asyncio loop in
batches (one wake-up per burst, not per message). Subscription identifiers tell shared
(ingest) deliveries from the plain subscriptions of ``request`` (replies to commands).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from wattwatch.broker.auth import THINGSBOARD_ROOT
from wattwatch.broker.rpc import ReplyWaiters, RequestReply
from wattwatch.broker.sink import Inbound, MessageSink, Outcome
from wattwatch.errors import ConfigError, InvalidInput

log = logging.getLogger(__name__)

# What devices publish (DESIGN.md §4). Shelly prefixes of more than one level need the
# embedded broker or an extra filter: MQTT has no "any number of levels, then /online".
DEVICE_FILTERS: tuple[str, ...] = (
    "wattwatch/+/telemetry",
    "wattwatch/+/status",
    "wattwatch/+/command/result",
    "tele/+/+",
    "stat/+/+",
    "+/status/+",
    "+/online",
    "+/events/rpc",
)
_INGEST_SUB = 1  # subscription identifier of the shared device subscriptions
_REPLY_SUB = 2  # … of the plain subscriptions that wait for replies
_RETRY_DELAYS_S = (0.5, 2.0, 5.0)


def parse_broker_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """(host, port, user, password, tls) of ``mqtt[s]://user:pass@host:port``."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"broker URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigError("broker URL has no host")
    tls = parts.scheme in ("mqtts", "ssl")
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError("broker URL has an invalid port") from None
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, user, password, tls


def default_client_id(role: str) -> str:
    return f"wattwatch-{role}-{socket.gethostname()}"[:64]


class ExternalBroker(RequestReply):
    def __init__(
        self,
        url: str,
        *,
        sink: MessageSink | None,
        client_id: str | None = None,
        share_group: str = "wattwatch",
        filters: tuple[str, ...] = DEVICE_FILTERS,
        session_expiry_s: int = 24 * 3600,
        receive_maximum: int = 1000,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.host, self.port, user, password, tls = parse_broker_url(url)
        if sink is not None and ("/" in share_group or "+" in share_group or "#" in share_group):
            raise ConfigError("share group must be one topic level without wildcards")
        self.sink = sink
        self.client_id = client_id or default_client_id("worker" if sink else "api")
        self.share_group = share_group
        self.filters = filters
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = max(1, min(receive_maximum, 65535))
        self.connect_timeout_s = connect_timeout_s
        self.replies = ReplyWaiters()
        self.received = 0  # messages taken from the shared subscriptions
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if user is not None:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set()
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: collections.deque[paho.MQTTMessage] = collections.deque()
        self._wake_pending = False
        self._wake_lock = threading.Lock()
        self._connected: asyncio.Future[None] | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._reply_topics: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsettled = 0  # messages handed to the sink, not yet acknowledged or given up
        self._stopping = False

    def describe(self) -> str:
        consuming = f", consuming $share/{self.share_group}/…" if self.sink else ""
        return f"mqtt://{self.host}:{self.port} as {self.client_id}{consuming}"

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._connected = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        try:
            self._client.connect_async(
                self.host, self.port, keepalive=30, clean_start=False, properties=props
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {exc}"
            ) from None
        self._client.loop_start()
        try:
            await asyncio.wait_for(asyncio.shield(self._connected), self.connect_timeout_s)
        except TimeoutError:
            await self._shutdown_client()
            raise ConfigError(
                f"no answer from the MQTT broker at {self.host}:{self.port} within "
                f"{self.connect_timeout_s:g} s"
            ) from None
        except ConfigError:
            await self._shutdown_client()
            raise

    async def stop(self) -> None:
        """Finish the messages in hand (commit, acknowledge), then disconnect."""
        self._stopping = True
        deadline = time.monotonic() + 30
        while self._unsettled and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._shutdown_client()

    async def _shutdown_client(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    # -- paho callbacks (paho's thread) -----------------------------------------------------
    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    def _on_connect(
        self, client: paho.Client, _: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._call(self._connect_failed, str(reason))
            return
        self._call(self._connected_ok)

    def _on_disconnect(
        self, client: paho.Client, _: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if not self._stopping:
            log.warning(
                "MQTT broker %s:%s disconnected us (%s); reconnecting", self.host, self.port, reason
            )

    def _on_subscribe(
        self, client: paho.Client, _: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        self._call(self._ack_done, mid, "; ".join(failed) or None)

    def _on_unsubscribe(
        self, client: paho.Client, _: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        self._call(self._ack_done, mid, None)

    def _on_message(self, client: paho.Client, _: Any, message: paho.MQTTMessage) -> None:
        self._inbox.append(message)
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self._call(self._drain_inbox)

    # -- asyncio side ---------------------------------------------------------------------
    def _connect_failed(self, why: str) -> None:
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(
                ConfigError(f"the MQTT broker at {self.host}:{self.port} refused us: {why}")
            )
        else:
            log.error("MQTT broker %s:%s refused the reconnection: %s", self.host, self.port, why)

    def _connected_ok(self) -> None:
        task = asyncio.get_running_loop().create_task(self._subscribe_all())
        self._track(task)

    async def _subscribe_all(self) -> None:
        try:
            if self.sink is not None:
                await self._subscribe(
                    [f"$share/{self.share_group}/{f}" for f in self.filters], _INGEST_SUB
                )
            if self._reply_topics:
                await self._subscribe(list(self._reply_topics), _REPLY_SUB)
        except Exception as exc:
            if self._connected is not None and not self._connected.done():
                self._connected.set_exception(exc)
            else:
                log.error("MQTT re-subscription failed: %s", exc)
            return
        if self._connected is not None and not self._connected.done():
            self._connected.set_result(None)

    def _ack_done(self, mid: int, failure: str | None) -> None:
        future = self._acks.pop(mid, None)
        if future is not None and not future.done():
            if failure:
                future.set_exception(InvalidInput(f"the broker refused: {failure}"))
            else:
                future.set_result(None)

    async def _subscribe(self, topics: list[str], sub_id: int) -> None:
        props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
        props.SubscriptionIdentifier = sub_id
        future = asyncio.get_running_loop().create_future()
        rc, mid = self._client.subscribe(
            [(t, SubscribeOptions(qos=1)) for t in topics], properties=props
        )
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            raise ConfigError(f"cannot subscribe: {paho.error_string(rc)}")
        self._acks[mid] = future
        await asyncio.wait_for(future, self.connect_timeout_s)

    async def _unsubscribe(self, topic: str) -> None:
        future = asyncio.get_running_loop().create_future()
        rc, mid = self._client.unsubscribe(topic)
        if rc != paho.MQTT_ERR_SUCCESS or mid is None:
            return
        self._acks[mid] = future
        with contextlib.suppress(Exception):
            await asyncio.wait_for(future, self.connect_timeout_s)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _drain_inbox(self) -> None:
        with self._wake_lock:
            self._wake_pending = False
        received_ms = int(time.time() * 1000)
        inbox = self._inbox
        while inbox:
            message = inbox.popleft()
            ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
            if isinstance(ids, int):
                ids = [ids]
            if _REPLY_SUB in ids:
                self.replies.offer(message.topic, bytes(message.payload), None)
            if _INGEST_SUB in ids and self.sink is not None:
                self.received += 1
                self._unsettled += 1
                self._submit(message, received_ms, 0)
            elif message.qos:
                self._client.ack(message.mid, message.qos)

    def _submit(self, message: paho.MQTTMessage, received_ms: int, attempt: int) -> None:
        assert self.sink is not None
        inbound = Inbound(message.topic, bytes(message.payload), message.qos, received_ms)
        self.sink.submit(inbound, partial(self._settled, message, received_ms, attempt))

    def _settled(
        self, message: paho.MQTTMessage, received_ms: int, attempt: int, outcome: Outcome
    ) -> None:
        """The sink is done with a message: acknowledge it, or try again, or give up."""
        if outcome is Outcome.ERROR:
            if attempt < len(_RETRY_DELAYS_S):
                log.warning("message on %r not processed; retrying", message.topic)
                asyncio.get_running_loop().call_later(
                    _RETRY_DELAYS_S[attempt], self._submit, message, received_ms, attempt + 1
                )
                return
            log.error(
                "message on %r still not processed: not acknowledged; the broker delivers it "
                "again after the reconnect",
                message.topic,
            )
            self._unsettled -= 1
            self._drop_connection()
            return
        self._unsettled -= 1
        if message.qos:
            self._client.ack(message.mid, message.qos)

    def _drop_connection(self) -> None:
        """Make paho's thread see a lost connection: it reconnects and the broker resends."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- Transport ------------------------------------------------------------------------
    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, device_id: int | None = None
    ) -> int:
        if topic.startswith(THINGSBOARD_ROOT):
            raise InvalidInput(
                "ThingsBoard devices share their topic names and need the embedded broker"
            )
        info = self._client.publish(topic, payload, qos)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise InvalidInput(f"cannot publish to the MQTT broker: {paho.error_string(info.rc)}")
        if qos:
            await asyncio.to_thread(info.wait_for_publish, self.connect_timeout_s)
        return 1

    @contextlib.asynccontextmanager
    async def listening(self, reply_topic: str) -> AsyncIterator[None]:
        # A plain (not shared) subscription: the reply must come to this process. Replies
        # are offered with no device: an external broker does not say who published.
        self._reply_topics[reply_topic] = self._reply_topics.get(reply_topic, 0) + 1
        try:
            if self._reply_topics[reply_topic] == 1:
                await self._subscribe([reply_topic], _REPLY_SUB)
            yield
        finally:
            self._reply_topics[reply_topic] -= 1
            if not self._reply_topics[reply_topic]:
                del self._reply_topics[reply_topic]
                await self._unsubscribe(reply_topic)
