"""amqtt's broker protocol handler with our own reader: MQTT 5, limits, PUBACK after commit.

Stock amqtt (``ProtocolHandler._handle_qos1_message_flow``) queues an incoming QoS 1 message
for delivery and sends PUBACK straight away, before anybody has looked at it; it reads a packet
body of any announced size, never enforces keep-alive (``BrokerProtocolHandler.
handle_read_timeout`` is a no-op) and speaks 3.1.1 only. ``SessionHandler`` replaces the reader
loop: packets are read whole within the size limit and parsed by ``codec``; a PUBLISH is
checked against the session's ACL and handed to the broker (→ ingest) with a callback, and
joins the connection's queue of pending acknowledgements (up to ``max_inflight``, so several
messages of one connection ride in one group commit). When the commit answers, the finished
entries at the head of the queue are acknowledged, in the order the PUBLISHes arrived. If the
commit fails the message is not acknowledged and the connection is closed, so the client sends
it again. Subscriptions, deliveries to the client and session state stay amqtt's.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket

from wattwatch.broker import codec
from wattwatch.broker.codec import (
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    Connect,
    PacketTooLarge,
    ProtocolError,
    Reason,
)
from wattwatch.broker.sink import Outcome

if TYPE_CHECKING:
    from wattwatch.broker.auth import Identity
    from wattwatch.broker.embedded import WattwatchBroker

log = logging.getLogger(__name__)

# MQTT 5 PUBACK reason per outcome; 3.1.1 has no way to say anything but "received".
_PUBACK_REASON = {
    Outcome.REJECTED: Reason.IMPLEMENTATION_SPECIFIC,
    Outcome.FORBIDDEN: Reason.NOT_AUTHORIZED,
    Outcome.UNKNOWN_TOPIC: Reason.TOPIC_NAME_INVALID,
    Outcome.UNKNOWN_DEVICE: Reason.TOPIC_NAME_INVALID,
}
# DISCONNECT reason "disconnect with will message" (MQTT 5).
_WITH_WILL = 0x04
# The largest packet MQTT can frame; what a client that names no maximum accepts.
_MQTT_MAX_PACKET = 268_435_460


class _PendingAck:
    """A QoS 1/2 PUBLISH waiting for its outcome before it may be acknowledged."""

    __slots__ = ("outcome", "packet_id", "qos")

    def __init__(self, packet_id: int, qos: int) -> None:
        self.packet_id = packet_id
        self.qos = qos
        self.outcome: Outcome | None = None


def _ignore(outcome: Outcome) -> None:
    """QoS 0: nobody is told."""


class SessionHandler(BrokerProtocolHandler):  # type: ignore[misc]
    def __init__(
        self,
        plugins_manager: Any,
        broker: WattwatchBroker,
        connect: Connect,
        identity: Identity,
        peer: str,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        super().__init__(plugins_manager)
        self.broker = broker
        self.transport = transport
        self.v5 = connect.v5
        self.identity = identity
        self.peer = peer
        self.client_max_packet = int(
            connect.properties.get(codec.PROP_MAXIMUM_PACKET_SIZE) or _MQTT_MAX_PACKET
        )
        self.max_inflight = broker.limits.max_inflight
        self.keep_alive_s = connect.keep_alive_s
        # Set when another connection took this session over: no will, no presence change.
        self.taken_over = False
        self._acks: collections.deque[_PendingAck] = collections.deque()
        self._room: asyncio.Future[None] | None = None
        self._flush_scheduled = False
        self._qos2: set[int] = set()
        self._unsub_counts: dict[int, int] = {}
        self._last_rx = time.monotonic()
        self._watchdog: asyncio.TimerHandle | None = None
        self._retain_noted = False

    # -- reading ------------------------------------------------------------------------
    async def _reader_loop(self) -> None:
        assert self._reader_ready is not None and self.reader is not None
        self._reader_ready.set()
        self._arm_watchdog()
        limit = self.broker.limits.max_packet_bytes
        reader = self.reader
        try:
            while True:
                first, body = await codec.read_packet(reader, limit)
                self._last_rx = time.monotonic()
                kind = first >> 4
                if kind == PUBLISH:
                    await self._on_publish(first, body)
                elif kind == PUBACK:
                    waiter = self._puback_waiters.get(codec.parse_packet_id(body))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(PubackPacket.build(codec.parse_packet_id(body)))
                elif kind == PUBREL:
                    packet_id = codec.parse_packet_id(body)
                    self._qos2.discard(packet_id)
                    self._write(codec.ack(PUBCOMP, packet_id))
                elif kind in (PUBREC, PUBCOMP):
                    pass  # deliveries are capped at QoS 1: nothing of ours is waiting for these
                elif kind == SUBSCRIBE:
                    packet_id, topics = codec.parse_subscribe(first, body, self.v5)
                    await self._pending_subscriptions.put(Subscription(packet_id, topics))
                elif kind == UNSUBSCRIBE:
                    packet_id, filters = codec.parse_unsubscribe(first, body, self.v5)
                    self._unsub_counts[packet_id] = len(filters)
                    await self._pending_unsubscriptions.put(UnSubscription(packet_id, filters))
                elif kind == PINGREQ:
                    self._write(codec.PINGRESP_BYTES)
                elif kind == DISCONNECT:
                    if codec.parse_disconnect_reason(body, self.v5) != _WITH_WILL:
                        await self.handle_disconnect(DisconnectPacket())
                    break
                else:
                    raise ProtocolError(
                        f"unexpected packet type {kind} from a client", Reason.PROTOCOL_ERROR
                    )
        except (EOFError, ConnectionError, asyncio.CancelledError):
            pass
        except PacketTooLarge as exc:
            self.broker.sink.count(Outcome.TOO_LARGE)
            self.broker.note_problem(self, f"closed: {exc}")
            self._close(exc.reason)
        except ProtocolError as exc:
            self.broker.sink.count(Outcome.PROTOCOL_ERROR)
            self.broker.note_problem(self, f"closed: protocol error: {exc}")
            self._close(exc.reason)
        except Exception:
            log.exception("%s: reader failed", self.peer)
            self._close(Reason.UNSPECIFIED)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            await self.handle_connection_closed()
            self._reader_stopped.set()
            await self.stop()

    async def _on_publish(self, first: int, body: bytes) -> None:
        pub = codec.parse_publish(first, body, self.v5)
        if pub.topic_alias is not None:
            raise ProtocolError("topic aliases are not enabled", Reason.TOPIC_ALIAS_INVALID)
        topic = pub.topic
        if not topic or "+" in topic or "#" in topic or topic.startswith("$"):
            # [MQTT-3.3.2-2]: a wildcard in a PUBLISH topic is a protocol violation.
            raise ProtocolError(f"invalid topic name {topic[:60]!r}", Reason.TOPIC_NAME_INVALID)
        if pub.retain:
            if self.v5:  # we announce Retain Available = 0, so this is a protocol error
                raise ProtocolError("retained messages are refused", Reason.RETAIN_NOT_SUPPORTED)
            if not self._retain_noted:
                self._retain_noted = True
                self.broker.note_problem(
                    self, f"retain flag refused on {topic!r}: handled as an ordinary message"
                )
        packet_id = pub.packet_id
        if pub.qos == 2 and packet_id in self._qos2:
            self._write(codec.ack(PUBREC, packet_id, v5=self.v5))  # a resend of one we have
            return
        if not self.identity.may_publish(topic):
            self.broker.refuse_publish(self, topic)
            if packet_id is not None:
                kind = PUBACK if pub.qos == 1 else PUBREC
                if pub.qos == 2:
                    self._qos2.add(packet_id)
                self._write(codec.ack(kind, packet_id, Reason.NOT_AUTHORIZED, self.v5))
            return
        received_ms = int(time.time() * 1000)
        if pub.qos == 0:
            self.broker.accept(self, pub, received_ms, _ignore)
        else:
            entry = _PendingAck(packet_id or 0, pub.qos)
            self._acks.append(entry)
            self.broker.accept(self, pub, received_ms, partial(self._done, entry))
        if len(self._acks) >= self.max_inflight or self.broker.sink.saturated:
            # Stop reading: TCP pushes back on the client until commits free some room.
            while len(self._acks) >= self.max_inflight:
                self._room = asyncio.get_running_loop().create_future()
                await self._room
            await self.broker.sink.room()

    def _done(self, entry: _PendingAck, outcome: Outcome) -> None:
        entry.outcome = outcome
        if not self._flush_scheduled and self._acks and self._acks[0] is entry:
            # A commit answers all its messages in one go: acknowledge after the last of
            # them, so a connection's messages of one commit cost one write (one syscall).
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        """Acknowledge the finished messages at the head of the queue, in arrival order."""
        self._flush_scheduled = False
        acks = self._acks
        out: list[bytes] = []
        while acks:
            outcome = acks[0].outcome
            if outcome is None:
                break
            entry = acks.popleft()
            if outcome is Outcome.ERROR:
                # Not acknowledged: closing makes the client resend it after reconnecting,
                # and a redelivered reading is a counted duplicate, never a second row.
                acks.clear()
                self._close(Reason.IMPLEMENTATION_SPECIFIC)
                return
            reason = _PUBACK_REASON.get(outcome, Reason.SUCCESS)
            if entry.qos == 2:
                self._qos2.add(entry.packet_id)
                out.append(codec.ack(PUBREC, entry.packet_id, reason, self.v5))
            else:
                out.append(codec.ack(PUBACK, entry.packet_id, reason, self.v5))
        if out:
            self._write(b"".join(out))
        if self._room is not None and not self._room.done() and len(acks) < self.max_inflight:
            self._room.set_result(None)

    # -- keep-alive -----------------------------------------------------------------------
    def _arm_watchdog(self) -> None:
        if self.keep_alive_s > 0:
            # [MQTT-3.1.2-24]: no packet within 1.5 × keep-alive → the client is gone.
            self._watchdog = asyncio.get_running_loop().call_later(
                self.keep_alive_s * 1.5, self._check_alive
            )

    def _check_alive(self) -> None:
        limit = self.keep_alive_s * 1.5
        idle = time.monotonic() - self._last_rx
        if idle >= limit:
            self.broker.note_problem(
                self,
                f"closed: nothing received for {idle:.0f} s (keep-alive {self.keep_alive_s} s)",
            )
            self._close(Reason.KEEP_ALIVE_TIMEOUT)
        else:
            self._watchdog = asyncio.get_running_loop().call_later(limit - idle, self._check_alive)

    # -- writing --------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.writer is not None and not self.closing:
            self.writer.write(data)

    @property
    def closing(self) -> bool:
        return self.transport is not None and self.transport.is_closing()

    def _close(self, reason: Reason) -> None:
        """Drop the connection (MQTT 5: say why first); the reader then ends abnormally."""
        if self.v5:
            self._write(codec.disconnect(reason))
        if self.transport is not None:
            # Closing the transport ends the reader at once; amqtt's writer.close() would
            # first wait for a drain that a client which stopped reading never allows.
            self.transport.close()

    def close(self, reason: Reason) -> None:
        """End this connection from the server side (takeover, revoked credentials…)."""
        self._close(reason)

    def close_for_takeover(self) -> None:
        self.taken_over = True
        self._close(Reason.SESSION_TAKEN_OVER)

    async def _send_packet(self, packet: Any) -> None:
        writer = self.writer
        if writer is None or self.closing:
            return
        if isinstance(packet, PublishPacket):
            data = codec.publish(
                packet.topic_name or "",
                bytes(packet.data or b""),
                packet.qos or 0,
                packet.packet_id,
                retain=False,
                dup=packet.dup_flag,
                v5=self.v5,
            )
            if len(data) > self.client_max_packet:
                log.info(
                    "%s: not delivering %d bytes on %s: over the client's maximum packet size",
                    self.peer,
                    len(data),
                    packet.topic_name,
                )
                return
        else:
            data = bytes(packet.to_bytes())
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            await self.handle_connection_closed()

    async def mqtt_acknowledge_subscription(self, packet_id: int, return_codes: list[int]) -> None:
        self._write(codec.suback(packet_id, return_codes, self.v5))

    async def mqtt_acknowledge_unsubscription(self, packet_id: int) -> None:
        count = self._unsub_counts.pop(packet_id, 1)
        self._write(codec.unsuback(packet_id, count, self.v5))
