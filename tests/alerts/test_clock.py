"""Clock-driven rules with an injected clock (no sleeping), and open hours across DST changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from tests.alerts.conftest import ManualClock

from wattwatch.alerts.conditions import OpenHours
from wattwatch.alerts.engine import AnomalyFinding

WEEKDAYS_8_18 = {d: [("08:00", "18:00")] for d in ("mon", "tue", "wed", "thu", "fri")}


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_offline_after_silence_and_after_a_last_will(env: Any) -> None:
    clock = ManualClock(ms("2026-05-28T10:00:00"))
    engine = env.alerts.engine
    engine.clock = clock

    async def main() -> None:
        async with env.running():
            await env.rule(kind="offline", after_s=300, severity="critical")
            await env.send([(clock.ms - 1000, 500.0)])
            clock.advance(299)
            engine.tick()
            assert await env.list() == []
            clock.advance(2)
            engine.tick()
            (alert,) = await env.list("active")
            assert alert["severity"] == "critical" and "sent no data for 301 s" in alert["message"]
            assert alert["raised_ms"] == clock.ms
            engine.tick()  # still silent: the same alert, no second one
            assert len(await env.list()) == 1
            clock.advance(10)
            await env.send([(clock.ms - 500, 400.0)])  # data again: cleared at once
            (alert,) = await env.list()
            assert alert["state"] == "cleared" and alert["cleared_ms"] == clock.ms

            # A last will (offline status) starts the clock even though data came just now.
            engine.device_status(env.device["id"], online=False)
            clock.advance(299)
            engine.tick()
            assert len(await env.list("active")) == 0
            clock.advance(1)
            engine.tick()
            (alert,) = await env.list("active")
            assert "reported offline" in alert["message"]
            engine.device_status(env.device["id"], online=True)
            assert len(await env.list("cleared")) == 2

    asyncio.run(main())


def test_offline_watches_a_site_device_that_never_sent(env: Any) -> None:
    clock = ManualClock(ms("2026-05-28T10:00:00"))
    env.alerts.engine.clock = clock

    async def main() -> None:
        async with env.running():
            await env.rule(kind="offline", after_s=60, site_id=env.site_id, device_id=None)
            clock.advance(61)
            env.alerts.engine.tick()
            (alert,) = await env.list("active")
            assert alert["device_id"] == env.device["id"]

    asyncio.run(main())


def test_open_hours_follow_madrid_clocks_across_both_dst_changes() -> None:
    hours = OpenHours("Europe/Madrid", WEEKDAYS_8_18, ["2026-12-25"])
    # Friday before the spring change: CET (UTC+1): 08:30 local is 07:30 UTC.
    assert hours.is_open(ms("2026-03-27T07:30:00"))
    assert not hours.is_open(ms("2026-03-27T06:30:00"))
    # Monday after it: CEST (UTC+2): 07:30 UTC is 09:30 local (open), 05:30 UTC is 07:30.
    assert hours.is_open(ms("2026-03-30T06:30:00"))  # 08:30 local; a fixed +1 says 07:30
    assert not hours.is_open(ms("2026-03-30T05:30:00"))
    assert hours.is_open(ms("2026-03-30T15:59:00")) and not hours.is_open(ms("2026-03-30T16:00:00"))
    # Autumn: Friday 23 Oct CEST closes 16:00 UTC; Monday 26 Oct CET closes 17:00 UTC.
    assert not hours.is_open(ms("2026-10-23T16:30:00"))
    assert hours.is_open(ms("2026-10-26T16:30:00"))
    assert not hours.is_open(ms("2026-10-26T06:30:00"))  # 07:30 CET
    # Weekends and closed dates.
    assert not hours.is_open(ms("2026-03-29T10:00:00"))
    assert not hours.is_open(ms("2026-12-25T10:00:00"))
    assert hours.is_open(ms("2026-12-24T10:00:00"))


def test_after_hours_rule_across_the_spring_dst_change(env: Any) -> None:
    async def main() -> None:
        async with env.running():
            await env.rule(kind="after_hours", value=50, for_s=600, open_hours=WEEKDAYS_8_18)
            # Friday 27 March (CET): 06:00-06:59 UTC is 07:00-07:59 local: closed, 1 kW on.
            friday = ms("2026-03-27T06:00:00")
            await env.send([(friday + i * 60_000, 1000.0) for i in range(60)])
            (alert,) = await env.list()
            assert alert["raised_ms"] == friday + 600_000
            # 07:00 UTC = 08:00 local: open, which clears it.
            await env.send([(friday + 3_600_000, 1000.0)])
            (alert,) = await env.list()
            assert alert["state"] == "cleared" and alert["cleared_ms"] == friday + 3_600_000
            # Monday 30 March (CEST): the same UTC hour is 08:00-08:59 local: open, no alert.
            monday = ms("2026-03-30T06:00:00")
            await env.send([(monday + i * 60_000, 1000.0) for i in range(60)])
            assert len(await env.list()) == 1
            # ... and 05:00 UTC is now 07:00 local: closed.
            await env.send([(monday - 3_600_000 + i * 60_000, 1000.0) for i in range(11)])
            assert len(await env.list()) == 1  # older than what the rule saw: not re-judged
            tuesday = ms("2026-03-31T05:00:00")
            await env.send([(tuesday + i * 60_000, 1000.0) for i in range(11)])
            assert len(await env.list("active")) == 1

    asyncio.run(main())


def test_anomaly_findings_raise_update_and_expire(env: Any) -> None:
    clock = ManualClock(ms("2026-05-28T10:00:00"))
    engine = env.alerts.engine
    engine.clock = clock

    def finding(severity: str, magnitude: float) -> AnomalyFinding:
        return AnomalyFinding(
            "base_load_creep", severity, magnitude, "base load up 80 W since Monday", clock.ms
        )

    async def main() -> None:
        async with env.running():
            await env.rule(kind="anomaly", min_severity="warning", clear_after_s=3600)
            engine.raise_anomaly(env.device["id"], finding("info", 1.2))  # below min_severity
            assert await env.list() == []
            engine.raise_anomaly(env.device["id"], finding("warning", 1.8))
            (alert,) = await env.list("active")
            assert "base load up 80 W" in alert["message"] and alert["value"] == 1.8
            clock.advance(1800)
            # From another thread, as a detector running in an executor would call it.
            await asyncio.to_thread(
                engine.raise_anomaly, env.device["id"], finding("critical", 3.5)
            )
            await asyncio.sleep(0.05)
            (alert,) = await env.list()
            assert alert["count"] == 2 and alert["value"] == 3.5
            clock.advance(3599)
            engine.tick()
            assert len(await env.list("active")) == 1
            clock.advance(1)
            engine.tick()
            assert len(await env.list("cleared")) == 1

    asyncio.run(main())
