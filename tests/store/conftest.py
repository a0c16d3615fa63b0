"""The store contract suite runs on every backend: ``store_url`` is a SQLite file or a fresh
PostgreSQL database, and ``store`` is that store opened for writing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pgdb import fresh_database

from wattwatch.app import open_store
from wattwatch.config import Settings
from wattwatch.store.sqlstore import SqlStore

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'wattwatch.db'}"
        return
    with fresh_database() as url:
        yield url


def open_url(url: str) -> SqlStore:
    """Open the store at ``url`` for writing (SQLite: its directory is made)."""
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return open_store(Settings(database_url=url), lock=False)


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = open_url(store_url)
    yield s
    s.close()
