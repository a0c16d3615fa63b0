"""Browser-test helpers: a demo data dir with history; Debian's headless Chromium via Playwright."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import DeviceKind, Role, now_ms
from wattwatch.registry.service import Principal
from wattwatch.store.base import StoredRow

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DAY_MS = 86_400_000
VIEWER_PASSWORD = "viewer-password-1"
OWNER_PASSWORD = "owner-password-1"


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Any) -> Any:
    """Debian's Chromium; never a downloaded browser build."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def history_rows(
    channel_id: int,
    start_ms: int,
    end_ms: int,
    step_ms: int,
    seed: int = 1,
    energy_start_wh: float = 1_000_000.0,
) -> list[StoredRow]:
    """A plausible load curve (base load, a daily cycle, appliance bursts) with its energy
    counter, which goes on from ``energy_start_wh``."""
    rng = np.random.default_rng(seed)
    ts = np.arange(start_ms, end_ms, step_ms, dtype=np.int64)
    hours = (ts / 3_600_000) % 24
    power = 250 + 400 * np.clip(np.sin((hours - 6) / 24 * 2 * np.pi), 0, None)
    power += np.where(rng.random(len(ts)) < 0.05, rng.uniform(500, 2000, len(ts)), 0)
    power += rng.normal(0, 15, len(ts))
    power = np.clip(power, 0, None)
    energy_wh = energy_start_wh + np.cumsum(power * step_ms / 3_600_000)
    voltage = 230 + rng.normal(0, 1.5, len(ts))
    n = len(ts)
    return list(
        zip(
            [channel_id] * n,
            ts.tolist(),
            np.rint(power * 1000).astype(np.int64).tolist(),
            np.rint(energy_wh * 1000).astype(np.int64).tolist(),
            np.rint(voltage * 1000).astype(np.int64).tolist(),
            np.rint(power / voltage * 1000).astype(np.int64).tolist(),
            [None] * n,
            strict=True,
        )
    )  # type: ignore[arg-type]


@dataclass
class Demo:
    """What ``make_demo`` put in the data dir."""

    data_dir: Path
    email: str
    password: str
    site_id: int
    panel_id: int
    panel_token: str
    plug_id: int
    plug_uid: str
    plug_token: str
    rows: int
    extra: dict[str, Any] = field(default_factory=dict)


def make_demo(data_dir: Path, *, year_step_ms: int, recent_step_ms: int = 5000) -> Demo:
    """An owner, a viewer, a site with a panel (a year of history) and a plug, in ``data_dir``.

    The last six hours are at ``recent_step_ms`` (what devices send); the rest of the year at
    ``year_step_ms`` (5 s in the benchmark, coarser in CI to keep the suite fast).
    """
    ww = Wattwatch.open(Settings(data_dir=data_dir), lock=True)
    try:
        boot = ww.registry.bootstrap_owner()
        assert boot is not None
        org_id = ww.registry.db.first_org_id()
        assert org_id is not None
        ww.registry.add_user("viewer@example.com", VIEWER_PASSWORD, Role.VIEWER, org_id)
        owner = Principal(0, org_id, Role.OWNER, boot.email)
        ww.registry.change_password(owner, boot.password, OWNER_PASSWORD)
        site = ww.registry.create_site(
            owner, "Office", "Europe/Madrid", {"currency": "EUR", "price_per_kwh": 0.21}
        )
        panel, panel_token = ww.registry.create_device(
            owner,
            name="Main panel",
            site_id=site["id"],
            identifiers={"serial": "PNL-0001"},
            location={"room": "plant room"},
            model="CT-3",
            firmware="1.2.0",
        )
        plug, plug_token = ww.registry.create_device(
            owner, name="Kettle plug", site_id=site["id"], kind=DeviceKind.PLUG
        )
        channel = ww.registry.db.resolve_channel(panel["id"], "mains")
        end = now_ms() - 60_000
        split = end - 6 * 3_600_000
        start = end - 365 * DAY_MS
        rows = 0
        counter_wh = 1_000_000.0
        spans = [
            (lo, min(lo + 30 * DAY_MS, split), year_step_ms)
            for lo in range(start, split, 30 * DAY_MS)
        ]
        for lo, hi, step in [*spans, (split, end, recent_step_ms)]:
            chunk = history_rows(channel, lo, hi, step, lo, counter_wh)
            ww.store.write_readings(chunk)
            rows += len(chunk)
            counter_wh = chunk[-1][3] / 1000
        extra: dict[str, Any] = {}
        preregister = getattr(ww.registry, "preregister_device", None)
        if preregister is not None:  # claiming lands with the registry/control work
            _, extra["claim_code"] = preregister(name="Boxed plug", kind=DeviceKind.PLUG)
        return Demo(
            data_dir=data_dir,
            email=boot.email,
            password=OWNER_PASSWORD,
            site_id=site["id"],
            panel_id=panel["id"],
            panel_token=panel_token,
            plug_id=plug["id"],
            plug_uid=plug["uid"],
            plug_token=plug_token,
            rows=rows,
            extra=extra,
        )
    finally:
        ww.close()


def serve_options() -> str:
    """``wattwatch serve --help``: which flags this build has (MQTT lands separately)."""
    return subprocess.run(
        [sys.executable, "-m", "wattwatch", "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    ).stdout


def log_in(page: Any, base_url: str, email: str, password: str) -> None:
    page.goto(base_url + "/overview")
    assert "/login" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/overview")
