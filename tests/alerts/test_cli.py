"""The ``wattwatch alert`` commands: rules add/list, alerts list/ack, on a real data dir."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from wattwatch.app import Wattwatch
from wattwatch.cli import app
from wattwatch.config import Settings
from wattwatch.domain import Reading, now_ms


def test_alert_commands(tmp_path: Path) -> None:
    cli = CliRunner()
    where = ["--data-dir", str(tmp_path / "data")]
    (tmp_path / "data").mkdir()

    def run(*args: str, code: int = 0) -> str:
        result = cli.invoke(app, [*args, *where])
        assert result.exit_code == code, result.output
        return result.output

    device = json.loads(run("device", "add", "--name", "heater", "--json"))
    out = run(
        "alert", "rules", "add", "--name", "heater left on", "--kind", "threshold",
        "--device", str(device["id"]), "--set", "value=2000", "--set", "for_s=0",
        "--severity", "major", "--notify", '[{"email": "ops@example.com"}]', "--json",
    )  # fmt: skip
    rule = json.loads(out)
    assert rule["value"] == 2000 and rule["notify"] == [
        {"kind": "email", "to": ["ops@example.com"]}
    ]
    assert "value: Input should be a valid number" in run(
        "alert", "rules", "add", "--name", "x", "--kind", "threshold", "--device", "1",
        "--set", "value=lots", code=2,
    )  # fmt: skip
    assert "use KEY=VALUE" in run(
        "alert", "rules", "add", "--name", "x", "--kind", "offline", "--device", "1",
        "--set", "after_s", code=2,
    )  # fmt: skip
    (listed,) = json.loads(run("alert", "rules", "list", "--json"))
    assert listed["id"] == rule["id"]

    ww = Wattwatch.open(Settings(data_dir=tmp_path / "data"), lock=True)

    async def ingest() -> None:
        await ww.start()
        try:
            record = ww.registry.db.device_by(id=device["id"])
            await ww.pipeline.ingest(record, [Reading({"power_w": 2500.0}, now_ms() - 1000)])
            assert ww.alerts is not None
            await ww.alerts.engine.drain()
        finally:
            await ww.stop()

    try:
        asyncio.run(ingest())
    finally:
        ww.close()
    (alert,) = json.loads(run("alert", "list", "--state", "active", "--json"))
    assert alert["severity"] == "major" and alert["rule_id"] == rule["id"]
    acked = json.loads(run("alert", "ack", str(alert["id"]), "--json"))
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "cli"
    assert "major" in run("alert", "list")  # the table (narrow terminal: short words only)
    assert "not found" in run("alert", "ack", "999", code=1)
