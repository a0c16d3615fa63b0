"""Per-site report settings: business (opening) hours and the CO2 factor of grid electricity."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

# Average emissions of grid electricity; sites override it with their supplier's figure.
DEFAULT_CO2_KG_PER_KWH = 0.25

_HHMM = r"^([01]\d|2[0-4]):(00|15|30|45)$"


def _minutes(hhmm: str) -> int:
    h, m = map(int, hhmm.split(":"))
    return h * 60 + m


class OpeningWindow(BaseModel):
    """Open on ``days`` (0 = Monday) from ``start`` to ``end`` local time, in quarter hours."""

    days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    start: str = Field("08:00", pattern=_HHMM)
    end: str = Field("18:00", pattern=_HHMM)

    @field_validator("days")
    @classmethod
    def _weekdays(cls, days: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in days):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        return sorted(set(days))

    def covers(self, weekday: int, minute_of_day: int) -> bool:
        start, end = _minutes(self.start), _minutes(self.end)
        if start <= end:
            return weekday in self.days and start <= minute_of_day < end
        # Overnight window (22:00–06:00): the early part belongs to the day it started on.
        if minute_of_day >= start:
            return weekday in self.days
        return minute_of_day < end and (weekday - 1) % 7 in self.days


class ReportSettings(BaseModel):
    """What reports of a site need besides its tariff."""

    business_hours: list[OpeningWindow] = Field(default_factory=lambda: [OpeningWindow()])
    co2_kg_per_kwh: float = Field(DEFAULT_CO2_KG_PER_KWH, ge=0, le=5)

    def is_open(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        return any(w.covers(local.weekday(), minute) for w in self.business_hours)

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> ReportSettings:
        return cls.model_validate(raw or {})
