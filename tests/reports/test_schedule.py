"""Scheduled reports: due times in site time (DST too), email over real SMTP, history, retries."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import pytest
from pydantic import ValidationError
from tests.reports.conftest import TZ, Month
from tests.reports.simdata import local_ms
from tests.reports.smtp import free_port, smtp_server

from wattwatch.domain import Role
from wattwatch.errors import Forbidden, NotFound
from wattwatch.registry.service import Principal
from wattwatch.reports.mail import ReportMailer, SmtpSettings
from wattwatch.reports.schedule import (
    MAX_ATTEMPTS,
    RETRY_DELAY_MS,
    ReportScheduler,
    ScheduleCreate,
    next_fire_ms,
)
from wattwatch.store.reports import SqlReportStore


class Clock:
    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def scheduler(month: Month, clock: Clock, port: int) -> ReportScheduler:
    assert month.ww.reports is not None
    return ReportScheduler(
        month.ww.reports,
        SqlReportStore(month.ww.store.engine, month.ww.store.read_engine),
        ReportMailer(SmtpSettings("127.0.0.1", port, sender="reports@sim.example")),
        link_base="http://wattwatch.example:8080",
        clock=clock,
    )


def test_next_fire_is_local_time_across_dst() -> None:
    before = local_ms(date(2026, 10, 19), TZ, 9)  # Monday after 08:00, CEST
    assert next_fire_ms("0 8 * * 1", TZ, before) == local_ms(date(2026, 10, 26), TZ, 8)
    # 08:00 CET on the 26th is 07:00 UTC; 08:00 CEST on the 19th was 06:00 UTC.
    assert (local_ms(date(2026, 10, 26), TZ, 8) - local_ms(date(2026, 10, 19), TZ, 8)) == (
        7 * 24 + 1
    ) * 3_600_000


def test_weekly_schedule_sends_last_week_once(month: Month) -> None:
    clock = Clock(local_ms(date(2026, 10, 12), TZ, 7))  # Monday 07:00 site time
    with smtp_server() as (inbox, port):
        sched = scheduler(month, clock, port)
        record = sched.create(
            month.owner,
            ScheduleCreate(
                site_id=month.site["id"], period="week", cron="0 8 * * 1", recipients=["boss@x.es"]
            ),
        )
        assert record["next_run_ms"] == local_ms(date(2026, 10, 12), TZ, 8)
        assert asyncio.run(sched.run_due()) == []
        clock.now_ms = local_ms(date(2026, 10, 12), TZ, 8) + 20_000
        [delivery] = asyncio.run(sched.run_due())
        assert delivery["status"] == "sent" and delivery["error"] is None
        assert delivery["period_start_ms"] == local_ms(date(2026, 10, 5), TZ)
        assert delivery["period_end_ms"] == local_ms(date(2026, 10, 12), TZ)
        [msg] = inbox.messages
        assert msg["To"] == "boss@x.es" and "Week 41 of 2026" in msg["Subject"]
        body = msg.get_body(preferencelist=("plain",))
        assert body is not None
        text = body.get_content()
        assert (
            f"http://wattwatch.example:8080/api/v1/sites/{month.site['id']}/reports/week"
            "?start=2026-10-05&format=html"
        ) in text
        assert "Findings:" in text
        [attachment] = list(msg.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        assert attachment.get_content().startswith(b"%PDF")
        stored = sched.store.get_schedule(month.owner.org_id, record["id"])
        assert stored["next_run_ms"] == local_ms(date(2026, 10, 19), TZ, 8)
        # Nothing is due now; and a second "send now" of the same week sends nothing new.
        assert asyncio.run(sched.run_due()) == []
        assert asyncio.run(sched.send_now(month.owner, record["id"])) is None
        assert len(inbox.messages) == 1
        history = sched.store.list_deliveries(month.owner.org_id, record["id"])
        assert [(h["status"], h["attempts"]) for h in history] == [("sent", 1)]
        assert history[0]["attachment"].endswith(".pdf") and history[0]["bytes"] > 10_000
        sched.delete(month.owner, record["id"])


def test_failed_delivery_is_recorded_and_retried(month: Month) -> None:
    clock = Clock(local_ms(date(2026, 11, 2), TZ, 7))
    sched = scheduler(month, clock, free_port())  # nothing listens there
    record = sched.create(
        month.owner,
        ScheduleCreate(
            site_id=month.site["id"],
            period="month",
            cron="0 8 2 * *",
            recipients=["a@x.es"],
            format="html",
        ),
    )
    clock.now_ms = record["next_run_ms"]
    [failed] = asyncio.run(sched.run_due())
    assert failed["status"] == "failed" and "SMTP 127.0.0.1" in failed["error"]
    assert failed["period_start_ms"] == local_ms(date(2026, 10, 1), TZ)
    stored = sched.store.get_schedule(month.owner.org_id, record["id"])
    assert stored["next_run_ms"] == clock.now_ms + RETRY_DELAY_MS
    for attempt in range(2, MAX_ATTEMPTS + 1):
        clock.now_ms += RETRY_DELAY_MS
        assert asyncio.run(sched.run_due())[0]["status"] == "failed"
        [row] = sched.store.list_deliveries(month.owner.org_id, record["id"])
        assert row["attempts"] == attempt
    # Out of attempts: the schedule moves on to next month's time.
    stored = sched.store.get_schedule(month.owner.org_id, record["id"])
    assert stored["next_run_ms"] == local_ms(date(2026, 12, 2), TZ, 8)
    sched.delete(month.owner, record["id"])


def test_loop_delivers_due_schedules(month: Month) -> None:
    clock = Clock(local_ms(date(2026, 10, 5), TZ, 7))

    async def scenario() -> list[dict[str, object]]:
        with smtp_server() as (inbox, port):
            sched = scheduler(month, clock, port)
            record = sched.create(
                month.owner,
                ScheduleCreate(
                    site_id=month.site["id"], cron="30 7 * * 1", recipients=["ops@x.es"]
                ),
            )
            clock.now_ms = record["next_run_ms"] + 1  # due; the loop is started after
            sched.start()
            deadline = time.monotonic() + 180  # a loaded CI machine renders slowly

            def settled() -> bool:
                # The mail arrives before the delivery row is updated: wait for both.
                rows = sched.store.list_deliveries(month.owner.org_id, record["id"])
                return bool(inbox.messages) and bool(rows) and rows[0]["status"] != "sending"

            while not settled() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await sched.stop()
            sent = sched.store.list_deliveries(month.owner.org_id, record["id"])
            sched.delete(month.owner, record["id"])
            return sent

    [delivery] = asyncio.run(scenario())
    assert delivery["status"] == "sent"


def test_schedule_validation_and_scope(month: Month) -> None:
    for bad in (
        {"cron": "every monday"},
        {"cron": "61 8 * * 1"},
        {"recipients": []},
        {"recipients": ["not-an-address"]},
        {"period": "custom"},
        {"format": "csv"},
    ):
        with pytest.raises(ValidationError):
            ScheduleCreate.model_validate(
                {"site_id": 1, "recipients": ["a@b.es"], **bad}  # type: ignore[dict-item]
            )
    sched = scheduler(month, Clock(0), free_port())
    body = ScheduleCreate(site_id=month.site["id"], recipients=["a@b.es"])
    viewer = Principal(0, month.owner.org_id, Role.VIEWER, "v@x.es")
    with pytest.raises(Forbidden):
        sched.create(viewer, body)
    stranger = Principal(0, month.ww.registry.db.create_org("other"), Role.OWNER, "o@x.es")
    with pytest.raises(NotFound):
        sched.create(stranger, body)


def test_two_schedulers_send_a_period_once(month: Month) -> None:
    """Two processes running the schedules (serve + a worker): each period goes out once."""
    clock = Clock(local_ms(date(2026, 10, 26), TZ, 7))
    with smtp_server() as (inbox, port):
        one, two = scheduler(month, clock, port), scheduler(month, clock, port)
        record = one.create(
            month.owner,
            ScheduleCreate(site_id=month.site["id"], cron="0 8 * * 1", recipients=["x@y.es"]),
        )
        clock.now_ms = record["next_run_ms"]

        async def both() -> list[list[dict[str, object]]]:
            return list(await asyncio.gather(one.run_due(), two.run_due()))

        results = asyncio.run(both())
        assert sorted(len(r) for r in results) == [0, 1]
        assert len(inbox.messages) == 1
        [row] = one.store.list_deliveries(month.owner.org_id, record["id"])
        assert (row["status"], row["attempts"]) == ("sent", 1)
        # A claim left by a process that died is taken over once it is stale.
        from wattwatch.store.schema import report_deliveries

        with one.store.engine.begin() as conn:
            conn.execute(
                report_deliveries.update()
                .where(report_deliveries.c.id == row["id"])
                .values(status="sending")
            )
        assert asyncio.run(one.send_now(month.owner, record["id"])) is None  # fresh claim
        clock.now_ms += 31 * 60_000
        taken = asyncio.run(two.send_now(month.owner, record["id"]))
        assert taken is not None and taken["status"] == "sent" and taken["attempts"] == 2
        assert len(inbox.messages) == 2
        one.delete(month.owner, record["id"])
