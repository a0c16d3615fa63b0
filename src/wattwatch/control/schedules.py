"""Schedules: switch the plugs of a site, area or device at set times in the site's timezone.

"Printers of floor 2 off 19:00–07:00 on weekdays" is::

    {"name": "Printers off at night", "area_id": 12, "appliance": "printer",
     "events": [{"action": "off", "at": "19:00", "days": "mon-fri"},
                {"action": "on",  "at": "07:00", "days": "mon-fri"}]}

(Friday 19:00 off stays off over the weekend until Monday 07:00.) An event is ``at`` + ``days``
or a five-field ``cron``; both are read in the site's timezone, so 19:00 stays 19:00 across
daylight saving changes. Each firing is one row in ``control_schedule_runs`` per (schedule,
due time, event), claimed before anything is sent: a restart or a second replica never
switches twice, and every execution, including one missed while the server was down, has a
record with each device's outcome. ``clock`` is injectable: tests move time, not sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, Field, model_validator

from wattwatch.control.service import ControlService, Target
from wattwatch.domain import Role, now_ms
from wattwatch.errors import InvalidInput, WattwatchError
from wattwatch.registry.service import Principal
from wattwatch.store.control import SqlControlStore

log = logging.getLogger(__name__)

MAX_EVENTS = 20
# A slot found more than this late (the server was down) is recorded as missed, not run:
# switching the printers on at 03:00 because the server came back is worse than not at all.
GRACE_MS = 15 * 60_000
# The loop looks at the schedules at least this often (a change wakes it at once).
POLL_S = 30.0
# Missed slots recorded one by one after a long outage; older ones are skipped silently.
MAX_MISSED_RECORDED = 50
DETAILS_LIMIT = 500

_DAY_NUMBERS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DAY_ALIASES = {
    "daily": "mon-sun",
    "everyday": "mon-sun",
    "weekdays": "mon-fri",
    "weekends": "sat-sun",
    "weekend": "sat-sun",
}
_AT_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _day_list(days: str) -> list[int]:
    """``mon-fri``, ``sat,sun``, ``weekdays``, ``daily`` → cron weekday numbers (0 = Sunday)."""
    text = _DAY_ALIASES.get(days.strip().lower().replace(" ", ""), days.strip().lower())
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first[:3] not in _DAY_NUMBERS or (last and last[:3] not in _DAY_NUMBERS):
            raise ValueError(
                f"days {days[:40]!r}: use mon … sun, ranges (mon-fri), lists (sat,sun), "
                "weekdays, weekends or daily"
            )
        start = _DAY_NUMBERS[first[:3]]
        if not last:
            out.append(start)
            continue
        # Ranges run Monday-first (mon-sun is the whole week) and may wrap (fri-mon).
        order = [1, 2, 3, 4, 5, 6, 0]
        i, j = order.index(start), order.index(_DAY_NUMBERS[last[:3]])
        span = order[i : j + 1] if i <= j else order[i:] + order[: j + 1]
        out.extend(span)
    return sorted(set(out))


class ScheduleEvent(BaseModel):
    """One switching time: ``at`` "HH:MM" on ``days``, or a five-field ``cron``."""

    action: Literal["on", "off"]
    at: str | None = Field(None, examples=["19:00"])
    days: str = Field("daily", max_length=60, examples=["mon-fri"])
    cron: str | None = Field(None, max_length=120, examples=["0 19 * * 1-5"])

    @model_validator(mode="after")
    def _one_time(self) -> ScheduleEvent:
        if self.at is not None:
            m = _AT_RE.match(self.at.strip())
            if not m:
                raise ValueError(f"at must be HH:MM (24 h), not {self.at[:20]!r}")
            days = ",".join(str(d) for d in _day_list(self.days))
            derived = f"{int(m.group(2))} {int(m.group(1))} * * {days}"
            # Validated again (an event already checked): its cron is the one at/days make.
            if self.cron is not None and self.cron != derived:
                raise ValueError("give either at (HH:MM, with days) or cron")
            self.cron = derived
        elif self.cron is None:
            raise ValueError("give either at (HH:MM, with days) or cron")
        elif self.cron is not None and (
            len(self.cron.split()) != 5 or not croniter.is_valid(self.cron)
        ):
            raise ValueError("cron must be five fields: minute hour day month weekday")
        return self

    def stored(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "cron": self.cron}
        if self.at is not None:
            out.update(at=self.at, days=self.days)
        return out


class ScheduleCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["Printers off at night"])
    site_id: int | None = None
    area_id: int | None = Field(None, description="this area and the areas inside it")
    device_id: int | None = None
    appliance: str | None = Field(
        None, max_length=120, description="only plugs with a channel feeding this appliance"
    )
    events: list[ScheduleEvent] = Field(min_length=1, max_length=MAX_EVENTS)
    enabled: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> ScheduleCreate:
        if sum(x is not None for x in (self.site_id, self.area_id, self.device_id)) != 1:
            raise ValueError("give exactly one of site_id, area_id, device_id")
        return self


class ScheduleUpdate(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    appliance: str | None = Field(None, max_length=120)
    events: list[ScheduleEvent] | None = Field(None, min_length=1, max_length=MAX_EVENTS)
    enabled: bool | None = None


def next_fire_ms(cron: str, tz: str, after_ms: int) -> int:
    """The first time strictly after ``after_ms`` that ``cron`` names in local time ``tz``."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(tz))
    nxt: datetime = croniter(cron, start).get_next(datetime)
    return int(nxt.timestamp() * 1000)


def next_run_ms(events: list[dict[str, Any]], tz: str, after_ms: int) -> int:
    return min(next_fire_ms(e["cron"], tz, after_ms) for e in events)


def _iso(ms: int, tz: str) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(tz)).isoformat()


class ControlScheduler:
    """Schedule CRUD and the loop that runs due schedules through ``ControlService``."""

    def __init__(
        self,
        control: ControlService,
        store: SqlControlStore,
        *,
        clock: Callable[[], int] = now_ms,
        poll_s: float = POLL_S,
        grace_ms: int = GRACE_MS,
        timeout_s: float | None = None,
    ) -> None:
        self.control = control
        self.store = store
        self.registry = control.registry
        self.clock = clock
        self.poll_s = poll_s
        self.grace_ms = grace_ms
        self.timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # -- schedules ------------------------------------------------------------------------
    def _site_of(self, principal: Principal, body: ScheduleCreate) -> dict[str, Any]:
        db = self.registry.db
        if body.site_id is not None:
            return db.get_site(principal.org_id, body.site_id)
        if body.area_id is not None:
            return db.get_site(
                principal.org_id, db.get_area(principal.org_id, body.area_id)["site_id"]
            )
        assert body.device_id is not None
        device = db.get_device(principal.org_id, body.device_id)
        if device["site_id"] is None:
            raise InvalidInput(
                "place the device on a site first: schedules run in the site's timezone"
            )
        return db.get_site(principal.org_id, device["site_id"])

    def public(self, record: dict[str, Any]) -> dict[str, Any]:
        site = self.registry.db.get_site(record["org_id"], record["site_id"])
        out = dict(record)
        out["timezone"] = site["timezone"]
        nxt = record.get("next_run_ms")
        out["next_run"] = _iso(nxt, site["timezone"]) if nxt is not None else None
        return out

    def create(self, principal: Principal, body: ScheduleCreate) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        site = self._site_of(principal, body)
        events = [e.stored() for e in body.events]
        now = self.clock()
        schedule_id = self.store.create_schedule(
            {
                "org_id": principal.org_id,
                "name": body.name,
                "site_id": site["id"],
                "area_id": body.area_id,
                "device_id": body.device_id,
                "kind": "plug",
                "appliance": body.appliance or None,
                "events": events,
                "enabled": body.enabled,
                "next_run_ms": next_run_ms(events, site["timezone"], now) if body.enabled else None,
                "created_by": principal.actor[:400],
                "created_ms": now,
                "updated_ms": now,
            }
        )
        self.wake()
        return self.get(principal, schedule_id)

    def update(
        self, principal: Principal, schedule_id: int, body: ScheduleUpdate
    ) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        record = self.store.get_schedule(principal.org_id, schedule_id)
        values: dict[str, Any] = {"updated_ms": self.clock()}
        given = body.model_dump(exclude_unset=True)
        if given.get("name") is not None:
            values["name"] = given["name"]
        if "appliance" in given:
            values["appliance"] = given["appliance"] or None
        events = record["events"]
        if body.events is not None:
            events = values["events"] = [e.stored() for e in body.events]
        enabled = record["enabled"] if body.enabled is None else body.enabled
        values["enabled"] = enabled
        tz = self.registry.db.get_site(principal.org_id, record["site_id"])["timezone"]
        # Times count from now: re-enabling does not replay what was skipped meanwhile.
        values["next_run_ms"] = next_run_ms(events, tz, self.clock()) if enabled else None
        self.store.update_schedule(schedule_id, values)
        self.wake()
        return self.get(principal, schedule_id)

    def delete(self, principal: Principal, schedule_id: int) -> None:
        principal.require(Role.ADMIN)
        self.store.get_schedule(principal.org_id, schedule_id)
        self.store.delete_schedule(schedule_id)

    def get(self, principal: Principal, schedule_id: int) -> dict[str, Any]:
        return self.public(self.store.get_schedule(principal.org_id, schedule_id))

    def list_schedules(self, principal: Principal) -> list[dict[str, Any]]:
        return [self.public(r) for r in self.store.list_schedules(principal.org_id)]

    def runs(
        self,
        principal: Principal,
        schedule_id: int,
        *,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        self.store.get_schedule(principal.org_id, schedule_id)
        return self.store.list_runs(principal.org_id, schedule_id, limit=limit, before_id=before_id)

    # -- running --------------------------------------------------------------------------
    async def run_due(self) -> list[dict[str, Any]]:
        """Run (or record as missed) every slot due at ``clock()``; the runs it recorded."""
        now = self.clock()
        done: list[dict[str, Any]] = []
        for record in await asyncio.to_thread(self.store.due_schedules, now):
            try:
                done.extend(await self._run_schedule(record, now))
            except Exception:
                log.exception("schedule %s failed", record["id"])
        return done

    async def _run_schedule(self, record: dict[str, Any], now: int) -> list[dict[str, Any]]:
        site = await asyncio.to_thread(
            self.registry.db.get_site, record["org_id"], record["site_id"]
        )
        tz = site["timezone"]
        events: list[dict[str, Any]] = record["events"]
        due: int = record["next_run_ms"]
        runs: list[dict[str, Any]] = []
        missed = 0
        while due <= now:
            late = now - due > self.grace_ms
            if late and missed >= MAX_MISSED_RECORDED:
                # A long outage: skip to the slots that are not hopelessly late.
                due = next_run_ms(events, tz, now - self.grace_ms - 1)
                continue
            for index, event in enumerate(events):
                if next_fire_ms(event["cron"], tz, due - 1) != due:
                    continue
                run = await self._run_slot(record, index, event, due, now, tz, late=late)
                if run is not None:
                    runs.append(run)
                    missed += late
            due = next_run_ms(events, tz, due)
        await asyncio.to_thread(self.store.update_schedule, record["id"], {"next_run_ms": due})
        return runs

    async def _run_slot(
        self,
        record: dict[str, Any],
        index: int,
        event: dict[str, Any],
        due: int,
        now: int,
        tz: str,
        *,
        late: bool,
    ) -> dict[str, Any] | None:
        run: dict[str, Any] = {
            "schedule_id": record["id"],
            "org_id": record["org_id"],
            "event_index": index,
            "action": event["action"],
            "due_ms": due,
            "status": "missed" if late else "running",
            "started_ms": now,
            "details": {},
        }
        run_id = await asyncio.to_thread(self.store.claim_run, run)
        if run_id is None:
            return None  # this slot was handled already (restart, another replica)
        run["id"] = run_id
        if late:
            run.update(
                finished_ms=now,
                details={"reason": f"the server was not running at {_iso(due, tz)}"},
            )
            await asyncio.to_thread(self.store.finish_run, run_id, _finished(run))
            return run
        actor = Principal(
            0, record["org_id"], Role.ADMIN, f"schedule {record['id']} ({record['name']})"
        )
        target = Target(
            site_id=record["site_id"]
            if record["area_id"] is None and record["device_id"] is None
            else None,
            area_id=record["area_id"],
            device_id=record["device_id"],
            appliance=record["appliance"],
        )
        try:
            summary = await self.control.group_command(
                actor,
                target,
                event["action"],
                timeout_s=self.timeout_s,
                source="schedule",
                schedule_id=record["id"],
            )
        except WattwatchError as exc:
            run.update(status="failed", finished_ms=self.clock(), details={"error": str(exc)})
            await asyncio.to_thread(self.store.finish_run, run_id, _finished(run))
            return run
        total = summary["total"]
        succeeded = summary["ok"]
        run.update(
            targets=total,
            succeeded=succeeded,
            failed=total - succeeded,
            group_id=summary["group_id"],
            finished_ms=self.clock(),
            status=(
                "empty"
                if total == 0
                else "ok"
                if succeeded == total
                else "failed"
                if succeeded == 0
                else "partial"
            ),
            details={"devices": summary["results"][:DETAILS_LIMIT]},
        )
        await asyncio.to_thread(self.store.finish_run, run_id, _finished(run))
        return run

    # -- loop -----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="control-schedules")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True  # also ends the loop if a cancel is lost (wait_for, 3.11)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None

    def wake(self) -> None:
        """A schedule changed: look again now (safe from any thread)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await self.run_due()
                upcoming = await asyncio.to_thread(self.store.next_due_ms)
            except Exception:
                log.exception("running the control schedules failed; retrying")
                upcoming = None
            wait_s = self.poll_s
            if upcoming is not None:
                wait_s = min(wait_s, max(0.05, (upcoming - self.clock()) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)
            self._wake.clear()


def _finished(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "finished_ms", "targets", "succeeded", "failed", "group_id", "details")
    return {k: run[k] for k in keys if k in run}
