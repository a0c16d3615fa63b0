"""Tenant isolation, tested rather than assumed: every route of the app, called by the owner of
organisation B with the ids of organisation A's records, answers 404 (401 for device-token
routes) and never shows a byte of A's data.

The routes come from the app itself (``/openapi.json`` plus the dashboard's page routes), so a
route someone adds later is walked too. A path parameter the walk does not know, or a request
body it cannot build, fails the test with what to add to ``ids_for`` / ``SAMPLES`` below.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.registry.accounts import account, bearer

from wattwatch.app import Wattwatch
from wattwatch.domain import Role, now_ms
from wattwatch.web.dashboard import session
from wattwatch.web.server import create_api

# In every name, uid and address of organisation A: B's answers must never contain it.
MARK = "alpha7q"
WRONG_PASSWORD = "not-the-password-1"


@dataclass
class OrgA:
    ids: dict[str, int] = field(default_factory=dict)
    device_token: str = ""


@dataclass
class World:
    ww: Wattwatch
    api: TestClient
    a: OrgA
    a_headers: dict[str, str]
    b_headers: dict[str, str]
    b_token: str
    a_viewer: dict[str, str]


def _ok(r: Any, what: str) -> Any:
    assert r.status_code < 300, f"seeding {what}: {r.status_code} {r.text}"
    return r.json() if r.content else None


@pytest.fixture
def world(ww: Wattwatch) -> Iterator[World]:
    owner_a, token_a = account(ww, f"owner-{MARK}@a.example")
    _, token_b = account(ww, "owner@b.example")
    viewer_a, viewer_token = account(ww, f"viewer-{MARK}@a.example", Role.VIEWER, owner_a.org_id)
    with TestClient(create_api(ww), headers=bearer(token_a)) as api:
        a = OrgA()
        ids = a.ids
        ids["site"] = _ok(
            api.post("/api/v1/sites", json={"name": f"Site {MARK}", "timezone": "Europe/Madrid"}),
            "site",
        )["id"]
        ids["area"] = _ok(
            api.post(f"/api/v1/sites/{ids['site']}/areas", json={"name": f"Floor {MARK}"}), "area"
        )["id"]
        meter = _ok(
            api.post(
                "/api/v1/devices",
                json={
                    "name": f"Meter {MARK}",
                    "uid": f"meter-{MARK}",
                    "area_id": ids["area"],
                    "identifiers": {"serial": f"SN-{MARK}"},
                },
            ),
            "meter",
        )
        ids["device"], a.device_token = meter["id"], meter["token"]
        ids["plug"] = _ok(
            api.post(
                "/api/v1/devices",
                json={
                    "name": f"Plug {MARK}",
                    "uid": f"plug-{MARK}",
                    "kind": "plug",
                    "protocol": "tasmota",
                    "topic": f"plug{MARK}",
                    "area_id": ids["area"],
                },
            ),
            "plug",
        )["id"]
        ids["rule"] = _ok(
            api.post(
                "/api/v1/alert-rules",
                json={
                    "name": f"Rule {MARK}",
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
        # Readings (an hour of them), which also raise the rule's alert.
        start = now_ms() - 3_600_000
        readings = [
            {"ts": start + i * 60_000, "power_w": 2500.0, "energy_wh": 1000.0 + 40 * i}
            for i in range(60)
        ]
        _ok(
            api.post("/api/v1/telemetry", json=readings, headers=bearer(a.device_token)),
            "readings",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not api.get("/api/v1/alerts").json():
            time.sleep(0.05)
        alerts = api.get("/api/v1/alerts").json()
        assert alerts, "the alert engine raised no alert for organisation A"
        ids["alert"] = alerts[0]["id"]
        ids["webhook"] = _ok(
            api.post(
                "/api/v1/webhooks",
                json={"url": f"http://127.0.0.1:9/{MARK}", "events": ["alert.acknowledged"]},
            ),
            "webhook",
        )["id"]
        assert ww.alerts is not None
        ids["letter"] = ww.alerts.store.add_dead_letter(
            {
                "org_id": owner_a.org_id,
                "webhook_id": ids["webhook"],
                "channel": "webhook",
                "target": {"url": f"http://127.0.0.1:9/{MARK}"},
                "event": "alert.raised",
                "body": f'{{"mark": "{MARK}"}}',
                "attempts": 5,
                "last_error": "connection refused",
                "state": "dead",
                "created_ms": now_ms(),
                "updated_ms": now_ms(),
            }
        )
        ids["report_schedule"] = _ok(
            api.post(
                "/api/v1/report-schedules",
                json={
                    "name": f"Weekly {MARK}",
                    "site_id": ids["site"],
                    "recipients": [f"{MARK}@a.example"],
                    "format": "html",
                },
            ),
            "report schedule",
        )["id"]
        ids["schedule"] = _ok(
            api.post(
                "/api/v1/schedules",
                json={
                    "name": f"Night {MARK}",
                    "area_id": ids["area"],
                    "events": [{"action": "off", "at": "19:00", "days": "mon-fri"}],
                },
            ),
            "control schedule",
        )["id"]
        assert ww.control is not None
        (ids["command"],) = ww.control.store.begin_commands(
            [
                {
                    "org_id": owner_a.org_id,
                    "device_id": ids["plug"],
                    "device_uid": f"plug-{MARK}",
                    "device_name": f"Plug {MARK}",
                    "action": "on",
                    "source": "api",
                    "actor": f"owner-{MARK}@a.example",
                    "user_id": owner_a.user_id,
                    "protocol": "tasmota",
                    "requested_ms": now_ms(),
                }
            ]
        )
        ids["key"] = _ok(api.post("/api/v1/api-keys", json={"name": f"Key {MARK}"}), "key")["id"]
        ids["label"] = _ok(
            api.post(
                f"/api/v1/devices/{ids['device']}/labels",
                json={"appliance": f"Kettle {MARK}", "start": start, "end": start + 60_000},
            ),
            "label",
        )["labels"][0]["id"]
        ids["user"] = viewer_a.user_id
        yield World(
            ww,
            api,
            a,
            bearer(token_a),
            bearer(token_b),
            token_b,
            bearer(viewer_token),
        )


def ids_for(path: str, name: str, a: OrgA) -> str | None:
    """The value of path parameter ``name`` that points at organisation A's record."""
    ids = a.ids
    if name == "schedule_id":
        return str(ids["report_schedule" if "report-schedules" in path else "schedule"])
    table = {
        "device_id": ids["device"],
        "site_id": ids["site"],
        "area_id": ids["area"],
        "rule_id": ids["rule"],
        "alert_id": ids["alert"],
        "webhook_id": ids["webhook"],
        "letter_id": ids["letter"],
        "command_id": ids["command"],
        "key_id": ids["key"],
        "label_id": ids["label"],
        # candidates are numbered per device (0, 1, ...): A's device makes it A's
        "cluster_id": 0,
        "user_id": ids["user"],
    }
    if name in table:
        return str(table[name])
    if name == "period":
        return "week"
    if name == "name" and "/channels/" in path:
        return "mains"
    return None


# Bodies the walk cannot build from the schema alone (A's ids where they steer the request at
# A's records). Keyed by (METHOD, path template).
def samples(a: OrgA) -> dict[tuple[str, str], Any]:
    ids = a.ids
    return {
        ("POST", "/api/v1/alert-rules"): {
            "name": "x",
            "kind": "threshold",
            "device_id": ids["device"],
            "metric": "power_w",
            "op": ">",
            "value": 1,
        },
        ("PATCH", "/api/v1/alert-rules/{rule_id}"): {"enabled": False},
        ("POST", "/api/v1/schedules"): {
            "name": "x",
            "area_id": ids["area"],
            "events": [{"action": "off", "at": "19:00"}],
        },
        ("POST", "/api/v1/report-schedules"): {
            "site_id": ids["site"],
            "recipients": ["b@b.example"],
        },
        ("PUT", "/api/v1/sites/{site_id}/report-settings"): {},
        ("POST", "/api/v1/claims"): {"claim_code": "ABCD-EFGH-JKMN", "site_id": ids["site"]},
        ("POST", "/api/v1/provision"): {"uid": f"meter-{MARK}", "claim_code": "ABCD-EFGH-JKMN"},
        ("POST", "/api/v1/auth/login"): {
            "email": f"owner-{MARK}@a.example",
            "password": WRONG_PASSWORD,
        },
        ("POST", "/api/v1/auth/password"): {
            "current_password": WRONG_PASSWORD,
            "new_password": "another-password-2",
        },
        ("POST", "/api/v1/telemetry"): [{"power_w": 1.0}],
        ("POST", "/api/v1/devices/import"): f"uid,name\nmeter-{MARK},taken over\n",
        ("POST", "/api/v1/webhooks"): {"url": "http://127.0.0.1:9/b", "events": ["alert.raised"]},
    }


# Routes that authenticate a device (or a password), not a user of an organisation: B's user
# token is no credential there, so the answer is 401.
CREDENTIAL_ROUTES = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/telemetry"),
    ("POST", "/api/v1/provision"),
}
# Never-ending answers: walked with A's device as a filter only (which must be a 404).
STREAMS = {"/api/v1/stream"}


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def synthesise(schema: dict[str, Any], spec: dict[str, Any], a: OrgA, name: str = "") -> Any:
    """A small valid instance of ``schema``; ``*_id`` fields point at A's records."""
    schema = _resolve(schema, spec)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(s, spec).get("type") != "null"]
            return synthesise(options[0], spec, a, name)
    if "allOf" in schema:
        return synthesise(schema["allOf"][0], spec, a, name)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type")
    if name.endswith("_id") and kind in ("integer", None):
        value = ids_for("", name, a)
        return int(value) if value is not None else 1
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        wanted = required | {p for p in props if p.endswith("_id") and ids_for("", p, a)}
        return {p: synthesise(props[p], spec, a, p) for p in props if p in wanted}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [synthesise(schema.get("items", {}), spec, a, name)] * count
    if kind == "string":
        if schema.get("format") == "email" or "email" in name:
            return "someone@b.example"
        if "url" in name:
            return "http://127.0.0.1:9/b"
        return "x" * max(1, schema.get("minLength", 1)) if schema.get("minLength", 0) > 1 else "x1"
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "number":
        return max(1.0, schema.get("minimum", 1.0))
    if kind == "boolean":
        return False
    return None


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    url: str
    params: dict[str, Any]
    body: Any
    targets_a: bool  # the request names one of A's records
    filter_only: bool = False  # …only as a query filter of a collection read


def api_calls(spec: dict[str, Any], a: OrgA, problems: list[str]) -> list[Call]:
    known = samples(a)
    calls = []
    for template, operations in spec["paths"].items():
        for method, op in operations.items():
            method = method.upper()
            url, targets_a, params = template, False, {}
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    value = ids_for(template, p["name"], a)
                    if p["name"] == "token":
                        value = "wwd_not-a-token"
                    if value is None:
                        problems.append(
                            f"{method} {template}: unknown path parameter {p['name']!r}; teach "
                            "ids_for which record of organisation A it names"
                        )
                        break
                    url = url.replace("{" + p["name"] + "}", value)
                    targets_a |= p["name"] not in ("period", "name", "token")
                elif p["in"] == "query" and p.get("required"):
                    params[p["name"]] = synthesise(p.get("schema", {}), spec, a, p["name"])
            else:
                body = None
                if (method, template) in known:
                    body = known[(method, template)]
                elif "requestBody" in op:
                    content = op["requestBody"].get("content", {})
                    schema = content.get("application/json", {}).get("schema")
                    body = synthesise(schema, spec, a) if schema else ""
                body_targets = isinstance(body, dict | list) and _names_a(body, a)
                calls.append(Call(method, template, url, params, body, targets_a or body_targets))
                # Optional filters (site_id=…, device_id=…) of collection reads, aimed at A.
                if method == "GET" and not targets_a:
                    for p in op.get("parameters", []):
                        value = ids_for(template, p["name"], a)
                        if p["in"] == "query" and p["name"].endswith("_id") and value:
                            query = {**params, p["name"]: value}
                            calls.append(Call("GET", template, url, query, None, True, True))
    return calls


def _names_a(body: Any, a: OrgA) -> bool:
    if isinstance(body, dict):
        return any(
            (k.endswith("_id") and str(v) == ids_for("", k, a)) or _names_a(v, a)
            for k, v in body.items()
        )
    if isinstance(body, list):
        return any(_names_a(v, a) for v in body)
    return False


def send(api: TestClient, call: Call, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"params": call.params, "headers": headers}
    if isinstance(call.body, str):
        kwargs["content"] = call.body.encode()
        kwargs["headers"] = {**headers, "Content-Type": "text/csv"}
    elif call.body is not None:
        kwargs["json"] = call.body
    return api.request(call.method, call.url, **kwargs)


def test_every_route_hides_organisation_a_from_organisation_b(world: World) -> None:
    api, a = world.api, world.a
    spec = api.get("/openapi.json").json()
    problems: list[str] = []
    calls = api_calls(spec, a, problems)
    assert len(calls) > 60, "the walk found too few routes: is the app wired?"
    walked = 0
    for call in calls:
        if call.template in STREAMS and not call.params:
            continue
        key = (call.method, call.template)
        r = send(api, call, world.b_headers)
        walked += 1
        where = f"{call.method} {call.url} {call.params or ''}"
        text = r.text
        if r.status_code >= 500:
            problems.append(f"{where}: {r.status_code} {text[:200]}")
        elif key in CREDENTIAL_ROUTES or "{token}" in call.template:
            if r.status_code not in (401, 403):
                problems.append(f"{where}: expected 401, got {r.status_code} {text[:200]}")
        elif call.targets_a:
            if call.filter_only and r.status_code == 200 and _empty(r):
                pass  # a filter of B's own records that matched none of them
            elif call.url == call.template and r.status_code != 404 and r.status_code < 500:
                # A's id is only in the body. Some parts answer 422 ("device not found in your
                # organisation") there; that leaks nothing if it is exactly the answer for an
                # id that exists nowhere.
                ghost = send(api, replace(call, body=_ghost(call.body, a)), world.b_headers)
                if (r.status_code, _normal(r.text, a)) != (
                    ghost.status_code,
                    _normal(ghost.text, a),
                ):
                    problems.append(
                        f"{where}: {r.status_code} {text[:200]} differs from the answer for an "
                        f"id that does not exist: {ghost.status_code} {ghost.text[:200]}"
                    )
                elif r.status_code != 404:
                    print(
                        f"note: {where}: {r.status_code} (not 404) for another org's id in the body"
                    )
            elif r.status_code != 404:
                hint = (
                    " (the body is not valid: add one to samples())" if r.status_code == 422 else ""
                )
                problems.append(f"{where}: expected 404, got {r.status_code}{hint} {text[:200]}")
            elif r.json()["error"]["code"] != "not_found":
                problems.append(f"{where}: a 404 without the error body: {text[:200]}")
        if MARK in text.lower() and MARK not in str(call.body).lower():
            problems.append(f"{where}: B's answer shows A's data: {text[:300]}")
    assert not problems, "\n".join(problems)
    assert walked > 60

    # The same reads as A's owner do find the records: the 404s above were not for lack of
    # data (mutating calls are left out: they would change A's records).
    for call in calls:
        if call.method != "GET" or call.template in STREAMS or not call.targets_a:
            continue
        if call.filter_only:
            continue  # A's answer is A's list: nothing to compare
        r = send(api, call, world.a_headers)
        if r.status_code == 409 and call.template in NEEDS_TRAINING:
            # found (not 404), but A has no trained model / week of history yet
            assert r.json()["error"]["code"] == "no_model", r.text
            continue
        if r.status_code != 200:
            problems.append(f"as A: GET {call.url}: {r.status_code} {r.text[:200]}")
    assert not problems, "\n".join(problems)


GHOST_ID = 987654321

# AI reads that need a trained model or a week of readings, which A's records lack.
NEEDS_TRAINING = {
    "/api/v1/devices/{device_id}/appliances",
    "/api/v1/devices/{device_id}/appliances/candidates",
    "/api/v1/devices/{device_id}/forecast",
    "/api/v1/sites/{site_id}/forecast",
}


def _ghost(body: Any, a: OrgA) -> Any:
    """The body with A's ids replaced by an id no record has."""
    if isinstance(body, dict):
        return {
            k: GHOST_ID if k.endswith("_id") and str(v) == ids_for("", k, a) else _ghost(v, a)
            for k, v in body.items()
        }
    if isinstance(body, list):
        return [_ghost(v, a) for v in body]
    return body


def _normal(text: str, a: OrgA) -> str:
    for value in {str(GHOST_ID), *(str(v) for v in a.ids.values())}:
        text = re.sub(rf"\b{value}\b", "<id>", text)
    return text


def _empty(r: Any) -> bool:
    """An empty list (a filtered collection read that found nothing of B's)."""
    try:
        body = r.json()
    except ValueError:
        return False
    return body == [] or (isinstance(body, dict) and body.get("points") == [])


def _page_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (method, path) of the app's routes, included routers flattened."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            context = getattr(route, "include_context", None)
            yield from _page_routes(original.routes, prefix + getattr(context, "prefix", ""))
            continue
        for method in getattr(route, "methods", None) or ():
            yield method, prefix + getattr(route, "path", "")


def test_dashboard_pages_of_organisation_a_are_404_for_b(world: World) -> None:
    api, a = world.api, world.a
    documented = set(api.get("/openapi.json").json()["paths"])
    cookie = {"Cookie": f"{session.SESSION_COOKIE}={world.b_token}"}
    pages = sorted(
        (method, path)
        for method, path in set(_page_routes(list(api.app.routes)))  # type: ignore[attr-defined]
        if "{" in path
        and path not in documented
        and method != "HEAD"
        and not path.startswith("/static")
    )
    assert pages, "no dashboard page takes an id? (the dashboard is not installed)"
    problems = []
    for method, template in pages:
        url = template
        for name in re.findall(r"\{(\w+)(?::\w+)?\}", template):
            value = ids_for(template, name, a)
            if value is None:
                problems.append(f"{method} {template}: unknown parameter {name!r}")
                break
            url = re.sub(r"\{" + name + r"(?::\w+)?\}", value, url)
        else:
            data = {"csrf_token": session.csrf_for(world.b_token)} if method == "POST" else None
            r = api.request(method, url, headers=cookie, data=data, follow_redirects=False)
            if r.status_code != 404 or MARK in r.text.lower():
                problems.append(f"{method} {url}: {r.status_code} {r.text[:200]}")
    assert not problems, "\n".join(problems)


def test_a_viewer_cannot_switch_a_plug(world: World) -> None:
    ids = world.a.ids
    r = world.api.post(
        f"/api/v1/devices/{ids['plug']}/commands", json={"action": "on"}, headers=world.a_viewer
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = world.api.post(
        f"/api/v1/areas/{ids['area']}/commands", json={"action": "off"}, headers=world.a_viewer
    )
    assert r.status_code == 403
    # …but reads the plug and its audit trail.
    assert world.api.get(f"/api/v1/devices/{ids['plug']}/commands", headers=world.a_viewer).json()
