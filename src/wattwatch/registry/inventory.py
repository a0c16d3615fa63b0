"""Device inventory as CSV or YAML: export, and import validated row by row, idempotent by uid.

CSV columns (every one optional except ``uid``; ``name`` is needed for a new device)::

    uid,name,kind,protocol,topic,site,area,model,firmware,serial,mac,asset_tag,
    identifiers,location,channels,submeter

``site`` is a site name (or id) of the organisation; ``area`` an area path under it
("Floor 2/Printer corner"), created when missing; ``identifiers`` and ``location`` are
``key=value; key=value`` lists (a plain text location is its ``description``); ``channels``
is ``name[:appliance]; …`` ("mains:Printer" for a plug); ``submeter`` (true/false) applies to
the row's channels. An empty cell leaves an existing device's value as it is. YAML is a list of
devices (or ``{devices: [...]}``) with the same keys, ``identifiers``/``location`` as mappings
and ``channels`` as a list of names or ``{name, appliance, submeter}``.

An import first checks every row and applies nothing when one is wrong (``InventoryErrors``
lists them all); then it creates the devices it does not know, updates those whose values
differ and leaves the rest: importing the same file twice changes nothing the second time.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from wattwatch.domain import DeviceKind, DeviceProtocol, Role
from wattwatch.errors import InvalidInput, WattwatchError
from wattwatch.registry.service import (
    Principal,
    RegistryService,
    check_channels,
    device_values,
    with_paths,
)

Format = Literal["csv", "yaml"]
FORMATS: tuple[str, ...] = ("csv", "yaml")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "yaml": "application/yaml"}
COLUMNS = (
    "uid",
    "name",
    "kind",
    "protocol",
    "topic",
    "site",
    "area",
    "model",
    "firmware",
    "serial",
    "mac",
    "asset_tag",
    "identifiers",
    "location",
    "channels",
    "submeter",
)
# Identifiers with a column of their own in CSV; others go to the ``identifiers`` column.
ID_COLUMNS = ("serial", "mac", "asset_tag")
MAX_ROWS = 10_000
MAX_BYTES = 10 * 1024 * 1024
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


class InventoryErrors(InvalidInput):
    """Rows that cannot be imported as given; nothing was applied."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        self.problems = problems
        first = "; ".join(
            f"{p['where']}{' (' + p['uid'] + ')' if p.get('uid') else ''}: {p['message']}"
            for p in problems[:5]
        )
        more = f" … and {len(problems) - 5} more" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} row(s) cannot be imported, nothing was: {first}{more}")


@dataclass
class Row:
    """One device of the file, parsed (``None``: not given)."""

    where: str
    uid: str
    fields: dict[str, Any] = field(default_factory=dict)
    site: str | None = None
    area: str | None = None
    channels: list[dict[str, Any]] | None = None


@dataclass
class ImportResult:
    dry_run: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    areas_created: list[str] = field(default_factory=list)
    tokens: list[dict[str, str]] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r["action"] == action)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "created": self.count("created"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "areas_created": self.areas_created,
            "rows": self.rows,
            "tokens": self.tokens,
        }


# -- parsing --------------------------------------------------------------------------------
def _pairs(text: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what}: write key=value; key=value (got {part.strip()[:40]!r})")
        out[key.strip()] = value.strip()
    return out


def _bool(text: Any, what: str) -> bool:
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{what} must be true or false, not {str(text)[:20]!r}")


def _csv_channels(text: str, submeter: bool | None) -> list[dict[str, Any]]:
    out = []
    for part in text.split(";"):
        if not part.strip():
            continue
        name, _, appliance = part.partition(":")
        channel: dict[str, Any] = {"name": name.strip()}
        if appliance.strip():
            channel["appliance"] = appliance.strip()
        if submeter is not None:
            channel["submeter"] = submeter
        out.append(channel)
    return out


def _yaml_channels(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ValueError("channels is a list of names or {name, appliance, submeter}")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append({"name": item})
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            unknown = set(item) - {"name", "appliance", "submeter"}
            if unknown:
                raise ValueError(f"channel {item['name']!r}: unknown key(s) {sorted(unknown)}")
            channel: dict[str, Any] = {"name": item["name"]}
            if item.get("appliance") is not None:
                channel["appliance"] = str(item["appliance"])
            if "submeter" in item:
                channel["submeter"] = _bool(item["submeter"], "submeter")
            out.append(channel)
        else:
            raise ValueError("channels is a list of names or {name, appliance, submeter}")
    return out


def _row_from_csv(where: str, cells: dict[str, str]) -> Row:
    text = {k: (v or "").strip() for k, v in cells.items() if k}
    unknown = set(text) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown column(s) {sorted(unknown)}; columns are {', '.join(COLUMNS)}")
    row = Row(where, text.get("uid", ""))
    for key in ("name", "kind", "protocol", "topic", "model", "firmware"):
        if text.get(key):
            row.fields[key] = text[key]
    identifiers = _pairs(text.get("identifiers", ""), "identifiers")
    for key in ID_COLUMNS:
        if text.get(key):
            identifiers[key] = text[key]
    if identifiers:
        row.fields["identifiers"] = identifiers
    location = text.get("location", "")
    if location:
        row.fields["location"] = (
            _pairs(location, "location") if "=" in location else {"description": location}
        )
    row.site = text.get("site") or None
    row.area = text.get("area") or None
    submeter = _bool(text["submeter"], "submeter") if text.get("submeter") else None
    if text.get("channels"):
        row.channels = _csv_channels(text["channels"], submeter)
    elif submeter is not None:
        raise ValueError("submeter needs the channels it applies to")
    return row


def _row_from_yaml(where: str, item: Any) -> Row:
    if not isinstance(item, dict):
        raise ValueError("each device is a mapping (uid: …, name: …)")
    allowed = set(COLUMNS) - {"serial", "mac", "asset_tag", "submeter"} | {"key_map"}
    unknown = set(item) - allowed
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(map(str, unknown))}")
    row = Row(where, str(item.get("uid") or ""))
    for key in ("name", "kind", "protocol", "topic", "model", "firmware"):
        if item.get(key) is not None:
            row.fields[key] = str(item[key])
    for key in ("identifiers", "location", "key_map"):
        if item.get(key) is not None:
            if not isinstance(item[key], dict):
                raise ValueError(f"{key} is a mapping")
            row.fields[key] = item[key]
    row.site = str(item["site"]) if item.get("site") is not None else None
    row.area = str(item["area"]) if item.get("area") is not None else None
    if item.get("channels") is not None:
        row.channels = _yaml_channels(item["channels"])
    return row


def parse_inventory(data: bytes | str, fmt: str) -> tuple[list[Row], list[dict[str, Any]]]:
    """The rows of a file and the problems found reading it (one per bad row)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be csv or yaml, not {fmt[:20]!r}")
    raw = data if isinstance(data, bytes) else data.encode()
    if len(raw) > MAX_BYTES:
        raise InvalidInput(f"an inventory file has at most {MAX_BYTES // 1_000_000} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the file is not UTF-8 text") from None
    rows: list[Row] = []
    problems: list[dict[str, Any]] = []
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "uid" not in [f.strip() for f in reader.fieldnames if f]:
            raise InvalidInput("the CSV needs a header row with at least a 'uid' column")
        reader.fieldnames = [f.strip() if f else f for f in reader.fieldnames]
        items: list[tuple[str, Any]] = []
        for cells in reader:
            if None in cells:
                problems.append(
                    {"where": f"row {reader.line_num}", "message": "more cells than columns"}
                )
                continue
            if not any((v or "").strip() for v in cells.values()):
                continue  # blank line
            items.append((f"row {reader.line_num}", cells))
        parse: Any = _row_from_csv
    else:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(f"not valid YAML: {str(exc)[:200]}") from None
        if isinstance(doc, dict) and "devices" in doc:
            doc = doc["devices"]
        if doc is None:
            doc = []
        if not isinstance(doc, list):
            raise InvalidInput("the YAML is a list of devices (or a mapping with 'devices:')")
        items = [(f"item {i}", item) for i, item in enumerate(doc, start=1)]
        parse = _row_from_yaml
    if len(items) > MAX_ROWS:
        raise InvalidInput(f"an inventory file has at most {MAX_ROWS} devices")
    for where, item in items:
        try:
            rows.append(parse(where, item))
        except ValueError as exc:
            uid = item.get("uid") if isinstance(item, dict) else None
            problems.append({"where": where, "uid": str(uid or ""), "message": str(exc)})
    return rows, problems


# -- import ---------------------------------------------------------------------------------
class _Places:
    """The organisation's sites and area paths, with the areas an import will add."""

    def __init__(self, registry: RegistryService, org_id: int) -> None:
        self.sites = registry.db.list_sites(org_id)
        self.areas: dict[tuple[int, str], int] = {
            (a["site_id"], a["path"].lower()): a["id"]
            for a in with_paths(registry.db.list_areas(org_id))
        }
        self.new_areas: dict[tuple[int, str], str] = {}

    def site(self, ref: str) -> int:
        by_name = [s for s in self.sites if s["name"].lower() == ref.lower()]
        if len(by_name) == 1:
            return int(by_name[0]["id"])
        if len(by_name) > 1:
            raise ValueError(f"several sites are called {ref!r}: use the site id")
        if ref.isdigit() and any(s["id"] == int(ref) for s in self.sites):
            return int(ref)
        raise ValueError(f"no site {ref!r} (create it first: sites have a timezone and tariff)")

    def area_key(self, site_id: int, path: str) -> tuple[int, str]:
        """The key of an area path in ``areas``; missing areas are noted in ``new_areas``."""
        parts = [p.strip() for p in path.split("/")]
        if any(not p or len(p) > 200 for p in parts) or len(parts) > 16:
            raise ValueError(f"area path {path[:80]!r}: names of 1-200 characters joined by '/'")
        for depth in range(1, len(parts) + 1):
            prefix = (site_id, "/".join(parts[:depth]).lower())
            if prefix not in self.areas:
                self.new_areas.setdefault(prefix, "/".join(parts[:depth]))
        return (site_id, "/".join(parts).lower())


def import_inventory(
    registry: RegistryService,
    principal: Principal,
    data: bytes | str,
    fmt: str,
    *,
    dry_run: bool = False,
) -> ImportResult:
    """Create or update the devices of an inventory file (see the module docstring)."""
    principal.require(Role.ADMIN)
    rows, problems = parse_inventory(data, fmt)
    places = _Places(registry, principal.org_id)
    seen_uids: dict[str, str] = {}
    seen_topics: dict[tuple[str, str], str] = {}
    plans: list[_Plan] = []
    for row in rows:
        try:
            plans.append(_plan(registry, principal, places, row, seen_uids, seen_topics))
        except (ValueError, WattwatchError) as exc:
            problems.append({"where": row.where, "uid": row.uid, "message": str(exc)})
    if problems:
        problems.sort(key=lambda p: int(p["where"].split()[-1]))
        raise InventoryErrors(problems)

    result = ImportResult(dry_run=dry_run, areas_created=sorted(places.new_areas.values()))
    if not dry_run:
        _create_areas(registry, principal, places)
    for plan in plans:
        row, existing = plan.row, plan.existing
        area_id = places.areas.get(plan.area_key) if plan.area_key else None
        entry: dict[str, Any] = {"where": row.where, "uid": row.uid}
        if existing is None:
            entry["action"] = "created"
            if not dry_run:
                device, token = registry.create_device(
                    principal,
                    **plan.fields,
                    uid=row.uid,
                    site_id=plan.site_id,
                    area_id=area_id,
                    channels=[c["name"] for c in row.channels] if row.channels else None,
                )
                for channel in row.channels or []:
                    flags: dict[str, Any] = {
                        k: channel[k] for k in ("appliance", "submeter") if k in channel
                    }
                    if flags:
                        registry.db.upsert_channel(device["id"], channel["name"], flags)
                entry["id"] = device["id"]
                result.tokens.append({"uid": row.uid, "token": token})
        else:
            changes = _changes(registry, existing, plan, area_id)
            entry["id"] = existing["id"]
            entry["action"] = "updated" if changes else "unchanged"
            entry["changes"] = sorted(changes)
            if changes and not dry_run:
                registry.update_device(principal, existing["id"], changes)
        result.rows.append(entry)
    return result


@dataclass
class _Plan:
    row: Row
    existing: dict[str, Any] | None
    fields: dict[str, Any]
    site_id: int | None
    area_key: tuple[int, str] | None


def _plan(
    registry: RegistryService,
    principal: Principal,
    places: _Places,
    row: Row,
    seen_uids: dict[str, str],
    seen_topics: dict[tuple[str, str], str],
) -> _Plan:
    """Check one row against the registry and the rows before it; what to do with it."""
    db = registry.db
    if not row.uid:
        raise ValueError("uid is required: it is what makes a re-import update, not add")
    if row.uid in seen_uids:
        raise ValueError(f"uid repeated (first at {seen_uids[row.uid]})")
    seen_uids[row.uid] = row.where
    existing = db.device_by(uid=row.uid)
    if existing is not None and existing["org_id"] != principal.org_id:
        raise ValueError("this uid is registered to another organisation")
    if existing is None and "name" not in row.fields:
        raise ValueError("name is required for a new device")
    fields = dict(row.fields)
    if existing is not None and "identifiers" in fields:
        # Cells add or change identifiers; one a file does not mention is kept.
        fields["identifiers"] = {**(existing["identifiers"] or {}), **fields["identifiers"]}
    merged: dict[str, Any] = {
        "kind": DeviceKind.MONITOR,
        "protocol": DeviceProtocol.NATIVE,
        "topic": None,
        "identifiers": None,
        "location": None,
        "key_map": None,
        "model": None,
        "firmware": None,
        **(existing or {}),
        **fields,
        "uid": row.uid,
    }
    if existing is not None and "protocol" in fields and "topic" not in fields:
        merged["topic"] = None if existing["topic"] == existing["uid"] else existing["topic"]
    checked = device_values(**{k: merged[k] for k in _DEVICE_KEYS})
    address = (checked["protocol"], checked["topic"])
    if address in seen_topics:
        raise ValueError(
            f"{address[0]} topic {address[1]!r} repeated (first at {seen_topics[address]})"
        )
    seen_topics[address] = row.where
    other = db.device_by(protocol=address[0], topic=address[1])
    if other is not None and other["uid"] != row.uid:
        raise ValueError(f"another device already uses {address[0]} topic {address[1]!r}")
    if row.channels is not None:
        check_channels([c["name"] for c in row.channels])
    site_id = places.site(row.site) if row.site else None
    area_key = None
    if row.area:
        on_site = site_id if site_id is not None else (existing or {}).get("site_id")
        if on_site is None:
            raise ValueError("an area needs the site it is on (fill in the site column)")
        area_key = places.area_key(on_site, row.area)
    return _Plan(row, existing, fields, site_id, area_key)


_DEVICE_KEYS = (
    "name",
    "kind",
    "protocol",
    "uid",
    "topic",
    "identifiers",
    "location",
    "key_map",
    "model",
    "firmware",
)


def _create_areas(registry: RegistryService, principal: Principal, places: _Places) -> None:
    # Parents first: a shorter path is created before the longer ones under it.
    for (site_id, key), path in sorted(
        places.new_areas.items(), key=lambda kv: kv[0][1].count("/")
    ):
        parent_key = key.rpartition("/")[0]
        parent_id = places.areas.get((site_id, parent_key)) if parent_key else None
        area = registry.create_area(principal, site_id, path.rpartition("/")[2], None, parent_id)
        places.areas[(site_id, key)] = area["id"]
    places.new_areas.clear()


def _same(key: str, value: Any, current: Any) -> bool:
    if key in ("identifiers", "key_map", "location") and isinstance(value, dict):
        # CSV cells are text: 12 and "12" are the same location field.
        def text(m: Any) -> dict[str, str]:
            return {str(k): str(v) for k, v in (m or {}).items()}

        return text(value) == text(current)
    return bool(value == current)


def _changes(
    registry: RegistryService, existing: dict[str, Any], plan: _Plan, area_id: int | None
) -> dict[str, Any]:
    """What an update would change, in ``update_device`` terms (empty: nothing)."""
    changes = {k: v for k, v in plan.fields.items() if not _same(k, v, existing.get(k))}
    if plan.site_id is not None and plan.site_id != existing["site_id"]:
        changes["site_id"] = plan.site_id
    if plan.area_key is not None and (area_id is None or area_id != existing["area_id"]):
        changes["area_id"] = area_id
    if plan.row.channels is not None:
        current = {c["name"]: c for c in registry.db.list_channels(existing["id"])}
        for channel in plan.row.channels:
            have = current.get(channel["name"])
            if have is None or any(have.get(k) != v for k, v in channel.items() if k != "name"):
                changes["channels"] = plan.row.channels
                break
    return changes


# -- export ---------------------------------------------------------------------------------
def export_inventory(
    registry: RegistryService, principal: Principal, fmt: str, *, site_id: int | None = None
) -> bytes:
    """The organisation's devices (of one site) in a file ``import_inventory`` reads back."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be csv or yaml, not {fmt[:20]!r}")
    db = registry.db
    if site_id is not None:
        db.get_site(principal.org_id, site_id)
    sites = {s["id"]: s["name"] for s in db.list_sites(principal.org_id)}
    paths = {a["id"]: a["path"] for a in with_paths(db.list_areas(principal.org_id))}
    records = []
    for device in db.list_devices(principal.org_id, site_id):
        channels = db.list_channels(device["id"])
        records.append((device, channels))
    if fmt == "yaml":
        items = []
        for device, channels in records:
            item: dict[str, Any] = {
                "uid": device["uid"],
                "name": device["name"],
                "kind": device["kind"],
                "protocol": device["protocol"],
                "topic": device["topic"],
            }
            if device["site_id"] is not None:
                item["site"] = sites.get(device["site_id"])
            if device["area_id"] is not None:
                item["area"] = paths.get(device["area_id"])
            for key in ("model", "firmware"):
                if device[key]:
                    item[key] = device[key]
            for key in ("identifiers", "location", "key_map"):
                if device[key]:
                    item[key] = device[key]
            item["channels"] = [
                {
                    "name": c["name"],
                    **({"appliance": c["appliance"]} if c["appliance"] else {}),
                    "submeter": bool(c["submeter"]),
                }
                for c in channels
            ]
            items.append(item)
        text: str = yaml.safe_dump({"devices": items}, sort_keys=False, allow_unicode=True)
        return text.encode()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for device, channels in records:
        identifiers = dict(device["identifiers"] or {})
        location = device["location"] or {}
        submeters = {bool(c["submeter"]) for c in channels}
        row = {
            "uid": device["uid"],
            "name": device["name"],
            "kind": device["kind"],
            "protocol": device["protocol"],
            "topic": device["topic"],
            "site": sites.get(device["site_id"], "") if device["site_id"] else "",
            "area": paths.get(device["area_id"], "") if device["area_id"] else "",
            "model": device["model"] or "",
            "firmware": device["firmware"] or "",
            **{key: identifiers.pop(key, "") for key in ID_COLUMNS},
            "identifiers": "; ".join(f"{k}={v}" for k, v in identifiers.items()),
            "location": (
                location["description"]
                if set(location) == {"description"}
                else "; ".join(f"{k}={v}" for k, v in location.items())
            ),
            "channels": "; ".join(
                c["name"] + (f":{c['appliance']}" if c["appliance"] else "") for c in channels
            ),
            # One flag for the row when the channels agree (the usual case); YAML keeps more.
            "submeter": ("true" if True in submeters else "false") if len(submeters) == 1 else "",
        }
        writer.writerow(row)
    return out.getvalue().encode()
