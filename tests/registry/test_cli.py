"""The CLI for areas, inventory, claims, command audit, schedules and roles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from wattwatch.cli import app

runner = CliRunner()


def cli(tmp_path: Path, *args: str, code: int = 0) -> Any:
    r = runner.invoke(app, [*args, "--data-dir", str(tmp_path)])
    assert r.exit_code == code, r.output
    return r


def test_areas_inventory_claims_schedules(tmp_path: Path) -> None:
    site = json.loads(cli(tmp_path, "site", "add", "--name", "Office", "--json").stdout)
    sid = str(site["id"])
    floor = json.loads(
        cli(tmp_path, "area", "add", "--site", sid, "--name", "Floor 2", "--json").stdout
    )
    room = json.loads(
        cli(
            tmp_path,
            "area",
            "add",
            "--site",
            sid,
            "--name",
            "Print room",
            "--parent",
            str(floor["id"]),
            "--json",
        ).stdout
    )
    assert room["path"] == "Floor 2/Print room"
    listed = json.loads(cli(tmp_path, "area", "list", "--site", sid, "--json").stdout)
    assert [a["path"] for a in listed] == ["Floor 2", "Floor 2/Print room"]

    inventory = tmp_path / "plugs.csv"
    inventory.write_text(
        "uid,name,kind,protocol,topic,site,area,channels\n"
        "p-1,Printer 1,plug,tasmota,printer1,Office,Floor 2/Print room,mains:printer\n"
        "p-2,Printer 2,plug,tasmota,printer2,Office,Floor 2/Print room,mains:printer\n"
    )
    first = json.loads(cli(tmp_path, "device", "import", str(inventory), "--json").stdout)
    assert first["created"] == 2 and len(first["tokens"]) == 2
    again = json.loads(cli(tmp_path, "device", "import", str(inventory), "--json").stdout)
    assert again["unchanged"] == 2 and again["tokens"] == []
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,name,kind\np-9,Nine,toaster\n")
    r = cli(tmp_path, "device", "import", str(bad), code=1)
    assert "row 2" in r.output and "kind must be one of" in r.output
    exported = yaml.safe_load(cli(tmp_path, "device", "export", "--format", "yaml").stdout)
    assert [d["uid"] for d in exported["devices"]] == ["p-1", "p-2"]
    assert exported["devices"][0]["area"] == "Floor 2/Print room"

    made = json.loads(
        cli(tmp_path, "device", "preregister", "--name", "Kettle", "--uid", "k-1", "--json").stdout
    )
    claimed = json.loads(
        cli(tmp_path, "device", "claim", made["claim_code"], "--site", sid, "--json").stdout
    )
    assert claimed["uid"] == "k-1" and claimed["site_id"] == site["id"]
    cli(tmp_path, "device", "claim", made["claim_code"], "--site", sid, code=1)

    sched = json.loads(
        cli(
            tmp_path,
            "schedule",
            "add",
            "--name",
            "Printers off",
            "--area",
            str(floor["id"]),
            "--appliance",
            "printer",
            "--event",
            "off@19:00/mon-fri",
            "--event",
            "on@0 7 * * 1-5",
            "--json",
        ).stdout
    )
    assert sched["events"][0]["cron"] == "0 19 * * 1,2,3,4,5"
    assert sched["events"][1] == {"action": "on", "cron": "0 7 * * 1-5"}
    assert sched["timezone"] == "UTC"
    rows = json.loads(cli(tmp_path, "schedule", "list", "--json").stdout)
    assert rows[0]["name"] == "Printers off" and rows[0]["next_run"]
    assert json.loads(cli(tmp_path, "schedule", "runs", str(sched["id"]), "--json").stdout) == []
    cli(tmp_path, "schedule", "add", "--name", "x", "--site", sid, "--event", "dim@19:00", code=2)
    cli(tmp_path, "schedule", "delete", str(sched["id"]))
    assert json.loads(cli(tmp_path, "schedule", "list", "--json").stdout) == []

    assert json.loads(cli(tmp_path, "device", "commands", "1", "--json").stdout) == []
    r = cli(tmp_path, "device", "command", "1", "on", code=2)
    assert "--server" in r.output


def test_user_roles_keep_an_owner(tmp_path: Path) -> None:
    runner.invoke(
        app,
        [
            "user",
            "add",
            "--email",
            "boss@example.com",
            "--role",
            "owner",
            "--password-stdin",
            "--data-dir",
            str(tmp_path),
        ],
        input="long-password-1\n",
    )
    r = cli(tmp_path, "user", "role", "boss@example.com", "admin", code=1)
    assert "at least one owner" in r.output
    runner.invoke(
        app,
        [
            "user",
            "add",
            "--email",
            "v@example.com",
            "--password-stdin",
            "--data-dir",
            str(tmp_path),
        ],
        input="long-password-2\n",
    )
    changed = json.loads(cli(tmp_path, "user", "role", "v@example.com", "owner", "--json").stdout)
    assert changed["role"] == "owner"
    assert (
        json.loads(cli(tmp_path, "user", "role", "boss@example.com", "viewer", "--json").stdout)[
            "role"
        ]
        == "viewer"
    )


def test_updates_and_deletes(tmp_path: Path) -> None:
    site = json.loads(cli(tmp_path, "site", "add", "--name", "Bar", "--json").stdout)
    sid = str(site["id"])
    tou = json.dumps(
        {
            "price_per_kwh": 0.15,
            "periods": [{"start": "08:00", "end": "22:00", "price_per_kwh": 0.3}],
        }
    )
    changed = json.loads(
        cli(tmp_path, "site", "update", sid, "--timezone", "Europe/Madrid", "--tariff", tou,
            "--address", "Calle 1", "--json").stdout
    )  # fmt: skip
    assert changed["tariff"]["periods"][0]["price_per_kwh"] == 0.3
    assert changed["timezone"] == "Europe/Madrid" and changed["address"] == "Calle 1"
    r = cli(tmp_path, "site", "update", sid, "--tariff", '{"price_per_kwh": -1}', code=2)
    assert "tariff" in r.output
    a = json.loads(cli(tmp_path, "area", "add", "--site", sid, "--name", "Bar", "--json").stdout)
    b = json.loads(cli(tmp_path, "area", "add", "--site", sid, "--name", "Shelf", "--json").stdout)
    moved = json.loads(
        cli(tmp_path, "area", "update", str(b["id"]), "--parent", str(a["id"]), "--json").stdout
    )
    assert moved["path"] == "Bar/Shelf"
    top = json.loads(cli(tmp_path, "area", "update", str(b["id"]), "--top", "--json").stdout)
    assert top["path"] == "Shelf"
    dev = json.loads(
        cli(tmp_path, "device", "add", "--name", "Fridge", "--kind", "plug", "--json").stdout
    )
    did = str(dev["id"])
    got = json.loads(
        cli(tmp_path, "device", "update", did, "--area", str(a["id"]), "--identifier",
            "serial=SN-9", "--location", "shelf=2", "--json").stdout
    )  # fmt: skip
    assert got["site_id"] == site["id"] and got["area_id"] == a["id"]
    assert got["identifiers"] == {"serial": "SN-9"} and got["location"] == {"shelf": "2"}
    channel = json.loads(
        cli(tmp_path, "device", "channel", did, "mains", "--appliance", "Fridge", "--submeter",
            "--json").stdout
    )  # fmt: skip
    assert channel["appliance"] == "Fridge" and channel["submeter"] is True
    cli(tmp_path, "device", "update", did, "--kind", "toaster", code=2)
    cli(tmp_path, "device", "delete", did)
    assert json.loads(cli(tmp_path, "device", "list", "--json").stdout) == []
    cli(tmp_path, "site", "delete", sid)
    assert json.loads(cli(tmp_path, "site", "list", "--json").stdout) == []
