"""What the SQLite and PostgreSQL stores share: the one write path (dedupe + rollups) and the reads.

``SqlStore.write_readings`` is the only implementation of "store readings, drop duplicates,
add their rollup contributions". A backend supplies the few steps that differ: how writers are
kept apart (``_lock_channels``), where the newest stored reading of a channel comes from
(``_last_points``), and how rows are bulk-inserted (``_insert_readings``, ``_upsert_rollups``).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, text

from wattwatch.domain import Interval
from wattwatch.errors import SchemaTooNew
from wattwatch.store import rollups
from wattwatch.store.base import StoredRow, decode_row
from wattwatch.store.registry import SqlRegistry
from wattwatch.store.schema import SCHEMA_VERSION, metadata

ROLLUP_TABLES: dict[Interval, str] = {
    Interval.MINUTE: "rollup_1m",
    Interval.HOUR: "rollup_1h",
    Interval.DAY: "rollup_1d",
}

# Every table that holds readings or their rollups, in the order a copy should fill them.
DATA_TABLES: tuple[str, ...] = ("readings", "rollup_1m", "rollup_1h", "rollup_1d")


def upsert_sql(table: str, mark: str = "?", select_from: str | None = None) -> str:
    """Add contribution rows to rollup buckets (the same SQL on SQLite and PostgreSQL).

    The rows are one VALUES row, or every row of table ``select_from`` (one row per bucket).
    """
    cols = "ch, bucket, n, pn, psum, pmin, pmax, e"
    source = (
        f"VALUES ({', '.join([mark] * 8)})"
        if select_from is None
        else f"SELECT {cols} FROM {select_from} WHERE true"  # WHERE: SQLite's upsert parse rule
    )
    return (
        f"INSERT INTO {table} ({cols}) "
        f"{source} ON CONFLICT (ch, bucket) DO UPDATE SET "
        f"n = {table}.n + excluded.n, pn = {table}.pn + excluded.pn, "
        f"psum = {table}.psum + excluded.psum, "
        f"pmin = CASE WHEN excluded.pmin IS NULL THEN {table}.pmin "
        f"WHEN {table}.pmin IS NULL OR excluded.pmin < {table}.pmin THEN excluded.pmin "
        f"ELSE {table}.pmin END, "
        f"pmax = CASE WHEN excluded.pmax IS NULL THEN {table}.pmax "
        f"WHEN {table}.pmax IS NULL OR excluded.pmax > {table}.pmax THEN excluded.pmax "
        f"ELSE {table}.pmax END, "
        f"e = {table}.e + excluded.e"
    )


def rollup_point(r: Sequence[Any]) -> dict[str, Any]:
    """A stored rollup row, still in stored units (mW sums, mWh)."""
    bucket, ch, n, pn, psum, pmin, pmax, e = r
    return {
        "ts": bucket,
        "channel_id": ch,
        "count": n,
        "pn": pn,
        "psum": psum,
        "pmin": pmin,
        "pmax": pmax,
        "energy_mwh": e,
    }


class SqlStore:
    """Readings + rollups + registry over SQLAlchemy engines; subclasses bind a backend."""

    backend = "sql"
    # The driver's parameter marker: "?" for sqlite3, "%s" for psycopg.
    mark = "?"
    url: str
    engine: Engine
    read_engine: Engine
    registry: SqlRegistry

    def __init__(self) -> None:
        # One writer thread per process (the pipeline's); other processes are the backend's job.
        self._write_lock = threading.Lock()

    # -- schema ---------------------------------------------------------------------------
    # The backend's DDL of the data tables (readings, rollups), and its migration steps:
    # schema version → the statements that bring the previous version to it.
    data_ddl: ClassVar[tuple[str, ...]] = ()
    migrations: ClassVar[Mapping[int, tuple[str, ...]]] = {}

    def _lock_schema(self, conn: Connection) -> None:
        """Inside the migration's transaction: keep other processes from migrating at once."""

    def _has_schema(self, conn: Connection) -> bool:
        raise NotImplementedError

    def _where(self) -> str:
        """The database as an error message names it (no password)."""
        raise NotImplementedError

    def _migrate(self) -> None:
        """Create the schema in an empty database, or bring an older one up to this version."""
        with self.engine.begin() as conn:
            self._lock_schema(conn)
            if not self._has_schema(conn):
                metadata.create_all(conn)
                for ddl in self.data_ddl:
                    conn.exec_driver_sql(ddl)
                conn.execute(
                    text("INSERT INTO meta (key, value) VALUES ('schema_version', :v)"),
                    {"v": str(SCHEMA_VERSION)},
                )
                return
            row = conn.exec_driver_sql("SELECT value FROM meta WHERE key='schema_version'").first()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self._where()} was written by a newer wattwatch (schema {version}, this "
                    f"version knows {SCHEMA_VERSION}); upgrade wattwatch"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for ddl in self.migrations.get(step, ()):
                    conn.exec_driver_sql(ddl)
            if version != SCHEMA_VERSION:
                conn.execute(
                    text("UPDATE meta SET value=:v WHERE key='schema_version'"),
                    {"v": str(SCHEMA_VERSION)},
                )

    # -- backend steps --------------------------------------------------------------------
    def _before_write(self, rows: Sequence[StoredRow]) -> None:
        """Outside the write transaction: make room for ``rows`` (PostgreSQL: partitions)."""

    def _lock_channels(self, cur: Any, channel_ids: list[int]) -> None:
        """Inside the transaction: keep other writers of these channels out until commit."""

    def _last_points(self, cur: Any, channel_ids: list[int]) -> dict[int, rollups.Point | None]:
        raise NotImplementedError

    def _store_last(self, cur: Any, last: dict[int, rollups.Point]) -> None:
        """Inside the transaction: remember the newest reading of each channel written."""

    def _committed(self, last: dict[int, rollups.Point]) -> None:
        """After commit: the newest reading of each channel written (for in-process caches)."""

    def _write_failed(self) -> None:
        """The write transaction rolled back: drop what a cache believed."""

    def _insert_readings(self, cur: Any, rows: list[StoredRow]) -> None:
        marks = ", ".join([self.mark] * 7)
        cur.executemany(f"INSERT INTO readings (ch, ts, p, e, v, a, extra) VALUES ({marks})", rows)

    def _upsert_rollups(self, cur: Any, table: str, rows: Iterable[rollups.RollupRow]) -> None:
        cur.executemany(upsert_sql(table, self.mark), list(rows))

    # -- writing --------------------------------------------------------------------------
    def write_readings(self, rows: Sequence[StoredRow]) -> list[int]:
        """Store ``rows`` and their rollup contributions in one transaction; return duplicates."""
        with self._write_lock:
            try:
                return self._write(rows)
            except BaseException:
                self._write_failed()
                raise

    def _write(self, rows: Sequence[StoredRow]) -> list[int]:
        duplicates: list[int] = []
        # Row indices per channel, in ts order, without repeats (the first of a repeat wins).
        per_channel: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            per_channel[row[0]].append(i)
        for ch, idx in per_channel.items():
            ts = [rows[i][1] for i in idx]
            if any(b <= a for a, b in pairwise(ts)):
                # Out of order or repeated: a stable sort keeps each first occurrence first.
                order = sorted(range(len(idx)), key=ts.__getitem__)
                kept: list[int] = []
                prev = None
                for k in order:
                    if ts[k] == prev:
                        duplicates.append(idx[k])
                    else:
                        prev = ts[k]
                        kept.append(idx[k])
                per_channel[ch] = kept
        if not per_channel:
            return duplicates
        self._before_write(rows)
        chans = sorted(per_channel)
        to_insert: list[StoredRow] = []
        minutes: rollups.Buckets = {}
        newest: dict[int, rollups.Point] = {}
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            self._lock_channels(cur, chans)
            last_of = self._last_points(cur, chans)
            for ch in chans:
                fresh = [rows[i] for i in per_channel[ch]]
                last = last_of.get(ch)
                first_ts, last_ts = fresh[0][1], fresh[-1][1]
                stored: list[rollups.Point]
                if last is None or first_ts > last[0]:
                    stored = [] if last is None else [last]
                else:
                    stored = self._neighbourhood(cur, ch, first_ts, last_ts)
                    stored_ts = {p[0] for p in stored}
                    kept_rows = []
                    for i in per_channel[ch]:
                        if rows[i][1] in stored_ts:
                            duplicates.append(i)
                        else:
                            kept_rows.append(rows[i])
                    if not kept_rows:
                        continue
                    fresh = kept_rows
                new_points = [(r[1], r[2], r[3]) for r in fresh]
                rollups.add_channel(minutes, ch, new_points, stored)
                to_insert.extend(fresh)
                if last is None or new_points[-1][0] > last[0]:
                    newest[ch] = new_points[-1]
            if to_insert:
                self._insert_readings(cur, to_insert)
                tz = self.registry.channel_timezones({ch for ch, _ in minutes}, cur=cur)
                hours, days = rollups.roll_up(minutes, tz)
                for table, buckets in (
                    ("rollup_1m", minutes),
                    ("rollup_1h", hours),
                    ("rollup_1d", days),
                ):
                    self._upsert_rollups(cur, table, rollups.rows_of(buckets))
                self._store_last(cur, newest)
            cur.close()
        self._committed(newest)
        duplicates.sort()
        return duplicates

    def _neighbourhood(self, cur: Any, ch: int, first_ts: int, last_ts: int) -> list[rollups.Point]:
        """Stored readings of ``ch`` in [first_ts, last_ts] plus the one before and after.

        One statement (one round trip while the channel's lock is held): late readings are
        common when several workers share a subscription and a device has messages in flight.
        """
        m = self.mark
        rows = cur.execute(
            "SELECT ts, p, e FROM (SELECT ts, p, e FROM readings "
            f"WHERE ch = {m} AND ts < {m} ORDER BY ts DESC LIMIT 1) AS before_first "
            "UNION ALL "
            f"SELECT ts, p, e FROM readings WHERE ch = {m} AND ts BETWEEN {m} AND {m} "
            "UNION ALL "
            "SELECT ts, p, e FROM (SELECT ts, p, e FROM readings "
            f"WHERE ch = {m} AND ts > {m} ORDER BY ts LIMIT 1) AS after_last",
            (ch, first_ts, ch, first_ts, last_ts, ch, last_ts),
        ).fetchall()
        return sorted((r[0], r[1], r[2]) for r in rows)

    def forget_channel_cache(self) -> None:
        self.registry.forget_caches()

    # -- reading --------------------------------------------------------------------------
    def _range_sql(
        self,
        select: str,
        ts_col: str,
        channel_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        after: tuple[int, int] | None,
    ) -> tuple[str, list[int]]:
        m = self.mark
        marks = ", ".join([m] * len(channel_ids))
        sql = f"{select} WHERE ch IN ({marks}) AND {ts_col} >= {m} AND {ts_col} < {m}"
        params = [*channel_ids, from_ms, to_ms]
        if after is not None:
            sql += f" AND ({ts_col} > {m} OR ({ts_col} = {m} AND ch > {m}))"
            params += [after[0], after[0], after[1]]
        order = f" ORDER BY {ts_col}" if len(channel_ids) == 1 else f" ORDER BY {ts_col}, ch"
        return sql + order, params

    def query_raw(
        self,
        channel_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        limit: int,
        after: tuple[int, int] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        sql, params = self._range_sql(
            "SELECT ts, ch, p, e, v, a, extra FROM readings",
            "ts",
            channel_ids,
            from_ms,
            to_ms,
            after,
        )
        with self.read_engine.connect() as conn:
            rows = conn.exec_driver_sql(f"{sql} LIMIT {self.mark}", (*params, limit)).all()
        return [decode_row(r, metrics) for r in rows]

    def query_rollup(
        self,
        channel_ids: Sequence[int],
        interval: Interval,
        from_ms: int,
        to_ms: int,
        limit: int,
        after: tuple[int, int] | None = None,
    ) -> list[dict[str, Any]]:
        table = ROLLUP_TABLES[interval]
        sql, params = self._range_sql(
            f"SELECT bucket, ch, n, pn, psum, pmin, pmax, e FROM {table}",
            "bucket",
            channel_ids,
            from_ms,
            to_ms,
            after,
        )
        with self.read_engine.connect() as conn:
            rows = conn.exec_driver_sql(f"{sql} LIMIT {self.mark}", (*params, limit)).all()
        return [rollup_point(r) for r in rows]

    def daily_energy(
        self, channel_ids: Sequence[int], from_ms: int, to_ms: int
    ) -> list[tuple[int, int, int, int]]:
        sql, params = self._range_sql(
            "SELECT bucket, ch, n, e FROM rollup_1d", "bucket", channel_ids, from_ms, to_ms, None
        )
        with self.read_engine.connect() as conn:
            rows = conn.exec_driver_sql(sql, tuple(params)).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def count_readings(self) -> int:
        with self.read_engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM readings").scalar_one())

    def table_counts(self) -> dict[str, int]:
        """Row count of every data table (backup manifests, migrations)."""
        with self.read_engine.connect() as conn:
            return {
                t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one())
                for t in DATA_TABLES
            }

    # -- retention ------------------------------------------------------------------------
    def drop_raw_before(self, cutoff_ms: int) -> int:
        """Delete raw readings older than ``cutoff_ms`` (rollups stay); return rows dropped."""
        raise NotImplementedError

    # -- bulk copy (migrate) --------------------------------------------------------------
    def copy_in(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Append rows to a data table as they are, no rollups computed (migrate, restore)."""
        raise NotImplementedError

    def finish_copy(self) -> None:
        """After ``copy_in``: rebuild what the store derives from the copied readings."""

    def backup_to(self, dest: Path) -> None:
        """An online, consistent copy of the database into file ``dest`` (SQLite)."""
        raise NotImplementedError(f"{self.backend} backups go through backup.service")

    def storage_bytes(self) -> int:
        raise NotImplementedError

    def checkpoint(self) -> None:
        """Flush what a backend keeps in a log to the data files (no-op where meaningless)."""

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
