"""Schema versions on every backend: an older database is brought up to this version when it
is opened (the AI tables of schema 2 appear), a newer one is refused with a clear error, and
two opens of an up-to-date database change nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect
from tests.store.conftest import open_url

from wattwatch.errors import SchemaTooNew
from wattwatch.store.schema import SCHEMA_VERSION


def _set_version(url: str, version: int, drop_ai: bool = False) -> None:
    store = open_url(url)
    try:
        with store.engine.begin() as conn:
            if drop_ai:
                conn.exec_driver_sql("DROP TABLE ai_labels")
                conn.exec_driver_sql("DROP TABLE ai_models")
            conn.exec_driver_sql(f"UPDATE meta SET value='{version}' WHERE key='schema_version'")
    finally:
        store.close()


def _version_and_tables(url: str) -> tuple[str, set[str]]:
    store = open_url(url)
    try:
        with store.engine.connect() as conn:
            version = conn.exec_driver_sql(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).scalar_one()
        return version, set(inspect(store.engine).get_table_names())
    finally:
        store.close()


def test_an_older_schema_is_migrated_on_open(store_url: str) -> None:
    assert SCHEMA_VERSION == 2  # the step this test walks: 1 → 2 adds the AI tables
    _set_version(store_url, 1, drop_ai=True)
    version, tables = _version_and_tables(store_url)
    assert version == str(SCHEMA_VERSION)
    assert {"ai_labels", "ai_models", "readings", "rollup_1d"} <= tables
    assert _version_and_tables(store_url) == (version, tables)  # opening again: no change


def test_a_newer_schema_is_refused(store_url: str) -> None:
    _set_version(store_url, SCHEMA_VERSION + 1)
    with pytest.raises(SchemaTooNew) as caught:
        open_url(store_url)
    message = str(caught.value)
    assert f"schema {SCHEMA_VERSION + 1}" in message and "upgrade wattwatch" in message
