"""Throwaway PostgreSQL databases for tests: one fresh database per test, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# The server the tests use (trust auth on this machine and in CI); override to point elsewhere.
ADMIN_URL = os.environ.get("WATTWATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _admin() -> object:
    import psycopg

    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


def require_postgres() -> None:
    """Skip when no server answers, except in CI, where a missing server is a failure."""
    try:
        _admin().close()  # type: ignore[attr-defined]
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}: {exc}")


def url_of(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def create_database(prefix: str = "ww_t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    try:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[attr-defined]
    finally:
        conn.close()  # type: ignore[attr-defined]
    return name


def drop_database(name: str) -> None:
    conn = _admin()
    try:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[attr-defined]
    finally:
        conn.close()  # type: ignore[attr-defined]


@contextmanager
def fresh_database(prefix: str = "ww_t") -> Iterator[str]:
    """A new empty database on the test server; yields its URL and drops it afterwards."""
    require_postgres()
    name = create_database(prefix)
    try:
        yield url_of(name)
    finally:
        drop_database(name)
