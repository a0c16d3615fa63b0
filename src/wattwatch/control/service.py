"""On/off commands: send in the device's protocol, await the matching answer, audit everything.

A command is recorded (``pending``) before it leaves, and its row id is the request id the
device echoes (ThingsBoard and Shelly turn it into their integer ids), so two pending commands
never share an id. The answer is matched by the device's connection, the reply topic and, where
the protocol carries one, that id; Tasmota answers carry none, so commands to one device are
sent one at a time (a per-device lock) and the next answer on its ``stat/<topic>/RESULT`` is
the answer. The outcome (ok, refused, timeout, error) and the relay state the device reported
are written in one transaction with the device's ``state``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wattwatch.control.sessions import CommandTransport
from wattwatch.domain import (
    CommandAction,
    CommandResult,
    DeviceKind,
    DeviceProtocol,
    DeviceRef,
    Role,
    now_ms,
)
from wattwatch.errors import Conflict, DeviceTimeout, InvalidInput, WattwatchError
from wattwatch.protocols import adapter_for, command_answer
from wattwatch.registry.service import Principal, RegistryService
from wattwatch.store.control import SqlControlStore

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 60.0
# Commands of one group command in flight at once (a site of 200 plugs goes in a few waves).
MAX_PARALLEL = 64
SWITCHABLE_KINDS = frozenset({DeviceKind.PLUG})

ResultListener = Callable[[int, int, dict[str, Any], int], None]


def parse_action(action: str) -> CommandAction:
    try:
        return CommandAction(str(action).lower())
    except ValueError:
        raise InvalidInput(f"action must be on, off or toggle, not {str(action)[:20]!r}") from None


def device_ref(device: dict[str, Any]) -> DeviceRef:
    return DeviceRef(
        id=int(device["id"]),
        uid=device["uid"],
        protocol=DeviceProtocol(device["protocol"]),
        topic=device["topic"],
        key_map=dict(device.get("key_map") or {}),
    )


def why_not_switchable(device: dict[str, Any]) -> str | None:
    """Why commands cannot go to this device, or None when they can."""
    if device["kind"] not in SWITCHABLE_KINDS:
        return f"{device['name']} is a {device['kind']}; only plugs can be switched"
    try:
        adapter_for(device["protocol"])
    except ValueError:
        return f"{device['name']} speaks {device['protocol']} only and cannot receive commands"
    return None


def public_command(row: dict[str, Any]) -> dict[str, Any]:
    """An audit row as the API shows it."""
    done = row.get("completed_ms")
    return {
        **row,
        "ok": row["status"] == "ok",
        "latency_ms": done - row["requested_ms"] if done is not None else None,
    }


@dataclass(frozen=True, slots=True)
class Target:
    """What a group command or schedule switches."""

    site_id: int | None = None
    area_id: int | None = None
    device_id: int | None = None
    appliance: str | None = None


class _DeviceLocks:
    """One asyncio lock per device, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    def acquire_for(self, device_id: int) -> asyncio.Lock:
        lock, users = self._locks.get(device_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[device_id] = (lock, users + 1)
        return lock

    def release_for(self, device_id: int) -> None:
        lock, users = self._locks[device_id]
        if users <= 1:
            del self._locks[device_id]
        else:
            self._locks[device_id] = (lock, users - 1)


class ControlService:
    def __init__(
        self,
        registry: RegistryService,
        store: SqlControlStore,
        transport: Callable[[], CommandTransport | None],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_parallel: int = MAX_PARALLEL,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.registry = registry
        self.store = store
        self._transport = transport
        self.timeout_s = timeout_s
        self.max_parallel = max_parallel
        self.clock = clock
        self._locks = _DeviceLocks()
        self._listeners: list[ResultListener] = []

    def add_listener(self, listener: ResultListener) -> None:
        """``listener(device_id, org_id, {"id", "action", "ok", "state", "error"}, ts_ms)``
        after every command (hooks, live stream). Called on the event loop; must not block."""
        self._listeners.append(listener)

    def abandon_stale(self) -> int:
        """At start: commands a previous process left pending can no longer be answered."""
        now = self.clock()
        return self.store.abandon_pending(
            now - int(2 * MAX_TIMEOUT_S * 1000),
            "the server stopped before the device answered",
            now,
        )

    def _timeout(self, timeout_s: float | None) -> float:
        value = self.timeout_s if timeout_s is None else timeout_s
        if not 0 < value <= MAX_TIMEOUT_S:
            raise InvalidInput(f"timeout_s must be above 0 and at most {MAX_TIMEOUT_S:g}")
        return value

    def _transport_or_fail(self) -> CommandTransport:
        transport = self._transport()
        if transport is None:
            raise Conflict("this server runs without MQTT (--no-mqtt): it cannot send commands")
        return transport

    # -- one device -----------------------------------------------------------------------
    async def command(
        self,
        principal: Principal,
        device_id: int,
        action: str,
        *,
        timeout_s: float | None = None,
        source: str = "api",
    ) -> dict[str, Any]:
        """Switch one plug; ``{id, ok, state, status, error, latency_ms}``. ``DeviceTimeout``
        (HTTP 504) when it does not answer in time; the audit trail says so either way."""
        principal.require(Role.ADMIN)
        act = parse_action(action)
        timeout = self._timeout(timeout_s)

        def prepare() -> tuple[dict[str, Any], CommandTransport, int]:
            # One trip to a worker thread for both: each costs about a millisecond when busy.
            device = self.registry.db.get_device(principal.org_id, device_id)  # 404 first
            problem = why_not_switchable(device)
            if problem:
                raise InvalidInput(problem)
            transport = self._transport_or_fail()
            (command_id,) = self.store.begin_commands([self._row(principal, device, act, source)])
            return device, transport, command_id

        device, transport, command_id = await asyncio.to_thread(prepare)
        outcome = await self._send(transport, device, act, command_id, timeout)
        if outcome["status"] == "timeout":
            raise DeviceTimeout(f"command {command_id}: {outcome['error']}")
        if outcome["status"] == "error":
            raise Conflict(f"command {command_id} not sent: {outcome['error']}")
        return outcome

    def _row(
        self,
        principal: Principal,
        device: dict[str, Any],
        action: CommandAction,
        source: str,
        *,
        group_id: str | None = None,
        schedule_id: int | None = None,
    ) -> dict[str, Any]:
        return {
            "org_id": principal.org_id,
            "device_id": device["id"],
            "device_uid": device["uid"],
            "device_name": device["name"],
            "action": action.value,
            "source": source,
            "actor": principal.actor[:400],
            "user_id": principal.user_id if principal.user_id > 0 else None,
            "group_id": group_id,
            "schedule_id": schedule_id,
            "protocol": device["protocol"],
            "requested_ms": self.clock(),
        }

    async def _send(
        self,
        transport: CommandTransport,
        device: dict[str, Any],
        action: CommandAction,
        command_id: int,
        timeout_s: float,
    ) -> dict[str, Any]:
        """Send, wait, record; the outcome as ``public_command`` shows it (never raises for
        what the device or the broker did)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        started = self.clock()
        ref = device_ref(device)
        values: dict[str, Any] = {}
        result: CommandResult | None = None
        try:
            adapter = adapter_for(ref.protocol)
            outbound = adapter.encode_command(ref, action.value, str(command_id))
            values.update(topic=outbound.topic[:300], correlation_id=outbound.correlation_id)

            def answer(payload: bytes) -> CommandResult | None:
                return command_answer(ref, outbound, payload, received_ms=now_ms())

            lock = self._locks.acquire_for(ref.id)
            try:
                try:
                    await asyncio.wait_for(lock.acquire(), timeout_s)
                except TimeoutError:
                    raise DeviceTimeout(
                        f"{device['name']} was still busy with an earlier command after "
                        f"{timeout_s:g} s"
                    ) from None
                try:
                    reply = await transport.request(
                        outbound.topic,
                        outbound.payload,
                        outbound.reply_topic,
                        qos=1,
                        timeout_s=max(0.001, deadline - loop.time()),
                        device_id=ref.id,
                        match=lambda payload: answer(payload) is not None,
                    )
                finally:
                    lock.release()
            finally:
                self._locks.release_for(ref.id)
            result = answer(reply)
            if result is None:  # the match accepted it, so this cannot happen
                raise DeviceTimeout("the answer could not be read")
            values.update(
                status="ok" if result.ok else "refused",
                state=result.state,
                error=None if result.ok else (result.error or "the device refused")[:2000],
            )
        except DeviceTimeout as exc:
            message = str(exc)
            if message.startswith("no answer on"):
                message = f"{device['name']} did not answer within {timeout_s:g} s"
            values.update(status="timeout", error=message)
        except (WattwatchError, ValueError, OSError, RuntimeError) as exc:
            # Refused by the broker, broker not running, a bad topic: recorded, never a 500.
            values.update(status="error", error=str(exc)[:2000] or type(exc).__name__)
        values["completed_ms"] = max(self.clock(), started)
        state = values.get("state") if values["status"] == "ok" else None
        try:
            await asyncio.to_thread(
                self.store.finish_command, command_id, values, device_id=ref.id, state=state
            )
        except Exception:
            log.exception("command %s: could not record the outcome", command_id)
        outcome = public_command(
            {
                "id": command_id,
                "device_id": ref.id,
                "device_uid": device["uid"],
                "action": action.value,
                "requested_ms": started,
                "state": None,
                "error": None,
                **values,
            }
        )
        self._notify(device, outcome)
        return outcome

    def _notify(self, device: dict[str, Any], outcome: dict[str, Any]) -> None:
        summary = {k: outcome.get(k) for k in ("id", "action", "ok", "state", "error", "status")}
        for listener in self._listeners:
            try:
                listener(device["id"], device["org_id"], summary, outcome["completed_ms"])
            except Exception:
                log.exception("command listener failed")

    # -- groups ---------------------------------------------------------------------------
    def targets(self, principal: Principal, target: Target) -> list[dict[str, Any]]:
        """The plugs a group command or schedule switches (404 for another org's place)."""
        db = self.registry.db
        chosen = [x for x in (target.site_id, target.area_id, target.device_id) if x is not None]
        if len(chosen) != 1:
            raise InvalidInput("give exactly one of site_id, area_id, device_id")
        kind = str(DeviceKind.PLUG)
        if target.device_id is not None:
            device = db.get_device(principal.org_id, target.device_id)
            return [device] if device["kind"] == kind else []
        if target.area_id is not None:
            areas = self.registry.area_subtree(principal, target.area_id)
            return db.select_devices(
                principal.org_id, area_ids=areas, kind=kind, appliance=target.appliance
            )
        assert target.site_id is not None
        db.get_site(principal.org_id, target.site_id)
        return db.select_devices(
            principal.org_id, site_id=target.site_id, kind=kind, appliance=target.appliance
        )

    async def group_command(
        self,
        principal: Principal,
        target: Target,
        action: str,
        *,
        timeout_s: float | None = None,
        source: str = "group",
        schedule_id: int | None = None,
    ) -> dict[str, Any]:
        """Switch every plug of a site or area (sub-areas included), optionally only those
        feeding an appliance, in parallel; one summary with every device's outcome."""
        principal.require(Role.ADMIN)
        act = parse_action(action)
        timeout = self._timeout(timeout_s)
        devices = await asyncio.to_thread(self.targets, principal, target)
        group_id = secrets.token_hex(8)
        summary: dict[str, Any] = {
            "group_id": group_id,
            "action": act.value,
            "total": len(devices),
            "ok": 0,
            "refused": 0,
            "timeout": 0,
            "error": 0,
            "results": [],
        }
        if not devices:
            return summary
        transport = self._transport_or_fail()
        rows = [
            self._row(principal, d, act, source, group_id=group_id, schedule_id=schedule_id)
            for d in devices
        ]
        ids = await asyncio.to_thread(self.store.begin_commands, rows)
        gate = asyncio.Semaphore(self.max_parallel)

        async def one(device: dict[str, Any], command_id: int) -> dict[str, Any]:
            problem = why_not_switchable(device)
            if problem:
                return await self._refuse_unsendable(device, act, command_id, problem)
            async with gate:
                return await self._send(transport, device, act, command_id, timeout)

        outcomes = await asyncio.gather(*(one(d, i) for d, i in zip(devices, ids, strict=True)))
        for outcome in outcomes:
            summary[outcome["status"]] = summary.get(outcome["status"], 0) + 1
            summary["results"].append(
                {
                    k: outcome.get(k)
                    for k in (
                        "id",
                        "device_id",
                        "device_uid",
                        "ok",
                        "status",
                        "state",
                        "error",
                        "latency_ms",
                    )
                }
            )
        return summary

    async def _refuse_unsendable(
        self, device: dict[str, Any], action: CommandAction, command_id: int, why: str
    ) -> dict[str, Any]:
        now = self.clock()
        values = {"status": "error", "error": why, "completed_ms": now}
        await asyncio.to_thread(
            self.store.finish_command, command_id, values, device_id=None, state=None
        )
        return public_command(
            {
                "id": command_id,
                "device_id": device["id"],
                "device_uid": device["uid"],
                "action": action.value,
                "requested_ms": now,
                "state": None,
                **values,
            }
        )

    # -- audit trail ----------------------------------------------------------------------
    def list_commands(
        self,
        principal: Principal,
        *,
        device_id: int | None = None,
        group_id: str | None = None,
        status: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        if device_id is not None:
            self.registry.db.get_device(principal.org_id, device_id)  # 404 for another org
        rows = self.store.list_commands(
            principal.org_id,
            device_id=device_id,
            group_id=group_id,
            status=status,
            before_id=before_id,
            limit=limit,
        )
        return [public_command(r) for r in rows]

    def get_command(self, principal: Principal, command_id: int) -> dict[str, Any]:
        return public_command(self.store.get_command(principal.org_id, command_id))
