"""A running wattwatch with its embedded MQTT broker (in process) and simulated plugs on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.control.fakes import TasmotaPlug, ThingsBoardPlug
from tests.registry.accounts import account, bearer

from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.registry.service import Principal
from wattwatch.web.server import create_api

if not hasattr(Wattwatch, "enable_mqtt"):  # pragma: no cover - the broker is another part
    pytest.skip("no embedded MQTT broker in this build", allow_module_level=True)


@dataclass
class Plant:
    """The app, an owner's HTTP client, the broker's port and the plugs started on it."""

    ww: Wattwatch
    api: TestClient
    port: int
    owner: Principal
    plugs: list[Any] = field(default_factory=list)

    def site(self, name: str = "Head office", timezone: str = "Europe/Madrid") -> int:
        r = self.api.post("/api/v1/sites", json={"name": name, "timezone": timezone})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def area(self, site_id: int, name: str, parent_id: int | None = None) -> int:
        r = self.api.post(
            f"/api/v1/sites/{site_id}/areas", json={"name": name, "parent_id": parent_id}
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def device(self, **body: Any) -> dict[str, Any]:
        r = self.api.post("/api/v1/devices", json={"kind": "plug", **body})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def tasmota(
        self,
        name: str,
        *,
        area_id: int | None = None,
        appliance: str | None = None,
        start: bool = True,
    ) -> tuple[int, TasmotaPlug]:
        topic = name.lower().replace(" ", "_")
        created = self.device(
            name=name, protocol="tasmota", topic=topic, area_id=area_id, uid=f"tas-{topic}"
        )
        if appliance:
            self.api.patch(
                f"/api/v1/devices/{created['id']}/channels/mains", json={"appliance": appliance}
            ).raise_for_status()
        plug = TasmotaPlug(self.port, created["uid"], created["token"], topic)
        self.plugs.append(plug)
        if start:
            plug.start()
        return int(created["id"]), plug

    def thingsboard(
        self, name: str, *, area_id: int | None = None, appliance: str | None = None
    ) -> tuple[int, ThingsBoardPlug]:
        created = self.device(name=name, protocol="thingsboard", area_id=area_id)
        if appliance:
            self.api.patch(
                f"/api/v1/devices/{created['id']}/channels/mains", json={"appliance": appliance}
            ).raise_for_status()
        plug = ThingsBoardPlug(self.port, created["token"])
        self.plugs.append(plug)
        plug.start(self.ww, int(created["id"]))
        return int(created["id"]), plug


def open_plant(data_dir: Path, database_url: str | None = None) -> Wattwatch:
    ww = Wattwatch.open(
        Settings(data_dir=data_dir, database_url=database_url, mqtt_host="127.0.0.1", mqtt_port=0),
        lock=True,
    )
    ww.enable_mqtt()
    return ww


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    yield from running_plant(open_plant(tmp_path / "data"))


@pytest.fixture
def pg_plant(tmp_path: Path, pg_url: str) -> Iterator[Plant]:
    """The same on PostgreSQL."""
    yield from running_plant(open_plant(tmp_path / "data", pg_url))


def running_plant(ww: Wattwatch) -> Iterator[Plant]:
    owner, token = account(ww, "owner@localhost")
    try:
        with TestClient(create_api(ww), headers=bearer(token)) as api:
            assert ww.mqtt is not None and ww.mqtt.embedded is not None
            found = Plant(ww, api, ww.mqtt.embedded.port, owner)
            try:
                yield found
            finally:
                for plug in found.plugs:
                    plug.stop()
    finally:
        ww.close()
