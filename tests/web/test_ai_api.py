"""The AI routes over HTTP: labels, training, appliances and what is on now, candidates,
forecasts; clear 4xx/503 answers when a model, history or the [ml] extra is missing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.ai.houses import QUICK_NILM, House, make_house, runs
from tests.registry.accounts import account, bearer

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import Role
from wattwatch.web.server import create_api

DAY_MS = 86_400_000


def _client(ww: Wattwatch, house: House) -> TestClient:
    assert ww.ai is not None
    ww.ai.nilm_params = QUICK_NILM
    return TestClient(create_api(ww), headers=bearer(house.token))


def _error(r: object, status: int, code: str) -> None:
    assert r.status_code == status, r.text  # type: ignore[attr-defined]
    assert r.json()["error"]["code"] == code, r.text  # type: ignore[attr-defined]


@pytest.fixture
def house(ww: Wattwatch) -> House:
    return make_house(ww, days=3)


def test_labels_are_added_listed_and_deleted(ww: Wattwatch, house: House) -> None:
    mid = house.monitor["id"]
    with _client(ww, house) as api:
        start = house.end_ms - 3_600_000
        iso = datetime.fromtimestamp(start / 1000, UTC).isoformat()
        r = api.post(
            f"/api/v1/devices/{mid}/labels",
            json={"appliance": "kettle", "start": iso, "end": start + 180_000},
        )
        assert r.status_code == 201, r.text
        (one,) = r.json()["labels"]
        assert one["appliance"] == "Kettle" and one["start_ms"] == start
        assert one["source"] == "user" and one["created_by"] == "owner@house.example"
        r = api.post(
            f"/api/v1/devices/{mid}/labels",
            json={"labels": [{"appliance": "Toaster", "start": 1000, "end": 61000}] * 2},
        )
        assert r.status_code == 201 and len(r.json()["labels"]) == 2
        listed = api.get(f"/api/v1/devices/{mid}/labels").json()
        assert [x["appliance"] for x in listed["labels"]] == ["Toaster", "Toaster", "Kettle"]
        assert listed["plugs"][0]["appliance"] == "Kettle"
        only = api.get(f"/api/v1/devices/{mid}/labels", params={"appliance": "kettle"}).json()
        assert [x["id"] for x in only["labels"]] == [one["id"]]
        assert api.delete(f"/api/v1/devices/{mid}/labels/{one['id']}").status_code == 204
        _error(api.delete(f"/api/v1/devices/{mid}/labels/{one['id']}"), 404, "not_found")
        bad = {"appliance": "Kettle", "start": 5000, "end": 1000}
        _error(api.post(f"/api/v1/devices/{mid}/labels", json=bad), 422, "invalid_input")
        bad = {"appliance": "Kettle", "start": "yesterday", "end": 1000}
        _error(api.post(f"/api/v1/devices/{mid}/labels", json=bad), 422, "invalid_input")
        _error(api.post(f"/api/v1/devices/{mid}/labels", json={"labels": []}), 422, "invalid_input")
        _error(api.get("/api/v1/devices/999999/labels"), 404, "not_found")
    _, viewer = account(ww, "viewer@house.example", Role.VIEWER, house.owner.org_id)
    with TestClient(create_api(ww), headers=bearer(viewer)) as api:
        assert api.get(f"/api/v1/devices/{mid}/labels").status_code == 200
        body = {"appliance": "Kettle", "start": 1000, "end": 2000}
        _error(api.post(f"/api/v1/devices/{mid}/labels", json=body), 403, "forbidden")
        _error(api.post(f"/api/v1/devices/{mid}/models", json={}), 403, "forbidden")


def test_train_then_appliances_timeline_and_what_is_on_now(ww: Wattwatch, house: House) -> None:
    mid = house.monitor["id"]
    with _client(ww, house) as api:
        _error(api.get(f"/api/v1/devices/{mid}/appliances"), 409, "no_model")
        _error(api.get(f"/api/v1/devices/{mid}/appliances/candidates"), 409, "no_model")
        assert api.get(f"/api/v1/devices/{mid}/models").json() == {"models": []}
        r = api.post(f"/api/v1/devices/{mid}/models", json={"days": 3})
        assert r.status_code == 201, r.text
        assert r.json()["models"][0]["metrics"]["appliances"]["Kettle"]["source"] == "plug"
        models = api.get(f"/api/v1/devices/{mid}/models").json()["models"]
        # Listed by kind: a "clusters" model comes first when training also found candidates.
        nilm = [m for m in models if m["kind"] == "nilm"]
        assert [m["version"] for m in nilm] == [1]
        assert all("blob" not in m for m in models)
        lo = house.end_ms - DAY_MS
        r = api.get(f"/api/v1/devices/{mid}/appliances", params={"from": lo, "to": house.end_ms})
        assert r.status_code == 200, r.text
        body = r.json()
        kettle = next(a for a in body["appliances"] if a["name"] == "Kettle")
        truth = runs(house.kettle_w[-1440:], lo, 2000.0)
        assert abs(kettle["runs"] - len(truth)) <= 1
        assert kettle["energy_wh"] == pytest.approx(house.kettle_w[-1440:].sum() / 60, rel=0.25)
        assert all(t["appliance"] == "Kettle" for t in body["timeline"])
        assert body["now"]["delay_min"] == 61 and "Kettle" in {
            a["name"] for a in body["now"]["appliances"]
        }
        # defaults: the last 24 h
        assert api.get(f"/api/v1/devices/{mid}/appliances").json()["from"] > lo - 120_000
        _error(
            api.get(f"/api/v1/devices/{mid}/appliances", params={"from": 10, "to": 5}),
            422,
            "invalid_input",
        )
        _error(
            api.get(f"/api/v1/devices/{mid}/appliances", params={"from": "soon"}),
            422,
            "invalid_input",
        )
        far = {"from": -900_000_000_000_000, "to": -899_999_000_000_000}
        _error(api.get(f"/api/v1/devices/{mid}/appliances", params=far), 422, "invalid_input")
        body = {"appliance": "Kettle", "start": -900_000_000_000_000, "end": 0}
        _error(api.post(f"/api/v1/devices/{mid}/labels", json=body), 422, "invalid_input")


def test_forecast_answers_and_errors(ww: Wattwatch) -> None:
    long = make_house(
        ww, days=15, with_plug=False, tariff={"price_per_kwh": 0.3, "currency": "GBP"}
    )
    with _client(ww, long) as api:
        r = api.get(f"/api/v1/devices/{long.monitor['id']}/forecast")
        assert r.status_code == 200, r.text
        assert len(r.json()["points"]) == 24 and r.json()["currency"] == "GBP"
        r = api.get(f"/api/v1/sites/{long.site_id}/forecast", params={"horizon": "month"})
        assert r.status_code == 200, r.text
        month = r.json()["month"]
        assert month["bill_lo"] <= month["bill"] <= month["bill_hi"]
        _error(
            api.get(f"/api/v1/sites/{long.site_id}/forecast", params={"horizon": "1y"}),
            422,
            "invalid_input",
        )
    short = make_house(ww, days=2, with_plug=False, email="short@house.example")
    with _client(ww, short) as api:
        _error(api.get(f"/api/v1/devices/{short.monitor['id']}/forecast"), 409, "no_model")
        # another organisation's site and device are not found
        _error(api.get(f"/api/v1/sites/{long.site_id}/forecast"), 404, "not_found")
        _error(api.get(f"/api/v1/devices/{long.monitor['id']}/forecast"), 404, "not_found")


def test_without_the_ml_extra_the_ai_routes_answer_503(
    ww: Wattwatch, house: House, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    assert ww.ai_scheduler is not None and not ww.ai_scheduler.enabled
    mid = house.monitor["id"]
    with _client(ww, house) as api:
        for url in (
            f"/api/v1/devices/{mid}/appliances",
            f"/api/v1/devices/{mid}/appliances/candidates",
            f"/api/v1/devices/{mid}/forecast",
            f"/api/v1/sites/{house.site_id}/forecast",
        ):
            r = api.get(url)
            _error(r, 503, "unavailable")
            assert "[ml]" in r.json()["error"]["message"]
        _error(api.post(f"/api/v1/devices/{mid}/models", json={}), 503, "unavailable")
        # labels need no model: they still work
        body = {"appliance": "Kettle", "start": 1000, "end": 2000}
        assert api.post(f"/api/v1/devices/{mid}/labels", json=body).status_code == 201


@pytest.fixture
def pg_ww(pg_url: str, tmp_path: Path) -> Iterator[Wattwatch]:
    instance = Wattwatch.open(Settings(data_dir=tmp_path / "data", database_url=pg_url))
    yield instance
    instance.close()


def test_labels_training_and_candidates_on_postgresql(pg_ww: Wattwatch) -> None:
    house = make_house(pg_ww, days=6, with_plug=False)
    mid = house.monitor["id"]
    with _client(pg_ww, house) as api:
        assert api.post(f"/api/v1/devices/{mid}/models", json={}).status_code == 201
        cands = api.get(f"/api/v1/devices/{mid}/appliances/candidates").json()["candidates"]
        kettle = max(cands, key=lambda c: c["power_w"])
        r = api.post(
            f"/api/v1/devices/{mid}/appliances/candidates/{kettle['cluster_id']}",
            json={"name": "Kettle"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["labels_created"] == kettle["n_events"]
        labels = api.get(f"/api/v1/devices/{mid}/labels").json()["labels"]
        assert len(labels) == kettle["n_events"] and labels[0]["source"] == "user"
        _error(
            api.post(f"/api/v1/devices/{mid}/appliances/candidates/77", json={"name": "X"}),
            404,
            "not_found",
        )
        r = api.post(f"/api/v1/devices/{mid}/models", json={"days": 6})
        assert {m["kind"] for m in r.json()["models"]} == {"nilm", "clusters"}
