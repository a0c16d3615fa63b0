"""Alert rule definitions: one validated model per rule kind, and the notify targets they name."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from wattwatch.domain import METRIC_NAMES


class Severity(StrEnum):
    """ThingsBoard's alarm severities, most to least urgent."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"
    INFO = "info"


# Severity of an AI finding, lowest first, for an anomaly rule's ``min_severity``.
FINDING_SEVERITY_ORDER = ("info", "warning", "critical")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Metric = Literal[METRIC_NAMES]  # type: ignore[valid-type]


class RuleBase(BaseModel):
    """What every rule has: a name, a scope (device [+ channel], area or site) and who to tell."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["heater left on"])
    severity: Severity = Severity.WARNING
    enabled: bool = True
    device_id: int | None = None
    channel: str | None = Field(
        None, min_length=1, max_length=64, description="only this channel (default: every one)"
    )
    area_id: int | None = None
    site_id: int | None = None
    notify: list[Any] = Field(
        default_factory=list,
        max_length=20,
        description='webhook ids, {"email": "ops@example.com"} or {"mqtt": "topic"}',
    )

    @model_validator(mode="after")
    def _one_scope(self) -> RuleBase:
        scopes = [s for s in (self.device_id, self.area_id, self.site_id) if s is not None]
        if len(scopes) != 1:
            raise ValueError("give exactly one of device_id, area_id or site_id")
        return self

    def params(self) -> dict[str, Any]:
        """The kind-specific fields, as stored in ``alert_rules.params``."""
        common = set(RuleBase.model_fields)
        return self.model_dump(mode="json", exclude=common)


class ThresholdRule(RuleBase):
    """``metric op value`` held for ``for_s``; clears once back past ``value`` ∓ hysteresis."""

    kind: Literal["threshold"]
    metric: Metric = "power_w"
    op: Literal[">", ">=", "<", "<="] = ">"
    value: float
    for_s: float = Field(0, ge=0, le=7 * 86400)
    hysteresis: float | None = Field(
        None, ge=0, description="clear band in metric units (default 5 % of |value|)"
    )
    clear_for_s: float = Field(0, ge=0, le=7 * 86400)

    def band(self) -> float:
        return self.hysteresis if self.hysteresis is not None else abs(self.value) * 0.05


class RangeRule(RuleBase):
    """``metric`` outside [min, max] for ``for_s``; clears once back inside by the hysteresis."""

    kind: Literal["range"]
    metric: Metric = "voltage_v"
    min: float
    max: float
    for_s: float = Field(0, ge=0, le=7 * 86400)
    hysteresis: float | None = Field(
        None, ge=0, description="clear band in metric units (default 2 % of max - min)"
    )
    clear_for_s: float = Field(0, ge=0, le=7 * 86400)

    @model_validator(mode="after")
    def _ordered(self) -> RangeRule:
        if not self.min < self.max:
            raise ValueError("min must be below max")
        if 2 * self.band() >= self.max - self.min:
            raise ValueError("hysteresis must be less than half of max - min")
        return self

    def band(self) -> float:
        return self.hysteresis if self.hysteresis is not None else (self.max - self.min) * 0.02


class OfflineRule(RuleBase):
    """No data (or an offline LWT/status) for ``after_s`` seconds."""

    kind: Literal["offline"]
    after_s: float = Field(gt=0, le=30 * 86400)


class EnergyBudgetRule(RuleBase):
    """Energy used in one local day of the site above ``budget_wh`` (cleared at midnight)."""

    kind: Literal["energy_budget"]
    budget_wh: float = Field(gt=0)


class AfterHoursRule(RuleBase):
    """Power above ``value`` W outside the site's open hours, for ``for_s``."""

    kind: Literal["after_hours"]
    value: float = Field(50.0, ge=0, description="W; usage above this counts as 'in use'")
    for_s: float = Field(0, ge=0, le=7 * 86400)
    hysteresis: float | None = Field(None, ge=0, description="W (default 10 % of value)")
    open_hours: dict[str, list[tuple[str, str]]] = Field(
        description="local open hours per weekday: {'mon': [['08:00', '18:00']], …}",
        examples=[{d: [["08:00", "18:00"]] for d in WEEKDAYS[:5]}],
    )
    closed_dates: list[str] = Field(
        default_factory=list, max_length=366, description="local dates closed all day"
    )
    timezone: str | None = Field(None, description="default: the site's timezone")

    @field_validator("open_hours")
    @classmethod
    def _hours(cls, value: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        for day, spans in value.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
            for start, end in spans:
                if not (_HHMM.match(start) and _HHMM.match(end)) or start == "24:00":
                    raise ValueError(f"{day}: times are HH:MM (end may be 24:00)")
                if start >= end:
                    raise ValueError(f"{day}: {start}-{end} must end after it starts")
        return value

    @field_validator("closed_dates")
    @classmethod
    def _dates(cls, value: list[str]) -> list[str]:
        for d in value:
            if not _DATE.match(d):
                raise ValueError(f"closed date {d!r} is not YYYY-MM-DD")
        return value

    def band(self) -> float:
        return self.hysteresis if self.hysteresis is not None else self.value * 0.1


class SuddenChangeRule(RuleBase):
    """The smoothed ``metric`` far from the device's usual level for this hour of the day."""

    kind: Literal["sudden_change"]
    metric: Metric = "power_w"
    factor: float = Field(4.0, gt=0, description="how many usual deviations away")
    min_delta: float = Field(200.0, ge=0, description="and at least this far, metric units")
    window_s: float = Field(300.0, gt=0, description="smoothing time constant")
    min_samples: int = Field(
        60, ge=2, description="minutes learned for an hour of the day before judging it"
    )
    for_s: float = Field(0, ge=0, le=7 * 86400)


class AnomalyRule(RuleBase):
    """Findings of the AI anomaly detector (``AlertEngine.raise_anomaly``) become alerts."""

    kind: Literal["anomaly"]
    min_severity: Literal["info", "warning", "critical"] = "warning"
    finding_kinds: list[str] | None = Field(None, description="only these finding kinds")
    clear_after_s: float = Field(
        86400.0, gt=0, description="cleared when no finding came for this long"
    )


RuleCreate = Annotated[
    ThresholdRule
    | RangeRule
    | OfflineRule
    | EnergyBudgetRule
    | AfterHoursRule
    | SuddenChangeRule
    | AnomalyRule,
    Field(discriminator="kind"),
]
Rule = (
    ThresholdRule
    | RangeRule
    | OfflineRule
    | EnergyBudgetRule
    | AfterHoursRule
    | SuddenChangeRule
    | AnomalyRule
)
RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(RuleCreate)
RULE_KINDS = (
    "threshold",
    "range",
    "offline",
    "energy_budget",
    "after_hours",
    "sudden_change",
    "anomaly",
)


def rule_from_record(record: dict[str, Any]) -> Rule:
    """Rebuild the validated rule from its stored row."""
    fields = {k: record[k] for k in RuleBase.model_fields if k in record}
    return RULE_ADAPTER.validate_python({**record["params"], **fields, "kind": record["kind"]})


def normalise_notify(items: list[Any]) -> list[dict[str, Any]]:
    """Turn the accepted notify shorthands into ``{"kind": …, …}`` targets.

    ``7`` or ``{"webhook": 7}`` → a webhook by id; ``{"email": "a@b"}`` (or a list) → email;
    ``{"mqtt": "topic"}`` → MQTT; ``{"kind": "…", …}`` is passed on for plugin notifiers.
    """
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, bool):
            raise ValueError("a notify target is a webhook id or an object")
        if isinstance(item, int):
            out.append({"kind": "webhook", "webhook_id": item})
        elif isinstance(item, dict) and "kind" in item:
            out.append(dict(item))
        elif isinstance(item, dict) and len(item) == 1:
            ((key, value),) = item.items()
            if key == "webhook" and isinstance(value, int) and not isinstance(value, bool):
                out.append({"kind": "webhook", "webhook_id": value})
            elif key == "email":
                to = [value] if isinstance(value, str) else value
                if (
                    not isinstance(to, list)
                    or not to
                    or not all(isinstance(a, str) and re.match(r"^[^@\s]+@[^@\s]+$", a) for a in to)
                ):
                    raise ValueError(f"email target {value!r} is not an address or a list of them")
                out.append({"kind": "email", "to": to})
            elif key == "mqtt" and isinstance(value, str) and value and "#" not in value:
                if "+" in value:
                    raise ValueError("an MQTT topic to publish to cannot contain + or #")
                out.append({"kind": "mqtt", "topic": value})
            else:
                raise ValueError(f"unknown notify target {item!r}")
        else:
            raise ValueError(f"unknown notify target {item!r}")
    return out
