"""Pre-registration with a claim code, claiming into an organisation and site, the device's
one-time token hand-out, and that token working over HTTP and MQTT."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from tests.control.conftest import Plant, plant  # noqa: F401 - the fixture
from tests.control.fakes import TasmotaPlug
from tests.registry.accounts import account, bearer
from tests.registry.conftest import Org

from wattwatch.domain import Role
from wattwatch.registry.service import hash_claim_code, normalise_claim_code


def preregister(api: TestClient, uid: str, **extra: object) -> dict[str, object]:
    r = api.post(
        "/api/v1/devices",
        json={"name": f"Plug {uid}", "kind": "plug", "uid": uid, "claimable": True, **extra},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_claim_then_first_contact_gets_the_token_once(org: Org) -> None:
    api = org.api
    made = preregister(api, "plug-0001")
    code = str(made["claim_code"])
    assert made["token"] is None and len(normalise_claim_code(code)) == 16
    row = org.ww.registry.db.device_by(uid="plug-0001")
    assert row is not None and row["org_id"] is None and row["token_hash"] is None
    assert row["claim_code_hash"] == hash_claim_code(code) and code not in str(row)
    # Unclaimed: nobody sees it, and the device is told to come back later.
    assert api.get("/api/v1/devices").json() == []
    r = api.post("/api/v1/provision", json={"uid": "plug-0001", "claim_code": code})
    assert r.status_code == 409 and "not claimed yet" in r.json()["error"]["message"]

    site = api.post("/api/v1/sites", json={"name": "Home"}).json()
    area = api.post(f"/api/v1/sites/{site['id']}/areas", json={"name": "Kitchen"}).json()
    typed = code.lower().replace("-", " ")  # as a person types it from the label
    r = api.post(
        "/api/v1/claims",
        json={"claim_code": typed, "site_id": site["id"], "area_id": area["id"], "name": "Kettle"},
    )
    assert r.status_code == 201, r.text
    device = r.json()["device"]
    assert device["name"] == "Kettle" and device["site_id"] == site["id"]
    assert device["area_id"] == area["id"] and "claim_code_hash" not in device
    assert [d["uid"] for d in api.get("/api/v1/devices").json()] == ["plug-0001"]

    wrong = api.post("/api/v1/provision", json={"uid": "plug-0001", "claim_code": "AAAA-BBBB"})
    assert wrong.status_code == 401
    r = api.post("/api/v1/provision", json={"uid": "plug-0001", "claim_code": code})
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert token.startswith("wwd_") and r.json()["protocol"] == "native"
    again = api.post("/api/v1/provision", json={"uid": "plug-0001", "claim_code": code})
    assert again.status_code == 409 and "already received" in again.json()["error"]["message"]
    r = api.post("/api/v1/telemetry", json=[{"power_w": 12.5}], headers=bearer(token))
    assert r.status_code == 200 and r.json()["accepted"] == 1

    # The device was reset: an admin reopens provisioning; the old token dies at once.
    r = api.post(f"/api/v1/devices/{device['id']}/provisioning")
    assert r.status_code == 200
    assert (
        api.post("/api/v1/telemetry", json=[{"power_w": 1}], headers=bearer(token)).status_code
        == 401
    )
    r = api.post("/api/v1/provision", json={"uid": "plug-0001", "claim_code": code})
    assert r.status_code == 200 and r.json()["token"] != token


def test_claims_across_organisations_roles_and_guessing(org: Org) -> None:
    api = org.api
    code = str(preregister(api, "plug-0002", claim_code="LABEL-1234-5678")["claim_code"])
    site = api.post("/api/v1/sites", json={"name": "Home"}).json()
    other, other_token = account(org.ww, "owner@b.example")
    theirs = api.post("/api/v1/sites", json={"name": "B home"}, headers=bearer(other_token)).json()
    # A viewer cannot claim; another org cannot claim into our site.
    viewer = org.member("v@a.example", Role.VIEWER)
    r = api.post("/api/v1/claims", json={"claim_code": code, "site_id": site["id"]}, headers=viewer)
    assert r.status_code == 403
    r = api.post(
        "/api/v1/claims",
        json={"claim_code": code, "site_id": site["id"]},
        headers=bearer(other_token),
    )
    assert r.status_code == 404
    assert (
        api.post("/api/v1/claims", json={"claim_code": code, "site_id": site["id"]}).status_code
        == 201
    )
    # Claimed: the other organisation gets the same answer as for a wrong code.
    r = api.post(
        "/api/v1/claims",
        json={"claim_code": code, "site_id": theirs["id"]},
        headers=bearer(other_token),
    )
    assert (
        r.status_code == 404
        and r.json()["error"]["message"] == "no unclaimed device has this claim code"
    )
    r = api.post("/api/v1/claims", json={"claim_code": code, "site_id": site["id"]})
    assert r.status_code == 409
    assert other.org_id != org.owner.org_id
    # Guessing is slow: after a few wrong codes, 429.
    statuses = [
        api.post(
            "/api/v1/claims",
            json={"claim_code": f"WRONG-{i:04d}-CODE", "site_id": theirs["id"]},
            headers=bearer(other_token),
        ).status_code
        for i in range(25)
    ]
    assert statuses[0] == 404 and statuses[-1] == 429
    # Label codes must be long enough to be hard to guess.
    r = api.post(
        "/api/v1/devices",
        json={"name": "x", "uid": "plug-0003", "claimable": True, "claim_code": "AB12"},
    )
    assert r.status_code == 422


def test_provisioned_token_connects_over_mqtt_and_rotation_ends_the_session(
    plant: Plant,  # noqa: F811
) -> None:
    api = plant.api
    made = preregister(api, "tas-claimed", protocol="tasmota", topic="claimed_plug")
    site = api.post("/api/v1/sites", json={"name": "Flat"}).json()
    claimed = api.post(
        "/api/v1/claims", json={"claim_code": made["claim_code"], "site_id": site["id"]}
    ).json()["device"]
    # Before the hand-out the device has no token: MQTT refuses whatever it tries.
    early = TasmotaPlug(plant.port, "tas-claimed", "wwd_guess", "claimed_plug")
    early.client.connect("127.0.0.1", plant.port)
    early.client.loop_start()
    deadline = time.monotonic() + 5
    while early.refusals == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    early.stop()
    assert early.refusals >= 1
    token = api.post(
        "/api/v1/provision", json={"uid": "tas-claimed", "claim_code": made["claim_code"]}
    ).json()["token"]
    plug = TasmotaPlug(plant.port, "tas-claimed", token, "claimed_plug").start()
    plant.plugs.append(plug)
    r = api.post(f"/api/v1/devices/{claimed['id']}/commands", json={"action": "on"})
    assert r.status_code == 200 and r.json()["state"] == 1
