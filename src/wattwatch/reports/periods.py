"""Report periods: calendar weeks, months, quarters and custom ranges in a site's timezone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from wattwatch.errors import InvalidInput

# A custom range longer than this is refused: the report holds one row per hour.
MAX_CUSTOM_DAYS = 400


class PeriodKind(StrEnum):
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    CUSTOM = "custom"


def local_midnight_ms(day: date, tz: str) -> int:
    """Epoch ms of local midnight starting ``day`` (the first instant of it, even at DST)."""
    return int(datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _year_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


@dataclass(frozen=True, slots=True)
class Period:
    """Local days [start, end) of one report, in timezone ``tz``."""

    kind: PeriodKind
    start: date
    end: date  # exclusive
    tz: str

    @property
    def from_ms(self) -> int:
        return local_midnight_ms(self.start, self.tz)

    @property
    def to_ms(self) -> int:
        return local_midnight_ms(self.end, self.tz)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]

    @property
    def label(self) -> str:
        last = self.end - timedelta(days=1)
        if self.kind is PeriodKind.MONTH:
            return self.start.strftime("%B %Y")
        if self.kind is PeriodKind.QUARTER:
            return f"Q{(self.start.month - 1) // 3 + 1} {self.start.year}"
        if self.kind is PeriodKind.WEEK:
            iso = self.start.isocalendar()
            return f"Week {iso.week} of {iso.year} ({self.start:%d %b} – {last:%d %b %Y})"
        return f"{self.start:%d %b %Y} – {last:%d %b %Y}"

    def previous(self) -> Period:
        """The period just before: previous week / month / quarter, or as many days before."""
        if self.kind is PeriodKind.WEEK:
            return Period(self.kind, self.start - timedelta(days=7), self.start, self.tz)
        if self.kind is PeriodKind.MONTH:
            return Period(self.kind, _add_months(self.start, -1), self.start, self.tz)
        if self.kind is PeriodKind.QUARTER:
            return Period(self.kind, _add_months(self.start, -3), self.start, self.tz)
        length = self.end - self.start
        return Period(self.kind, self.start - length, self.start, self.tz)

    def last_year(self) -> Period:
        """The same calendar period a year earlier (the same ISO week for weeks)."""
        if self.kind is PeriodKind.WEEK:
            iso = self.start.isocalendar()
            try:
                start = date.fromisocalendar(iso.year - 1, iso.week, 1)
            except ValueError:  # week 53
                start = date.fromisocalendar(iso.year - 1, 52, 1)
            return Period(self.kind, start, start + timedelta(days=7), self.tz)
        if self.kind in (PeriodKind.MONTH, PeriodKind.QUARTER):
            months = 1 if self.kind is PeriodKind.MONTH else 3
            start = _add_months(self.start, -12)
            return Period(self.kind, start, _add_months(start, months), self.tz)
        return Period(self.kind, _year_before(self.start), _year_before(self.end), self.tz)


def resolve_period(
    kind: PeriodKind | str,
    tz: str,
    *,
    start: date | None = None,
    end: date | None = None,
    today: date | None = None,
) -> Period:
    """The period of ``kind`` that contains ``start``; without ``start`` the last complete one.

    For ``custom``, ``start`` and ``end`` are both required and ``end`` is inclusive.
    """
    try:
        kind = PeriodKind(kind)
    except ValueError:
        raise InvalidInput(
            f"unknown report period {kind!r}; use week, month, quarter or custom"
        ) from None
    if today is None:
        today = datetime.now(ZoneInfo(tz)).date()
    if kind is PeriodKind.CUSTOM:
        if start is None or end is None:
            raise InvalidInput("a custom report needs start and end dates")
        if end < start:
            raise InvalidInput("end must not be before start")
        if (end - start).days + 1 > MAX_CUSTOM_DAYS:
            raise InvalidInput(f"a custom report covers at most {MAX_CUSTOM_DAYS} days")
        return Period(kind, start, end + timedelta(days=1), tz)
    if end is not None:
        raise InvalidInput(f"end is only for custom reports; a {kind} report starts at start")
    if kind is PeriodKind.WEEK:
        if start is None:
            start = today - timedelta(days=7)
        first = start - timedelta(days=start.weekday())
        return Period(kind, first, first + timedelta(days=7), tz)
    months = 1 if kind is PeriodKind.MONTH else 3
    if start is None:
        start = _add_months(today.replace(day=1), -months)
    first = date(start.year, start.month - (start.month - 1) % months, 1)
    return Period(kind, first, _add_months(first, months), tz)


def parse_day(value: str | None, what: str = "start") -> date | None:
    """A YYYY-MM-DD request parameter."""
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} must be a date like 2026-10-01, not {value!r}") from None
