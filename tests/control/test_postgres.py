"""Commands, their audit trail and schedules on PostgreSQL, with plugs answering over MQTT."""

from __future__ import annotations

import pytest
from tests.control import test_commands, test_schedules
from tests.control.conftest import Plant


@pytest.mark.postgres
def test_round_trip_and_timeout_on_postgresql(pg_plant: Plant) -> None:
    test_commands.test_tasmota_plug_round_trip_updates_state_and_audit(pg_plant)
    test_commands.test_timeout_is_504_and_audited(pg_plant)


@pytest.mark.postgres
def test_schedules_on_postgresql(pg_plant: Plant) -> None:
    test_schedules.test_printers_off_at_night_on_weekdays(pg_plant)
