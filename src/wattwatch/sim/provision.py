"""Simulated devices bound to a wattwatch: registering sites and devices, resuming counters.

A :class:`SimDevice` is one device of a simulated :class:`~wattwatch.sim.site.Site` as a
server knows it: its id, token, the protocol it speaks and how far it has reported
(``next_ms``). Registration is idempotent: a site is found by name and a device by uid, so
running the simulator (or the demo) again reuses them; an existing device gets a fresh token
(the old one is hashed on the server and cannot be read back).

When a device already has readings, its counters continue from the last stored values and
it reports from just after the last stored reading (:func:`resume`): restarting a simulation
neither rewrites history nor shows a counter reset that did not happen.

Two registrars implement the same steps: :class:`LocalRegistrar` talks to the services of an
open :class:`~wattwatch.app.Wattwatch` in-process, :class:`ApiRegistrar` to a running server
over its HTTP API with a user's login token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import httpx
import numpy as np

from wattwatch.domain import MAX_FUTURE_MS, MIN_TS_MS, DeviceKind, DeviceProtocol, now_ms
from wattwatch.errors import Conflict, RemoteError
from wattwatch.sim.layout import PHASE_CHANNELS, DeviceSpec
from wattwatch.sim.schedules import SiteKind, stable_hash
from wattwatch.sim.site import Columns, Site

if TYPE_CHECKING:
    from wattwatch.app import Wattwatch
    from wattwatch.registry.service import Principal

MIXED: Final = "mixed"
# Protocols that carry no channel names: a multi-channel meter cannot speak them.
_SINGLE_CHANNEL: Final = frozenset(
    {DeviceProtocol.TASMOTA, DeviceProtocol.SHELLY, DeviceProtocol.THINGSBOARD}
)
# Tariffs the simulator gives the sites it creates (a site's tariff is the server's business
# afterwards; an existing site keeps its own).
DEFAULT_TARIFFS: Final[Mapping[SiteKind, dict[str, Any]]] = {
    SiteKind.HOME: {"currency": "EUR", "price_per_kwh": 0.24, "standing_charge_per_day": 0.3},
    SiteKind.OFFICE: {
        "currency": "EUR",
        "price_per_kwh": 0.12,
        "standing_charge_per_day": 1.5,
        "periods": [
            {"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00", "price_per_kwh": 0.21}
        ],
    },
    SiteKind.RESTAURANT: {
        "currency": "EUR",
        "price_per_kwh": 0.13,
        "standing_charge_per_day": 2.0,
        "periods": [{"start": "10:00", "end": "23:00", "price_per_kwh": 0.22}],
    },
}
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000


@dataclass(eq=False)
class SimDevice:
    """One simulated device as registered on a server."""

    site: Site
    spec: DeviceSpec
    protocol: DeviceProtocol
    address: str  # Tasmota topic / Shelly prefix; the uid for the others
    device_id: int | None = None
    token: str | None = None
    channel_ids: tuple[int, ...] = ()  # server channel ids in ``spec.channels`` order
    next_ms: int = 0  # readings before this time have been reported

    @property
    def uid(self) -> str:
        return self.spec.uid

    @property
    def kind(self) -> DeviceKind:
        return self.spec.kind

    @property
    def channel_names(self) -> tuple[str, ...]:
        return self.spec.channel_names

    @property
    def has_relay(self) -> bool:
        return self.spec.kind == DeviceKind.PLUG

    def take(self, end_ms: int, step_s: float) -> Columns | None:
        """What it reports in ``[next_ms, end_ms)`` (None: nothing); advances ``next_ms``.

        ``next_ms`` moves to just after the last point of the device's grid, so the next call
        continues seamlessly even with another ``step_s`` (when the steps divide each other:
        the grids then share that point and no interval is measured twice or skipped).
        """
        if end_ms <= self.next_ms:
            return None
        grid = self.site.grid(self.uid, self.next_ms, end_ms, step_s)
        if grid.size == 0:
            return None
        parts = [
            chunk.columns
            for chunk in self.site.generate_chunks(
                self.next_ms, end_ms, step_s, chunk_s=86_400.0, devices=[self.uid]
            )
        ]
        self.next_ms = int(grid[-1]) + 1
        parts = [p for p in parts if p["ts_ms"].size]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _address(spec: DeviceSpec, protocol: DeviceProtocol, salt: int = 0) -> str:
    if protocol == spec.protocol and salt == 0:
        return spec.topic
    h = stable_hash(spec.uid if salt == 0 else f"{spec.uid}#{salt}")
    if protocol == DeviceProtocol.TASMOTA:
        return f"tasmota_{h & 0xFFFFFF:06X}"
    if protocol == DeviceProtocol.SHELLY:
        return f"shellyplusplugs-{h:012x}"
    return spec.uid


def plan_devices(sites: Iterable[Site], protocol: str = MIXED) -> list[SimDevice]:
    """The devices of ``sites``, each speaking its own protocol (``mixed``) or ``protocol``.

    Multi-channel meters (panels) keep the native protocol when ``protocol`` carries no
    channel names (Tasmota, Shelly, ThingsBoard). Addresses are made unique per protocol
    (Tasmota topics are short and can collide in a large fleet).
    """
    override = None if protocol == MIXED else DeviceProtocol(protocol)
    out: list[SimDevice] = []
    taken: set[tuple[DeviceProtocol, str]] = set()
    for site in sites:
        for spec in site.devices.values():
            proto = override or spec.protocol
            if len(spec.channels) > 1 and proto in _SINGLE_CHANNEL:
                proto = DeviceProtocol.NATIVE
            salt = 0
            address = _address(spec, proto)
            while (proto, address) in taken:
                salt += 1
                address = _address(spec, proto, salt)
            taken.add((proto, address))
            out.append(SimDevice(site, spec, proto, address))
    return out


def counts_toward_site(site: Site, spec: DeviceSpec, channel: str) -> bool:
    """Whether a channel is a site's incoming supply (else it is a sub-meter of one).

    The panel's phases are the supply of a 3-phase site; a home's CT monitor sits on the
    incoming supply; circuits, sub-board monitors and plugs measure what those already see.
    """
    if spec.kind == DeviceKind.PANEL:
        return channel in PHASE_CHANNELS
    if spec.kind == DeviceKind.MONITOR:
        return not any(d.kind == DeviceKind.PANEL for d in site.devices.values())
    return False


def channel_flags(dev: SimDevice) -> list[dict[str, Any]]:
    """Each channel's ``submeter`` flag, and the appliance a plug's channel feeds."""
    out = []
    for ch in dev.spec.channels:
        flags: dict[str, Any] = {
            "name": ch.name,
            "submeter": not counts_toward_site(dev.site, dev.spec, ch.name),
        }
        if dev.kind == DeviceKind.PLUG:
            flags["appliance"] = ch.appliances[0]
        out.append(flags)
    return out


# -- registrars ----------------------------------------------------------------------------------

Fetch = Callable[[int, int, int, str], list[dict[str, Any]]]


class Registrar(Protocol):
    """The server-side steps of provisioning (in-process or over HTTP)."""

    def ensure_site(self, name: str, timezone: str, tariff: Mapping[str, Any]) -> int: ...

    def ensure_device(self, dev: SimDevice, site_id: int, *, token: bool = True) -> bool:
        """Register ``dev`` (or find it by uid) and fill in its ids and token; True if new."""
        ...

    def readings(
        self, device_id: int, from_ms: int, to_ms: int, interval: str
    ) -> list[dict[str, Any]]: ...


class LocalRegistrar:
    """Provisioning through the services of an open wattwatch, acting as ``principal``."""

    def __init__(self, ww: Wattwatch, principal: Principal) -> None:
        self.ww = ww
        self.principal = principal

    def ensure_site(self, name: str, timezone: str, tariff: Mapping[str, Any]) -> int:
        for site in self.ww.registry.db.list_sites(self.principal.org_id):
            if site["name"] == name:
                return int(site["id"])
        return int(self.ww.registry.create_site(self.principal, name, timezone, dict(tariff))["id"])

    def ensure_device(self, dev: SimDevice, site_id: int, *, token: bool = True) -> bool:
        reg, db = self.ww.registry, self.ww.registry.db
        found = db.device_by(uid=dev.uid)
        created = found is None
        if found is None:
            record, secret = reg.create_device(
                self.principal,
                name=dev.spec.label,
                site_id=site_id,
                kind=dev.kind,
                protocol=dev.protocol,
                uid=dev.uid,
                topic=dev.address,
                channels=list(dev.channel_names),
                model="wattwatch-sim",
                identifiers={"simulator": dev.site.name},
            )
            dev.device_id = int(record["id"])
            dev.token = secret
            for flags in channel_flags(dev):
                db.update_channel(dev.device_id, flags.pop("name"), flags)
        else:
            if found["org_id"] != self.principal.org_id:
                raise Conflict(f"device uid {dev.uid} belongs to another organisation")
            dev.device_id = int(found["id"])
            if token:
                dev.token = reg.rotate_device_token(self.principal, dev.device_id)
        ids = [db.resolve_channel(dev.device_id, name) for name in dev.channel_names]
        dev.channel_ids = tuple(ids)
        return created

    def readings(
        self, device_id: int, from_ms: int, to_ms: int, interval: str
    ) -> list[dict[str, Any]]:
        from wattwatch.domain import Interval
        from wattwatch.queries.service import MAX_LIMIT

        answer = self.ww.queries.readings(
            self.principal.org_id,
            device_id,
            from_ms=from_ms,
            to_ms=to_ms,
            interval=Interval(interval),
            limit=MAX_LIMIT,
        )
        return list(answer["points"])


class ApiRegistrar:
    """Provisioning over a server's HTTP API (``client`` sends a user's bearer token)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self._devices: dict[str, dict[str, Any]] | None = None  # uid -> record, listed once

    @classmethod
    def login(cls, url: str, email: str, password: str, *, timeout_s: float = 60.0) -> ApiRegistrar:
        """Log in as a user (an admin or owner) of the organisation to provision into."""
        try:
            r = httpx.post(
                url.rstrip("/") + "/api/v1/auth/login",
                json={"email": email, "password": password},
                timeout=timeout_s,
            )
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {url}: {exc}") from None
        check(r, "log in")
        token = r.json()["access_token"]
        return cls(
            httpx.Client(
                base_url=url.rstrip("/"),
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout_s,
            )
        )

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            r = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"{what}: {exc}") from None
        check(r, what)
        return r.json()

    def ensure_site(self, name: str, timezone: str, tariff: Mapping[str, Any]) -> int:
        for site in self._call("GET", "/api/v1/sites", "list sites"):
            if site["name"] == name:
                return int(site["id"])
        body = {"name": name, "timezone": timezone, "tariff": dict(tariff)}
        return int(self._call("POST", "/api/v1/sites", f"create site {name}", json=body)["id"])

    def ensure_device(self, dev: SimDevice, site_id: int, *, token: bool = True) -> bool:
        if self._devices is None:
            listed = self._call("GET", "/api/v1/devices", "list devices")
            self._devices = {d["uid"]: d for d in listed}
        found = self._devices.get(dev.uid)
        if found is None:
            body = {
                "name": dev.spec.label,
                "site_id": site_id,
                "kind": str(dev.kind),
                "protocol": str(dev.protocol),
                "uid": dev.uid,
                "topic": dev.address,
                "channels": list(dev.channel_names),
                "model": "wattwatch-sim",
                "identifiers": {"simulator": dev.site.name},
            }
            created = self._call("POST", "/api/v1/devices", f"create device {dev.uid}", json=body)
            self._devices[dev.uid] = created["device"]
            dev.device_id = int(created["id"])
            dev.token = str(created["token"])
            self._set_channel_flags(dev)
            return True
        dev.device_id = int(found["id"])
        if token:
            path = f"/api/v1/devices/{dev.device_id}/token"
            dev.token = str(self._call("POST", path, f"new token for {dev.uid}")["token"])
        return False

    def _set_channel_flags(self, dev: SimDevice) -> None:
        """Sub-meter flags and appliances; a server without ``PATCH /devices/{id}`` answers
        404/405 and its site totals then count every channel."""
        try:
            r = self.client.patch(
                f"/api/v1/devices/{dev.device_id}", json={"channels": channel_flags(dev)}
            )
        except httpx.HTTPError as exc:
            raise RemoteError(f"set channels of {dev.uid}: {exc}") from None
        if r.status_code not in (404, 405):
            check(r, f"set channels of {dev.uid}")

    def readings(
        self, device_id: int, from_ms: int, to_ms: int, interval: str
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "from": from_ms,
            "to": to_ms,
            "interval": interval,
            "limit": 1_000_000,
        }
        answer = self._call(
            "GET", f"/api/v1/devices/{device_id}/readings", "read readings", params=params
        )
        return list(answer["points"])


def check(r: httpx.Response, what: str) -> None:
    """Raise :class:`RemoteError` with the server's own message when ``r`` is an error."""
    if r.status_code < 400:
        return
    try:
        message = r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = r.text[:200]
    raise RemoteError(f"{what}: HTTP {r.status_code}: {message}")


# -- provisioning --------------------------------------------------------------------------------


@dataclass
class Provisioned:
    """What :func:`provision` did."""

    site_ids: dict[str, int]  # sim site name -> server site id
    created: int  # devices registered now
    reused: int  # devices that existed already
    resumed: int  # devices whose counters continue from stored readings


def provision(
    registrar: Registrar,
    devices: Sequence[SimDevice],
    *,
    site_names: Mapping[str, str] | None = None,
    start_ms: int | None = None,
    tokens: bool = True,
    now: int | None = None,
) -> Provisioned:
    """Register ``devices`` (and their sites) and position each one to report from.

    A new device reports from ``start_ms`` (default: now). A device that exists and has
    readings continues from its last stored counters, after its last stored reading or
    from ``start_ms`` if that is later (the gap stays a gap): history is never written
    twice and counters never go back. ``site_names`` renames sim sites on the server.
    """
    t_now = now_ms() if now is None else now
    start = t_now if start_ms is None else start_ms
    site_ids: dict[str, int] = {}
    created = reused = resumed = 0
    for dev in devices:
        site = dev.site
        if site.name not in site_ids:
            name = (site_names or {}).get(site.name, site.name)
            site_ids[site.name] = registrar.ensure_site(
                name, site.tz.key, DEFAULT_TARIFFS[site.kind]
            )
        if registrar.ensure_device(dev, site_ids[site.name], token=tokens):
            created += 1
            dev.next_ms = start
            continue
        reused += 1
        assert dev.device_id is not None
        last = latest_reading(registrar, dev.device_id, t_now)
        if last is None:
            dev.next_ms = start
            continue
        ts, energy = last
        dev.site.resume_counters(dev.uid, [energy.get(name) for name in dev.channel_names])
        dev.next_ms = max(ts + 1, start)
        resumed += 1
    return Provisioned(site_ids, created, reused, resumed)


def latest_reading(
    registrar: Registrar, device_id: int, now: int
) -> tuple[int, dict[str, float]] | None:
    """The time of a device's newest stored reading and each channel's counter then.

    Narrows down through the rollups (day → hour → minute) so only the last minute of raw
    readings is read, whatever the history holds.
    """
    lo, hi = MIN_TS_MS, now + MAX_FUTURE_MS
    for interval, width_ms in (("1d", 26 * HOUR_MS), ("1h", HOUR_MS), ("1m", MINUTE_MS)):
        points = registrar.readings(device_id, lo, hi, interval)
        if not points:
            return None
        lo = max(int(p["ts"]) for p in points)
        hi = min(hi, lo + width_ms)
    points = registrar.readings(device_id, lo, hi, "raw")
    if not points:
        return None
    energy: dict[str, float] = {}
    last_ts = 0
    for p in points:  # ordered by time: later points overwrite
        last_ts = max(last_ts, int(p["ts"]))
        if p.get("energy_wh") is not None:
            energy[str(p["channel"])] = float(p["energy_wh"])
    return last_ts, energy
