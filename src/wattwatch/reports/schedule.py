"""Scheduled reports: cron times in the site's timezone, email delivery, a history of what was sent.

"Every Monday 08:00 site time, the weekly report to these addresses" is the schedule
``{"period": "week", "cron": "0 8 * * 1", "recipients": [...]}``. When it fires, the report of
the last *complete* period as of that moment is built, rendered and mailed. One delivery row per
(schedule, period) makes a restart or a second worker harmless: a period is sent once. A failed
send is retried a few times, then the schedule moves on to its next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, Field, field_validator

from wattwatch.domain import Role, now_ms
from wattwatch.errors import WattwatchError
from wattwatch.periodic import BackgroundTask
from wattwatch.reports.mail import DeliveryFailed, ReportMailer, report_email
from wattwatch.reports.periods import Period, PeriodKind, resolve_period
from wattwatch.reports.render import FormatUnavailable, ReportFormat
from wattwatch.reports.service import Caller, ReportService, Scope
from wattwatch.store.reports import SqlReportStore

log = logging.getLogger(__name__)

_EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
MAX_RECIPIENTS = 20
RETRY_DELAY_MS = 15 * 60_000
# A "sending" claim older than this belongs to a process that died: take it over.
CLAIM_STALE_MS = 30 * 60_000
MAX_ATTEMPTS = 4
# The loop looks at the schedules at least this often (new ones wake it at once).
POLL_S = 60.0


class ScheduleCreate(BaseModel):
    name: str = Field("", max_length=200)
    site_id: int | None = None
    area_id: int | None = None
    device_id: int | None = None
    period: PeriodKind = PeriodKind.WEEK
    cron: str = Field("0 8 * * 1", max_length=120, description="minute hour day month weekday")
    recipients: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    format: ReportFormat = ReportFormat.PDF
    enabled: bool = True

    @field_validator("period")
    @classmethod
    def _calendar(cls, period: PeriodKind) -> PeriodKind:
        if period is PeriodKind.CUSTOM:
            raise ValueError("scheduled reports cover a week, a month or a quarter")
        return period

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise ValueError("cron must be five fields: minute hour day month weekday")
        return cron

    @field_validator("recipients")
    @classmethod
    def _emails(cls, recipients: list[str]) -> list[str]:
        for r in recipients:
            if not _EMAIL_RE.match(r):
                raise ValueError(f"not an email address: {r!r}")
        return recipients

    @field_validator("format")
    @classmethod
    def _attachable(cls, fmt: ReportFormat) -> ReportFormat:
        if fmt not in (ReportFormat.PDF, ReportFormat.HTML, ReportFormat.XLSX):
            raise ValueError("a scheduled report is sent as pdf, html or xlsx")
        return fmt


def next_fire_ms(cron: str, tz: str, after_ms: int) -> int:
    """The first time strictly after ``after_ms`` that ``cron`` names in local time ``tz``."""
    start = datetime.fromtimestamp(after_ms / 1000, ZoneInfo(tz))
    nxt: datetime = croniter(cron, start).get_next(datetime)
    return int(nxt.timestamp() * 1000)


class ReportScheduler(BackgroundTask):
    """Creates schedules and runs the due ones; ``clock`` is injectable for tests."""

    task_name = "report-scheduler"

    def __init__(
        self,
        service: ReportService,
        store: SqlReportStore,
        mailer: ReportMailer,
        *,
        link_base: str,
        clock: Callable[[], int] = now_ms,
        poll_s: float = POLL_S,
    ) -> None:
        self.service = service
        self.store = store
        self.mailer = mailer
        self.link_base = link_base.rstrip("/")
        self.clock = clock
        self.poll_s = poll_s
        self._wake: asyncio.Event | None = None

    # -- schedules ------------------------------------------------------------------------
    def _scope_of(self, org_id: int, record: dict[str, Any]) -> Scope:
        return self.service.scope(
            org_id,
            site_id=record.get("site_id"),
            area_id=record.get("area_id"),
            device_id=record.get("device_id"),
        )

    def create(
        self, caller: Caller, body: ScheduleCreate, created_by: str | None = None
    ) -> dict[str, Any]:
        caller.require(Role.ADMIN)
        scope = self._scope_of(caller.org_id, body.model_dump())  # 404 across organisations
        now = self.clock()
        schedule_id = self.store.create_schedule(
            {
                "org_id": caller.org_id,
                "name": body.name or f"{body.period} report of {scope.name}",
                "site_id": body.site_id,
                "area_id": body.area_id,
                "device_id": body.device_id,
                "period": str(body.period),
                "cron": body.cron,
                "recipients": body.recipients,
                "format": str(body.format),
                "enabled": body.enabled,
                "next_run_ms": next_fire_ms(body.cron, scope.site["timezone"], now),
                "created_by": created_by,
                "created_ms": now,
            }
        )
        if self._wake is not None:
            self._wake.set()
        return self.store.get_schedule(caller.org_id, schedule_id)

    def delete(self, caller: Caller, schedule_id: int) -> None:
        caller.require(Role.ADMIN)
        self.store.delete_schedule(caller.org_id, schedule_id)

    # -- running --------------------------------------------------------------------------
    def link_for(self, scope: Scope, period: Period) -> str:
        kind = {"site": "sites", "area": "areas", "device": "devices"}[scope.kind]
        return (
            f"{self.link_base}/api/v1/{kind}/{scope.id}/reports/{period.kind}"
            f"?start={period.start.isoformat()}&format=html"
        )

    async def run_due(self) -> list[dict[str, Any]]:
        """Deliver every schedule whose time has come; return the deliveries recorded."""
        done = []
        for schedule in self.store.due_schedules(self.clock()):
            delivery = await self.deliver(schedule)
            if delivery is not None:
                done.append(delivery)
        return done

    async def send_now(self, caller: Caller, schedule_id: int) -> dict[str, Any] | None:
        """Deliver a schedule's latest period now (a second call sends nothing new)."""
        caller.require(Role.ADMIN)
        schedule = self.store.get_schedule(caller.org_id, schedule_id)
        return await self.deliver(schedule, reschedule=False)

    async def deliver(
        self, schedule: dict[str, Any], *, reschedule: bool = True
    ) -> dict[str, Any] | None:
        now = self.clock()
        fired_ms = min(schedule["next_run_ms"], now) if reschedule else now
        try:
            scope = self._scope_of(schedule["org_id"], schedule)
        except WattwatchError as exc:  # the site / device went away: stop trying
            log.warning("report schedule %s: %s; disabled", schedule["id"], exc)
            self.store.update_schedule(schedule["id"], {"enabled": False})
            return None
        tz = scope.site["timezone"]
        fired_day = datetime.fromtimestamp(fired_ms / 1000, ZoneInfo(tz)).date()
        period = resolve_period(schedule["period"], tz, today=fired_day)
        next_run = next_fire_ms(schedule["cron"], tz, max(now, schedule["next_run_ms"]))
        recipients = list(schedule["recipients"])
        link = self.link_for(scope, period)
        claim = self.store.claim_delivery(
            {
                "schedule_id": schedule["id"],
                "org_id": schedule["org_id"],
                "period_start_ms": period.from_ms,
                "period_end_ms": period.to_ms,
                "recipients": recipients,
                "link": link,
            },
            now_ms=now,
            max_attempts=MAX_ATTEMPTS,
            stale_ms=CLAIM_STALE_MS,
        )
        if claim is None:  # sent already, out of tries, or another process is sending it
            if reschedule:
                self.store.update_schedule(schedule["id"], {"next_run_ms": next_run})
            return None
        values: dict[str, Any] = {"recipients": recipients, "link": link}
        try:
            report, rendered = await asyncio.to_thread(
                self._build, scope, period, schedule["format"]
            )
            msg = report_email(report, recipients, self.mailer.sender, link, rendered)
            refused = await self.mailer.send(msg)
        except Exception as exc:
            if not isinstance(exc, (DeliveryFailed, FormatUnavailable)):
                log.exception("report schedule %s", schedule["id"])
            values.update(status="failed", error=str(exc) or type(exc).__name__, sent_ms=None)
            attempts = claim["attempts"] + 1
            retry = now + RETRY_DELAY_MS if attempts < MAX_ATTEMPTS else next_run
            if reschedule:
                self.store.update_schedule(schedule["id"], {"next_run_ms": min(retry, next_run)})
            log.warning("report schedule %s: delivery failed: %s", schedule["id"], exc)
        else:
            values.update(
                status="sent",
                error=f"refused: {', '.join(refused)}" if refused else None,
                sent_ms=self.clock(),
                attachment=rendered.filename,
                bytes=len(rendered.content),
            )
            if reschedule:
                self.store.update_schedule(schedule["id"], {"next_run_ms": next_run})
        self.store.finish_delivery(claim["id"], values)
        return {
            **claim,
            **values,
            "period_start_ms": period.from_ms,
            "period_end_ms": period.to_ms,
            "attempts": claim["attempts"] + 1,
        }

    def _build(self, scope: Scope, period: Period, fmt: str) -> tuple[dict[str, Any], Any]:
        report = self.service.build_for(scope, period)
        return report, self.service.render(report, fmt)

    # -- the loop -------------------------------------------------------------------------
    async def run(self) -> None:
        self._wake = asyncio.Event()
        while True:
            try:
                await self.run_due()
            except Exception:  # keep the loop alive whatever one schedule does
                log.exception("report scheduler")
            next_due = self.store.next_due_ms()
            wait_s = self.poll_s
            if next_due is not None:
                wait_s = max(0.0, min(wait_s, (next_due - self.clock()) / 1000))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait_s)
