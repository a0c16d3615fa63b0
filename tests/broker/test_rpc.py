"""``rpc.RequestReply``: the one ``request`` both transports use, on a fake transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from wattwatch.broker.rpc import ReplyWaiters, RequestReply
from wattwatch.errors import DeviceTimeout


class FakeTransport(RequestReply):
    """Answers each publish on ``<topic>/reply`` (when ``answer``), from device 7."""

    def __init__(self, *, answer: bool = True, sender: int | None = 7) -> None:
        self.replies = ReplyWaiters()
        self.answer = answer
        self.sender = sender
        self.published: list[tuple[str, bytes, int, int | None]] = []
        self.listening_to: list[str] = []

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, device_id: int | None = None
    ) -> int:
        self.published.append((topic, payload, qos, device_id))
        if self.answer:
            # The reply may come before publish returns: the waiter must exist already.
            self.replies.offer(f"{topic}/reply", b"ok:" + payload, self.sender)
        return 1

    @contextlib.asynccontextmanager
    async def listening(self, reply_topic: str) -> AsyncIterator[None]:
        self.listening_to.append(reply_topic)
        try:
            yield
        finally:
            self.listening_to.remove(reply_topic)


def test_request_returns_the_reply_and_cleans_up() -> None:
    async def scenario() -> None:
        transport = FakeTransport()
        reply = await transport.request("cmd", b"on", "cmd/reply", qos=0, device_id=7)
        assert reply == b"ok:on"
        assert transport.published == [("cmd", b"on", 0, 7)]
        assert len(transport.replies) == 0 and transport.listening_to == []

    asyncio.run(scenario())


def test_a_reply_from_another_device_or_not_matching_is_not_taken() -> None:
    async def scenario() -> None:
        other = FakeTransport(sender=8)
        with pytest.raises(DeviceTimeout):
            await other.request("cmd", b"on", "cmd/reply", timeout_s=0.05, device_id=7)
        unknown_sender = FakeTransport(sender=None)  # an external broker: taken
        assert await unknown_sender.request("cmd", b"on", "cmd/reply", device_id=7) == b"ok:on"
        picky = FakeTransport()
        with pytest.raises(DeviceTimeout):
            await picky.request("cmd", b"on", "cmd/reply", timeout_s=0.05, match=lambda p: False)

    asyncio.run(scenario())


def test_timeout_says_where_it_waited_and_cleans_up() -> None:
    async def scenario() -> None:
        transport = FakeTransport(answer=False)
        with pytest.raises(DeviceTimeout, match=r"no answer on cmd/reply within 0\.05 s"):
            await transport.request("cmd", b"on", "cmd/reply", timeout_s=0.05)
        assert len(transport.replies) == 0 and transport.listening_to == []

    asyncio.run(scenario())
