"""Fixtures for alert tests: a registry with a site and a device, a manual clock, ingest helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from wattwatch.alerts.rules import RULE_ADAPTER
from wattwatch.alerts.service import AlertService
from wattwatch.app import Wattwatch
from wattwatch.domain import Reading, Role
from wattwatch.registry.service import Principal


class ManualClock:
    """An injected clock (epoch ms) that moves only when told to."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@dataclass
class Env:
    ww: Wattwatch
    owner: Principal
    site_id: int
    device: dict[str, Any]

    @property
    def alerts(self) -> AlertService:
        assert self.ww.alerts is not None
        return self.ww.alerts

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self.ww.start()
        try:
            yield
        finally:
            await self.ww.stop()

    async def rule(self, **body: Any) -> dict[str, Any]:
        body.setdefault("name", f"{body['kind']} rule")
        body.setdefault("device_id", self.device["id"])
        rule = RULE_ADAPTER.validate_python(body)
        return await asyncio.to_thread(self.alerts.create_rule, self.owner, rule)

    async def send(
        self, points: list[tuple[int, float]], metric: str = "power_w", channel: str | None = None
    ) -> None:
        readings = [Reading({metric: v}, ts_ms=t, channel=channel) for t, v in points]
        result = await self.ww.pipeline.ingest(self.device, readings)
        assert not result.rejected, result.rejected
        await self.alerts.engine.drain()

    async def list(self, state: str | None = None) -> list[dict[str, Any]]:
        await self.alerts.engine.drain()
        return self.alerts.list_alerts(self.owner, [state] if state else None)


@pytest.fixture
def env(ww: Wattwatch) -> Iterator[Env]:
    boot = ww.registry.bootstrap_owner()
    assert boot is not None
    org_id = ww.registry.db.first_org_id()
    assert org_id is not None
    owner = Principal(user_id=1, org_id=org_id, role=Role.OWNER, email=boot.email)
    site = ww.registry.create_site(owner, "Shop", "Europe/Madrid", {})
    device, _ = ww.registry.create_device(owner, name="heater plug", site_id=site["id"])
    yield Env(ww, owner, site["id"], device)
