"""``wattwatch simulate``: a fleet against a running server, or history into a local store.

Two ways in, one set of steps (build sites → register devices → backfill → live):

- :func:`simulate_remote`: a server's URL and a user's credentials; devices are registered
  over the HTTP API, history is uploaded as HTTP batches, live devices speak MQTT in their
  own protocols when a broker address is given (HTTP batch otherwise).
- :func:`simulate_local`: an open :class:`~wattwatch.app.Wattwatch` (``--data-dir`` or
  ``--database-url``); history is written straight into its store, the fastest way to get
  weeks of realistic readings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wattwatch.domain import now_ms
from wattwatch.errors import ConfigError
from wattwatch.sim.backfill import BackfillReport, backfill_store
from wattwatch.sim.provision import (
    MIXED,
    ApiRegistrar,
    LocalRegistrar,
    Provisioned,
    SimDevice,
    plan_devices,
    provision,
)
from wattwatch.sim.runner import HttpSender, MqttSender, Runner, RunStats
from wattwatch.sim.schedules import SiteKind
from wattwatch.sim.site import Site
from wattwatch.store.registry import MAX_CHANNELS_PER_DEVICE

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch
    from wattwatch.registry.service import Principal

DAY_MS = 86_400_000


@dataclass(frozen=True)
class FleetSpec:
    """Which sites and devices to simulate."""

    kind: SiteKind = SiteKind.OFFICE
    devices: int = 10
    sites: int = 1
    seed: int = 0
    timezone: str = "UTC"
    protocol: str = MIXED
    name: str | None = None  # site name prefix (default sim-<kind>-<seed>); uids derive from it

    def build(self) -> list[SimDevice]:
        """The devices, over ``sites`` sites or more: a site grows a circuit per few devices,
        and a panel meter has at most ``MAX_CHANNELS_PER_DEVICE`` channels."""
        if self.sites < 1 or self.devices < self.sites:
            raise ConfigError("need at least one device per site (--devices >= --sites)")
        n_sites = self.sites
        while True:
            sites = self._sites(n_sites)
            widest = max(len(d.channels) for s in sites for d in s.devices.values())
            if widest <= MAX_CHANNELS_PER_DEVICE or n_sites >= self.devices:
                return plan_devices(sites, self.protocol)
            n_sites += 1

    def _sites(self, n_sites: int) -> list[Site]:
        prefix = self.name or f"sim-{self.kind.value}-{self.seed}"
        per, extra = divmod(self.devices, n_sites)
        return [
            Site(
                self.kind,
                per + (i < extra),
                self.seed + i,
                self.timezone,
                name=prefix if n_sites == 1 else f"{prefix}-{i + 1}",
            )
            for i in range(n_sites)
        ]


@dataclass
class SimulateReport:
    provisioned: Provisioned
    backfill: dict[str, Any] | None = None
    live: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        p = self.provisioned
        return {
            "sites": p.site_ids,
            "devices": {"created": p.created, "reused": p.reused, "resumed": p.resumed},
            "backfill": self.backfill,
            "live": self.live,
        }


Progress = Callable[[str], None]


async def simulate_remote(
    registrar: ApiRegistrar,
    fleet: FleetSpec,
    *,
    url: str,
    backfill_days: float = 0.0,
    step_s: float = 5.0,
    speed: float = 1.0,
    duration_s: float | None = None,
    mqtt: tuple[str, int] | None = None,
    connections: int = 16,
    max_readings_per_s: float | None = None,
    stop: asyncio.Event | None = None,
    say: Progress | None = None,
) -> SimulateReport:
    """Register the fleet on the server, upload ``backfill_days`` of history, then report
    live for ``duration_s`` (None: until ``stop``; 0: no live phase)."""
    devices = fleet.build()
    t_now = now_ms()
    start = t_now - int(backfill_days * DAY_MS)
    if backfill_days <= 0 and speed > 1:
        # Sped up from the past: simulated time reaches the present as the run ends (or after
        # a day of simulated time), then goes on at the wall clock (no readings from the future).
        start = t_now - (int(duration_s * (speed - 1) * 1000) if duration_s else DAY_MS)
    provisioned = await asyncio.to_thread(provision, registrar, devices, start_ms=start, now=t_now)
    report = SimulateReport(provisioned)
    if say is not None:
        say(
            f"{len(devices)} devices ({provisioned.created} new, {provisioned.reused} reused) "
            f"on {len(provisioned.site_ids)} site(s)"
        )
    http = HttpSender(url, connections=connections)
    sender = MqttSender(mqtt[0], mqtt[1], http) if mqtt is not None else None
    runner = Runner(
        devices,
        http,
        sender,
        step_s=step_s,
        speed=speed,
        max_readings_per_s=max_readings_per_s,
    )
    try:
        if backfill_days > 0:
            await runner.backfill(now_ms(), progress=_backfill_progress(say))
            report.backfill = runner.stats.to_json()
            runner.stats = RunStats()
        if duration_s != 0:
            if sender is not None:
                await sender.start(devices, runner.stats)
            last_say = [0.0]

            def tick(_sim_ms: int, stats: RunStats) -> None:
                if say is not None and stats.seconds - last_say[0] >= 10:
                    last_say[0] = stats.seconds
                    say(_live_line(stats))

            await runner.live(duration_s=duration_s, stop=stop, on_tick=tick)
            report.live = runner.stats.to_json()
    finally:
        if sender is not None:
            await sender.close()
        await http.close()
    return report


def _backfill_progress(say: Progress | None) -> Callable[[int, RunStats], None]:
    def progress(reached_ms: int, stats: RunStats) -> None:
        if say is not None:
            say(
                f"backfill: {stats.readings:,} readings ({stats.readings_per_s:,.0f}/s), "
                f"{stats.duplicates:,} already there, up to {reached_ms}"
            )

    return progress


def _live_line(stats: RunStats) -> str:
    return (
        f"live: {stats.readings:,} readings in {stats.messages:,} messages "
        f"({stats.readings_per_s:,.0f}/s), {stats.errors} errors"
    )


def simulate_local(
    ww: Wattwatch,
    principal: Principal,
    fleet: FleetSpec,
    *,
    backfill_days: float,
    step_s: float = 5.0,
    say: Progress | None = None,
) -> tuple[SimulateReport, BackfillReport]:
    """Register the fleet and write ``backfill_days`` of history up to now into the store."""
    if backfill_days <= 0:
        raise ConfigError("an in-process simulation writes history: give --backfill-days N")
    devices = fleet.build()
    t_now = now_ms()
    provisioned = provision(
        LocalRegistrar(ww, principal),
        devices,
        start_ms=t_now - int(backfill_days * DAY_MS),
        tokens=False,
        now=t_now,
    )
    last = [0.0]

    def progress(r: BackfillReport) -> None:
        if say is not None and r.seconds - last[0] >= 5:
            last[0] = r.seconds
            say(f"backfill: {r.readings:,} readings ({r.readings_per_s:,.0f}/s)")

    result = backfill_store(ww.store.write_readings, devices, t_now, step_s, progress=progress)
    report = SimulateReport(provisioned, backfill=result.to_json())
    return report, result
