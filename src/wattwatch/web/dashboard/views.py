"""What the dashboard pages show, gathered from the services: sites, devices, power now, today."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from wattwatch.domain import Interval, now_ms
from wattwatch.errors import WattwatchError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from wattwatch.app import Wattwatch
    from wattwatch.registry.service import Principal

# A device without an explicit online/offline status is online while its readings arrive
# at least this often.
ONLINE_WITHIN_MS = 10 * 60 * 1000
# How far back "power now" looks in the 1 min rollups when the live hub has not seen the
# device since the server started.
RECENT_MS = 15 * 60 * 1000

# API routes of other parts; a page section that needs one stays hidden (or says "not
# available yet") until the route is mounted. Paths with their {parameters} blanked.
FEATURE_ROUTES: dict[str, tuple[str, str]] = {
    "commands": ("POST", "/api/v1/devices/{}/commands"),
    "alerts": ("GET", "/api/v1/alerts"),
    "alert_ack": ("POST", "/api/v1/alerts/{}/ack"),
    "reports": ("GET", "/api/v1/sites/{}/reports"),
    "claims": ("POST", "/api/v1/claims"),
    "areas": ("GET", "/api/v1/sites/{}/areas"),
    "appliances": ("GET", "/api/v1/devices/{}/appliances"),
    "forecast": ("GET", "/api/v1/devices/{}/forecast"),
    "api_keys": ("GET", "/api/v1/api-keys"),
    "user_roles": ("PATCH", "/api/v1/users/{}"),
}
_PARAM = re.compile(r"\{[^}]*\}")


def available_features(app: FastAPI) -> dict[str, bool]:
    """Which optional parts are mounted, read from the app's routes at render time.

    The OpenAPI paths are the public, flattened view of every included router (FastAPI may
    keep included routers nested in ``app.routes``); it is cached until the routes change.
    """
    mounted: set[tuple[str, str]] = set()
    try:
        paths: dict[str, Any] = app.openapi().get("paths", {})
    except Exception:  # a broken schema elsewhere must not take the dashboard down
        log.exception("OpenAPI schema failed; optional dashboard parts stay hidden")
        paths = {}
    for path, operations in paths.items():
        for method in operations:
            mounted.add((method.upper(), _PARAM.sub("{}", path)))
    for route in app.routes:
        for method in getattr(route, "methods", None) or ():
            mounted.add((method, _PARAM.sub("{}", getattr(route, "path", ""))))
    return {
        name: any(m == method and (p == path or p.startswith(path + "/")) for m, p in mounted)
        for name, (method, path) in FEATURE_ROUTES.items()
    }


@dataclass
class DeviceNow:
    """A device as the overview and tree show it."""

    record: dict[str, Any]
    power_w: float | None = None
    last_seen_ms: int | None = None
    online: bool = False
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # newest point per channel

    @property
    def id(self) -> int:
        return int(self.record["id"])


def device_now(ww: Wattwatch, org_id: int, device: dict[str, Any], now: int) -> DeviceNow:
    """Newest values of a device: from the live hub, else from its last minute rollups."""
    latest = ww.live.latest(device["id"])
    seen = [t for t in (device.get("last_seen_ms"), ww.live.last_seen_ms(device["id"])) if t]
    if not latest:
        try:
            recent = ww.queries.readings(
                org_id,
                device["id"],
                from_ms=now - RECENT_MS,
                to_ms=now + 1,
                interval=Interval.MINUTE,
                limit=2000,
            )["points"]
        except WattwatchError:
            recent = []
        for p in recent:  # ascending: the last bucket of each channel wins
            latest[p["channel"]] = {"ts": p["ts"], "power_w": p["power_w_avg"]}
        if recent:
            # The raw readings of that last minute carry every metric and the exact time.
            last_minute = recent[-1]["ts"]
            try:
                raw = ww.queries.readings(
                    org_id,
                    device["id"],
                    from_ms=last_minute,
                    to_ms=now + 1,
                    limit=10_000,
                )["points"]
            except WattwatchError:
                raw = []
            for p in raw:
                latest[p["channel"]] = {k: v for k, v in p.items() if v is not None}
            seen.append(raw[-1]["ts"] if raw else last_minute + 60_000 - 1)
    powers = [p["power_w"] for p in latest.values() if p.get("power_w") is not None]
    last_seen = max(seen) if seen else None
    if device.get("online") is not None:
        online = bool(device["online"])
    else:
        online = last_seen is not None and now - last_seen <= ONLINE_WITHIN_MS
    return DeviceNow(
        record=device,
        power_w=sum(powers) if powers else None,
        last_seen_ms=last_seen,
        online=online,
        channels=latest,
    )


def local_day_start_ms(tz: str, now: int) -> int:
    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(now / 1000, zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    return int(midnight.timestamp() * 1000)


@dataclass
class SiteSummary:
    record: dict[str, Any]
    devices: list[DeviceNow]
    counted: list[str]  # "device_id:channel" keys that count toward the site's power
    power_w: float | None
    today_kwh: float
    today_cost: float
    currency: str

    @property
    def online(self) -> int:
        return sum(1 for d in self.devices if d.online)

    @property
    def offline(self) -> int:
        return len(self.devices) - self.online


def overview(ww: Wattwatch, org_id: int) -> tuple[list[SiteSummary], list[DeviceNow]]:
    """Each site with its devices, power now, and today's energy and cost; then the devices
    that are on no site yet."""
    now = now_ms()
    devices = [device_now(ww, org_id, d, now) for d in ww.registry.db.list_devices(org_id)]
    by_site: dict[int | None, list[DeviceNow]] = {}
    for d in devices:
        by_site.setdefault(d.record.get("site_id"), []).append(d)
    sites = []
    for site in ww.registry.db.list_sites(org_id):
        mine = by_site.get(site["id"], [])
        counted_channels = ww.registry.db.site_channels(org_id, site["id"])
        names = {(c["device_id"], c["name"]) for c in counted_channels}
        power: float | None = None
        for d in mine:
            for channel, point in d.channels.items():
                if (d.id, channel) in names and point.get("power_w") is not None:
                    power = (power or 0.0) + point["power_w"]
        energy = ww.queries.site_energy(
            org_id,
            site["id"],
            from_ms=local_day_start_ms(site["timezone"], now),
            to_ms=now + 1,
            interval=Interval.DAY,
        )
        sites.append(
            SiteSummary(
                record=site,
                devices=mine,
                counted=sorted(f"{dev}:{ch}" for dev, ch in names),
                power_w=power,
                today_kwh=sum(p["energy_wh"] for p in energy["points"]) / 1000,
                today_cost=sum(p["cost"] for p in energy["points"]),
                currency=energy["currency"],
            )
        )
    return sites, by_site.get(None, [])


def areas_of(ww: Wattwatch, principal: Principal, site_id: int) -> dict[int, str]:
    """Area names (their path, "Floor 2/Room 201") of a site, when the registry has areas."""
    list_areas = getattr(ww.registry, "list_areas", None)
    if list_areas is None:
        return {}
    try:
        rows = list_areas(principal, site_id)
    except WattwatchError:
        return {}
    return {int(a["id"]): str(a.get("path") or a["name"]) for a in rows}
