"""The embedded store: one SQLite file in WAL mode holding registry, readings and rollups."""

from __future__ import annotations

import fcntl
import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import ConnectionPoolEntry

from wattwatch.domain import Interval
from wattwatch.errors import ConfigError, DataDirLocked, SchemaTooNew
from wattwatch.store import rollups
from wattwatch.store.base import StoredRow, decode_row
from wattwatch.store.registry import SqlRegistry
from wattwatch.store.schema import SCHEMA_VERSION, metadata

_READINGS_DDL = (
    # WITHOUT ROWID: the (channel, ts) key *is* the table, so no second index is paid for.
    """CREATE TABLE IF NOT EXISTS readings (
        ch INTEGER NOT NULL, ts INTEGER NOT NULL,
        p INTEGER, e INTEGER, v INTEGER, a INTEGER, extra TEXT,
        PRIMARY KEY (ch, ts)) WITHOUT ROWID""",
    *(
        f"""CREATE TABLE IF NOT EXISTS {table} (
        ch INTEGER NOT NULL, bucket INTEGER NOT NULL,
        n INTEGER NOT NULL, pn INTEGER NOT NULL, psum INTEGER NOT NULL,
        pmin INTEGER, pmax INTEGER, e INTEGER NOT NULL,
        PRIMARY KEY (ch, bucket)) WITHOUT ROWID"""
        for table in ("rollup_1m", "rollup_1h", "rollup_1d")
    ),
)

# Steps from version N-1 to N, applied in order to an older data dir. Version 1 is the
# initial schema, created whole on a new data dir.
MIGRATIONS: dict[int, tuple[str, ...]] = {}

ROLLUP_TABLES: dict[Interval, str] = {
    Interval.MINUTE: "rollup_1m",
    Interval.HOUR: "rollup_1h",
    Interval.DAY: "rollup_1d",
}


def upsert_sql(table: str) -> str:
    """Add a contribution row to a rollup bucket (the same SQL works on PostgreSQL)."""
    return (
        f"INSERT INTO {table} (ch, bucket, n, pn, psum, pmin, pmax, e) "
        f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ch, bucket) DO UPDATE SET "
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


class DataDirLock:
    """An exclusive advisory lock on a data dir, held while a server or worker writes to it."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "wattwatch.lock"
        self._file: IO[str] | None = open(self.path, "a+")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            raise DataDirLocked(
                f"data dir {data_dir} is in use by {holder}; stop it first, or give this "
                "process its own --data-dir"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"not a SQLite file URL: {url}")
    return Path(url.removeprefix("sqlite:///"))


def _make_engine(path: Path, *, immediate: bool) -> Engine:
    engine = create_engine(f"sqlite:///{path}", pool_size=8, max_overflow=8)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (SQLAlchemy docs
        # "Serializable isolation / Savepoints / Transactional DDL" recipe for pysqlite).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a process crash loses nothing committed; a power cut may lose
        # the last transactions, never corrupts (docs/reliability.md).
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred transaction that upgrades to a
        # writer can fail with SQLITE_BUSY without waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class SqliteStore:
    """Registry + readings in one SQLite file. ``lock=True`` for the one process that ingests."""

    def __init__(self, url: str, *, lock: bool = False) -> None:
        self.path = _sqlite_path(url)
        self._lock = DataDirLock(self.path.parent) if lock else None
        try:
            self.engine = _make_engine(self.path, immediate=True)
            self.read_engine = _make_engine(self.path, immediate=False)
            self._migrate()
        except BaseException:
            if self._lock:
                self._lock.release()
            raise
        self.registry = SqlRegistry(self.engine, self.read_engine)
        # Per channel: the newest stored reading (ts, p, e), valid because one process writes.
        self._last: dict[int, rollups.Point | None] = {}
        self._write_lock = threading.Lock()

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            has_meta = conn.exec_driver_sql(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).first()
            if not has_meta:
                metadata.create_all(conn)
                for ddl in _READINGS_DDL:
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
                    f"{self.path} was written by a newer wattwatch (schema {version}, this "
                    f"version knows {SCHEMA_VERSION}); upgrade wattwatch"
                )
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for ddl in MIGRATIONS.get(step, ()):
                    conn.exec_driver_sql(ddl)
            if version != SCHEMA_VERSION:
                conn.execute(
                    text("UPDATE meta SET value=:v WHERE key='schema_version'"),
                    {"v": str(SCHEMA_VERSION)},
                )

    # -- writing --------------------------------------------------------------------------
    def write_readings(self, rows: Sequence[StoredRow]) -> list[int]:
        with self._write_lock:
            try:
                return self._write(rows)
            except BaseException:
                self._last.clear()  # the transaction rolled back: re-read what is stored
                raise

    def _write(self, rows: Sequence[StoredRow]) -> list[int]:
        duplicates: list[int] = []
        per_channel: dict[int, list[tuple[int, StoredRow]]] = defaultdict(list)
        seen: set[tuple[int, int]] = set()
        for i, row in enumerate(rows):
            key = (row[0], row[1])
            if key in seen:
                duplicates.append(i)
                continue
            seen.add(key)
            per_channel[row[0]].append((i, row))

        to_insert: list[StoredRow] = []
        minutes: rollups.Buckets = {}
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for ch, items in per_channel.items():
                items.sort(key=lambda item: item[1][1])
                if ch not in self._last:
                    self._last[ch] = _last_point(cur, ch)
                last = self._last[ch]
                first_ts, last_ts = items[0][1][1], items[-1][1][1]
                if last is None or first_ts > last[0]:
                    fresh = items
                    stored: list[rollups.Point] = [] if last is None else [last]
                else:
                    stored = _neighbourhood(cur, ch, first_ts, last_ts)
                    stored_ts = {p[0] for p in stored}
                    fresh = []
                    for i, row in items:
                        if row[1] in stored_ts:
                            duplicates.append(i)
                        else:
                            fresh.append((i, row))
                    if not fresh:
                        continue
                new_points = [(row[1], row[2], row[3]) for _, row in fresh]
                rollups.add_channel(minutes, ch, new_points, stored)
                to_insert.extend(row for _, row in fresh)
                if last is None or new_points[-1][0] > last[0]:
                    self._last[ch] = new_points[-1]
            if to_insert:
                cur.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?)", to_insert)
                hours, days = rollups.roll_up(minutes, self._channel_tz(cur, minutes))
                for table, buckets in (
                    ("rollup_1m", minutes),
                    ("rollup_1h", hours),
                    ("rollup_1d", days),
                ):
                    cur.executemany(upsert_sql(table), rollups.rows_of(buckets))
            cur.close()
        duplicates.sort()
        return duplicates

    def _channel_tz(self, cur: Any, minutes: rollups.Buckets) -> dict[int, str]:
        wanted = {ch for ch, _ in minutes}
        return self.registry.channel_timezones(wanted, cur=cur)

    def forget_channel_cache(self) -> None:
        self._last.clear()
        self.registry.forget_caches()

    # -- reading --------------------------------------------------------------------------
    def query_raw(
        self,
        channel_ids: Sequence[int],
        from_ms: int,
        to_ms: int,
        limit: int,
        after: tuple[int, int] | None = None,
        metrics: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        sql, params = _range_sql(
            "SELECT ts, ch, p, e, v, a, extra FROM readings",
            "ts",
            channel_ids,
            from_ms,
            to_ms,
            after,
        )
        with self.read_engine.connect() as conn:
            rows = conn.exec_driver_sql(sql + " LIMIT ?", (*params, limit)).all()
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
        sql, params = _range_sql(
            f"SELECT bucket, ch, n, pn, psum, pmin, pmax, e FROM {table}",
            "bucket",
            channel_ids,
            from_ms,
            to_ms,
            after,
        )
        with self.read_engine.connect() as conn:
            rows = conn.exec_driver_sql(sql + " LIMIT ?", (*params, limit)).all()
        return [rollup_point(r) for r in rows]

    def daily_energy(
        self, channel_ids: Sequence[int], from_ms: int, to_ms: int
    ) -> list[tuple[int, int, int, int]]:
        sql, params = _range_sql(
            "SELECT bucket, ch, n, e FROM rollup_1d", "bucket", channel_ids, from_ms, to_ms, None
        )
        with self.read_engine.connect() as conn:
            rows = conn.exec_driver_sql(sql, tuple(params)).all()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def count_readings(self) -> int:
        with self.read_engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM readings").scalar_one())

    def storage_bytes(self) -> int:
        """Bytes the data file and its WAL occupy on disk."""
        total = 0
        for suffix in ("", "-wal"):
            p = Path(f"{self.path}{suffix}")
            if p.exists():
                total += p.stat().st_size
        return total

    def checkpoint(self) -> None:
        with self.engine.connect() as conn:
            conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                "PRAGMA wal_checkpoint(TRUNCATE)"
            )

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
        if self._lock:
            self._lock.release()
            self._lock = None


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


def _range_sql(
    select: str,
    ts_col: str,
    channel_ids: Sequence[int],
    from_ms: int,
    to_ms: int,
    after: tuple[int, int] | None,
) -> tuple[str, list[int]]:
    marks = ", ".join("?" * len(channel_ids))
    sql = f"{select} WHERE ch IN ({marks}) AND {ts_col} >= ? AND {ts_col} < ?"
    params = [*channel_ids, from_ms, to_ms]
    if after is not None:
        sql += f" AND ({ts_col} > ? OR ({ts_col} = ? AND ch > ?))"
        params += [after[0], after[0], after[1]]
    order = f" ORDER BY {ts_col}" if len(channel_ids) == 1 else f" ORDER BY {ts_col}, ch"
    return sql + order, params


def _last_point(cur: Any, ch: int) -> rollups.Point | None:
    row = cur.execute(
        "SELECT ts, p, e FROM readings WHERE ch = ? ORDER BY ts DESC LIMIT 1", (ch,)
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def _neighbourhood(cur: Any, ch: int, first_ts: int, last_ts: int) -> list[rollups.Point]:
    """Stored readings of ``ch`` in [first_ts, last_ts] plus the one before and the one after."""
    before = cur.execute(
        "SELECT ts, p, e FROM readings WHERE ch = ? AND ts < ? ORDER BY ts DESC LIMIT 1",
        (ch, first_ts),
    ).fetchall()
    inside = cur.execute(
        "SELECT ts, p, e FROM readings WHERE ch = ? AND ts BETWEEN ? AND ? ORDER BY ts",
        (ch, first_ts, last_ts),
    ).fetchall()
    after = cur.execute(
        "SELECT ts, p, e FROM readings WHERE ch = ? AND ts > ? ORDER BY ts LIMIT 1",
        (ch, last_ts),
    ).fetchall()
    return [tuple(r) for r in (*before, *inside, *after)]
