"""An in-process app (no MQTT) with an owner's client; more accounts through ``Org``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.registry.accounts import account, bearer

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Role
from wattwatch.registry.service import Principal
from wattwatch.web.server import create_api


@dataclass
class Org:
    ww: Wattwatch
    api: TestClient  # as the owner
    owner: Principal

    def member(self, email: str, role: Role) -> dict[str, str]:
        """Headers of a new user of this organisation with ``role``."""
        _, token = account(self.ww, email, role, self.owner.org_id)
        return bearer(token)


@pytest.fixture
def org(ww: Wattwatch) -> Iterator[Org]:
    yield from running_org(ww)


@pytest.fixture
def pg_org(tmp_path: Path, pg_url: str) -> Iterator[Org]:
    """The same on PostgreSQL."""
    ww = Wattwatch.open(Settings(data_dir=tmp_path / "data", database_url=pg_url), lock=True)
    try:
        yield from running_org(ww)
    finally:
        ww.close()


def running_org(ww: Wattwatch) -> Iterator[Org]:
    owner, token = account(ww, "owner@a.example")
    with TestClient(create_api(ww), headers=bearer(token)) as api:
        yield Org(ww, api, owner)
