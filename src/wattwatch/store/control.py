"""Control persistence (SQLAlchemy Core): the command audit trail, schedules and their runs.

Backend-neutral like ``SqlRegistry``; every query a user can reach takes the caller's
``org_id``, so another organisation's command or schedule is simply not found.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from wattwatch.store.records import Record, SqlRecordStore
from wattwatch.store.schema import (
    control_schedule_runs,
    control_schedules,
    device_commands,
    devices,
)

TABLES = (device_commands, control_schedules, control_schedule_runs)
# Audit pages are bounded: a device switched every minute for a year is 500k rows.
MAX_PAGE = 1000


class SqlControlStore(SqlRecordStore):
    own_tables = TABLES

    # -- command audit --------------------------------------------------------------------
    def begin_commands(self, rows: Iterable[Record]) -> list[int]:
        """Record commands about to be sent (status ``pending``); their ids, in order."""
        return self._insert_all(device_commands, ({"status": "pending", **v} for v in rows))

    def finish_command(
        self, command_id: int, values: Record, *, device_id: int | None, state: int | None
    ) -> None:
        """Record the outcome and, when the device said its relay state, store it on the
        device too (one transaction: the audit and the device never disagree)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(device_commands).where(device_commands.c.id == command_id).values(**values)
            )
            if device_id is not None and state is not None:
                conn.execute(update(devices).where(devices.c.id == device_id).values(state=state))

    def abandon_pending(self, older_than_ms: int, reason: str, now: int) -> int:
        """Commands still pending long after any timeout: the process that sent them died."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    update(device_commands)
                    .where(
                        device_commands.c.status == "pending",
                        device_commands.c.requested_ms < older_than_ms,
                    )
                    .values(status="error", error=reason, completed_ms=now)
                ).rowcount
            )

    def list_commands(
        self,
        org_id: int,
        *,
        device_id: int | None = None,
        group_id: str | None = None,
        status: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[Record]:
        """Newest first; page with ``before_id`` (the smallest id of the previous page)."""
        stmt = select(device_commands).where(device_commands.c.org_id == org_id)
        if device_id is not None:
            stmt = stmt.where(device_commands.c.device_id == device_id)
        if group_id is not None:
            stmt = stmt.where(device_commands.c.group_id == group_id)
        if status is not None:
            stmt = stmt.where(device_commands.c.status == status)
        if before_id is not None:
            stmt = stmt.where(device_commands.c.id < before_id)
        limit = max(1, min(limit, MAX_PAGE))
        return self._read(stmt.order_by(device_commands.c.id.desc()).limit(limit))

    def get_command(self, org_id: int, command_id: int) -> Record:
        return self._read_owned(device_commands, org_id, command_id, "command")

    # -- schedules ------------------------------------------------------------------------
    def create_schedule(self, values: Record) -> int:
        return self._insert(control_schedules, values)

    def list_schedules(self, org_id: int) -> list[Record]:
        return self._list_owned(control_schedules, org_id)

    def get_schedule(self, org_id: int, schedule_id: int) -> Record:
        return self._read_owned(control_schedules, org_id, schedule_id, "schedule")

    def schedule_by_id(self, schedule_id: int) -> Record | None:
        return self._read_first(
            select(control_schedules).where(control_schedules.c.id == schedule_id)
        )

    def update_schedule(self, schedule_id: int, values: Record) -> None:
        self._update(control_schedules, schedule_id, values)

    def delete_schedule(self, schedule_id: int) -> None:
        self._delete(control_schedules, schedule_id)

    def due_schedules(self, now: int) -> list[Record]:
        return self._read(
            select(control_schedules)
            .where(
                control_schedules.c.enabled.is_(True),
                control_schedules.c.next_run_ms.is_not(None),
                control_schedules.c.next_run_ms <= now,
            )
            .order_by(control_schedules.c.next_run_ms)
        )

    def next_due_ms(self) -> int | None:
        rows = self._read(
            select(control_schedules.c.next_run_ms)
            .where(
                control_schedules.c.enabled.is_(True),
                control_schedules.c.next_run_ms.is_not(None),
            )
            .order_by(control_schedules.c.next_run_ms)
            .limit(1)
        )
        return int(rows[0]["next_run_ms"]) if rows else None

    # -- schedule runs --------------------------------------------------------------------
    def claim_run(self, values: Record) -> int | None:
        """Insert the run of one (schedule, due time, event); None when it already exists
        (this slot was handled before a restart, or by another replica)."""
        try:
            with self.engine.begin() as conn:
                return int(
                    conn.execute(
                        insert(control_schedule_runs).values(**values)
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
        except IntegrityError:
            return None

    def finish_run(self, run_id: int, values: Record) -> None:
        self._update(control_schedule_runs, run_id, values)

    def list_runs(
        self, org_id: int, schedule_id: int, *, limit: int = 100, before_id: int | None = None
    ) -> list[Record]:
        stmt = select(control_schedule_runs).where(
            control_schedule_runs.c.org_id == org_id,
            control_schedule_runs.c.schedule_id == schedule_id,
        )
        if before_id is not None:
            stmt = stmt.where(control_schedule_runs.c.id < before_id)
        limit = max(1, min(limit, MAX_PAGE))
        return self._read(stmt.order_by(control_schedule_runs.c.id.desc()).limit(limit))
