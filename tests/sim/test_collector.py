"""Offline-first devices and collectors against a real ``wattwatch serve``: every reading a
device took ends up on the server exactly once, however often and in whatever order its log is
collected and uploaded."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import ServerProcess, login

from wattwatch.domain import METRIC_NAMES
from wattwatch.sim import Site
from wattwatch.sim.collector import Collector, OfflineDevice
from wattwatch.sim.flashlog import HEADER, list_segments
from wattwatch.sim.provision import ApiRegistrar, SimDevice, plan_devices, provision

HOUR = 3_600_000
BATCH = 200  # readings per upload of phone A


class FlakyNetwork(httpx.BaseTransport):
    """A phone's network: the server gets requests number ``lose`` (1 = the first) but their
    answers are lost; after ``gone_after`` requests the network is gone altogether."""

    def __init__(self, lose: frozenset[int] = frozenset(), gone_after: int | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose = lose
        self.gone_after = gone_after
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.gone_after is not None and self.calls > self.gone_after:
            raise httpx.ConnectError("no network", request=request)
        response = self.inner.handle_request(request)
        if self.calls in self.lose:
            response.read()
            response.close()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def reading_key(obj: dict[str, Any]) -> tuple[Any, ...]:
    """A reading as the store keeps it: 1/1000 unit resolution."""
    values = tuple(
        None if obj.get(m) is None else round(obj[m] * 1000) for m in METRIC_NAMES if m != "ts"
    )
    return (obj["channel"], obj["ts"], *values)


def taken(device: OfflineDevice) -> list[tuple[Any, ...]]:
    return [reading_key(orjson.loads(r.payload)) for r in device.log.read_all()]


def stored(api: httpx.Client, dev: SimDevice, t0: int, t1: int) -> list[tuple[Any, ...]]:
    r = api.get(
        f"/api/v1/devices/{dev.device_id}/readings",
        params={"from": t0, "to": t1, "interval": "raw", "limit": 1_000_000},
    )
    assert r.status_code == 200, r.text
    return [reading_key(p) for p in r.json()["points"]]


def tear_tail(device: OfflineDevice) -> None:
    """A power cut in the middle of an append: half a frame at the end of the active segment."""
    _, path = list_segments(device.log_dir)[-1]
    with path.open("ab") as f:
        f.write(b"WL" + b"\x40\x00\x00\x00" + b"\x01" * (HEADER.size - 6) + b'{"ts":1')


def test_offline_logs_reach_the_server_exactly_once(tmp_path: Path, server_factory: Any) -> None:
    srv: ServerProcess = server_factory(tmp_path / "data")
    assert srv.password
    api = login(srv.url, "owner@localhost", srv.password)
    # A panel (many channels), a CT monitor and two plugs, all offline-first.
    site = Site("office", 4, seed=11, tz="Europe/Madrid", name="offline-office")
    devices = plan_devices([site], protocol="http")
    t0 = (int(time.time() * 1000) // HOUR - 3) * HOUR
    provision(ApiRegistrar(api), devices, start_ms=t0)
    flash = [OfflineDevice(d, tmp_path / "flash" / d.uid, segment_bytes=8 * 1024) for d in devices]
    for dev in flash:
        assert dev.measure_until(t0 + HOUR) > 0
    assert len(list_segments(flash[0].log_dir)) > 3  # the log spans many segments

    phone_a = Collector(tmp_path / "phone-a", batch_readings=BATCH, retries=2, backoff_s=0.01)
    phone_b = Collector(tmp_path / "phone-b", batch_readings=3 * BATCH, retries=2, backoff_s=0.01)
    for d in devices:
        assert d.token
        phone_a.pair(d.uid, d.token)
        phone_b.pair(d.uid, d.token)

    # Both phones pass by and collect every log; collecting again adds nothing.
    for dev in flash:
        n = len(dev.log.read_all())
        assert phone_a.pull(dev).pulled == n
        assert phone_b.pull(dev).pulled == n
        assert phone_a.pull(dev).pulled == 0

    # Phone A goes online on a bad network: the answers to two batches get lost (the server
    # committed them; the retries find duplicates), then the network drops for good. Its
    # cursor only covers what the server confirmed.
    bad = FlakyNetwork(lose=frozenset({1, 3}), gone_after=6)
    with httpx.Client(base_url=srv.url, transport=bad, timeout=30) as net:
        first = phone_a.upload(net)
    assert not first.ok
    assert any(d.error and "no network" in d.error for d in first.devices)
    assert first.duplicates == 2 * BATCH  # the retried batches whose answers were lost

    # Phone B uploads everything, newest first: only what A did not get in is new.
    with httpx.Client(base_url=srv.url, timeout=30) as net:
        second = phone_b.upload(net, newest_first=True)
    assert second.ok
    # Phone A's network is back: it resumes from its cursor and the server has it all already.
    with httpx.Client(base_url=srv.url, timeout=30) as net:
        third = phone_a.upload(net)
    assert third.ok and third.accepted == 0
    everything = sum(len(taken(dev)) for dev in flash)
    # Every reading was accepted exactly once, two batches in requests whose answer was lost.
    assert first.accepted + second.accepted + 2 * BATCH == everything

    # Devices keep measuring; one loses power mid-write and reboots. The collectors pick up
    # only what is new; the torn record never existed as a reading.
    tear_tail(flash[0])
    before = len(flash[0].log.read_all())
    assert phone_a.pull(flash[0]).pulled == 0  # a torn tail is read up to the last whole record
    flash[0].reboot()
    assert len(flash[0].log.read_all()) == before
    for dev in flash:
        dev.measure_until(t0 + HOUR + 15 * 60_000)
        assert phone_a.pull(dev).lost == 0
        assert phone_b.pull(dev).lost == 0
    with httpx.Client(base_url=srv.url, timeout=30) as net:
        fourth = phone_b.upload(net, newest_first=True)
        fifth = phone_a.upload(net)
    assert fourth.ok and fifth.ok and fifth.accepted == 0
    everything_now = sum(len(taken(dev)) for dev in flash)
    assert fourth.accepted == everything_now - everything

    # The server holds exactly the readings each device took: none lost, none doubled.
    for dev, d in zip(flash, devices, strict=True):
        on_device = taken(dev)
        on_server = stored(api, d, t0 - HOUR, t0 + 4 * HOUR)
        assert len(on_server) == len(on_device)
        assert Counter(on_server) == Counter(on_device)
        # At the next contact the device learns that the server has it all ("synced").
        assert phone_a.pull(dev).pulled == 0
        assert dev.confirmed == dev.log.next_seq - 1
    api.close()
    for dev in flash:
        dev.close()
    bad.close()


def test_a_device_that_overflows_its_flash_reports_what_it_lost(tmp_path: Path) -> None:
    site = Site("home", 1, seed=2, name="tiny-flash")
    (dev,) = plan_devices([site])
    dev.next_ms = 1_700_000_000_000
    device = OfflineDevice(dev, tmp_path / "flash", segment_bytes=8 * 1024, max_bytes=32 * 1024)
    phone = Collector(tmp_path / "phone")
    phone.pair(dev.uid, "wwd_test")
    device.measure_until(dev.next_ms + 10 * 60_000)
    assert phone.pull(device).lost == 0
    device.measure_until(dev.next_ms + 24 * HOUR)  # far more than 32 KiB of readings
    report = phone.pull(device)
    assert report.lost > 0
    held = phone.held(dev.uid)
    assert held == device.log.next_seq - 1
    with pytest.raises(ValueError, match="not paired"):
        Collector(tmp_path / "other").pull(device)
    device.close()
