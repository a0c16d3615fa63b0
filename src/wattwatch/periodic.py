"""Background tasks of ``wattwatch serve``: one asyncio task each, started and stopped with the
app, that look every little while for work that is due and never take the server down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time


class BackgroundTask:
    """One asyncio task running :meth:`run` until :meth:`stop`; ``start`` is a no-op when it
    runs already or when not :attr:`enabled`."""

    task_name = "background"
    _task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return True

    def start(self) -> None:
        if self._task is None and self.enabled:
            self._task = asyncio.create_task(self.run(), name=self.task_name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        raise NotImplementedError


class PeriodicTask(BackgroundTask):
    """After ``first_delay_s``, every ``poll_s`` runs :meth:`run_due` in a worker thread; a
    failure is logged to ``logger`` with ``failure_message`` and the next round tries again."""

    poll_s: float = 30.0
    first_delay_s: float = 0.0
    logger = logging.getLogger(__name__)
    failure_message = "periodic task failed"

    def run_due(self, now_s: float, last: dict[str, float]) -> None:
        """Do whatever is due at ``now_s`` (blocking); ``last`` remembers when each ran."""
        raise NotImplementedError

    async def run(self) -> None:
        last: dict[str, float] = {}
        await asyncio.sleep(self.first_delay_s)
        while True:
            try:
                await asyncio.to_thread(self.run_due, time.time(), last)
            except Exception:  # must never take the server down; try again later
                self.logger.exception(self.failure_message)
            await asyncio.sleep(self.poll_s)
