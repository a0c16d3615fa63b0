"""The scale-out store: PostgreSQL with monthly reading partitions, COPY ingest, many writers.

Same tables and the same rollup upserts as SQLite (``store/sqlstore.py`` holds the shared write
path). What differs: readings live in ``readings_YYYY_MM`` range partitions on ``ts``; rows go
in by COPY; and several processes may write at once, so each write transaction takes a
per-channel advisory lock (in channel order: no deadlocks) and reads the newest reading of each
channel from ``channel_last``, kept in the same transaction, instead of a process-local cache.
The schema is ready for Citus: every data table's key starts with the channel id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.engine import make_url

from wattwatch.errors import ConfigError
from wattwatch.store import rollups
from wattwatch.store.base import StoredRow
from wattwatch.store.registry import SqlRegistry
from wattwatch.store.schema import AI_TABLES, create_ddl, metadata
from wattwatch.store.sqlstore import SqlStore, upsert_sql

log = logging.getLogger(__name__)

# pg_advisory_xact_lock(int, int) namespace for wattwatch: (LOCK_SPACE, channel id) per channel,
# (LOCK_SPACE, 0) for schema changes. Channel ids start at 1, so the two never meet.
LOCK_SPACE = 0x5757
# Partitions made ahead of time, beyond the current month, so ingest never waits on DDL.
MONTHS_AHEAD = 2

_DATA_DDL: tuple[str, ...] = (
    # 8-byte columns first: no alignment padding, 32 bytes of data per row. Power, voltage
    # and current fit 4 bytes at their plausible ranges (±1 GW in mW, 1 MV in mV, ±10 MA in
    # mA: domain.METRICS); the energy counter does not.
    """CREATE TABLE IF NOT EXISTS readings (
        ts bigint NOT NULL, e bigint, ch integer NOT NULL,
        p integer, v integer, a integer, extra text,
        PRIMARY KEY (ch, ts)) PARTITION BY RANGE (ts)""",
    *(
        f"""CREATE TABLE IF NOT EXISTS {table} (
        ch integer NOT NULL, bucket bigint NOT NULL,
        n bigint NOT NULL, pn bigint NOT NULL, psum bigint NOT NULL,
        pmin bigint, pmax bigint, e bigint NOT NULL,
        PRIMARY KEY (ch, bucket))"""
        for table in ("rollup_1m", "rollup_1h", "rollup_1d")
    ),
    # The newest reading of each channel: what a writer extends, kept under the channel lock.
    """CREATE TABLE IF NOT EXISTS channel_last (
        ch integer PRIMARY KEY, ts bigint NOT NULL, p bigint, e bigint)""",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: create_ddl(AI_TABLES, postgresql_dialect.dialect()),  # type: ignore[no-untyped-call]
}

# Column lists in StoredRow / rollup-row order, and their types for binary COPY.
_COLUMNS = {
    "readings": "ch, ts, p, e, v, a, extra",
    **{
        t: "ch, bucket, n, pn, psum, pmin, pmax, e" for t in ("rollup_1m", "rollup_1h", "rollup_1d")
    },
}
_READING_TYPES = ("int4", "int8", "int4", "int8", "int4", "int4", "text")
_ROLLUP_TYPES = ("int4", "int8", "int8", "int8", "int8", "int8", "int8", "int8")


def sqlalchemy_url(url: str) -> str:
    """``postgresql://…`` / ``postgres://…`` as SQLAlchemy's psycopg 3 URL."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    raise ConfigError(f"not a PostgreSQL URL: {redact(url)}")


def libpq_url(url: str) -> str:
    """The URL as libpq tools (pg_dump, psql) take it."""
    return sqlalchemy_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def month_start_ms(year: int, month: int) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def month_of(ts_ms: int) -> tuple[int, int]:
    d = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return d.year, d.month


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def partition_name(year: int, month: int) -> str:
    return f"readings_{year:04d}_{month:02d}"


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError(
            "PostgreSQL support needs psycopg: pip install 'wattwatch[postgres]'"
        ) from None


class PostgresStore(SqlStore):
    """Registry + partitioned readings + rollups in one PostgreSQL database (or schema)."""

    backend = "postgresql"
    mark = "%s"
    data_ddl = _DATA_DDL
    migrations = MIGRATIONS

    def __init__(self, url: str, *, lock: bool = False, pool_size: int = 8) -> None:
        # ``lock`` is accepted for symmetry with SQLite: PostgreSQL takes many writers.
        super().__init__()
        _require_psycopg()
        self.url = url
        sa_url = make_url(sqlalchemy_url(url))
        self.engine: Engine = create_engine(
            sa_url, pool_size=pool_size, max_overflow=8, pool_pre_ping=True
        )
        self.read_engine = self.engine

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Each session's scratch table for bulk rollup upserts (emptied at every commit).
            dbapi_conn.execute(
                "CREATE TEMP TABLE rollup_in (ch integer, bucket bigint, n bigint, pn bigint, "
                "psum bigint, pmin bigint, pmax bigint, e bigint) ON COMMIT DELETE ROWS"
            )
            dbapi_conn.commit()

        self._partitions: set[tuple[int, int]] = set()
        self._ddl_lock = threading.Lock()
        try:
            self._migrate()
            self._load_partitions()
            now = month_of(int(datetime.now(UTC).timestamp() * 1000))
            ahead = [now]
            for _ in range(MONTHS_AHEAD):
                ahead.append(next_month(*ahead[-1]))
            self.ensure_partitions(ahead)
        except BaseException:
            self.engine.dispose()
            raise
        self.registry = SqlRegistry(self.engine, self.read_engine)

    # -- schema ---------------------------------------------------------------------------
    def _lock_schema(self, conn: Connection) -> None:
        # Workers starting together: one creates the schema, the others wait and see it.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_SPACE,))

    def _has_schema(self, conn: Connection) -> bool:
        return conn.exec_driver_sql("SELECT to_regclass('meta')").scalar_one() is not None

    def _where(self) -> str:
        return redact(self.url)

    def partitions(self) -> list[str]:
        """Names of the reading partitions, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'readings'::regclass ORDER BY c.relname"
            ).all()
        return [r[0] for r in rows]

    def _load_partitions(self) -> None:
        found = set()
        for name in self.partitions():
            _, y, m = name.split("_")
            found.add((int(y), int(m)))
        self._partitions = found

    def ensure_partitions(self, months: Iterable[tuple[int, int]]) -> None:
        """Create the monthly partitions that hold ``months`` (year, month) if missing."""
        missing = sorted(set(months) - self._partitions)
        if not missing:
            return
        with self._ddl_lock:
            for year, month in missing:
                lo = month_start_ms(year, month)
                hi = month_start_ms(*next_month(year, month))
                with self.engine.begin() as conn:
                    # Serialise with other processes: IF NOT EXISTS alone races in the catalog.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_SPACE,))
                    conn.exec_driver_sql(
                        f"CREATE TABLE IF NOT EXISTS {partition_name(year, month)} "
                        f"PARTITION OF readings FOR VALUES FROM ({lo}) TO ({hi})"
                    )
                self._partitions.add((year, month))

    # -- writing: the shared path in SqlStore -----------------------------------------------
    def write_readings(self, rows: Sequence[StoredRow]) -> list[int]:
        try:
            return super().write_readings(rows)
        except Exception as exc:
            if "no partition of relation" not in str(exc):
                raise
        # Another process dropped a month (retention) this one still believed in: the
        # transaction rolled back whole, so re-read the partitions and write again.
        self._load_partitions()
        return super().write_readings(rows)

    def _before_write(self, rows: Sequence[StoredRow]) -> None:
        months: set[tuple[int, int]] = set()
        lo = min(r[1] for r in rows)
        hi = max(r[1] for r in rows)
        ym = month_of(lo)
        end = month_of(hi)
        while ym <= end:
            months.add(ym)
            ym = next_month(*ym)
        self.ensure_partitions(months)

    def _lock_channels(self, cur: Any, channel_ids: list[int]) -> None:
        # unnest keeps the (sorted) array order, so every writer locks in the same order.
        cur.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) AS k",
            (LOCK_SPACE, channel_ids),
        )

    def _last_points(self, cur: Any, channel_ids: list[int]) -> dict[int, rollups.Point | None]:
        rows = cur.execute(
            "SELECT ch, ts, p, e FROM channel_last WHERE ch = ANY(%s)", (channel_ids,)
        ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def _store_last(self, cur: Any, last: dict[int, rollups.Point]) -> None:
        if last:
            cur.executemany(
                "INSERT INTO channel_last (ch, ts, p, e) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (ch) DO UPDATE SET ts = excluded.ts, p = excluded.p, e = excluded.e",
                [(ch, *point) for ch, point in last.items()],
            )

    def _insert_readings(self, cur: Any, rows: list[StoredRow]) -> None:
        # Binary COPY: about twice the rows/s of text COPY, no number formatting in Python.
        with cur.copy(
            "COPY readings (ch, ts, p, e, v, a, extra) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_READING_TYPES)
            for row in rows:
                copy.write_row(row)

    def _upsert_rollups(self, cur: Any, table: str, rows: Iterable[rollups.RollupRow]) -> None:
        batch = list(rows)
        if len(batch) < 200:
            super()._upsert_rollups(cur, table, batch)
            return
        # Many buckets: COPY them into a scratch table and upsert with one statement.
        with cur.copy("COPY rollup_in FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_ROLLUP_TYPES)
            for row in batch:
                copy.write_row(row)
        cur.execute(upsert_sql(table, select_from="rollup_in"))
        cur.execute("DELETE FROM rollup_in")

    # -- retention and bulk copy ----------------------------------------------------------
    def drop_raw_before(self, cutoff_ms: int) -> int:
        """Drop whole monthly partitions that end at or before ``cutoff_ms``; rows dropped."""
        dropped = 0
        for name in self.partitions():
            _, y, m = name.split("_")
            year, month = int(y), int(m)
            if month_start_ms(*next_month(year, month)) > cutoff_ms:
                continue
            with self.engine.begin() as conn:
                n = int(conn.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one())
                conn.exec_driver_sql(f"DROP TABLE {name}")
            self._partitions.discard((year, month))
            dropped += n
            log.info("retention: dropped partition %s (%d readings)", name, n)
        return dropped

    def copy_in(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if table == "readings":
            self._before_write(rows)  # type: ignore[arg-type]
        with self._write_lock, self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cur.copy(f"COPY {table} ({_COLUMNS[table]}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.close()

    def finish_copy(self) -> None:
        """Rebuild ``channel_last`` from the readings and move id sequences past copied ids."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM channel_last")
            conn.exec_driver_sql(
                "INSERT INTO channel_last (ch, ts, p, e) "
                "SELECT DISTINCT ON (ch) ch, ts, p, e FROM readings ORDER BY ch, ts DESC"
            )
            for table in metadata.sorted_tables:
                if "id" in table.c and table.c.id.primary_key:
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"
                    )
        self.forget_channel_cache()

    def storage_bytes(self) -> int:
        """Bytes of the data tables, their partitions, indexes and TOAST."""
        with self.engine.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind = 'r' AND n.nspname = current_schema()"
                ).scalar_one()
            )

    def close(self) -> None:
        self.engine.dispose()
