"""Online backups with a manifest (row counts + SHA-256), their verification and restore.

A backup is a directory ``wattwatch-backup-<UTC time>/`` holding the database copy and
``manifest.json``. It is written under a hidden ``.partial`` name and renamed when complete, so
a directory with a manifest is always a whole backup.

- SQLite: ``sqlite3.Connection.backup`` in one step — a consistent snapshot while ingest goes on
  (WAL readers do not block writers). Row counts are taken from the copy itself.
- PostgreSQL: ``pg_dump -Fc`` of an exported snapshot; the row counts are read in the same
  snapshot, so the manifest describes exactly what the dump holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wattwatch import __version__
from wattwatch.errors import ConfigError, Conflict, InvalidInput, NotFound
from wattwatch.store.schema import SCHEMA_VERSION
from wattwatch.store.sqlstore import DATA_TABLES, SqlStore

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
PREFIX = "wattwatch-backup-"
SQLITE_FILE = "wattwatch.db"
PGDUMP_FILE = "wattwatch.pgdump"
# Registry tables counted in the manifest (besides the data tables).
COUNTED_REGISTRY = ("organisations", "users", "sites", "devices", "channels")


@dataclass
class Verification:
    """What ``verify_backup`` found: ok, or the list of problems."""

    path: Path
    backend: str
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(
            f"{name} not found: install the PostgreSQL client tools (Debian: postgresql-client)"
        )
    return found


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sqlite_counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])
            for t in (*DATA_TABLES, *COUNTED_REGISTRY)
        }
    finally:
        conn.close()


def create_backup(store: SqlStore, root: Path, *, keep: int | None = None) -> Path:
    """Back ``store`` up into a new directory under ``root``; keep the newest ``keep``."""
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    name = PREFIX + now.strftime("%Y%m%dT%H%M%S.%fZ")
    partial = root / f".{name}.partial"
    partial.mkdir()
    try:
        if store.backend == "sqlite":
            data = partial / SQLITE_FILE
            store.backup_to(data)
            counts = sqlite_counts(data)
        elif store.backend == "postgresql":
            data = partial / PGDUMP_FILE
            counts = _pg_dump(store, data)
        else:  # pragma: no cover - no other backends
            raise ConfigError(f"cannot back up a {store.backend} store")
        with data.open("rb") as f:
            os.fsync(f.fileno())
        manifest = {
            "format": FORMAT_VERSION,
            "backend": store.backend,
            "created": now.isoformat(),
            "created_ms": int(now.timestamp() * 1000),
            "wattwatch": __version__,
            "schema_version": SCHEMA_VERSION,
            "counts": counts,
            "files": {data.name: {"bytes": data.stat().st_size, "sha256": sha256_of(data)}},
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _fsync_dir(partial)
        final = root / name
        partial.rename(final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if keep is not None:
        prune_backups(root, keep)
    return final


def _pg_dump(store: SqlStore, dest: Path) -> dict[str, int]:
    import psycopg

    from wattwatch.store.postgres import libpq_url

    url = libpq_url(store.url)
    pg_dump = _tool("pg_dump")
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        counts = {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in (*DATA_TABLES, *COUNTED_REGISTRY)
        }
        # The snapshot lives as long as this transaction: keep it open until pg_dump is done.
        done = subprocess.run(
            [pg_dump, "--format=custom", f"--snapshot={snapshot}", "--file", str(dest), url],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise ConfigError(f"pg_dump failed: {done.stderr.strip()}")
    return counts


def list_backups(root: Path) -> list[Path]:
    """Complete backups under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / MANIFEST).is_file()
    )


def prune_backups(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete backups; return what was deleted."""
    if keep < 1:
        raise InvalidInput("keep at least one backup")
    gone = list_backups(root)[:-keep]
    for path in gone:
        shutil.rmtree(path)
    return gone


def read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    if not file.is_file():
        raise NotFound(f"{path} is not a wattwatch backup (no {MANIFEST})")
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except ValueError as exc:
        raise InvalidInput(f"{file} is damaged: {exc}") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise InvalidInput(f"{path}: backup format {manifest.get('format')!r} is not supported")
    return manifest


def verify_backup(path: Path) -> Verification:
    """Check a backup: files and their SHA-256, database integrity, row counts."""
    manifest = read_manifest(path)
    result = Verification(path, manifest["backend"], manifest["counts"])
    for name, info in manifest["files"].items():
        file = path / name
        if not file.is_file():
            result.problems.append(f"{name} is missing")
            continue
        if file.stat().st_size != info["bytes"]:
            result.problems.append(
                f"{name} has {file.stat().st_size} bytes, the manifest says {info['bytes']}"
            )
        if sha256_of(file) != info["sha256"]:
            result.problems.append(f"{name}: SHA-256 differs from the manifest (file changed)")
    if result.problems:
        return result
    if manifest["backend"] == "sqlite":
        _verify_sqlite(path / SQLITE_FILE, manifest["counts"], result)
    else:
        done = subprocess.run(
            [_tool("pg_restore"), "--list", str(path / PGDUMP_FILE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            result.problems.append(f"pg_restore cannot read the dump: {done.stderr.strip()}")
        elif "TABLE DATA" not in done.stdout:
            result.problems.append("the dump holds no table data")
    return result


def _verify_sqlite(file: Path, want: dict[str, int], result: Verification) -> None:
    try:
        conn = sqlite3.connect(f"file:{file}?mode=ro&immutable=1", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
        if rows != [("ok",)]:
            result.problems.extend(f"integrity: {r[0]}" for r in rows[:10])
            return
        got = sqlite_counts(file)
    except sqlite3.DatabaseError as exc:
        result.problems.append(f"not a readable SQLite database: {exc}")
        return
    for table, n in want.items():
        if got.get(table) != n:
            result.problems.append(f"{table}: {got.get(table)} rows, the manifest says {n}")


def restore_backup(path: Path, target_url: str, *, force: bool = False) -> dict[str, int]:
    """Restore a verified backup into ``target_url`` (an absent SQLite file or an empty
    PostgreSQL database); return the manifest's row counts."""
    check = verify_backup(path)
    if not check.ok:
        raise InvalidInput(f"{path} failed verification: " + "; ".join(check.problems))
    if check.backend == "sqlite":
        if not target_url.startswith("sqlite:///"):
            raise InvalidInput(
                "a SQLite backup restores to a SQLite file; to move it to PostgreSQL, restore "
                "it, then run: wattwatch migrate --from sqlite:///… --to postgresql://…"
            )
        dest = Path(target_url.removeprefix("sqlite:///"))
        if dest.exists() and not force:
            raise Conflict(f"{dest} exists; stop wattwatch and pass --force to replace it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".restoring")
        shutil.copyfile(path / SQLITE_FILE, tmp)
        for suffix in ("-wal", "-shm"):
            Path(f"{dest}{suffix}").unlink(missing_ok=True)
        tmp.replace(dest)
        return check.counts
    return _pg_restore(path / PGDUMP_FILE, target_url, check.counts, force=force)


def _pg_restore(
    dump: Path, target_url: str, counts: dict[str, int], *, force: bool
) -> dict[str, int]:
    import psycopg

    from wattwatch.store.postgres import libpq_url

    if target_url.startswith("sqlite"):
        raise InvalidInput("a PostgreSQL backup restores to a PostgreSQL database URL")
    url = libpq_url(target_url)
    with psycopg.connect(url, autocommit=True) as conn:
        used = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]  # type: ignore[index]
        if used and not force:
            raise Conflict(
                "the target database holds a wattwatch store; pass --force to replace it"
            )
        if used:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
    done = subprocess.run(
        # Roles are per server, not per database: the target server may lack the source's
        # (analyst roles are granted again with `wattwatch export analyst-role`).
        [
            _tool("pg_restore"),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--dbname",
            url,
            str(dump),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ConfigError(f"pg_restore failed: {done.stderr.strip()}")
    with psycopg.connect(url) as conn:
        got = {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in counts
        }
    if got != counts:
        raise ConfigError(f"restored row counts {got} differ from the manifest's {counts}")
    return counts
