"""API contract: schemathesis against ``/openapi.json`` of a real ``wattwatch serve``.

Every operation of the schema (so routes added later are covered too) is called with
generated parameters and bodies, as the logged-in owner (bearer token), with the ids of real
records in path parameters for most cases: the site, area, devices, rule, webhook … made by
the fixture. Checks: no 5xx (``not_a_server_error``), every answer matches its documented
schema (``response_schema_conformance``) and status code (``status_code_conformance``).

Examples per operation: 12 in CI (``WATTWATCH_SCHEMATHESIS_EXAMPLES``; ``WATTWATCH_LONG=1``:
200). The count of cases run is printed at the end of the module (``-s`` shows it).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from tests.conftest import ServerProcess
from tests.reliability.fuzzing import LONG

EXAMPLES = int(os.environ.get("WATTWATCH_SCHEMATHESIS_EXAMPLES", "200" if LONG else "12"))
pytestmark = pytest.mark.timeout(max(300, EXAMPLES * 20))

# Never-ending answers (SSE): a contract test cannot read them to the end.
SKIPPED_PATHS = {"/api/v1/stream"}


@dataclass
class Served:
    server: ServerProcess
    token: str
    device_token: str
    ids: dict[str, int] = field(default_factory=dict)
    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _ok(r: httpx.Response, what: str) -> Any:
    assert r.status_code < 300, f"seeding {what}: {r.status_code} {r.text}"
    return r.json() if r.content else None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir: Path = tmp_path_factory.mktemp("contract") / "data"
    server = ServerProcess(data_dir).start()
    try:
        assert server.password, server.read_output()
        r = httpx.post(
            server.url + "/api/v1/auth/login",
            json={"email": "owner@localhost", "password": server.password},
        )
        token = _ok(r, "login")["access_token"]
        api = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        ids: dict[str, int] = {}
        ids["site"] = _ok(
            api.post("/api/v1/sites", json={"name": "Contract", "timezone": "Europe/Madrid"}),
            "site",
        )["id"]
        ids["area"] = _ok(
            api.post(f"/api/v1/sites/{ids['site']}/areas", json={"name": "Floor"}), "area"
        )["id"]
        meter = _ok(
            api.post(
                "/api/v1/devices",
                json={"name": "Meter", "uid": "contract-meter", "area_id": ids["area"]},
            ),
            "meter",
        )
        ids["device"] = meter["id"]
        ids["plug"] = _ok(
            api.post(
                "/api/v1/devices",
                json={
                    "name": "Plug",
                    "uid": "contract-plug",
                    "kind": "plug",
                    "protocol": "tasmota",
                    "topic": "contractplug",
                    "area_id": ids["area"],
                },
            ),
            "plug",
        )["id"]
        start = int(time.time() * 1000) - 3_600_000
        _ok(
            api.post(
                "/api/v1/telemetry",
                json=[
                    {"ts": start + i * 60_000, "power_w": 500.0 + i, "energy_wh": 10.0 * i}
                    for i in range(60)
                ],
                headers={"Authorization": f"Bearer {meter['token']}"},
            ),
            "readings",
        )
        ids["rule"] = _ok(
            api.post(
                "/api/v1/alert-rules",
                json={
                    "name": "Contract rule",
                    "kind": "threshold",
                    "device_id": ids["device"],
                    "metric": "power_w",
                    "op": ">",
                    "value": 100,
                    "for_s": 0,
                },
            ),
            "alert rule",
        )["id"]
        ids["webhook"] = _ok(
            api.post(
                "/api/v1/webhooks",
                json={"url": "http://127.0.0.1:9/contract", "events": ["alert.raised"]},
            ),
            "webhook",
        )["id"]
        ids["report_schedule"] = _ok(
            api.post(
                "/api/v1/report-schedules",
                json={"name": "Weekly", "site_id": ids["site"], "recipients": ["a@b.example"]},
            ),
            "report schedule",
        )["id"]
        ids["schedule"] = _ok(
            api.post(
                "/api/v1/schedules",
                json={
                    "name": "Night",
                    "area_id": ids["area"],
                    "events": [{"action": "off", "at": "19:00", "days": "mon-fri"}],
                },
            ),
            "control schedule",
        )["id"]
        ids["key"] = _ok(api.post("/api/v1/api-keys", json={"name": "contract"}), "key")["id"]
        ids["user"] = _ok(
            api.post(
                "/api/v1/users",
                json={"email": "viewer@contract.example", "role": "viewer"},
            ),
            "user",
        )["id"]
        deadline = time.monotonic() + 20
        alerts: list[Any] = []
        while time.monotonic() < deadline and not alerts:
            alerts = api.get("/api/v1/alerts").json()
            time.sleep(0.1)
        if alerts:
            ids["alert"] = alerts[0]["id"]
        api.close()
        yield Served(server, token, meter["token"], ids)
    finally:
        server.stop()


# Path parameter → the fixture's record it names.
PATH_IDS = {
    "site_id": "site",
    "area_id": "area",
    "device_id": "device",
    "rule_id": "rule",
    "alert_id": "alert",
    "webhook_id": "webhook",
    "key_id": "key",
    "user_id": "user",
}


def real_ids(case: Any, served: Served) -> None:
    """Point most cases at real records; deletions keep the generated (unknown) ids, so the
    records live for the whole run, and one case in four keeps its generated ids anyway."""
    if case.method.upper() == "DELETE" or not case.path_parameters:
        return
    if hash(repr(case.path_parameters)) % 4 == 0:
        return
    path = case.path
    for name in list(case.path_parameters):
        key = PATH_IDS.get(name)
        if name == "schedule_id":
            key = "report_schedule" if "report-schedules" in path else "schedule"
        if key and key in served.ids:
            case.path_parameters[name] = served.ids[key]
        elif name == "period":
            case.path_parameters[name] = "week"
        elif name == "name" and "/channels/" in path:
            case.path_parameters[name] = "mains"


def test_api_contract(served: Served) -> None:
    """Each operation of the schema in turn, ``EXAMPLES`` generated cases each; every failing
    check is collected (first failure per operation), so one run shows them all."""
    schema = schemathesis.openapi.from_url(served.server.url + "/openapi.json")
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED_PATHS:
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=not LONG,
            database=None,
            phases=[Phase.explicit, Phase.generate],
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            real_ids(case, served)
            headers = dict(served.headers)
            if case.path == "/api/v1/telemetry":
                headers["Authorization"] = f"Bearer {served.device_token}"
            # A switch command to a plug that is not connected answers the documented 504
            # (with the error body) after the command timeout: a server error by design.
            may_time_out = case.method.upper() == "POST" and case.path.endswith("/commands")
            checks = [response_schema_conformance, status_code_conformance]
            response = case.call_and_validate(
                headers=headers,
                checks=checks if may_time_out else [not_a_server_error, *checks],
                timeout=60,
            )
            assert response.status_code < 500 or (may_time_out and response.status_code == 504)
            served.cases[f"{case.method.upper()} {case.path}"] += 1
            served.statuses[response.status_code] += 1

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:1500])
    assert not failures, "\n\n".join(failures)


def test_contract_run_covered_every_operation(served: Served) -> None:
    """Runs last in the module: the figures for docs/reliability.md, and a check that every
    operation of the schema (less the streams) was called."""
    spec = httpx.get(served.server.url + "/openapi.json").json()
    operations = {
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        if path not in SKIPPED_PATHS
        for method in ops
    }
    if not served.cases:
        pytest.skip("the contract cases did not run (deselected)")
    missing = operations - set(served.cases)
    total = sum(served.cases.values())
    print(
        f"\nschemathesis: {total} cases over {len(served.cases)} operations "
        f"({EXAMPLES} examples each at most); statuses {dict(sorted(served.statuses.items()))}"
    )
    assert not missing, f"operations never called: {sorted(missing)}"
