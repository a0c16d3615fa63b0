"""Tariffs: flat and time-of-use prices per kWh, plus a standing charge per day."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator


class TouPeriod(BaseModel):
    """A price that applies on some weekdays (0 = Monday) between two local times."""

    days: list[int] = Field(default_factory=lambda: list(range(7)))
    start: str = Field("00:00", pattern=r"^\d{2}:\d{2}$")
    end: str = Field("24:00", pattern=r"^\d{2}:\d{2}$")
    price_per_kwh: float = Field(ge=0)

    def covers(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        sh, sm = map(int, self.start.split(":"))
        eh, em = map(int, self.end.split(":"))
        start, end = sh * 60 + sm, eh * 60 + em
        inside = start <= minute < end if start <= end else (minute >= start or minute < end)
        return local.weekday() in self.days and inside


class Tariff(BaseModel):
    """Energy prices of a site. Without periods the flat ``price_per_kwh`` applies."""

    currency: str = "EUR"
    price_per_kwh: float = Field(0.0, ge=0)
    standing_charge_per_day: float = Field(0.0, ge=0)
    periods: list[TouPeriod] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known_days(self) -> Tariff:
        for p in self.periods:
            if any(d < 0 or d > 6 for d in p.days):
                raise ValueError("period days are 0 (Monday) to 6 (Sunday)")
        return self

    @property
    def is_flat(self) -> bool:
        return not self.periods

    def price_at(self, local: datetime) -> float:
        for period in self.periods:
            if period.covers(local):
                return period.price_per_kwh
        return self.price_per_kwh

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> Tariff:
        return cls.model_validate(raw or {})
