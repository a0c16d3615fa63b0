"""Report persistence (SQLAlchemy Core): report scopes, quarter-hour energy, settings, schedules.

Backend-neutral like ``SqlRegistry``: the SQLite and PostgreSQL stores share it. Every query a
user can reach takes the caller's ``org_id``, so another organisation's record is not found.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from wattwatch.store.records import Record, SqlRecordStore
from wattwatch.store.registry import org_areas
from wattwatch.store.schema import (
    areas,
    channels,
    devices,
    report_deliveries,
    report_schedules,
    report_settings,
)

TABLES = (report_settings, report_schedules, report_deliveries)
QUARTER_MS = 900_000

# Fifteen-minute sums of the 1-minute rollups: the resolution of demand (peak) metering, and
# fine enough for business hours and time-of-use periods given in quarter hours. Summed in the
# database so a month of 50 channels crosses the driver as 150 k values instead of 2.2 M rows.
_QUARTER_SQL = text(
    "SELECT ch, bucket - bucket % 900000 AS q, SUM(e) "
    "FROM rollup_1m WHERE ch IN :chs AND bucket >= :lo AND bucket < :hi "
    "GROUP BY ch, q ORDER BY ch, q"
).bindparams(bindparam("chs", expanding=True))

# SQLite sorts a GROUP BY on an expression through a temporary B-tree (3-4x slower here);
# one primary-key range sum per (channel, quarter) streams instead. A quarter without rollups
# sums to NULL, which is how the caller learns that it has no data.
_QUARTER_SQLITE = (
    "WITH RECURSIVE qs(q) AS (SELECT ? UNION ALL SELECT q + 900000 FROM qs "
    "WHERE q + 900000 < ?) "
    "SELECT c.value, qs.q, (SELECT SUM(r.e) FROM rollup_1m r WHERE r.ch = c.value "
    "AND r.bucket >= qs.q AND r.bucket < qs.q + 900000) FROM json_each(?) c, qs"
)

# (channel_id, quarter_start_ms, energy mWh or None when the quarter has no readings)
QuarterRow = tuple[int, int, int | None]


class SqlReportStore(SqlRecordStore):
    own_tables = TABLES

    # -- scopes ---------------------------------------------------------------------------
    def get_area(self, org_id: int, area_id: int) -> Record:
        return self._read_one(org_areas(org_id).where(areas.c.id == area_id), "area")

    def scope_channels(
        self,
        org_id: int,
        *,
        site_id: int | None = None,
        area_ids: Sequence[int] | None = None,
        device_id: int | None = None,
    ) -> list[Record]:
        """Channels of a site, of some areas or of one device, with their device and area."""
        stmt = (
            select(
                channels.c.id,
                channels.c.name,
                channels.c.appliance,
                channels.c.submeter,
                devices.c.id.label("device_id"),
                devices.c.name.label("device_name"),
                devices.c.kind.label("device_kind"),
                devices.c.site_id,
                devices.c.area_id,
                areas.c.name.label("area_name"),
            )
            .join(devices, devices.c.id == channels.c.device_id)
            .outerjoin(areas, areas.c.id == devices.c.area_id)
            .where(devices.c.org_id == org_id)
            .order_by(devices.c.id, channels.c.id)
        )
        if site_id is not None:
            stmt = stmt.where(devices.c.site_id == site_id)
        if area_ids is not None:
            stmt = stmt.where(devices.c.area_id.in_(list(area_ids)))
        if device_id is not None:
            stmt = stmt.where(devices.c.id == device_id)
        return self._read(stmt)

    def area_tree(self, site_id: int) -> list[Record]:
        return self._read(select(areas).where(areas.c.site_id == site_id).order_by(areas.c.id))

    # -- data -----------------------------------------------------------------------------
    def quarter_energy(
        self, channel_ids: Sequence[int], from_ms: int, to_ms: int
    ) -> list[QuarterRow]:
        """Energy per channel and 15-minute slot in [from_ms, to_ms) (quarter-aligned).

        Quarters without readings are either left out or given as None.
        """
        if not channel_ids or to_ms <= from_ms:
            return []
        with self.read_engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # The driver's cursor: 150 k plain tuples without a Row object each.
                cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    params = (from_ms, to_ms, json.dumps(list(channel_ids)))
                    return cur.execute(_QUARTER_SQLITE, params).fetchall()  # type: ignore[no-any-return]
                finally:
                    cur.close()
            else:
                rows = conn.execute(
                    _QUARTER_SQL, {"chs": list(channel_ids), "lo": from_ms, "hi": to_ms}
                ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    # -- settings -------------------------------------------------------------------------
    def get_settings(self, site_id: int) -> Record | None:
        rows = self._read(select(report_settings).where(report_settings.c.site_id == site_id))
        return rows[0]["settings"] if rows else None

    def put_settings(self, site_id: int, settings: Record, now_ms: int) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(report_settings)
                .where(report_settings.c.site_id == site_id)
                .values(settings=settings, updated_ms=now_ms)
            )
            if done.rowcount == 0:
                conn.execute(
                    insert(report_settings).values(
                        site_id=site_id, settings=settings, updated_ms=now_ms
                    )
                )

    # -- schedules ------------------------------------------------------------------------
    def create_schedule(self, values: Record) -> int:
        return self._insert(report_schedules, values)

    def list_schedules(self, org_id: int) -> list[Record]:
        return self._list_owned(report_schedules, org_id)

    def get_schedule(self, org_id: int, schedule_id: int) -> Record:
        return self._read_owned(report_schedules, org_id, schedule_id, "report schedule")

    def update_schedule(self, schedule_id: int, values: Record) -> None:
        self._update(report_schedules, schedule_id, values)

    def delete_schedule(self, org_id: int, schedule_id: int) -> None:
        self.get_schedule(org_id, schedule_id)
        self._delete(report_schedules, schedule_id)

    def due_schedules(self, now_ms: int) -> list[Record]:
        return self._read(
            select(report_schedules)
            .where(report_schedules.c.enabled.is_(True), report_schedules.c.next_run_ms <= now_ms)
            .order_by(report_schedules.c.next_run_ms, report_schedules.c.id)
        )

    def next_due_ms(self) -> int | None:
        rows = self._read(
            select(report_schedules.c.next_run_ms)
            .where(report_schedules.c.enabled.is_(True))
            .order_by(report_schedules.c.next_run_ms)
            .limit(1)
        )
        return int(rows[0]["next_run_ms"]) if rows else None

    # -- deliveries -----------------------------------------------------------------------
    def delivery_for(self, schedule_id: int, period_start_ms: int) -> Record | None:
        return self._read_first(
            select(report_deliveries).where(
                report_deliveries.c.schedule_id == schedule_id,
                report_deliveries.c.period_start_ms == period_start_ms,
            )
        )

    def claim_delivery(
        self, values: Record, *, now_ms: int, max_attempts: int, stale_ms: int
    ) -> Record | None:
        """Take (schedule, period) for sending in this process; None if it is not ours to send.

        It is ours when no row exists yet (the insert wins the unique constraint), when the
        last try failed and tries are left, or when a "sending" claim is older than
        ``stale_ms`` (its process died). Another process's fresh claim, or a sent report,
        leaves it alone: a period is sent once however many schedulers run.
        """
        existing = self.delivery_for(values["schedule_id"], values["period_start_ms"])
        if existing is None:
            try:
                with self.engine.begin() as conn:
                    new_id = conn.execute(
                        insert(report_deliveries).values(
                            **values, status="sending", attempts=0, created_ms=now_ms
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
            except IntegrityError:
                return None
            return {**values, "id": int(new_id), "attempts": 0}
        retry = existing["status"] == "failed" and existing["attempts"] < max_attempts
        stale = existing["status"] == "sending" and existing["created_ms"] < now_ms - stale_ms
        if not (retry or stale):
            return None
        t = report_deliveries.c
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(report_deliveries)
                .where(
                    t.id == existing["id"],
                    t.status == existing["status"],
                    t.created_ms == existing["created_ms"],
                )
                .values(status="sending", created_ms=now_ms)
            ).rowcount
        return existing if taken == 1 else None

    def finish_delivery(self, delivery_id: int, values: Record) -> None:
        """Record how a claimed delivery went (status sent / failed); one more attempt."""
        with self.engine.begin() as conn:
            conn.execute(
                update(report_deliveries)
                .where(report_deliveries.c.id == delivery_id)
                .values(**values, attempts=report_deliveries.c.attempts + 1)
            )

    def list_deliveries(
        self, org_id: int, schedule_id: int | None = None, limit: int = 100
    ) -> list[Record]:
        stmt = select(report_deliveries).where(report_deliveries.c.org_id == org_id)
        if schedule_id is not None:
            stmt = stmt.where(report_deliveries.c.schedule_id == schedule_id)
        return self._read(stmt.order_by(report_deliveries.c.id.desc()).limit(limit))
