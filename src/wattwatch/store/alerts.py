"""Alert and hook persistence (SQLAlchemy Core): rules, alerts + history, webhooks, dead letters.

Backend-neutral like ``SqlRegistry``: the SQLite and PostgreSQL stores share it. Every query a
user can reach takes the caller's ``org_id``, so another organisation's record is not found.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, func, insert, select, update

from wattwatch.store.records import Record, SqlRecordStore
from wattwatch.store.registry import org_areas
from wattwatch.store.schema import (
    alert_history,
    alert_rules,
    alerts,
    areas,
    channels,
    dead_letters,
    devices,
    sites,
    webhooks,
)

TABLES = (alert_rules, alerts, alert_history, webhooks, dead_letters)
OPEN_STATES = ("active", "acknowledged")


class SqlAlertStore(SqlRecordStore):
    own_tables = TABLES

    def area_in_org(self, org_id: int, area_id: int) -> bool:
        return bool(self._read(org_areas(org_id).where(areas.c.id == area_id)))

    def device_directory(self, org_ids: Sequence[int]) -> tuple[list[Record], list[Record]]:
        """Devices (with their site's timezone) and channels of these organisations: what
        the alert engine routes readings by, read in two queries instead of three per device."""
        if not org_ids:
            return [], []
        found = self._read(
            select(
                devices.c.id,
                devices.c.org_id,
                devices.c.site_id,
                devices.c.area_id,
                devices.c.name,
                sites.c.timezone,
            )
            .outerjoin(sites, sites.c.id == devices.c.site_id)
            .where(devices.c.org_id.in_(list(org_ids)))
        )
        chans = self._read(
            select(channels.c.id, channels.c.device_id, channels.c.name, channels.c.submeter)
            .join(devices, devices.c.id == channels.c.device_id)
            .where(devices.c.org_id.in_(list(org_ids)))
        )
        return found, chans

    # -- rules ----------------------------------------------------------------------------
    def create_rule(self, values: Record) -> int:
        return self._insert(alert_rules, values)

    def list_rules(self, org_id: int) -> list[Record]:
        return self._list_owned(alert_rules, org_id)

    def get_rule(self, org_id: int, rule_id: int) -> Record:
        return self._read_owned(alert_rules, org_id, rule_id, "alert rule")

    def update_rule(self, org_id: int, rule_id: int, values: Record) -> None:
        self.get_rule(org_id, rule_id)
        self._update(alert_rules, rule_id, values)

    def delete_rule(self, org_id: int, rule_id: int) -> None:
        self.get_rule(org_id, rule_id)
        self._delete(alert_rules, rule_id)

    def rules_version(self) -> tuple[int, int, int]:
        """Changes whenever a rule is added, changed or deleted (by any process)."""
        with self.read_engine.connect() as conn:
            row = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.max(alert_rules.c.id), 0),
                    func.coalesce(func.max(alert_rules.c.updated_ms), 0),
                )
            ).one()
        return int(row[0]), int(row[1]), int(row[2])

    def webhooks_version(self) -> tuple[int, int]:
        with self.read_engine.connect() as conn:
            row = conn.execute(
                select(func.count(), func.coalesce(func.max(webhooks.c.id), 0))
            ).one()
        return int(row[0]), int(row[1])

    def enabled_rules(self) -> list[Record]:
        """Every enabled rule of every organisation: what the engine evaluates."""
        return self._read(
            select(alert_rules).where(alert_rules.c.enabled.is_(True)).order_by(alert_rules.c.id)
        )

    # -- alerts ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction for many alert changes (pass it as ``conn``)."""
        with self.engine.begin() as conn:
            yield conn

    def insert_alert(self, values: Record, history: Record, conn: Connection | None = None) -> int:
        with self._writing(conn) as c:
            alert_id = int(c.execute(insert(alerts).values(**values)).inserted_primary_key[0])  # type: ignore[index]
            c.execute(insert(alert_history).values(alert_id=alert_id, **history))
        return alert_id

    def update_alert(
        self,
        alert_id: int,
        values: Record,
        history: Record | None,
        conn: Connection | None = None,
    ) -> None:
        with self._writing(conn) as c:
            c.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))
            if history is not None:
                c.execute(insert(alert_history).values(alert_id=alert_id, **history))

    @contextmanager
    def _writing(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self.engine.begin() as own:
                yield own

    def list_alerts(
        self,
        org_id: int,
        states: Sequence[str] | None = None,
        *,
        rule_id: int | None = None,
        device_id: int | None = None,
        limit: int = 1000,
    ) -> list[Record]:
        stmt = select(alerts).where(alerts.c.org_id == org_id)
        if states:
            stmt = stmt.where(alerts.c.state.in_(list(states)))
        if rule_id is not None:
            stmt = stmt.where(alerts.c.rule_id == rule_id)
        if device_id is not None:
            stmt = stmt.where(alerts.c.device_id == device_id)
        return self._read(stmt.order_by(alerts.c.id.desc()).limit(limit))

    def get_alert(self, org_id: int, alert_id: int) -> Record:
        return self._read_owned(alerts, org_id, alert_id, "alert")

    def open_alerts(self) -> list[Record]:
        """Alerts not cleared yet, of every organisation (the engine resumes them)."""
        return self._read(select(alerts).where(alerts.c.state.in_(OPEN_STATES)))

    def history(self, alert_id: int) -> list[Record]:
        return self._read(
            select(alert_history)
            .where(alert_history.c.alert_id == alert_id)
            .order_by(alert_history.c.id)
        )

    # -- webhooks -------------------------------------------------------------------------
    def create_webhook(self, values: Record) -> int:
        return self._insert(webhooks, values)

    def list_webhooks(self, org_id: int) -> list[Record]:
        return self._list_owned(webhooks, org_id)

    def get_webhook(self, org_id: int, webhook_id: int) -> Record:
        return self._read_owned(webhooks, org_id, webhook_id, "webhook")

    def delete_webhook(self, org_id: int, webhook_id: int) -> None:
        self.get_webhook(org_id, webhook_id)
        self._delete(webhooks, webhook_id)

    def enabled_webhooks(self) -> list[Record]:
        return self._read(
            select(webhooks).where(webhooks.c.enabled.is_(True)).order_by(webhooks.c.id)
        )

    # -- dead letters ---------------------------------------------------------------------
    def add_dead_letter(self, values: Record) -> int:
        return self._insert(dead_letters, values)

    def list_dead_letters(
        self, org_id: int, states: Sequence[str] | None = None, limit: int = 1000
    ) -> list[Record]:
        stmt = select(dead_letters).where(dead_letters.c.org_id == org_id)
        if states:
            stmt = stmt.where(dead_letters.c.state.in_(list(states)))
        return self._read(stmt.order_by(dead_letters.c.id.desc()).limit(limit))

    def get_dead_letter(self, org_id: int, letter_id: int) -> Record:
        return self._read_owned(dead_letters, org_id, letter_id, "dead letter")

    def update_dead_letter(self, letter_id: int, values: Record) -> None:
        self._update(dead_letters, letter_id, values)
