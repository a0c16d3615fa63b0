"""ReportService: resolves a scope and period, loads quarter-hour energy, computes and renders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from wattwatch.domain import Role, now_ms
from wattwatch.errors import InvalidInput
from wattwatch.reports.compute import SLOT_MS, ChannelMeta, ReportInput, compute_report
from wattwatch.reports.periods import Period, PeriodKind, resolve_period
from wattwatch.reports.render import Rendered, ReportFormat, render_report
from wattwatch.reports.settings import ReportSettings
from wattwatch.store.registry import SqlRegistry
from wattwatch.store.reports import SqlReportStore
from wattwatch.tariffs import Tariff


class DailyEnergySource(Protocol):
    """The part of ``ReadingStore`` reports read besides quarter-hour energy."""

    def daily_energy(
        self, channel_ids: list[int], from_ms: int, to_ms: int
    ) -> list[tuple[int, int, int, int]]: ...


class Caller(Protocol):
    """Who asks (``registry.service.Principal``): an organisation and a role."""

    @property
    def org_id(self) -> int: ...

    def require(self, role: Role) -> None: ...


@dataclass(frozen=True, slots=True)
class Scope:
    """What a report is about: a site, an area (with its sub-areas) or a device."""

    kind: str  # site | area | device
    id: int
    name: str
    site: dict[str, Any]
    channels: list[ChannelMeta]

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name}


NO_SITE: dict[str, Any] = {"id": None, "name": "(no site)", "timezone": "UTC", "tariff": {}}


class ReportService:
    def __init__(
        self,
        store: DailyEnergySource,
        registry: SqlRegistry,
        reports: SqlReportStore,
        *,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.db = registry
        self.reports = reports
        self.clock = clock

    # -- scopes ---------------------------------------------------------------------------
    def scope(
        self,
        org_id: int,
        *,
        site_id: int | None = None,
        area_id: int | None = None,
        device_id: int | None = None,
    ) -> Scope:
        """The scope named by exactly one id; NotFound for another organisation's record."""
        if sum(x is not None for x in (site_id, area_id, device_id)) != 1:
            raise InvalidInput("a report is about exactly one site, area or device")
        if site_id is not None:
            site = self.db.get_site(org_id, site_id)
            rows = self.reports.scope_channels(org_id, site_id=site_id)
            return Scope("site", site_id, site["name"], site, _metas(rows))
        if area_id is not None:
            area = self.reports.get_area(org_id, area_id)
            site = self.db.get_site(org_id, area["site_id"])
            ids = _subtree(self.reports.area_tree(area["site_id"]), area_id)
            rows = self.reports.scope_channels(org_id, area_ids=ids)
            return Scope("area", area_id, area["name"], site, _metas(rows))
        assert device_id is not None
        device = self.db.get_device(org_id, device_id)
        site = NO_SITE if device["site_id"] is None else self.db.get_site(org_id, device["site_id"])
        rows = self.reports.scope_channels(org_id, device_id=device_id)
        return Scope("device", device_id, device["name"], site, _metas(rows))

    def settings_for(self, site: dict[str, Any]) -> ReportSettings:
        if site["id"] is None:
            return ReportSettings()
        return ReportSettings.of(self.reports.get_settings(site["id"]))

    def get_settings(self, org_id: int, site_id: int) -> dict[str, Any]:
        site = self.db.get_site(org_id, site_id)
        return self.settings_for(site).model_dump()

    def put_settings(self, caller: Caller, site_id: int, raw: dict[str, Any]) -> dict[str, Any]:
        caller.require(Role.ADMIN)
        self.db.get_site(caller.org_id, site_id)
        settings = ReportSettings.model_validate(raw)
        self.reports.put_settings(site_id, settings.model_dump(), self.clock())
        return settings.model_dump()

    # -- reports --------------------------------------------------------------------------
    def period_for(
        self, scope: Scope, kind: PeriodKind | str, start: date | None, end: date | None
    ) -> Period:
        tz = scope.site["timezone"]
        today = datetime.fromtimestamp(self.clock() / 1000, ZoneInfo(tz)).date()
        return resolve_period(kind, tz, start=start, end=end, today=today)

    def build(
        self,
        org_id: int,
        *,
        site_id: int | None = None,
        area_id: int | None = None,
        device_id: int | None = None,
        period: PeriodKind | str = PeriodKind.MONTH,
        start: date | None = None,
        end: date | None = None,
    ) -> dict[str, Any]:
        """The report (JSON-ready dict) of a scope over the period of ``period`` at ``start``."""
        scope = self.scope(org_id, site_id=site_id, area_id=area_id, device_id=device_id)
        return self.build_for(scope, self.period_for(scope, period, start, end))

    def build_for(self, scope: Scope, period: Period) -> dict[str, Any]:
        from_ms, to_ms = period.from_ms, period.to_ms
        ids = [c.id for c in scope.channels]
        n_slots = (to_ms - from_ms) // SLOT_MS
        energy = np.full((len(ids), n_slots), np.nan)
        rows = self.reports.quarter_energy(ids, from_ms, to_ms)
        if rows:
            # One conversion in C; None (a quarter without data) becomes NaN. Channel ids and
            # epoch ms are exact in float64.
            table = np.array(rows, dtype=np.float64)
            order = np.argsort(ids)
            ch_i = order[np.searchsorted(np.array(ids)[order], table[:, 0].astype(np.int64))]
            slot = (table[:, 1].astype(np.int64) - from_ms) // SLOT_MS
            energy[ch_i, slot] = table[:, 2] / 1000
        counted = [c.id for c in scope.channels if not c.submeter] or ids
        comparisons = {
            "previous": self._period_energy(counted, period.previous()),
            "last_year": self._period_energy(counted, period.last_year()),
        }
        return compute_report(
            ReportInput(
                scope=scope.as_json(),
                site=scope.site,
                period=period,
                tariff=Tariff.of(scope.site["tariff"]),
                settings=self.settings_for(scope.site),
                channels=scope.channels,
                energy_wh=energy,
                now_ms=self.clock(),
                include_standing_charge=scope.kind == "site",
                comparisons=comparisons,
            )
        )

    def _period_energy(self, channel_ids: list[int], period: Period) -> dict[str, Any] | None:
        """Energy of another period from the daily rollups, or None when it has no data."""
        if not channel_ids:
            return None
        rows = self.store.daily_energy(channel_ids, period.from_ms, period.to_ms)
        days_with_data = len({day for day, _ch, n, _e in rows if n > 0})
        if days_with_data == 0:
            return None
        return {
            "label": period.label,
            "start": period.start.isoformat(),
            "end": period.days[-1].isoformat(),
            "energy_kwh": round(sum(e for *_, e in rows) / 1e6, 3),
            "days_with_data": days_with_data,
            "days": len(period.days),
        }

    def render(
        self, report: dict[str, Any], fmt: ReportFormat | str, table: str | None = None
    ) -> Rendered:
        return render_report(report, fmt, table)


def _metas(rows: list[dict[str, Any]]) -> list[ChannelMeta]:
    return [
        ChannelMeta(
            id=r["id"],
            name=r["name"],
            device_id=r["device_id"],
            device_name=r["device_name"],
            area_id=r["area_id"],
            area_name=r["area_name"],
            appliance=r["appliance"],
            submeter=bool(r["submeter"]),
        )
        for r in rows
    ]


def _subtree(areas: list[dict[str, Any]], root: int) -> list[int]:
    """``root`` and every area below it."""
    children: dict[int | None, list[int]] = {}
    for a in areas:
        children.setdefault(a["parent_id"], []).append(a["id"])
    out, todo = [], [root]
    while todo:
        area = todo.pop()
        if area in out:
            continue
        out.append(area)
        todo.extend(children.get(area, []))
    return out
