"""Alert rules and alerts: create and list rules, list and acknowledge alerts (DESIGN §5)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from wattwatch.alerts.rules import RuleCreate
from wattwatch.alerts.service import AlertService
from wattwatch.errors import WattwatchError
from wattwatch.web.deps import Caller, Services

router = APIRouter(prefix="/api/v1", tags=["alerts"])


def _alerts(ww: Any) -> AlertService:
    if ww.alerts is None:
        raise WattwatchError("alerts are not configured")
    return ww.alerts  # type: ignore[no-any-return]


@router.get("/alert-rules")
def list_rules(ww: Services, caller: Caller) -> list[dict[str, Any]]:
    return _alerts(ww).list_rules(caller)


@router.post("/alert-rules", status_code=201)
def create_rule(
    body: Annotated[RuleCreate, Body()], ww: Services, caller: Caller
) -> dict[str, Any]:
    """Kinds: threshold, range, offline, energy_budget, after_hours, sudden_change, anomaly."""
    return _alerts(ww).create_rule(caller, body)


@router.get("/alert-rules/{rule_id}")
def get_rule(rule_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    return _alerts(ww).get_rule(caller, rule_id)


@router.patch("/alert-rules/{rule_id}")
def enable_rule(
    rule_id: int, enabled: Annotated[bool, Body(embed=True)], ww: Services, caller: Caller
) -> dict[str, Any]:
    return _alerts(ww).set_rule_enabled(caller, rule_id, enabled)


@router.delete("/alert-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: int, ww: Services, caller: Caller) -> None:
    _alerts(ww).delete_rule(caller, rule_id)


@router.get("/alerts")
def list_alerts(
    ww: Services,
    caller: Caller,
    state: str | None = Query(None, description="active, acknowledged, cleared (comma list)"),
    rule_id: int | None = None,
    device_id: int | None = None,
    limit: int = Query(1000, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    states = [s.strip() for s in state.split(",") if s.strip()] if state else None
    return _alerts(ww).list_alerts(
        caller, states, rule_id=rule_id, device_id=device_id, limit=limit
    )


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """One alert with its history (raised, updated, acknowledged, cleared)."""
    return _alerts(ww).get_alert(caller, alert_id)


@router.post("/alerts/{alert_id}/ack")
def acknowledge(alert_id: int, ww: Services, caller: Caller) -> dict[str, Any]:
    """Acknowledge (admin and owner; viewers are read-only)."""
    return _alerts(ww).acknowledge(caller, alert_id)
