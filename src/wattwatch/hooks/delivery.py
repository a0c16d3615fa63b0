"""Delivery with retries: a bounded exponential backoff schedule, then the dead-letter list.

Every send runs in its own task, so a slow or dead receiver holds nothing but that task;
``submit`` never waits. At most ``max_pending`` deliveries are in flight: past that a new one
goes straight to the dead-letter list, where it can be inspected and replayed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from wattwatch.domain import now_ms
from wattwatch.hooks.notifiers import DeliveryError, Notifier
from wattwatch.store.alerts import SqlAlertStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` tries in all; the waits between them grow by ``factor`` up to a cap."""

    attempts: int = 6
    first_delay_s: float = 2.0
    factor: float = 4.0
    max_delay_s: float = 600.0
    timeout_s: float = 10.0

    def delays(self) -> list[float]:
        """Waits before tries 2 … ``attempts`` (defaults: 2, 8, 32, 128, 512 s)."""
        return [
            min(self.first_delay_s * self.factor**i, self.max_delay_s)
            for i in range(self.attempts - 1)
        ]


@dataclass(slots=True)
class Delivery:
    org_id: int
    notifier: Notifier
    target: dict[str, Any]
    event: str
    body: bytes
    dead_letter_id: int | None = None  # a replay updates its dead letter


class Deliverer:
    def __init__(
        self,
        store: SqlAlertStore,
        policy: RetryPolicy | None = None,
        *,
        concurrency: int = 32,
        max_pending: int = 10_000,
    ) -> None:
        self.store = store
        self.policy = policy or RetryPolicy()
        self.max_pending = max_pending
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], Delivery] = {}
        self.delivered = 0
        self.dead = 0

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, delivery: Delivery) -> None:
        """Start delivering (returns at once; call on the event loop)."""
        if len(self._tasks) >= self.max_pending:
            self._spawn(self._bury(delivery, 0, "too many deliveries pending; not attempted"))
            return
        task = self._spawn(self._run(delivery))
        self._waiting[task] = delivery

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._waiting.pop(task, None)

    async def _run(self, d: Delivery) -> None:
        delays = self.policy.delays()
        error = "not attempted"
        attempt = 0
        for attempt in range(1, self.policy.attempts + 1):
            try:
                async with self._slots:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                    # cancellation that coincides with the send failing (gh-86296), and stop()
                    # would then wait out the whole retry schedule.
                    async with asyncio.timeout(self.policy.timeout_s):
                        await d.notifier.send(d.target, d.event, d.body)
            except TimeoutError:
                error = f"no answer within {self.policy.timeout_s:g} s"
            except DeliveryError as exc:
                error = str(exc)
                if exc.permanent:
                    break
            except Exception as exc:  # a plugin notifier's bug must not kill delivery
                error = f"{type(exc).__name__}: {exc}"
            else:
                self.delivered += 1
                if d.dead_letter_id is not None:
                    await asyncio.to_thread(self._mark, d.dead_letter_id, "delivered", attempt, "")
                return
            if attempt <= len(delays):
                log.info(
                    "%s delivery of %s failed (%s); retry %d",
                    d.notifier.kind,
                    d.event,
                    error,
                    attempt,
                )
                await asyncio.sleep(delays[attempt - 1])
        await self._bury(d, attempt, error)

    async def _bury(self, d: Delivery, attempts: int, error: str) -> None:
        self.dead += 1
        log.warning(
            "%s delivery of %s gave up after %d attempts: %s",
            d.notifier.kind,
            d.event,
            attempts,
            error,
        )
        try:
            if d.dead_letter_id is not None:
                await asyncio.to_thread(self._mark, d.dead_letter_id, "dead", attempts, error)
            else:
                await asyncio.to_thread(self._add, d, attempts, error)
        except Exception:
            log.exception("could not record a dead letter for %s", d.event)

    def _add(self, d: Delivery, attempts: int, error: str) -> None:
        ts = now_ms()
        try:
            target = d.notifier.describe(d.target)
        except Exception:
            target = {}
        self.store.add_dead_letter(
            {
                "org_id": d.org_id,
                "webhook_id": d.target.get("webhook_id"),
                "channel": d.notifier.kind,
                "target": {**d.target, **target},
                "event": d.event,
                "body": d.body.decode("utf-8", "replace"),
                "attempts": attempts,
                "last_error": error[:2000],
                "state": "dead",
                "created_ms": ts,
                "updated_ms": ts,
            }
        )

    def _mark(self, letter_id: int, state: str, attempts: int, error: str) -> None:
        values: dict[str, Any] = {"state": state, "updated_ms": now_ms()}
        if state == "dead":
            values.update(last_error=error[:2000], attempts=attempts)
        self.store.update_dead_letter(letter_id, values)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Give deliveries a moment; what is still retrying becomes a dead letter."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_s)
        left = list(self._waiting.items())
        for task, _ in left:
            task.cancel()
        if left:
            await asyncio.wait([task for task, _ in left], timeout=grace_s)
        for _, d in left:
            await self._bury(d, 0, "wattwatch stopped before it was delivered")
        writing = [t for t in self._tasks if t not in self._waiting]  # dead letters being written
        if writing:
            await asyncio.wait(writing, timeout=grace_s)

    async def idle(self) -> None:
        """Wait until nothing is in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
