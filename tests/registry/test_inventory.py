"""Bulk inventory: a site of 200 plugs from CSV, checked row by row, idempotent by uid;
YAML and CSV export read back unchanged."""

from __future__ import annotations

import csv
import io
from typing import Any

import yaml
from tests.registry.accounts import account, bearer
from tests.registry.conftest import Org

HEADER = (
    "uid,name,kind,protocol,topic,site,area,model,serial,mac,asset_tag,location,channels,submeter"
)


def plugs_csv(n: int) -> str:
    lines = [HEADER]
    for i in range(n):
        floor = 1 + i % 4
        lines.append(
            f"plug-{i:03d},Desk {i},plug,tasmota,desk{i:03d},Head office,"
            f"Floor {floor}/Zone {i % 3},"
            f"Nous A1T,SN{i:05d},AA:BB:CC:00:{i // 256:02X}:{i % 256:02X},AT-{i},desk {i},"
            f"mains:{'Printer' if i % 10 == 0 else 'Workplace'},true"
        )
    return "\n".join(lines) + "\n"


def post(org: Org, body: str, fmt: str = "csv", **params: Any) -> Any:
    return org.api.post(
        "/api/v1/devices/import",
        content=body.encode(),
        params={"format": fmt, **params},
        headers={"Content-Type": "text/csv" if fmt == "csv" else "application/yaml"},
    )


def test_two_hundred_plugs_from_csv_idempotent(org: Org) -> None:
    org.api.post("/api/v1/sites", json={"name": "Head office", "timezone": "Europe/Madrid"})
    body = plugs_csv(200)
    dry = post(org, body, dry_run="true")
    assert dry.status_code == 200, dry.text
    assert dry.json()["created"] == 200 and dry.json()["tokens"] == []
    assert org.api.get("/api/v1/devices").json() == []  # a dry run changes nothing

    r = post(org, body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["created"], result["updated"], result["unchanged"]) == (200, 0, 0)
    assert len(result["tokens"]) == 200 and result["tokens"][0]["token"].startswith("wwd_")
    assert len(result["areas_created"]) == 4 + 12  # 4 floors, 3 zones on each
    devices = org.api.get("/api/v1/devices").json()
    assert len(devices) == 200
    d7 = next(d for d in devices if d["uid"] == "plug-007")
    assert d7["identifiers"] == {
        "serial": "SN00007",
        "mac": "AA:BB:CC:00:00:07",
        "asset_tag": "AT-7",
    }
    assert d7["location"] == {"description": "desk 7"} and d7["topic"] == "desk007"
    area = org.api.get(f"/api/v1/areas/{d7['area_id']}").json()
    assert area["path"] == "Floor 4/Zone 1"
    channel = org.api.get(f"/api/v1/devices/{d7['id']}").json()["channels"][0]
    assert channel["appliance"] == "Workplace" and channel["submeter"] is True

    # The same file again: nothing changes, no new tokens.
    again = post(org, body).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 200)
    assert again["tokens"] == [] and again["areas_created"] == []
    # One row edited: one update, reported with what changed.
    edited = body.replace("plug-007,Desk 7,", "plug-007,Desk 7 (window),")
    result = post(org, edited).json()
    assert (result["created"], result["updated"]) == (0, 1)
    row = next(r for r in result["rows"] if r["uid"] == "plug-007")
    assert row["action"] == "updated" and row["changes"] == ["name"]


def test_bad_rows_are_all_reported_and_nothing_is_applied(org: Org) -> None:
    org.api.post("/api/v1/sites", json={"name": "Head office"})
    _, other = account(org.ww, "owner@b.example")
    theirs = org.api.post(
        "/api/v1/devices", json={"name": "Theirs", "uid": "their-plug"}, headers=bearer(other)
    )
    assert theirs.status_code == 201
    body = "\n".join(
        [
            "uid,name,kind,protocol,topic,site,area,channels,submeter",
            "ok-1,Fine,plug,tasmota,ok1,Head office,Floor 1,mains,",
            "bad-2,Toaster,toaster,native,,Head office,,,",
            ",No uid,plug,native,,,,,",
            "bad-4,,plug,native,,,,,",
            "ok-1,Again,plug,native,,,,,",
            "bad-6,Nowhere,plug,native,,Moon base,,,",
            "their-plug,Mine now,plug,native,,,,,",
            "bad-8,Slash,plug,tasmota,a/b,,,,",
            "bad-9,Same topic,plug,tasmota,ok1,,,,",
            "bad-10,Flag,plug,native,,,,,maybe",
        ]
    )
    r = post(org, body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_input" and "nothing was" in error["message"]
    problems = {p["where"]: p["message"] for p in error["rows"]}
    assert set(problems) == {f"row {n}" for n in (3, 4, 5, 6, 7, 8, 9, 10, 11)}
    assert "kind must be one of" in problems["row 3"]
    assert "uid is required" in problems["row 4"]
    assert "name is required" in problems["row 5"]
    assert "repeated (first at row 2)" in problems["row 6"]
    assert "no site 'Moon base'" in problems["row 7"]
    assert "another organisation" in problems["row 8"]
    assert "topic" in problems["row 9"]
    assert "repeated" in problems["row 10"]
    assert "true or false" in problems["row 11"]
    assert org.api.get("/api/v1/devices").json() == []
    assert org.api.get(f"/api/v1/sites/{1}/areas").json() == []
    # Not a CSV with a uid column, not YAML, bad format: clear 422s.
    assert post(org, "name\nx\n").status_code == 422
    assert post(org, "devices: [", "yaml").status_code == 422
    assert (
        post(org, "uid,colour\nx,red\n")
        .json()["error"]["rows"][0]["message"]
        .startswith("unknown column")
    )


def test_export_reads_back_unchanged_in_yaml_and_csv(org: Org) -> None:
    api = org.api
    site = api.post("/api/v1/sites", json={"name": "Bar"}).json()
    area = api.post(f"/api/v1/sites/{site['id']}/areas", json={"name": "Kitchen"}).json()
    api.post(
        "/api/v1/devices",
        json={
            "name": "Panel",
            "kind": "panel",
            "uid": "panel-1",
            "area_id": area["id"],
            "channels": ["mains", "ac01"],
            "identifiers": {"serial": "P-1", "vendor_id": "x"},
            "location": {"description": "cellar", "rack": 2},
            "model": "EM-3",
        },
    )
    api.patch("/api/v1/devices/1/channels/ac01", json={"appliance": "Oven", "submeter": True})
    api.post("/api/v1/devices", json={"name": "Loose", "uid": "loose-1", "protocol": "http"})
    exported = api.get("/api/v1/devices/export", params={"format": "yaml"})
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/yaml"
    doc = yaml.safe_load(exported.text)
    panel = doc["devices"][0]
    assert panel["area"] == "Kitchen" and panel["site"] == "Bar"
    assert panel["channels"][1] == {"name": "ac01", "appliance": "Oven", "submeter": True}
    r = post(org, exported.text, "yaml").json()
    assert (r["created"], r["updated"], r["unchanged"]) == (0, 0, 2), r

    as_csv = api.get("/api/v1/devices/export").text
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert rows[0]["channels"] == "mains; ac01:Oven" and rows[0]["serial"] == "P-1"
    assert (
        rows[0]["identifiers"] == "vendor_id=x"
        and rows[0]["location"] == "description=cellar; rack=2"
    )
    r = post(org, as_csv).json()
    assert (r["created"], r["updated"], r["unchanged"]) == (0, 0, 2), r
    # Into a fresh organisation (uids are global: the file is re-labelled): same devices.
    _, other = account(org.ww, "owner@c.example")
    api.post("/api/v1/sites", json={"name": "Bar"}, headers=bearer(other))
    relabelled = as_csv.replace("panel-1", "panel-c").replace("loose-1", "loose-c")
    r = api.post(
        "/api/v1/devices/import",
        content=relabelled,
        headers={**bearer(other), "Content-Type": "text/csv"},
    )
    assert r.status_code == 200 and r.json()["created"] == 2, r.text
    theirs = api.get("/api/v1/devices", headers=bearer(other)).json()
    assert {d["uid"] for d in theirs} == {"panel-c", "loose-c"}
