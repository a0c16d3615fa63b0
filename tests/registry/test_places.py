"""Sites (tariff = billing = owners), nested areas, devices placed in them, channels."""

from __future__ import annotations

from typing import Any

from tests.registry.conftest import Org

from wattwatch.domain import Role

TOU = {
    "currency": "EUR",
    "price_per_kwh": 0.2,
    "periods": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00", "price_per_kwh": 0.3}],
}


def site(org: Org, name: str = "Head office", **extra: Any) -> dict[str, Any]:
    r = org.api.post("/api/v1/sites", json={"name": name, "timezone": "Europe/Madrid", **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_tariffs_are_for_owners_the_rest_for_admins(org: Org) -> None:
    admin = org.member("admin@a.example", Role.ADMIN)
    viewer = org.member("viewer@a.example", Role.VIEWER)
    r = org.api.post(
        "/api/v1/sites", json={"name": "Shop", "address": "Calle Mayor 1"}, headers=admin
    )
    assert r.status_code == 201, r.text
    shop = r.json()
    assert shop["address"] == "Calle Mayor 1"
    r = org.api.post("/api/v1/sites", json={"name": "Bar", "tariff": TOU}, headers=admin)
    assert r.status_code == 403 and "owner" in r.json()["error"]["message"]
    r = org.api.patch(f"/api/v1/sites/{shop['id']}", json={"tariff": TOU}, headers=admin)
    assert r.status_code == 403
    r = org.api.patch(f"/api/v1/sites/{shop['id']}", json={"name": "Shop 1"}, headers=admin)
    assert r.status_code == 200 and r.json()["name"] == "Shop 1"
    r = org.api.patch(f"/api/v1/sites/{shop['id']}", json={"tariff": TOU})
    assert r.status_code == 200 and r.json()["tariff"]["periods"][0]["price_per_kwh"] == 0.3
    assert (
        org.api.patch(f"/api/v1/sites/{shop['id']}", json={"timezone": "Mars/Base"}).status_code
        == 422
    )
    assert org.api.get("/api/v1/sites", headers=viewer).status_code == 200
    assert org.api.delete(f"/api/v1/sites/{shop['id']}", headers=viewer).status_code == 403
    assert org.api.delete(f"/api/v1/sites/{shop['id']}", headers=admin).status_code == 204
    assert org.api.get(f"/api/v1/sites/{shop['id']}").status_code == 404


def test_nested_areas_with_paths_and_their_devices(org: Org) -> None:
    office = site(org)
    other = site(org, "Warehouse")
    api = org.api

    def area(site_id: int, name: str, parent: int | None = None, kind: str | None = None) -> Any:
        r = api.post(
            f"/api/v1/sites/{site_id}/areas", json={"name": name, "parent_id": parent, "kind": kind}
        )
        assert r.status_code == 201, r.text
        return r.json()

    floor2 = area(office["id"], "Floor 2", kind="Floor")
    room = area(office["id"], "Meeting room A", floor2["id"], "room")
    corner = area(office["id"], "Corner", room["id"])
    dock = area(other["id"], "Dock")
    assert corner["path"] == "Floor 2/Meeting room A/Corner" and corner["depth"] == 2
    assert floor2["kind"] == "floor"
    listed = api.get(f"/api/v1/sites/{office['id']}/areas").json()
    assert [a["path"] for a in listed] == [
        "Floor 2",
        "Floor 2/Meeting room A",
        "Floor 2/Meeting room A/Corner",
    ]

    # A parent on another site, a cycle, a slash in a name: refused.
    r = api.post(f"/api/v1/sites/{office['id']}/areas", json={"name": "X", "parent_id": dock["id"]})
    assert r.status_code == 422 and "another site" in r.json()["error"]["message"]
    r = api.patch(f"/api/v1/areas/{floor2['id']}", json={"parent_id": corner["id"]})
    assert r.status_code == 422 and "inside itself" in r.json()["error"]["message"]
    assert api.post(f"/api/v1/sites/{office['id']}/areas", json={"name": "a/b"}).status_code == 422

    # A device placed in an area is on its site; an area of another site is refused.
    r = api.post("/api/v1/devices", json={"name": "Beamer", "kind": "plug", "area_id": room["id"]})
    assert r.status_code == 201, r.text
    beamer = r.json()["device"]
    assert beamer["site_id"] == office["id"] and beamer["area_id"] == room["id"]
    r = api.post(
        "/api/v1/devices", json={"name": "x", "site_id": office["id"], "area_id": dock["id"]}
    )
    assert r.status_code == 422
    lamp = api.post(
        "/api/v1/devices", json={"name": "Lamp", "kind": "plug", "area_id": corner["id"]}
    ).json()
    meter = api.post("/api/v1/devices", json={"name": "Meter", "site_id": office["id"]}).json()
    # Devices of an area include those of its sub-areas.
    got = api.get(f"/api/v1/areas/{floor2['id']}").json()
    assert {d["name"] for d in got["devices"]} == {"Beamer", "Lamp"}
    assert "token_hash" not in got["devices"][0]
    listed = api.get("/api/v1/devices", params={"area_id": room["id"]}).json()
    assert {d["id"] for d in listed} == {beamer["id"], lamp["id"]}
    assert [d["id"] for d in api.get("/api/v1/devices", params={"kind": "monitor"}).json()] == [
        meter["id"]
    ]

    # Rename and move; deleting an area takes its sub-areas, devices stay on the site.
    r = api.patch(f"/api/v1/areas/{room['id']}", json={"name": "Room 201", "parent_id": None})
    assert r.json()["path"] == "Room 201"
    assert api.get(f"/api/v1/areas/{corner['id']}").json()["path"] == "Room 201/Corner"
    assert api.delete(f"/api/v1/areas/{room['id']}").status_code == 204
    assert api.get(f"/api/v1/areas/{corner['id']}").status_code == 404
    moved = api.get(f"/api/v1/devices/{lamp['id']}").json()
    assert moved["area_id"] is None and moved["site_id"] == office["id"]
    viewer = org.member("v@a.example", Role.VIEWER)
    assert api.get(f"/api/v1/sites/{office['id']}/areas", headers=viewer).status_code == 200
    r = api.post(f"/api/v1/sites/{office['id']}/areas", json={"name": "Y"}, headers=viewer)
    assert r.status_code == 403


def test_device_edit_identifiers_location_channels(org: Org) -> None:
    office, shop = site(org), site(org, "Shop")
    api = org.api
    area = api.post(f"/api/v1/sites/{office['id']}/areas", json={"name": "Kitchen"}).json()
    created = api.post(
        "/api/v1/devices",
        json={
            "name": "Panel",
            "kind": "panel",
            "area_id": area["id"],
            "channels": ["mains", "ac01", "ac02"],
            "identifiers": {"serial": "SN-1", "mac": "AA:BB:CC:DD:EE:FF"},
            "location": {"description": "behind the door", "floor": 0},
            "model": "EM-3",
            "firmware": "1.0.0",
        },
    ).json()
    dev = created["id"]
    r = api.patch(
        f"/api/v1/devices/{dev}",
        json={
            "name": "Main panel",
            "identifiers": {"serial": "SN-1", "asset_tag": "A-77"},
            "channels": [
                {"name": "ac01", "appliance": "Oven", "submeter": True},
                {"name": "ac03", "appliance": "Fridge"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["name"] == "Main panel" and got["identifiers"] == {
        "serial": "SN-1",
        "asset_tag": "A-77",
    }
    channels = {c["name"]: c for c in got["channels"]}
    assert set(channels) == {"mains", "ac01", "ac02", "ac03"}
    assert channels["ac01"]["appliance"] == "Oven" and channels["ac01"]["submeter"] is True
    assert channels["ac03"]["appliance"] == "Fridge" and channels["ac03"]["submeter"] is False
    r = api.patch(f"/api/v1/devices/{dev}/channels/ac02", json={"submeter": True})
    assert r.status_code == 200 and r.json()["submeter"] is True
    # Sub-meters are left out of the site's totals.
    names = {c["name"] for c in org.ww.registry.db.site_channels(org.owner.org_id, office["id"])}
    assert names == {"mains", "ac03"}

    # Moved to another site: the old area does not come along.
    got = api.patch(f"/api/v1/devices/{dev}", json={"site_id": shop["id"]}).json()
    assert got["site_id"] == shop["id"] and got["area_id"] is None
    for bad in (
        {"kind": "toaster"},
        {"name": None},
        {"protocol": "tasmota", "topic": "a/b"},
        {"identifiers": {"serial": "x" * 300}},
        {"area_id": area["id"]},  # on the office, the device is on the shop
        {"site_id": 99999},
    ):
        r = api.patch(f"/api/v1/devices/{dev}", json=bad)
        assert r.status_code in (404, 422), (bad, r.text)
    r = api.patch(f"/api/v1/devices/{dev}", json={"protocol": "tasmota", "topic": "panel1"})
    assert r.status_code == 200 and r.json()["topic"] == "panel1"
    other = api.post("/api/v1/devices", json={"name": "P2", "protocol": "tasmota", "topic": "p2"})
    r = api.patch(f"/api/v1/devices/{dev}", json={"topic": "p2"})
    assert other.status_code == 201 and r.status_code == 409
    viewer = org.member("v@a.example", Role.VIEWER)
    assert (
        api.patch(f"/api/v1/devices/{dev}", json={"name": "x"}, headers=viewer).status_code == 403
    )
