"""The registry flows on PostgreSQL (the same code as on SQLite: SQLAlchemy Core)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tests.registry import test_accounts, test_inventory, test_places
from tests.registry.conftest import Org

CASES: list[Callable[[Org], Any]] = [
    test_places.test_tariffs_are_for_owners_the_rest_for_admins,
    test_places.test_nested_areas_with_paths_and_their_devices,
    test_places.test_device_edit_identifiers_location_channels,
    test_accounts.test_owners_manage_users,
    test_accounts.test_api_keys_are_scoped_and_revocable,
    test_inventory.test_bad_rows_are_all_reported_and_nothing_is_applied,
    test_inventory.test_export_reads_back_unchanged_in_yaml_and_csv,
]


@pytest.mark.postgres
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_on_postgresql(case: Callable[[Org], Any], pg_org: Org) -> None:
    case(pg_org)
