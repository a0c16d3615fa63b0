"""Backups taken during ingest restore to the backup point; verify catches damage; retention."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pgdb import fresh_database
from tests.store.conftest import open_url
from tests.store.test_contract import make_device

from wattwatch.backup.maintenance import Maintenance
from wattwatch.backup.service import (
    MANIFEST,
    create_backup,
    list_backups,
    restore_backup,
    verify_backup,
)
from wattwatch.domain import Interval
from wattwatch.errors import Conflict, InvalidInput
from wattwatch.store.base import StoredRow
from wattwatch.store.sqlstore import SqlStore

HOUR = 3_600_000
T0 = 1_736_294_400_000  # 2025-01-08T00:00Z
# CI size; WATTWATCH_BACKUP_TEST_READINGS=1000000 for the full-size run.
READINGS = int(os.environ.get("WATTWATCH_BACKUP_TEST_READINGS", "100000"))
CHANNELS = 10
STEP_MS = 10_000
PER_BATCH = CHANNELS * HOUR // STEP_MS  # one hour of every channel per write


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(source URL, restore target URL) on one backend."""
    if request.param == "sqlite":
        yield (
            f"sqlite:///{tmp_path / 'src' / 'wattwatch.db'}",
            (f"sqlite:///{tmp_path / 'restored' / 'wattwatch.db'}"),
        )
        return
    with fresh_database() as src, fresh_database() as dst:
        yield src, dst


def hour_batch(chans: list[int], hour: int) -> list[StoredRow]:
    rows = []
    for ch in chans:
        e = 10_000_000 * ch + hour * 3_000_000
        for i in range(HOUR // STEP_MS):
            ts = T0 + hour * HOUR + i * STEP_MS
            p = 100_000 + (i * 7919 + ch * 104_729 + hour) % 2_900_000
            rows.append(StoredRow(ch, ts, p, e + i * 800, 230_000 + i % 500, p // 230, None))
    return rows


def snapshot(store: SqlStore, chans: list[int], end_ms: int) -> dict[str, object]:
    """What the API would answer about [T0, end_ms): raw readings and every rollup."""
    out: dict[str, object] = {"raw": store.query_raw(chans, T0, end_ms, 10**8)}
    for interval in (Interval.MINUTE, Interval.HOUR):
        out[interval.value] = store.query_rollup(chans, interval, T0, end_ms, 10**8)
    days = store.daily_energy(chans, 0, 2**62)
    out["1d"] = [d for d in days if d[0] + 24 * HOUR <= end_ms]
    return out


def test_backup_during_ingest_restores_to_the_backup_point(
    urls: tuple[str, str], tmp_path: Path
) -> None:
    src_url, dst_url = urls
    source = open_url(src_url)
    chans = make_device(source, channels=CHANNELS)
    hours = -(-READINGS // PER_BATCH)
    batches = [hour_batch(chans, h) for h in range(hours)]
    written = threading.Event()
    failures: list[BaseException] = []

    def ingest() -> None:
        try:
            for n, batch in enumerate(batches):
                assert source.write_readings(batch) == []
                if n == max(1, hours // 5):
                    written.set()
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
            written.set()

    writer = threading.Thread(target=ingest)
    started = time.perf_counter()
    writer.start()
    written.wait()
    backup = create_backup(source, tmp_path / "backups")
    backup_s = time.perf_counter() - started
    writer.join()
    ingest_s = time.perf_counter() - started
    assert not failures, failures
    total = hours * PER_BATCH
    assert source.count_readings() == total
    manifest = json.loads((backup / MANIFEST).read_text())
    in_backup = manifest["counts"]["readings"]
    print(
        f"\n{source.backend}: ingest {total:,} readings in {ingest_s:.1f} s; backup of "
        f"{in_backup:,} taken during it, done after {backup_s:.1f} s"
    )
    # The backup happened mid-ingest, and it holds whole write transactions.
    assert 0 < in_backup < total
    assert in_backup % PER_BATCH == 0
    cut_hours = in_backup // PER_BATCH
    cut = T0 + cut_hours * HOUR

    check = verify_backup(backup)
    assert check.ok, check.problems
    counts = restore_backup(backup, dst_url)
    assert counts["readings"] == in_backup
    restored = open_url(dst_url)
    try:
        assert restored.count_readings() == in_backup
        assert snapshot(restored, chans, cut) == snapshot(source, chans, cut)
        # The restored store carries on where the backup stopped: the rest of the stream
        # gives exactly the source's final state.
        for batch in batches[cut_hours:]:
            assert restored.write_readings(batch) == []
        end = T0 + hours * HOUR
        assert snapshot(restored, chans, end) == snapshot(source, chans, end)
    finally:
        restored.close()
        source.close()


def _small_store(url: str) -> SqlStore:
    store = open_url(url)
    chans = make_device(store, channels=2)
    store.write_readings(hour_batch(chans, 0))  # 720 readings
    return store


def test_verify_detects_a_corrupted_backup(urls: tuple[str, str], tmp_path: Path) -> None:
    store = _small_store(urls[0])
    try:
        backup = create_backup(store, tmp_path / "b")
    finally:
        store.close()
    assert verify_backup(backup).ok
    files = sorted(p.name for p in backup.iterdir())
    assert len(files) == 2, files  # the data file and the manifest, nothing beside them
    data = next(p for p in backup.iterdir() if p.name != MANIFEST)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    found = verify_backup(backup)
    assert not found.ok
    assert "SHA-256" in found.problems[0]
    with pytest.raises(InvalidInput, match="failed verification"):
        restore_backup(backup, urls[1])


def test_verify_checks_sqlite_integrity_and_counts(tmp_path: Path) -> None:
    store = _small_store(f"sqlite:///{tmp_path / 'd' / 'wattwatch.db'}")
    try:
        backup = create_backup(store, tmp_path / "b")
    finally:
        store.close()
    manifest = json.loads((backup / MANIFEST).read_text())
    manifest["counts"]["readings"] += 1  # a backup that lost a row on the way
    (backup / MANIFEST).write_text(json.dumps(manifest))
    found = verify_backup(backup)
    assert found.problems == ["readings: 720 rows, the manifest says 721"]


def test_restore_refuses_to_overwrite(urls: tuple[str, str], tmp_path: Path) -> None:
    store = _small_store(urls[0])
    try:
        backup = create_backup(store, tmp_path / "b")
    finally:
        store.close()
    restore_backup(backup, urls[1])
    with pytest.raises(Conflict):
        restore_backup(backup, urls[1])
    assert restore_backup(backup, urls[1], force=True)["readings"] == 720
    again = open_url(urls[1])
    try:
        assert again.count_readings() == 720
    finally:
        again.close()


def test_scheduled_backups_keep_the_newest_n(tmp_path: Path) -> None:
    store = _small_store(f"sqlite:///{tmp_path / 'd' / 'wattwatch.db'}")
    try:
        upkeep = Maintenance(
            store,
            retention_raw_days=None,
            backup_dir=tmp_path / "b",
            backup_interval_s=3600,
            backup_keep=2,
        )
        last: dict[str, float] = {}
        now = time.time()
        upkeep.run_due(now, last)
        upkeep.run_due(now + 60, last)  # not due yet
        assert len(list_backups(tmp_path / "b")) == 1
        for k in range(1, 4):
            upkeep.run_due(now + k * 3600, last)
        kept = list_backups(tmp_path / "b")
        assert len(kept) == 2
        assert all(verify_backup(p).ok for p in kept)
        # A restarted server counts from the newest backup on disk: nothing due now.
        upkeep.run_due(time.time(), {})
        assert list_backups(tmp_path / "b") == kept
    finally:
        store.close()


def test_serving_applies_retention_hourly(tmp_path: Path) -> None:
    store = _small_store(f"sqlite:///{tmp_path / 'd' / 'wattwatch.db'}")  # January 2025
    try:
        upkeep = Maintenance(
            store, retention_raw_days=30, backup_dir=None, backup_interval_s=3600, backup_keep=1
        )
        days_before = store.daily_energy(list(range(1, 3)), 0, 2**62)
        last: dict[str, float] = {}
        upkeep.run_due(time.time(), last)
        assert store.count_readings() == 0
        assert store.daily_energy(list(range(1, 3)), 0, 2**62) == days_before
        chans = make_device(store, channels=1)
        store.write_readings(hour_batch(chans, 0))
        upkeep.run_due(time.time() + 60, last)  # not due again within the hour
        assert store.count_readings() == 360
    finally:
        store.close()
