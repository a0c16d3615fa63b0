"""Report fixtures: one simulated October in Madrid (with its 25-hour day), shared by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.reports.simdata import SimDevice, load

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Role
from wattwatch.registry.service import Principal

TZ = "Europe/Madrid"
START = date(2026, 9, 28)  # a few September days give October a previous period with data
DAYS = 34
PASSWORD = "reports-owner-pw"


@dataclass
class Month:
    ww: Wattwatch
    owner: Principal
    site: dict[str, Any]
    devices: list[SimDevice]
    email: str = "owner@sim.example"


def month_devices() -> list[SimDevice]:
    return [
        # Identical loads, one metered by its energy counter (reset mid-month), one by power only.
        SimDevice("HVAC", 300, 2500, area="Office", reset_at=0.45),
        SimDevice("HVAC twin", 300, 2500, area="Office", counter=False),
        SimDevice("Printers", 150, 400, area="Print room", counter=False),
        SimDevice("Fridge", 100, 0, area="Kitchen"),
        SimDevice("Server", 400, 50, noise_w=40, counter=False),
    ]


@pytest.fixture(scope="package")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Month]:
    ww = Wattwatch.open(Settings(data_dir=tmp_path_factory.mktemp("month")), lock=True)
    org_id = ww.registry.db.create_org("Sim org")
    devices = month_devices()
    owner, site = load(
        ww,
        devices,
        tz=TZ,
        start=START,
        days=DAYS,
        tariff={"currency": "EUR", "price_per_kwh": 0.2, "standing_charge_per_day": 1.5},
        org_id=org_id,
    )
    ww.registry.add_user(Month.email, PASSWORD, Role.OWNER, org_id)
    yield Month(ww, owner, site, devices)
    ww.close()


def data_dir_of(ww: Wattwatch) -> Path:
    return Path(ww.settings.data_dir)
