"""An in-process app (no MQTT) with an owner's client; more accounts through ``Org``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from tests.registry.accounts import account, bearer

from wattwatch.app import Wattwatch
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
    owner, token = account(ww, "owner@a.example")
    with TestClient(create_api(ww), headers=bearer(token)) as api:
        yield Org(ww, api, owner)
