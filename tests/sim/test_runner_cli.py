"""``wattwatch simulate`` into a local store: history written in-process, idempotent reruns."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from wattwatch.app import Wattwatch
from wattwatch.cli import app
from wattwatch.config import Settings

runner = CliRunner()


def test_simulate_into_a_data_dir_twice(tmp_path: Path) -> None:
    args = ["simulate", "--site-type", "home", "--devices", "3", "--seed", "4"]
    args += ["--backfill-days", "0.25", "--step", "30", "--data-dir", str(tmp_path), "--json"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["devices"] == {"created": 3, "reused": 0, "resumed": 0}
    written = first["backfill"]["readings"]
    assert 3 * 720 - 12 <= written <= 3 * 720  # 6 h at 30 s of 3 devices (less a power cut)
    assert first["backfill"]["duplicates"] == 0

    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    second = json.loads(r.stdout)
    assert second["devices"] == {"created": 0, "reused": 3, "resumed": 3}
    assert second["backfill"]["readings"] <= 3 * 2 and second["backfill"]["duplicates"] == 0

    ww = Wattwatch.open(Settings(data_dir=tmp_path), lock=False)
    try:
        assert ww.store.count_readings() == written + second["backfill"]["readings"]
        devices = ww.registry.db.list_devices(ww.registry.db.first_org_id() or 0)
        assert sorted(d["uid"] for d in devices) == [
            "sim-home-4-monitor",
            "sim-home-4-plug01",
            "sim-home-4-plug02",
        ]
        # The CT monitor is the home's supply; the plugs behind it are sub-meters.
        for d in devices:
            (ch,) = ww.registry.db.list_channels(d["id"])
            assert ch["submeter"] == (d["kind"] == "plug")
            assert (ch["appliance"] is not None) == (d["kind"] == "plug")
    finally:
        ww.close()


def test_simulate_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    r = runner.invoke(app, ["simulate", "--data-dir", str(tmp_path)])
    assert r.exit_code == 1 and "--backfill-days" in r.output
    r = runner.invoke(app, ["simulate", "--protocol", "zigbee", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "--protocol" in r.output
    r = runner.invoke(app, ["simulate", "--url", "http://127.0.0.1:9"])
    assert r.exit_code == 2 and "--email" in r.output
    r = runner.invoke(
        app, ["simulate", "--url", "http://127.0.0.1:9", "--email", "a@b.c", "--password", "x"]
    )
    assert r.exit_code == 1 and "cannot reach" in r.output


def test_ports_fall_back_to_free_ones() -> None:
    import socket

    from wattwatch.sim.runner import free_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        other = free_port("127.0.0.1", taken)
        assert other != taken and other > 0
    assert free_port("127.0.0.1", other) == other  # free again: the preferred port is kept
