"""The demo: an organisation with an office and a restaurant, a month of history, live devices.

``wattwatch demo`` (see ``cli.py``) serves wattwatch and uses this module to fill it:

1. :meth:`Demo.prepare`, before the server starts: the demo account (an owner of its own
   organisation; the password is generated once and kept in the data dir, so every start
   can print the login), the two sites and their devices, registered through the registry
   service with sub-meter flags so site totals count each watt once. Everything is found
   again by name or uid on the next start: nothing is created twice.
2. :meth:`Demo.run`, once the server listens: the history is written straight into the
   store (:mod:`wattwatch.sim.backfill`): coarse for old days, finer for the last ones,
   seamless because each step divides the previous one. On a restart it only fills the gap
   since the demo last ran, with counters continuing from the stored values. Then the
   devices go live against the server itself: over MQTT in their own protocols when the
   embedded broker runs, else as HTTP batch uploads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wattwatch.domain import DeviceProtocol, Role, now_ms
from wattwatch.errors import RemoteError
from wattwatch.registry.service import Principal
from wattwatch.sim.backfill import BackfillReport, backfill_store
from wattwatch.sim.provision import LocalRegistrar, Provisioned, SimDevice, plan_devices, provision
from wattwatch.sim.runner import HttpSender, MqttSender, Runner, RunStats
from wattwatch.sim.site import Site

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch

DEMO_EMAIL = "demo@wattwatch.local"
DEMO_ORG = "Demo organisation"
CREDENTIALS_FILE = "demo-login.json"
DAY_MS = 86_400_000
SITE_NAMES = {"demo-office": "Office (demo)", "demo-restaurant": "Restaurant (demo)"}


@dataclass(frozen=True)
class DemoPlan:
    """What the demo builds; steps must divide each other (history → recent → live)."""

    history_days: float = 30.0
    history_step_s: float = 300.0
    recent_days: float = 2.0  # the last days at the finer step
    recent_step_s: float = 60.0
    live_step_s: float = 5.0
    office_devices: int = 12
    restaurant_devices: int = 10
    timezone: str = "Europe/Madrid"
    seed: int = 2026

    def sites(self) -> list[Site]:
        return [
            Site("office", self.office_devices, self.seed, self.timezone, name="demo-office"),
            Site(
                "restaurant",
                self.restaurant_devices,
                self.seed + 1,
                self.timezone,
                name="demo-restaurant",
            ),
        ]


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str | None  # None: the file that kept it is gone (see ``Demo.prepare``)


Say = Callable[[str], None]


class Demo:
    """The demo organisation on an open wattwatch."""

    def __init__(self, ww: Wattwatch, plan: DemoPlan | None = None) -> None:
        self.ww = ww
        self.plan = plan or DemoPlan()
        self.devices: list[SimDevice] = []
        self.login: DemoLogin | None = None
        self.provisioned: Provisioned | None = None
        self.history: list[BackfillReport] = []
        self.live_stats: RunStats | None = None
        self._stop_backfill = threading.Event()

    @property
    def credentials_path(self) -> Path:
        return Path(self.ww.settings.data_dir) / CREDENTIALS_FILE

    def prepare(self, now: int | None = None) -> Provisioned:
        """The account, sites and devices (idempotent); positions every device to report."""
        t_now = now_ms() if now is None else now
        principal, self.login = self._account()
        self.devices = plan_devices(self.plan.sites())
        start = t_now - int(self.plan.history_days * DAY_MS)
        self.provisioned = provision(
            LocalRegistrar(self.ww, principal),
            self.devices,
            site_names=SITE_NAMES,
            start_ms=start,
            now=t_now,
        )
        return self.provisioned

    def _account(self) -> tuple[Principal, DemoLogin]:
        db = self.ww.registry.db
        user = db.user_by_email(DEMO_EMAIL)
        password: str | None
        if user is None:
            password = secrets.token_urlsafe(12)
            org_id = db.create_org(DEMO_ORG)
            user_id = self.ww.registry.add_user(DEMO_EMAIL, password, Role.OWNER, org_id)
            self._save_password(password)
        else:
            user_id = int(user["id"])
            org_id = int(db.memberships_of(user_id)[0]["org_id"])
            password = self._saved_password()
        return Principal(user_id, org_id, Role.OWNER, DEMO_EMAIL), DemoLogin(DEMO_EMAIL, password)

    def _save_password(self, password: str) -> None:
        path = self.credentials_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Only the data dir's owner may read it (as the database next to it).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"email": DEMO_EMAIL, "password": password}, f)

    def _saved_password(self) -> str | None:
        try:
            saved = json.loads(self.credentials_path.read_text())
        except (OSError, ValueError):
            return None
        password = saved.get("password") if isinstance(saved, dict) else None
        return password if isinstance(password, str) else None

    def protocols(self, mqtt: bool) -> dict[str, int]:
        """How many devices report over each protocol."""
        return dict(
            Counter(str(d.protocol) if mqtt else str(DeviceProtocol.HTTP) for d in self.devices)
        )

    # -- running ---------------------------------------------------------------------------

    def fill_history(self, say: Say | None = None, now: int | None = None) -> list[BackfillReport]:
        """Write the missing history up to now straight into the store (blocking)."""
        t_now = now_ms() if now is None else now
        recent_from = t_now - int(self.plan.recent_days * DAY_MS)
        phases = [(recent_from, self.plan.history_step_s), (t_now, self.plan.recent_step_s)]
        reports = []
        for end_ms, step_s in phases:
            if self._stop_backfill.is_set():
                break
            report = backfill_store(
                self.ww.store.write_readings,
                self.devices,
                end_ms,
                step_s,
                chunk_s=max(6 * 3600.0, step_s * 1440),
                stop=self._stop_backfill,
            )
            reports.append(report)
            if say is not None and report.readings:
                say(
                    f"history: {report.readings:,} readings at {step_s:g} s steps "
                    f"in {report.seconds:.1f} s"
                )
        nothing = not any(r.readings for r in reports)
        if say is not None and nothing and not self._stop_backfill.is_set():
            say("history: up to date, nothing missing since the last run")
        self.history = reports
        return reports

    async def run(
        self,
        base_url: str,
        stop: asyncio.Event,
        *,
        mqtt: tuple[str, int] | None = None,
        say: Say | None = None,
    ) -> None:
        """Fill the history, then report live until ``stop`` is set."""
        task = asyncio.create_task(asyncio.to_thread(self.fill_history, say))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            self._stop_backfill.set()
            with contextlib.suppress(Exception):
                await task
            stopped.cancel()
            return
        stopped.cancel()
        task.result()
        http = HttpSender(base_url, connections=8)
        sender = None
        try:
            if mqtt is not None:
                sender = MqttSender(mqtt[0], mqtt[1], http)
            runner = Runner(self.devices, http, sender, step_s=self.plan.live_step_s)
            self.live_stats = runner.stats
            if sender is not None:
                try:
                    await sender.start(self.devices, runner.stats)
                except RemoteError as exc:
                    if say is not None:
                        say(f"MQTT unavailable ({exc}): devices upload over HTTP instead")
                    sender = None
                    runner.mqtt = None
            if say is not None:
                say(
                    f"live: {len(self.devices)} devices reporting every {self.plan.live_step_s:g} s"
                )
            await runner.live(stop=stop)
        finally:
            if sender is not None:
                await sender.close()
            await http.close()
