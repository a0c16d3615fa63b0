"""Rows as records: the reads and writes every SQLAlchemy Core store of records shares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, Table, delete, insert, select, update

from wattwatch.errors import NotFound
from wattwatch.store.schema import metadata

Record = dict[str, Any]


def as_record(row: Any) -> Record:
    return dict(row._mapping)


class SqlRecordStore:
    """The write engine, the read engine (a replica or the same engine) and record helpers."""

    # Tables the store creates if missing: a data dir made before they existed gets them when
    # the store opens it (schema 1 is unreleased).
    own_tables: tuple[Table, ...] = ()

    def __init__(self, engine: Engine, read_engine: Engine | None = None) -> None:
        self.engine = engine
        self.read_engine = read_engine or engine
        if self.own_tables:
            metadata.create_all(self.engine, tables=list(self.own_tables), checkfirst=True)

    def _read(self, stmt: Any) -> list[Record]:
        with self.read_engine.connect() as conn:
            return [as_record(r) for r in conn.execute(stmt)]

    def _read_first(self, stmt: Any) -> Record | None:
        rows = self._read(stmt)
        return rows[0] if rows else None

    def _read_one(self, stmt: Any, what: str) -> Record:
        """The first row; ``NotFound("<what> not found")`` when there is none."""
        row = self._read_first(stmt)
        if row is None:
            raise NotFound(f"{what} not found")
        return row

    def _list_owned(self, table: Table, org_id: int) -> list[Record]:
        """The organisation's records of a table (one with an ``org_id`` column), by id."""
        return self._read(select(table).where(table.c.org_id == org_id).order_by(table.c.id))

    def _read_owned(self, table: Table, org_id: int, record_id: int, what: str) -> Record:
        """The record if the organisation owns it: another organisation's is not found."""
        return self._read_one(
            select(table).where(table.c.id == record_id, table.c.org_id == org_id), what
        )

    def _insert(self, table: Table, values: Record) -> int:
        """Insert one row in its own transaction; its id."""
        return self._insert_all(table, [values])[0]

    def _insert_all(self, table: Table, rows: Iterable[Record]) -> list[int]:
        """Insert rows in one transaction; their ids, in order."""
        with self.engine.begin() as conn:
            return [
                int(conn.execute(insert(table).values(**values)).inserted_primary_key[0])  # type: ignore[index]
                for values in rows
            ]

    def _update(self, table: Table, record_id: int, values: Record) -> None:
        """Set these values on the record with this id, in their own transaction."""
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == record_id).values(**values))

    def _delete(self, table: Table, record_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(table).where(table.c.id == record_id))
