"""The backup, restore, verify, migrate and retention commands, end to end on real stores."""

from __future__ import annotations

import json
from pathlib import Path

from tests.store.conftest import open_url
from tests.store.test_contract import DAY, T0, make_device, series
from typer.testing import CliRunner

from wattwatch.cli import app
from wattwatch.domain import Interval
from wattwatch.store.sqlstore import SqlStore

runner = CliRunner()


def _filled(url: str) -> tuple[SqlStore, list[int]]:
    store = open_url(url)
    chans = make_device(store, channels=2)
    for ch in chans:
        store.write_readings(series(ch, 3000, step=30_000))
    return store, chans


def test_backup_create_verify_restore_with_keep(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store, chans = _filled(f"sqlite:///{data / 'wattwatch.db'}")
    store.close()
    made = []
    for _ in range(3):
        r = runner.invoke(
            app,
            ["backup", "create", "--dir", str(tmp_path / "b"), "--keep", "2", "--json"],
            env={"WATTWATCH_DATA_DIR": str(data)},
        )
        assert r.exit_code == 0, r.output
        made.append(json.loads(r.output))
    assert made[-1]["readings"] == 6000
    listed = runner.invoke(app, ["backup", "list", "--dir", str(tmp_path / "b"), "--json"])
    paths = [b["path"] for b in json.loads(listed.output)]
    assert paths == [made[1]["path"], made[2]["path"]]  # the oldest was pruned

    r = runner.invoke(app, ["backup", "verify", paths[-1], "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["ok"] is True, r.output
    r = runner.invoke(
        app, ["backup", "restore", paths[-1], "--data-dir", str(tmp_path / "new"), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["readings"] == 6000
    r = runner.invoke(app, ["backup", "restore", paths[-1], "--data-dir", str(tmp_path / "new")])
    assert r.exit_code == 1 and "--force" in r.output
    restored = open_url(f"sqlite:///{tmp_path / 'new' / 'wattwatch.db'}")
    try:
        assert restored.query_rollup(chans, Interval.HOUR, 0, 2**62, 10**6)
        assert len(restored.query_raw(chans, 0, 2**62, 10**6)) == 6000
    finally:
        restored.close()

    db = Path(paths[0]) / "wattwatch.db"
    raw = bytearray(db.read_bytes())
    raw[100] ^= 0x01
    db.write_bytes(bytes(raw))
    r = runner.invoke(app, ["backup", "verify", paths[0]])
    assert r.exit_code == 1 and "SHA-256" in r.output


def test_migrate_sqlite_to_postgresql_and_back(tmp_path: Path, pg_url: str) -> None:
    src_url = f"sqlite:///{tmp_path / 'data' / 'wattwatch.db'}"
    source, chans = _filled(src_url)
    source.registry.create_user("a@example.com", "hash-of-a-password", 1, "owner")
    want_raw = source.query_raw(chans, 0, 2**62, 10**6)
    want = {
        i: source.query_rollup(chans, i, 0, 2**62, 10**6)
        for i in Interval
        if i.value in ("1m", "1h", "1d")
    }
    source.close()

    r = runner.invoke(app, ["migrate", "--from", src_url, "--to", pg_url, "--json"])
    assert r.exit_code == 0, r.output
    copied = json.loads(r.output)
    assert copied["readings"] == 6000 and copied["users"] == 1

    pg = open_url(pg_url)
    try:
        assert pg.query_raw(chans, 0, 2**62, 10**6) == want_raw
        for interval, rows in want.items():
            assert pg.query_rollup(chans, interval, 0, 2**62, 10**6) == rows
        user = pg.registry.user_by_email("a@example.com")
        assert user is not None and user["password_hash"] == "hash-of-a-password"
        # Ids go on after the copied ones, and ingest extends the copied series.
        new_chans = make_device(pg, channels=1)
        assert new_chans[0] > max(chans)
        more = series(chans[0], 3100, step=30_000)
        assert pg.write_readings(more) == list(range(3000))
    finally:
        pg.close()

    # A second migration into a store that is in use is refused.
    r = runner.invoke(app, ["migrate", "--from", src_url, "--to", pg_url])
    assert r.exit_code == 1 and "already" in r.output

    back = f"sqlite:///{tmp_path / 'back' / 'wattwatch.db'}"
    (tmp_path / "back").mkdir()
    r = runner.invoke(app, ["migrate", "--from", pg_url, "--to", back, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["readings"] == 6100


def test_retention_apply_keeps_rollups(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store, chans = _filled(f"sqlite:///{data / 'wattwatch.db'}")  # January 2025: long ago
    hours = store.query_rollup(chans, Interval.HOUR, 0, 2**62, 10**6)
    store.close()
    r = runner.invoke(app, ["retention", "apply", "--data-dir", str(data)])
    assert r.exit_code == 2 and "--days" in r.output
    r = runner.invoke(
        app, ["retention", "apply", "--days", "30", "--data-dir", str(data), "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["dropped_readings"] == 6000
    after = open_url(f"sqlite:///{data / 'wattwatch.db'}")
    try:
        assert after.count_readings() == 0
        assert after.query_rollup(chans, Interval.HOUR, 0, 2**62, 10**6) == hours
        assert after.query_raw(chans, T0, T0 + DAY, 10) == []
    finally:
        after.close()
