"""The CLI for scripting: every record command answers JSON with --json."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from wattwatch.cli import app

runner = CliRunner()


def test_user_site_device_with_json(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    r = runner.invoke(
        app,
        [
            "user",
            "add",
            "--email",
            "A@Example.com",
            "--role",
            "admin",
            "--password-stdin",
            "--json",
            *d,
        ],
        input="long-password-1\n",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["email"] == "a@example.com"
    r = runner.invoke(app, ["user", "add", "--email", "b@example.com", "--password", "short", *d])
    assert r.exit_code == 1 and "at least 10" in r.output
    r = runner.invoke(
        app,
        [
            "site",
            "add",
            "--name",
            "Shop",
            "--timezone",
            "Europe/Madrid",
            "--price-per-kwh",
            "0.2",
            "--json",
            *d,
        ],
    )
    site = json.loads(r.output)
    assert site["timezone"] == "Europe/Madrid"
    r = runner.invoke(
        app,
        [
            "device",
            "add",
            "--name",
            "Fridge plug",
            "--site",
            str(site["id"]),
            "--kind",
            "plug",
            "--protocol",
            "tasmota",
            "--topic",
            "fridge",
            "--json",
            *d,
        ],
    )
    dev = json.loads(r.output)
    assert dev["token"].startswith("wwd_")
    r = runner.invoke(app, ["device", "list", "--json", *d])
    assert [x["uid"] for x in json.loads(r.output)] == [dev["uid"]]
    r = runner.invoke(app, ["site", "add", "--name", "X", "--timezone", "Nowhere/City", *d])
    assert r.exit_code == 1 and "unknown timezone" in r.output
