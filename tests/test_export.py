"""Data for ML: wide views read by pandas, a read-only analyst role, CSV/Parquet exports."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine
from tests.store.conftest import open_url
from tests.store.test_contract import DAY, T0, make_device, series
from typer.testing import CliRunner

from wattwatch.cli import app
from wattwatch.export import create_analyst_role, create_device_view, create_site_view
from wattwatch.store.base import StoredRow
from wattwatch.store.sqlstore import SqlStore


def _device_id(store: SqlStore, ch: int) -> int:
    with store.read_engine.connect() as conn:
        return int(
            conn.exec_driver_sql(f"SELECT device_id FROM channels WHERE id = {ch}").scalar_one()
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_wide_view_reads_into_pandas(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store_url = (
        f"sqlite:///{tmp_path / 'd' / 'wattwatch.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    store = open_url(store_url)
    try:
        chans = make_device(store, channels=2)  # channels c0, c1
        rows = series(chans[0], 50) + series(chans[1], 50)[:40]
        store.write_readings(rows)
        dev = _device_id(store, chans[0])
        name = create_device_view(store, dev)
        assert name == f"wide_device_{dev}"
        url = store_url if store_url.startswith("sqlite") else store.engine.url
        engine = create_engine(url)
        try:
            df = pd.read_sql_table(name, engine).sort_values("ts").reset_index(drop=True)
        finally:
            engine.dispose()
        assert list(df.columns) == ["ts", *(f"c{i}_{m}" for i in (0, 1) for m in "vape")]
        assert len(df) == 50
        first = rows[0]
        assert df.loc[0, "c0_p"] == first.power_mw / 1000  # type: ignore[operator]
        assert df.loc[0, "c0_e"] == first.energy_mwh / 1000  # type: ignore[operator]
        assert df.loc[0, "c0_v"] == 230.0
        assert df["c1_p"].isna().sum() == 10  # c1 sent 40 of the 50 timestamps
        device = store.registry.list_devices(1)[0]
        site_view = create_site_view(store, 1, device["site_id"])
        with store.read_engine.connect() as conn:
            cols = list(conn.exec_driver_sql(f"SELECT * FROM {site_view} LIMIT 1").keys())
        assert cols == ["ts", *(f"d{dev}_c{i}_{m}" for i in (0, 1) for m in "vape")]
    finally:
        store.close()


def test_analyst_role_reads_but_cannot_write_or_see_secrets(pg_url: str) -> None:
    import psycopg

    store = open_url(pg_url)
    role = f"analyst_{Path(pg_url).name[-8:]}"
    try:
        chans = make_device(store, channels=1)
        store.write_readings(series(chans[0], 20))
        view = create_device_view(store, _device_id(store, chans[0]))
        create_analyst_role(store, role, "a-long-password")
        as_analyst = pg_url.replace("postgres@", f"{role}:a-long-password@")
        with psycopg.connect(as_analyst, autocommit=True) as conn:
            assert conn.execute(f"SELECT count(*) FROM {view}").fetchone() == (20,)
            assert conn.execute("SELECT count(*) FROM readings").fetchone() == (20,)
            assert conn.execute("SELECT count(uid) FROM devices").fetchone() == (1,)
            for denied in (
                "SELECT token_hash FROM devices",
                "SELECT * FROM users",
                "SELECT * FROM auth_tokens",
                "DELETE FROM readings",
            ):
                with pytest.raises(psycopg.Error):
                    conn.execute(denied)
    finally:
        store.close()
        with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(f"DROP ROLE IF EXISTS {role}")


def test_analyst_role_is_refused_on_sqlite(tmp_path: Path) -> None:
    from wattwatch.errors import InvalidInput

    store = open_url(f"sqlite:///{tmp_path / 'd' / 'wattwatch.db'}")
    try:
        with pytest.raises(InvalidInput, match="PostgreSQL"):
            create_analyst_role(store, "analyst", "a-long-password")
    finally:
        store.close()


def _fill_api_device(client: Any) -> tuple[int, list[dict[str, Any]]]:
    created = client.post("/api/v1/devices", json={"name": "meter"}).json()
    ww = client.app.state.ww
    ch = ww.registry.db.channel_ids_of(created["id"])["mains"]
    rows = [r._replace(extra='{"frequency_hz": 50.01}') for r in series(ch, 1200)]
    rows[3] = StoredRow(ch, rows[3].ts_ms, None, None, 229_000, None, None)
    ww.store.write_readings(rows)
    raw = client.get(
        f"/api/v1/devices/{created['id']}/readings", params={"from": T0, "to": T0 + DAY}
    ).json()["points"]
    return created["id"], raw


def test_api_readings_as_csv_and_parquet(client: Any) -> None:
    dev, points = _fill_api_device(client)
    url = f"/api/v1/devices/{dev}/readings"
    r = client.get(url, params={"from": T0, "to": T0 + DAY, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert len(table) == len(points) == 1200
    assert float(table[0]["power_w"]) == points[0]["power_w"]
    assert table[3]["power_w"] == "" and float(table[3]["voltage_v"]) == 229.0
    assert float(table[0]["frequency_hz"]) == 50.01

    r = client.get(url, params={"from": T0, "to": T0 + DAY, "format": "parquet"})
    assert r.status_code == 200
    pt = pq.read_table(io.BytesIO(r.content)).to_pylist()
    assert [p["ts"] for p in pt] == [p["ts"] for p in points]
    assert pt[0]["power_w"] == points[0]["power_w"] and pt[3]["power_w"] is None

    r = client.get(url, params={"from": T0, "to": T0 + DAY, "interval": "1h", "format": "csv"})
    hours = list(csv.DictReader(io.StringIO(r.text)))
    assert sum(int(h["count"]) for h in hours) == 1200
    r = client.get(url, params={"format": "xlsx"})
    assert r.status_code == 422


def test_parquet_without_pyarrow_is_a_clear_4xx(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev, _ = _fill_api_device(client)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    r = client.get(
        f"/api/v1/devices/{dev}/readings", params={"from": T0, "to": T0 + DAY, "format": "parquet"}
    )
    assert r.status_code == 422
    assert "pip install 'wattwatch[parquet]'" in r.json()["error"]["message"]


def test_cli_export_to_parquet_and_csv(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    store = open_url(f"sqlite:///{data / 'wattwatch.db'}")
    try:
        chans = make_device(store, channels=2)
        for ch in chans:
            store.write_readings(series(ch, 5000, step=5000))
        dev = _device_id(store, chans[0])
    finally:
        store.close()
    common = [
        "--device",
        str(dev),
        "--from",
        str(T0 - DAY),  # the local (Madrid) day starts an hour before T0
        "--to",
        str(T0 + DAY),
        "--data-dir",
        str(data),
    ]
    r = runner.invoke(app, ["export", "readings", "-o", str(tmp_path / "r.parquet"), *common])
    assert r.exit_code == 0, r.output
    assert "10,000 rows" in r.output
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 10_000
    r = runner.invoke(
        app,
        ["export", "readings", "-o", str(tmp_path / "d.csv"), "--interval", "1d", *common],
    )
    assert r.exit_code == 0, r.output
    with (tmp_path / "d.csv").open() as f:
        days = list(csv.DictReader(f))
    assert sum(int(d["count"]) for d in days) == 10_000
    r = runner.invoke(app, ["export", "view", "--device", str(dev), "--data-dir", str(data)])
    assert r.exit_code == 0 and f"wide_device_{dev}" in r.output
