"""Server-side publish and request/response over MQTT: publish, then await the reply topic.

Both transports (the embedded broker and the external-broker client) implement
``Transport``, ``request`` through ``RequestReply``; they offer every message a device
publishes to their ``ReplyWaiters`` before it goes to ingest, so a waiter sees the raw reply
whatever ingest makes of it. A reply is matched by topic, by the device that sent it when the
transport knows it (on the embedded broker it always does: ThingsBoard devices all answer on
``v1/devices/me/rpc/response/<n>``), and by an optional predicate on the payload (a request
id inside it).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from wattwatch.errors import DeviceTimeout

Match = Callable[[bytes], bool]


class Requester(Protocol):
    """The request half of ``Transport``: what control code needs to command a device."""

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
        """Publish and return the first reply on ``reply_topic`` (``DeviceTimeout`` if none)."""
        ...


class Transport(Requester, Protocol):
    """What control code needs from whichever broker wattwatch is attached to."""

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, device_id: int | None = None
    ) -> int:
        """Send ``payload`` on ``topic`` from the server; return how many sessions got it
        (the external broker does not say: it returns 1 once the broker accepted it).
        ``device_id`` restricts delivery to that device's connections."""
        ...


@dataclass(eq=False, slots=True)
class _Waiter:
    topic: str
    device_id: int | None
    match: Match | None
    future: asyncio.Future[bytes] = field(repr=False)


class ReplyWaiters:
    """Futures waiting for a message on a topic, optionally from one device."""

    def __init__(self) -> None:
        self._by_topic: dict[str, list[_Waiter]] = {}

    def __len__(self) -> int:
        return sum(len(w) for w in self._by_topic.values())

    def expect(
        self, topic: str, *, device_id: int | None = None, match: Match | None = None
    ) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._by_topic.setdefault(topic, []).append(_Waiter(topic, device_id, match, future))
        return future

    def discard(self, future: asyncio.Future[bytes]) -> None:
        for topic, waiters in list(self._by_topic.items()):
            kept = [w for w in waiters if w.future is not future]
            if kept:
                self._by_topic[topic] = kept
            else:
                del self._by_topic[topic]
        if not future.done():
            future.cancel()

    def wants(self, topic: str) -> bool:
        return topic in self._by_topic

    def offer(self, topic: str, payload: bytes, device_id: int | None) -> bool:
        """Hand a received message to the oldest matching waiter; True if one took it."""
        waiters = self._by_topic.get(topic)
        if not waiters:
            return False
        for waiter in waiters:
            if waiter.future.done():
                continue
            if None not in (waiter.device_id, device_id) and waiter.device_id != device_id:
                continue
            try:
                if waiter.match is not None and not waiter.match(payload):
                    continue
            except Exception:  # a predicate bug must not break message handling
                continue
            waiter.future.set_result(payload)
            return True
        return False


class RequestReply(ABC):
    """``Transport.request`` for a transport that has ``publish`` and feeds ``replies``.

    A transport that must subscribe before replies on a topic reach it overrides
    ``listening``.
    """

    replies: ReplyWaiters

    @abstractmethod
    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, device_id: int | None = None
    ) -> int: ...

    def listening(self, reply_topic: str) -> contextlib.AbstractAsyncContextManager[object]:
        """Have messages on ``reply_topic`` offered to ``replies`` while the block runs."""
        return contextlib.nullcontext()

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
        """Publish and return the first reply on ``reply_topic`` (``DeviceTimeout`` if none).

        The waiter exists before the request leaves, so a fast device cannot answer too
        early. A transport that does not know who published offers replies with no device,
        which every waiter accepts.
        """
        async with self.listening(reply_topic):
            future = self.replies.expect(reply_topic, device_id=device_id, match=match)
            try:
                await self.publish(topic, payload, qos, device_id=device_id)
                return await asyncio.wait_for(asyncio.shield(future), timeout_s)
            except TimeoutError:
                raise DeviceTimeout(f"no answer on {reply_topic} within {timeout_s:g} s") from None
            finally:
                self.replies.discard(future)
