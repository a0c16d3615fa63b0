"""Rule evaluation on the real pipeline and SQLite store: duration, hysteresis, lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.alerts.conftest import Env, ManualClock

from wattwatch.app import Wattwatch

T0 = 1_780_000_000_000  # 2026-05-28, a Thursday; readings are in the past, as they must be


def test_threshold_holds_for_its_duration_then_raises_once(env: Any) -> None:
    async def main() -> None:
        async with env.running():
            rule = await env.rule(kind="threshold", value=2000, for_s=600, severity="major")
            # 2.5 kW every minute: the condition starts at T0 and has held 600 s at T0 + 10 min.
            await env.send([(T0 + i * 60_000, 2500.0) for i in range(10)])
            assert await env.list() == []
            await env.send([(T0 + i * 60_000, 2500.0) for i in range(10, 15)])
            (alert,) = await env.list()
            assert alert["state"] == "active" and alert["severity"] == "major"
            assert alert["raised_ms"] == T0 + 600_000
            assert alert["rule_id"] == rule["id"] and alert["channel"] == "mains"
            assert "power_w 2,500 > 2,000 for 600 s" in alert["message"]
            # A dip below the threshold restarts the duration: no second alert.
            await env.send([(T0 + 15 * 60_000, 1000.0)])
            (alert,) = await env.list()
            assert alert["state"] == "cleared"  # default hysteresis 5 %: 1000 W clears

    asyncio.run(main())


def _hover(start: int, n: int) -> list[tuple[int, float]]:
    """A value hovering at 2,000 W: 1,990 / 2,010 alternately, every 10 s."""
    return [(start + i * 10_000, 2010.0 if i % 2 else 1990.0) for i in range(n)]


def test_hysteresis_stops_a_hovering_value_from_flapping(env: Any) -> None:
    async def main() -> None:
        async with env.running():
            steady = await env.rule(kind="threshold", value=2000, hysteresis=100)
            flappy = await env.rule(kind="threshold", value=2000, hysteresis=0)
            await env.send(_hover(T0, 60))
            alerts = await env.list()
            mine = [a for a in alerts if a["rule_id"] == steady["id"]]
            theirs = [a for a in alerts if a["rule_id"] == flappy["id"]]
            # Without a band every crossing raises and clears: 30 alerts in 10 minutes.
            assert len(theirs) == 30
            # With a 100 W band: one alert, still open, updated by the repeat triggers.
            (alert,) = mine
            assert alert["state"] == "active"
            await env.send([(T0 + 600_000, 1950.0), (T0 + 610_000, 2050.0)])
            (alert,) = [a for a in await env.list() if a["rule_id"] == steady["id"]]
            assert alert["state"] == "active" and alert["count"] > 1
            await env.send([(T0 + 620_000, 1890.0)])  # below 2,000 - 100: clears
            (alert,) = [a for a in await env.list() if a["rule_id"] == steady["id"]]
            assert alert["state"] == "cleared" and alert["cleared_ms"] == T0 + 620_000
            actions = [h["action"] for h in env.alerts.get_alert(env.owner, alert["id"])["history"]]
            assert actions[0] == "raised" and actions[-1] == "cleared"

    asyncio.run(main())


def test_range_rule_on_voltage_and_clear_only_inside_the_band(env: Any) -> None:
    async def main() -> None:
        async with env.running():
            await env.rule(kind="range", metric="voltage_v", min=207, max=253, for_s=20)
            await env.send([(T0 + i * 10_000, 230.0) for i in range(5)], metric="voltage_v")
            await env.send([(T0 + 50_000 + i * 10_000, 255.0) for i in range(2)], "voltage_v")
            assert await env.list() == []  # 10 s outside: not yet
            await env.send([(T0 + 70_000, 256.0)], metric="voltage_v")
            (alert,) = await env.list("active")
            assert "outside 207–253" in alert["message"]
            # 252.5 V is inside the range but within the 0.92 V band: not cleared yet.
            await env.send([(T0 + 80_000, 252.5)], metric="voltage_v")
            assert len(await env.list("active")) == 1
            await env.send([(T0 + 90_000, 240.0)], metric="voltage_v")
            assert len(await env.list("cleared")) == 1

    asyncio.run(main())


def test_late_readings_do_not_rewind_a_rule(env: Any) -> None:
    async def main() -> None:
        async with env.running():
            await env.rule(kind="threshold", value=2000)
            await env.send([(T0 + 60_000, 100.0)])
            await env.send([(T0, 5000.0)])  # older than what the rule has seen
            assert await env.list() == []

    asyncio.run(main())


def test_energy_budget_per_local_day(env: Any) -> None:
    # A counter rising 100 Wh a minute from 10:00 Madrid (08:00 UTC); the engine's clock says
    # it is that day (the budget starts from today's stored energy).
    day = 1_779_955_200_000 + 8 * 3_600_000  # 2026-05-28 08:00 UTC
    env.alerts.engine.clock = ManualClock(day)

    async def main() -> None:
        async with env.running():
            await env.rule(
                kind="energy_budget", site_id=env.site_id, device_id=None, budget_wh=1000
            )
            pts = [(day + i * 60_000, 50_000.0 + 100 * i) for i in range(10)]
            await env.send(pts[:4], metric="energy_wh")  # reading by reading
            await env.send(pts[4:], metric="energy_wh")  # one step: counter delta of the batch
            assert await env.list() == []  # 900 Wh
            await env.send([(day + 10 * 60_000, 51_100.0)], metric="energy_wh")
            (alert,) = await env.list("active")
            assert alert["value"] == 1100.0 and "budget 1,000 Wh" in alert["message"]
            # 22:30 UTC is 00:30 next day in Madrid: a new day clears it.
            await env.send([(day + 14 * 3_600_000 + 1_800_000, 51_200.0)], metric="energy_wh")
            (alert,) = await env.list()
            assert alert["state"] == "cleared"

    asyncio.run(main())


def test_sudden_change_against_the_hourly_profile(env: Any) -> None:
    async def main() -> None:
        async with env.running():
            await env.rule(kind="sudden_change", min_samples=10, window_s=60, min_delta=200)
            # A fridge around 100 W for 20 minutes (the profile learns minute means), then
            # 1.5 kW at the same hour of the day.
            usual = [(T0 + i * 10_000, 100.0 + (i % 5) * 10) for i in range(120)]
            await env.send(usual)
            assert await env.list() == []
            jump = [(T0 + 1_200_000 + i * 10_000, 1500.0) for i in range(12)]
            await env.send(jump)
            (alert,) = await env.list("active")
            assert "usually 1" in alert["message"]
            back = [(T0 + 1_400_000 + i * 10_000, 110.0) for i in range(60)]
            await env.send(back)
            (alert,) = await env.list()
            assert alert["state"] == "cleared"

    asyncio.run(main())


def test_rule_of_a_channel_ignores_other_channels(env: Any) -> None:
    async def main() -> None:
        async with env.running():
            await env.rule(kind="threshold", value=2000, channel="ac01")
            await env.send([(T0, 3000.0)], channel="mains")
            assert await env.list() == []
            await env.send([(T0, 3000.0)], channel="ac01")
            (alert,) = await env.list()
            assert alert["channel"] == "ac01" and alert["target"].endswith("/ac01")

    asyncio.run(main())


def test_open_alerts_survive_a_restart_and_clear_later(env: Any) -> None:
    async def first() -> None:
        async with env.running():
            await env.rule(kind="threshold", value=2000)
            await env.send([(T0, 3000.0)])

    asyncio.run(first())
    env.ww.close()
    again = Env(Wattwatch.open(env.ww.settings), env.owner, env.site_id, env.device)

    async def second() -> None:
        async with again.running():
            (alert,) = await again.list("active")
            await again.send([(T0 + 10_000, 3100.0), (T0 + 20_000, 100.0)])
            (after,) = await again.list()
            assert after["id"] == alert["id"] and after["state"] == "cleared"
            assert after["count"] == 1  # 3,100 W continued the same alert, no new trigger

    try:
        asyncio.run(second())
    finally:
        again.ww.close()
