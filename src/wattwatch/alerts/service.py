"""Alert service: rules and alerts as the API and CLI see them, scoped to the caller's organisation.

Roles: anyone in the organisation reads rules and alerts; creating or deleting rules and
acknowledging alerts needs ``admin``. A viewer is read-only everywhere in wattwatch, and an
acknowledgement is a commitment ("I am on it") recorded with the user's name, so it belongs
to someone who may act on the equipment; give on-call staff the admin role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from wattwatch.alerts.engine import AlertEngine, AlertEvent
from wattwatch.alerts.rules import Rule, RuleBase, normalise_notify
from wattwatch.domain import Role, now_ms
from wattwatch.errors import InvalidInput, NotFound
from wattwatch.registry.service import Principal
from wattwatch.store.alerts import SqlAlertStore
from wattwatch.store.registry import SqlRegistry

ALERT_STATES = ("active", "acknowledged", "cleared")


def public_rule(record: dict[str, Any]) -> dict[str, Any]:
    """A rule as the API shows it: common fields with the kind's own fields beside them."""
    out = {k: v for k, v in record.items() if k != "params"}
    out.update(record["params"])
    return out


class AlertService:
    def __init__(
        self,
        store: SqlAlertStore,
        registry: SqlRegistry,
        engine: AlertEngine,
        notifier_kinds: Callable[[], Iterable[str]] = lambda: ("webhook", "email", "mqtt"),
    ) -> None:
        self.store = store
        self.registry = registry
        self.engine = engine
        self.notifier_kinds = notifier_kinds

    # -- rules ----------------------------------------------------------------------------
    def create_rule(self, principal: Principal, rule: Rule) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        org = principal.org_id
        try:
            if rule.device_id is not None:
                self.registry.get_device(org, rule.device_id)
            if rule.site_id is not None:
                self.registry.get_site(org, rule.site_id)
        except NotFound as exc:
            raise InvalidInput(f"{exc} in your organisation") from None
        if rule.area_id is not None and not self.store.area_in_org(org, rule.area_id):
            raise InvalidInput("area not found in your organisation")
        notify = self.check_notify(org, rule.notify)
        ts = now_ms()
        common = rule.model_dump(mode="json", include=set(RuleBase.model_fields))
        common["notify"] = notify
        rule_id = self.store.create_rule(
            {
                **common,
                "org_id": org,
                "kind": rule.kind,
                "params": rule.params(),
                "created_by": principal.email,
                "created_ms": ts,
                "updated_ms": ts,
            }
        )
        self.engine.request_reload()
        return public_rule(self.store.get_rule(org, rule_id))

    def check_notify(self, org_id: int, items: list[Any]) -> list[dict[str, Any]]:
        try:
            targets = normalise_notify(items)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        known = set(self.notifier_kinds())
        for target in targets:
            if target["kind"] not in known:
                raise InvalidInput(
                    f"unknown notifier kind {target['kind']!r} (known: {', '.join(sorted(known))})"
                )
            if target["kind"] == "webhook":
                try:
                    self.store.get_webhook(org_id, target["webhook_id"])
                except NotFound:
                    raise InvalidInput(f"webhook {target['webhook_id']} not found") from None
        return targets

    def list_rules(self, principal: Principal) -> list[dict[str, Any]]:
        return [public_rule(r) for r in self.store.list_rules(principal.org_id)]

    def get_rule(self, principal: Principal, rule_id: int) -> dict[str, Any]:
        return public_rule(self.store.get_rule(principal.org_id, rule_id))

    def set_rule_enabled(self, principal: Principal, rule_id: int, enabled: bool) -> dict[str, Any]:
        principal.require(Role.ADMIN)
        self.store.update_rule(
            principal.org_id, rule_id, {"enabled": enabled, "updated_ms": now_ms()}
        )
        self.engine.request_reload()
        return self.get_rule(principal, rule_id)

    def delete_rule(self, principal: Principal, rule_id: int) -> None:
        """Delete a rule with its alerts and their history."""
        principal.require(Role.ADMIN)
        self.store.delete_rule(principal.org_id, rule_id)
        self.engine.request_reload()

    # -- alerts ---------------------------------------------------------------------------
    def list_alerts(
        self,
        principal: Principal,
        states: list[str] | None = None,
        *,
        rule_id: int | None = None,
        device_id: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        for state in states or ():
            if state not in ALERT_STATES:
                raise InvalidInput(f"unknown state {state!r}; use {', '.join(ALERT_STATES)}")
        return self.store.list_alerts(
            principal.org_id, states, rule_id=rule_id, device_id=device_id, limit=limit
        )

    def get_alert(self, principal: Principal, alert_id: int) -> dict[str, Any]:
        alert = self.store.get_alert(principal.org_id, alert_id)
        alert["history"] = self.store.history(alert_id)
        return alert

    def acknowledge(self, principal: Principal, alert_id: int) -> dict[str, Any]:
        """Record who took the alert on. Acknowledging twice changes nothing; a cleared alert
        may still be acknowledged (it stays cleared), as in ThingsBoard."""
        principal.require(Role.ADMIN)
        alert = self.store.get_alert(principal.org_id, alert_id)
        if alert["acknowledged_ms"] is not None:
            return self.get_alert(principal, alert_id)
        ts = now_ms()
        values: dict[str, Any] = {"acknowledged_ms": ts, "acknowledged_by": principal.email}
        if alert["state"] == "active":
            values["state"] = "acknowledged"
        history = {"ts_ms": ts, "action": "acknowledged", "actor": principal.email, "details": {}}
        self.store.update_alert(alert_id, values, history)
        self.engine.acknowledged(alert_id)
        record = self.get_alert(principal, alert_id)
        rule = self.store.get_rule(principal.org_id, alert["rule_id"])
        self.engine.emit(
            AlertEvent(
                "alert.acknowledged",
                principal.org_id,
                ts,
                {k: v for k, v in record.items() if k != "history"},
                list(rule["notify"]),
            )
        )
        return record
