"""In-process backfill: the rows it writes are the rows an upload of the same readings makes,
writing the same history twice stores it once, and a restart continues the counters."""

from __future__ import annotations

from typing import Any

from wattwatch.app import Wattwatch
from wattwatch.domain import Role
from wattwatch.ingest.pipeline import normalise_uniform
from wattwatch.registry.service import Principal
from wattwatch.sim import Site
from wattwatch.sim.backfill import backfill_store, stored_rows
from wattwatch.sim.provision import LocalRegistrar, plan_devices, provision
from wattwatch.sim.runner import json_batch

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000


class Channels:
    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids

    def resolve_channel(self, device_id: int, name: str) -> int:
        return self.ids[name]


def test_rows_equal_what_an_upload_of_the_same_readings_stores() -> None:
    import orjson

    site = Site("office", 4, seed=3, name="rows")
    for dev in plan_devices([site]):  # a panel (many channels), a monitor, plugs (state)
        dev.next_ms = T0
        ids = {name: 100 + i for i, name in enumerate(dev.channel_names)}
        dev.channel_ids = tuple(ids.values())
        cols = dev.take(T0 + HOUR, 5.0)
        assert cols is not None
        mine = stored_rows(cols, dev.channel_ids)
        uploaded = normalise_uniform(1, orjson.loads(json_batch(cols)), Channels(ids), T0 + HOUR)
        assert uploaded is not None and not uploaded[1]
        assert [tuple(r) for r in mine] == [tuple(r) for r in uploaded[0]]


def test_backfill_twice_and_resume(ww: Wattwatch) -> None:
    org = ww.registry.db.create_org("bf")
    owner = Principal(0, org, Role.OWNER, "test")
    end = T0 + 6 * HOUR

    def fresh() -> list[Any]:
        devices = plan_devices([Site("home", 3, seed=9, tz="Europe/Madrid", name="bf")])
        provision(LocalRegistrar(ww, owner), devices, start_ms=T0, tokens=False, now=end)
        return devices

    devices = fresh()
    first = backfill_store(ww.store.write_readings, devices, end, 60.0, batch_rows=500)
    assert first.readings > 3 * 340 and first.duplicates == 0
    assert ww.store.count_readings() == first.readings

    # The same history again (devices positioned at T0 by hand): nothing new is stored.
    devices = plan_devices([Site("home", 3, seed=9, tz="Europe/Madrid", name="bf")])
    provision(LocalRegistrar(ww, owner), devices, start_ms=T0, tokens=False, now=end)
    for d in devices:
        d.next_ms = T0
    again = backfill_store(ww.store.write_readings, devices, end, 60.0)
    assert again.duplicates == again.readings == first.readings

    # A restart resumes after the last stored reading with the stored counters: the first
    # new reading's counter follows on from the last stored one.
    devices = fresh()
    monitor = next(d for d in devices if d.uid == "bf-monitor")
    assert T0 + 6 * HOUR - 60_000 < monitor.next_ms <= end
    last_stored = ww.queries.readings(
        org, monitor.device_id, from_ms=end - HOUR, to_ms=end, metrics=["energy_wh"]
    )["points"][-1]["energy_wh"]
    more = backfill_store(ww.store.write_readings, devices, end + HOUR, 60.0)
    assert more.duplicates == 0 and 3 * 55 <= more.readings <= 3 * 60
    nxt = ww.queries.readings(
        org, monitor.device_id, from_ms=end, to_ms=end + HOUR, metrics=["energy_wh"]
    )["points"][0]["energy_wh"]
    assert last_stored <= nxt < last_stored + 100  # at most a minute of a home's use
