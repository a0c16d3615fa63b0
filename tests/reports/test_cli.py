"""``wattwatch report``: a PDF file, JSON on stdout, CSV tables, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reports.conftest import Month, data_dir_of
from typer.testing import CliRunner

from wattwatch.cli import app

runner = CliRunner()


def test_report_command(month: Month, tmp_path: Path) -> None:
    data = str(data_dir_of(month.ww))
    site = str(month.site["id"])
    out = tmp_path / "october.pdf"
    args = ["report", "--site", site, "--period", "month", "--start", "2026-10-01"]
    r = runner.invoke(app, [*args, "--format", "pdf", "-o", str(out), "--data-dir", data])
    assert r.exit_code == 0, r.output
    assert out.read_bytes().startswith(b"%PDF")
    r = runner.invoke(app, [*args, "--json", "--data-dir", data])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["report"]["scope"]["name"] == "Sim office"
    assert report["daily"][24]["hours"] == 25
    r = runner.invoke(app, [*args, "--format", "csv", "--table", "daily", "--data-dir", data])
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("date,hours,energy_kwh")
    fridge = next(d for d in month.devices if d.name == "Fridge")
    r = runner.invoke(
        app,
        [
            "report",
            "--device",
            str(fridge.device_id),
            "--period",
            "week",
            "--start",
            "2026-10-19",
            "--json",
            "--data-dir",
            data,
        ],
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["summary"]["energy_kwh"] > 0


def test_report_command_errors(month: Month) -> None:
    data = str(data_dir_of(month.ww))
    r = runner.invoke(app, ["report", "--period", "month", "--data-dir", data])
    assert r.exit_code == 1 and "exactly one site, area or device" in r.output
    r = runner.invoke(app, ["report", "--site", "99999", "--data-dir", data])
    assert r.exit_code == 1 and "site not found" in r.output
    r = runner.invoke(
        app, ["report", "--site", str(month.site["id"]), "--start", "soon", "--data-dir", data]
    )
    assert r.exit_code != 0 and "2026-10-01" in r.output
