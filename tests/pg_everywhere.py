"""A pytest plugin that runs any test on PostgreSQL: each test gets a fresh database as
WATTWATCH_DATABASE_URL, so every ``Settings()`` (the ``ww``/``client`` fixtures, the CLI, a
served process) uses it. Usage: PYTHONPATH=. python -m pytest -p tests.pg_everywhere tests/web
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.pgdb import fresh_database


@pytest.fixture(autouse=True)
def _database_url_is_postgresql(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with fresh_database() as url:
        monkeypatch.setenv("WATTWATCH_DATABASE_URL", url)
        yield
