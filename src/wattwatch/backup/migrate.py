"""Move a whole installation between stores (SQLite → PostgreSQL, or back), ids and all.

Registry rows are copied table by table with their ids; readings and rollups are copied as
stored (rollups are not recomputed: they may outlive raw readings dropped by retention).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import func, insert, select

from wattwatch.errors import Conflict
from wattwatch.store.schema import metadata
from wattwatch.store.sqlstore import DATA_TABLES, SqlStore

CHUNK_ROWS = 50_000
# Columns of the data tables, key first: the copy walks each table in key order.
_DATA_COLUMNS = {
    "readings": ("ch", "ts", "p", "e", "v", "a", "extra"),
    **{t: ("ch", "bucket", "n", "pn", "psum", "pmin", "pmax", "e") for t in DATA_TABLES[1:]},
}

Progress = Callable[[str, int, int], None]  # (table, rows done, rows total)


def _chunks(store: SqlStore, table: str) -> Iterator[list[tuple[Any, ...]]]:
    cols = _DATA_COLUMNS[table]
    k1, k2 = cols[0], cols[1]
    m = store.mark
    after: tuple[int, int] | None = None
    while True:
        where = "" if after is None else f"WHERE ({k1} > {m} OR ({k1} = {m} AND {k2} > {m}))"
        params: tuple[Any, ...] = () if after is None else (after[0], after[0], after[1])
        sql = (
            f"SELECT {', '.join(cols)} FROM {table} {where} ORDER BY {k1}, {k2} LIMIT {CHUNK_ROWS}"
        )
        with store.read_engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql(sql, params).all()]
        if not rows:
            return
        yield rows
        after = (rows[-1][0], rows[-1][1])


def migrate(source: SqlStore, target: SqlStore, progress: Progress | None = None) -> dict[str, int]:
    """Copy everything in ``source`` into the empty ``target``; return rows per table."""
    with target.read_engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(metadata.tables["users"])).scalar_one():
            raise Conflict("the target already holds a wattwatch installation (it has users)")
    if target.count_readings():
        raise Conflict("the target already holds readings")
    copied: dict[str, int] = {}
    with source.read_engine.connect() as src, target.engine.begin() as dst:
        for table in metadata.sorted_tables:
            if table.name == "meta":
                continue  # the target wrote its own schema version
            ordered = select(table).order_by(*table.primary_key.columns)
            rows = [dict(r._mapping) for r in src.execute(ordered)]
            if rows:
                dst.execute(insert(table), rows)
            copied[table.name] = len(rows)
            if progress:
                progress(table.name, len(rows), len(rows))
    counts = source.table_counts()
    for name in DATA_TABLES:
        done = 0
        for chunk in _chunks(source, name):
            target.copy_in(name, chunk)
            done += len(chunk)
            if progress:
                progress(name, done, counts[name])
        copied[name] = done
    target.finish_copy()
    after = target.table_counts()
    if {t: after[t] for t in DATA_TABLES} != {t: copied[t] for t in DATA_TABLES}:
        raise Conflict(f"copied {copied} but the target holds {after}")  # pragma: no cover
    return copied
