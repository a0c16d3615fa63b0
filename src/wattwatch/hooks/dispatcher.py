"""The hook dispatcher: events to plugins, subscribed webhooks and alert rules' notify targets.

Producers (the pipeline, the alert engine, the broker and control services) call ``on_batch``,
``on_alert``, ``device_status`` and ``command_result``; each only puts the event on a bounded
queue and returns, from any thread. One worker task takes events off the queue, runs plugin
hooks in a worker thread and hands deliveries to the ``Deliverer``. When the queue is full the
event is dropped and counted: ingest is never slowed down by hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pluggy

from wattwatch.alerts.engine import AlertEvent
from wattwatch.domain import now_ms
from wattwatch.hooks.delivery import Deliverer, Delivery, RetryPolicy
from wattwatch.hooks.notifiers import (
    Event,
    Notifier,
    NotifierContext,
    PluginContext,
    Publish,
    SmtpConfig,
)
from wattwatch.hooks.plugins import call_each
from wattwatch.store.alerts import SqlAlertStore
from wattwatch.store.base import decode_row

if TYPE_CHECKING:
    from wattwatch.ingest.pipeline import CommittedBatch
    from wattwatch.store.registry import SqlRegistry

log = logging.getLogger(__name__)

EVENTS = (
    "reading.batch",
    "device.online",
    "device.offline",
    "command.result",
    "alert.raised",
    "alert.updated",
    "alert.acknowledged",
    "alert.cleared",
)
# Rule notify targets hear when an alert starts and ends, not every update.
NOTIFY_EVENTS = ("alert.raised", "alert.cleared")


class HookDispatcher:
    def __init__(
        self,
        pm: pluggy.PluginManager,
        store: SqlAlertStore,
        registry: SqlRegistry,
        *,
        data_dir: Path,
        retry: RetryPolicy | None = None,
        smtp: SmtpConfig | None = None,
        publish: Publish | None = None,
        queue_events: int = 10_000,
    ) -> None:
        self.pm = pm
        self.store = store
        self.registry = registry
        self.data_dir = data_dir
        self.queue_events = queue_events
        self.deliverer = Deliverer(store, retry)
        self.context = NotifierContext(
            webhook=self._webhook, http=self._client, smtp=smtp, publish=publish
        )
        self.notifiers: dict[str, Notifier] = {}
        for found in call_each(pm.hook.wattwatch_notifiers, context=self.context):
            for notifier in found:
                self.notifiers.setdefault(notifier.kind, notifier)
        self.dropped = 0
        self._webhooks: dict[int, dict[str, Any]] = {}
        self._subscribers: dict[tuple[int, str], list[int]] = {}
        self._batch_orgs: set[int] = set()
        self._plugins_want_batches = False
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._version: tuple[int, int] | None = None
        self._http: httpx.AsyncClient | None = None
        self._busy = False
        self._channel_names: dict[int, str] = {}
        self._plugin_thread: ThreadPoolExecutor | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self.queue_events)
        self._plugins_want_batches = bool(self.pm.hook.wattwatch_reading_batch.get_hookimpls())
        # Plugins run here, one at a time and in order, off the event loop.
        self._plugin_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plugins")
        await self.reload()
        ctx = PluginContext(data_dir=self.data_dir)
        await self._in_plugins(lambda: call_each(self.pm.hook.wattwatch_startup, context=ctx))
        self._worker = asyncio.create_task(self._work(), name="hooks-worker")
        self._poller = asyncio.create_task(self._poll(), name="hooks-poller")

    async def stop(self) -> None:
        await self.drain(timeout_s=5.0)
        for task in (self._worker, self._poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.deliverer.stop()
        await self._in_plugins(lambda: call_each(self.pm.hook.wattwatch_shutdown))
        if self._plugin_thread is not None:
            self._plugin_thread.shutdown(wait=True)
            self._plugin_thread = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until queued events are handed out (deliveries may still be retrying)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while (self._queue is not None and not self._queue.empty()) or self._busy:
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.005)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Redirects are not followed: a signed body goes only where it was addressed.
            self._http = httpx.AsyncClient(
                timeout=self.deliverer.policy.timeout_s, follow_redirects=False
            )
        return self._http

    async def reload(self) -> None:
        """Re-read the webhook subscriptions (after a change through the API)."""
        self._version = await asyncio.to_thread(self.store.webhooks_version)
        hooks = await asyncio.to_thread(self.store.enabled_webhooks)
        subscribers: dict[tuple[int, str], list[int]] = {}
        for hook in hooks:
            names = EVENTS if "*" in hook["events"] else hook["events"]
            for name in names:
                subscribers.setdefault((hook["org_id"], name), []).append(hook["id"])
        self._webhooks = {h["id"]: h for h in hooks}
        self._subscribers = subscribers
        self._batch_orgs = {org for org, name in subscribers if name == "reading.batch"}

    async def _poll(self, every_s: float = 5.0) -> None:
        """Pick up webhooks added or deleted by another process (CLI, another API replica)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                if await asyncio.to_thread(self.store.webhooks_version) != self._version:
                    await self.reload()
            except Exception:
                log.exception("checking for changed webhooks")

    def request_reload(self, timeout_s: float = 30.0) -> None:
        """``reload`` from an API worker thread, waiting for it (no-op when not running)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(self.reload(), loop).result(timeout_s)

    def _webhook(self, webhook_id: int) -> dict[str, Any] | None:
        return self._webhooks.get(webhook_id)

    # -- producers (any thread) -----------------------------------------------------------
    def _put(self, kind: str, item: Any) -> None:
        loop = self._loop
        if loop is None or self._queue is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            loop.call_soon_threadsafe(self._put, kind, item)
            return
        try:
            self._queue.put_nowait((kind, item))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("hook queue full: %d events dropped so far", self.dropped)

    def on_batch(self, batch: CommittedBatch) -> None:
        """Pipeline listener; costs one set lookup when nobody listens for readings."""
        if not batch.rows or (
            batch.org_id not in self._batch_orgs and not self._plugins_want_batches
        ):
            return
        self._put("batch", batch)

    def on_alert(self, event: AlertEvent) -> None:
        """Alert engine listener."""
        self._put("alert", event)

    def device_status(self, device_id: int, org_id: int, online: bool, ts_ms: int) -> None:
        self._put("status", (device_id, org_id, online, ts_ms))

    def command_result(
        self, device_id: int, org_id: int, result: dict[str, Any], ts_ms: int | None = None
    ) -> None:
        self._put("command", (device_id, org_id, result, ts_ms or now_ms()))

    def publish(self, event: Event) -> None:
        """Send any event to the webhooks subscribed to its name (no plugin hook)."""
        self._put("event", event)

    # -- the worker -----------------------------------------------------------------------
    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            kind, item = await self._queue.get()
            self._busy = True
            try:
                await self._handle(kind, item)
            except Exception:
                log.exception("hook event %s failed", kind)
            finally:
                self._busy = not self._queue.empty()

    async def _handle(self, kind: str, item: Any) -> None:
        pm = self.pm.hook
        if kind == "batch":
            batch: CommittedBatch = item
            readings = await asyncio.to_thread(self._readings_of, batch)
            org = batch.org_id or 0
            await self._in_plugins(
                lambda: call_each(
                    pm.wattwatch_reading_batch,
                    device_id=batch.device_id,
                    org_id=org,
                    readings=readings,
                )
            )
            event = Event(
                "reading.batch", org, now_ms(), {"device_id": batch.device_id, "readings": readings}
            )
        elif kind == "alert":
            alert: AlertEvent = item
            await self._in_plugins(
                lambda: call_each(
                    pm.wattwatch_alert, event=alert.name, alert=alert.alert, ts_ms=alert.ts_ms
                )
            )
            event = Event(alert.name, alert.org_id, alert.ts_ms, {"alert": alert.alert})
            if alert.name in NOTIFY_EVENTS:
                self._notify(event, alert.notify)
        elif kind == "status":
            device_id, org, online, ts = item
            await self._in_plugins(
                lambda: call_each(
                    pm.wattwatch_device_status,
                    device_id=device_id,
                    org_id=org,
                    online=online,
                    ts_ms=ts,
                )
            )
            name = "device.online" if online else "device.offline"
            event = Event(name, org, ts, {"device_id": device_id, "online": online})
        elif kind == "command":
            device_id, org, result, ts = item
            await self._in_plugins(
                lambda: call_each(
                    pm.wattwatch_command_result,
                    device_id=device_id,
                    org_id=org,
                    result=result,
                    ts_ms=ts,
                )
            )
            event = Event("command.result", org, ts, {"device_id": device_id, "result": result})
        else:
            event = item
        for webhook_id in self._subscribers.get((event.org_id, event.name), ()):
            self.deliver(event, {"kind": "webhook", "webhook_id": webhook_id})

    def _notify(self, event: Event, targets: list[dict[str, Any]]) -> None:
        for target in targets:
            if target.get("kind") == "webhook" and event.name in self._subscribed(
                target.get("webhook_id")
            ):
                continue  # the subscription delivers it already; once is enough
            self.deliver(event, target)

    def _subscribed(self, webhook_id: Any) -> tuple[str, ...]:
        hook = self._webhooks.get(webhook_id) if isinstance(webhook_id, int) else None
        if hook is None:
            return ()
        return EVENTS if "*" in hook["events"] else tuple(hook["events"])

    def deliver(self, event: Event, target: dict[str, Any]) -> None:
        notifier = self.notifiers.get(target.get("kind", ""))
        if notifier is None:
            log.warning("no notifier of kind %r; %s not sent", target.get("kind"), event.name)
            return
        try:
            body = notifier.render(target, event)
        except Exception:
            log.exception("notifier %s could not render %s", notifier.kind, event.name)
            return
        self.deliverer.submit(Delivery(event.org_id, notifier, target, event.name, body))

    def deliver_threadsafe(self, event: Event, target: dict[str, Any]) -> None:
        loop = self._loop
        if loop is None:
            raise LookupError("hooks are not running")
        loop.call_soon_threadsafe(self.deliver, event, target)

    def replay(self, letter: dict[str, Any]) -> None:
        """Deliver a dead letter again, byte for byte, with a fresh retry schedule."""
        notifier = self.notifiers.get(letter["channel"])
        if notifier is None:
            raise LookupError(f"no notifier of kind {letter['channel']!r} is loaded")
        target = {"kind": letter["channel"], **letter["target"]}
        delivery = Delivery(
            letter["org_id"],
            notifier,
            target,
            letter["event"],
            letter["body"].encode(),
            dead_letter_id=letter["id"],
        )
        loop = self._loop
        if loop is None:
            raise LookupError("hooks are not running")
        loop.call_soon_threadsafe(self.deliverer.submit, delivery)

    def _readings_of(self, batch: CommittedBatch) -> list[dict[str, Any]]:
        names = self._channel_names
        out = []
        for row in batch.rows:
            ch = row[0]
            if ch not in names:
                for c in self.registry.list_channels(batch.device_id):
                    names[c["id"]] = c["name"]
            point = decode_row((row[1], row[0], *row[2:]))
            del point["channel_id"]
            out.append(
                {
                    "ts": row[1],
                    "channel": names.get(ch, str(ch)),
                    **{k: v for k, v in point.items() if v is not None},
                }
            )
        return out

    async def _in_plugins(self, call: Any) -> None:
        loop = asyncio.get_running_loop()
        if self._plugin_thread is None:
            return
        try:
            await loop.run_in_executor(self._plugin_thread, call)
        except Exception:
            log.exception("a plugin hook failed")
