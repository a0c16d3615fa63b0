"""The embedded store: one SQLite file in WAL mode holding registry, readings and rollups."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.pool import ConnectionPoolEntry

from wattwatch.errors import ConfigError, DataDirLocked
from wattwatch.store import rollups
from wattwatch.store.registry import SqlRegistry
from wattwatch.store.schema import AI_TABLES, create_ddl
from wattwatch.store.sqlstore import ROLLUP_TABLES, SqlStore, rollup_point, upsert_sql

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
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: create_ddl(AI_TABLES, sqlite_dialect.dialect()),
}

__all__ = ["ROLLUP_TABLES", "DataDirLock", "SqliteStore", "rollup_point", "upsert_sql"]


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


class SqliteStore(SqlStore):
    """Registry + readings in one SQLite file. ``lock=True`` for the one process that ingests."""

    backend = "sqlite"
    mark = "?"
    data_ddl = _READINGS_DDL
    migrations = MIGRATIONS

    def __init__(self, url: str, *, lock: bool = False) -> None:
        super().__init__()
        self.url = url
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

    # -- schema ---------------------------------------------------------------------------
    def _has_schema(self, conn: Connection) -> bool:
        found = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).first()
        return found is not None

    def _where(self) -> str:
        return str(self.path)

    # -- writing: the shared path in SqlStore; BEGIN IMMEDIATE keeps other writers out ------
    def _last_points(self, cur: Any, channel_ids: list[int]) -> dict[int, rollups.Point | None]:
        for ch in channel_ids:
            if ch not in self._last:
                self._last[ch] = _last_point(cur, ch)
        return {ch: self._last[ch] for ch in channel_ids}

    def _committed(self, last: dict[int, rollups.Point]) -> None:
        self._last.update(last)

    def _write_failed(self) -> None:
        self._last.clear()  # the transaction rolled back: re-read what is stored

    def forget_channel_cache(self) -> None:
        self._last.clear()
        self.registry.forget_caches()

    # -- retention and bulk copy ----------------------------------------------------------
    def drop_raw_before(self, cutoff_ms: int, batch_rows: int = 20_000) -> int:
        """Delete raw readings older than ``cutoff_ms`` channel by channel, in short batches.

        Each batch is its own transaction so ingest waits at most one batch for the write lock.
        """
        dropped = 0
        with self.read_engine.connect() as conn:
            chans = [r[0] for r in conn.exec_driver_sql("SELECT DISTINCT ch FROM rollup_1d")]
        for ch in chans:
            while True:
                with self._write_lock, self.engine.begin() as conn:
                    edge = conn.exec_driver_sql(
                        "SELECT ts FROM readings WHERE ch = ? AND ts < ? ORDER BY ts "
                        "LIMIT 1 OFFSET ?",
                        (ch, cutoff_ms, batch_rows - 1),
                    ).first()
                    upto = cutoff_ms if edge is None else edge[0] + 1
                    n = conn.exec_driver_sql(
                        "DELETE FROM readings WHERE ch = ? AND ts < ?", (ch, upto)
                    ).rowcount
                dropped += n
                if edge is None:
                    break
        return dropped

    def copy_in(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        marks = ", ".join("?" * len(rows[0]))
        with self._write_lock, self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            cur.close()

    def finish_copy(self) -> None:
        self.forget_channel_cache()

    def backup_to(self, dest: Path) -> None:
        """An online, consistent copy of the whole database into the new file ``dest``.

        One backup step holds a read snapshot for the copy: in WAL mode writers go on, and
        the copy is the database as of that snapshot.
        """
        src = sqlite3.connect(self.path)
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
            # A self-contained file: no -wal/-shm appear beside it when it is read.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
            src.close()

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


def _last_point(cur: Any, ch: int) -> rollups.Point | None:
    row = cur.execute(
        "SELECT ts, p, e FROM readings WHERE ch = ? ORDER BY ts DESC LIMIT 1", (ch,)
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])
