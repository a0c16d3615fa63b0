"""The boundary between a broker and wattwatch: messages in, outcomes and presence out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from wattwatch.broker.auth import Identity


class Outcome(StrEnum):
    """What became of one device message (the ``outcome`` label of ``wattwatch_messages``)."""

    ACCEPTED = "accepted"  # readings committed (maybe some rejected too: see PARTIAL)
    PARTIAL = "partial"  # some readings committed, some rejected
    DUPLICATE = "duplicate"  # every reading was already stored (QoS 1 redelivery)
    REJECTED = "rejected"  # decoded, but no reading was acceptable
    STATUS = "status"  # presence / attributes / command result, no readings
    IGNORED = "ignored"  # a topic of the protocol that carries nothing we store
    FORBIDDEN = "forbidden"  # the sender may not publish there
    UNKNOWN_TOPIC = "unknown_topic"  # no protocol recognises the topic
    UNKNOWN_DEVICE = "unknown_device"  # the topic names no registered device
    TOO_LARGE = "too_large"  # over the maximum packet size
    RATE_LIMITED = "rate_limited"  # QoS 0 over the device's rate limit: dropped
    PROTOCOL_ERROR = "protocol_error"  # malformed MQTT: the connection was closed
    CONNECT_REFUSED = "connect_refused"  # a CONNECT refused (credentials, client id, limits)
    ERROR = "error"  # our failure (store down…): not acknowledged, the sender retries

    @property
    def acknowledged(self) -> bool:
        return self is not Outcome.ERROR


@dataclass(slots=True)
class Inbound:
    """One message a device (or the service account) published."""

    topic: str
    payload: bytes
    qos: int
    received_ms: int
    # Who sent it when the broker knows (embedded broker); None from an external broker.
    identity: Identity | None = None


Done = Callable[[Outcome], None]


class MessageSink(Protocol):
    def submit(self, message: Inbound, done: Done) -> None:
        """Take the message; call ``done(outcome)`` once its readings are committed or
        rejected: at once when it has none, later (from the event loop) when it has.

        ``Outcome.ERROR`` means "not processed": the broker must not acknowledge it, so the
        sender (or the external broker) delivers it again.
        """
        ...

    async def handle(self, message: Inbound) -> Outcome:
        """``submit`` for callers that would rather await the outcome."""
        ...

    @property
    def saturated(self) -> bool:
        """Too many readings wait for the store: stop reading from clients for now."""
        ...

    async def room(self) -> None:
        """Wait until the sink is no longer saturated."""
        ...

    def warm(self, identity: Identity) -> None:
        """Blocking, run in a worker thread at CONNECT: load what the device's messages will
        need (its channels), so the first one does no registry query on the event loop."""
        ...

    def connected(self, identity: Identity) -> None:
        """A device's first connection opened (embedded broker)."""
        ...

    def disconnected(self, identity: Identity) -> None:
        """A device's last connection closed (embedded broker)."""
        ...

    def count(self, outcome: Outcome) -> None:
        """Count a message the broker disposed of itself (forbidden, too large…)."""
        ...
