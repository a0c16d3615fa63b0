"""What a site contains and how its devices are wired: appliance inventories by site kind,
panel circuits and phases, and the device layouts (CT monitor, smart plugs, 3-phase panel).

Layouts, by site kind (``n_devices`` devices in all):

- home: a CT monitor on the incoming supply (the whole-house aggregate NILM works on), then a
  smart plug in front of each of the classic NILM appliances (fridge, washing machine,
  dishwasher, kettle, microwave, TV…). Single phase.
- office: a three-phase panel meter (per-phase voltage/current/power, one channel per circuit:
  lighting zones, AC units, socket rings, kitchen, IT), a CT monitor on the kitchen sub-board,
  then plugs on printers, coffee machines, the fridge… and the workstations (PC + monitor).
- restaurant: the panel; a CT monitor on the refrigeration sub-board (the cold chain); plugs on
  the fridges, freezers, espresso machine and microwave.

Plugs sit in front of appliances that are also behind the monitor and the panel, as in a real
building, so a plug's readings are the sub-metered ground truth of what the others see.
Inventories grow with ``n_devices`` (more staff, more workstations, more fridges) so there is
always an appliance for each plug.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from wattwatch.domain import DEFAULT_CHANNEL, DeviceKind, DeviceProtocol
from wattwatch.sim.appliances import SPECS, Appliance, draw_params
from wattwatch.sim.schedules import SiteKind, rng_for, stable_hash

PHASE_CHANNELS = ("phase_a", "phase_b", "phase_c")
# How many appliances share one panel circuit, by role (default 1: a dedicated circuit).
_CIRCUIT_CAPACITY = {"sockets": 6, "kitchen": 4, "cold": 2}
# The sub-board the CT monitor of a 3-phase site sits on (all on phase A).
_MONITORED_ROLE = {SiteKind.OFFICE: "kitchen", SiteKind.RESTAURANT: "cold"}
# Plugs speak a mix of protocols, as a real fleet does.
_PLUG_PROTOCOLS = (
    DeviceProtocol.TASMOTA,
    DeviceProtocol.SHELLY,
    DeviceProtocol.NATIVE,
    DeviceProtocol.HTTP,
)
_HOME_ITEMS: tuple[tuple[str, float], ...] = (
    # plug priority order: the classic NILM set first
    ("fridge", 1.0),
    ("washing_machine", 1.0),
    ("dishwasher", 1.0),
    ("kettle", 1.0),
    ("microwave", 1.0),
    ("tv", 0.95),
    ("pc", 0.6),
    ("freezer", 0.35),
    ("coffee_machine", 0.4),
    ("oven", 0.8),
    ("water_heater", 0.35),
    ("ac_inverter", 0.2),
    ("lighting", 1.0),
    ("base_load", 1.0),
)
_HOME_EXTRAS = ("lamp", "tv", "pc", "lamp")


@dataclass(frozen=True)
class ChannelSpec:
    """One measured channel of a device: its name, phase and the appliances it sees."""

    name: str
    phase: int
    appliances: tuple[str, ...]


@dataclass(frozen=True)
class DeviceSpec:
    """One simulated device and what it measures."""

    uid: str
    kind: DeviceKind
    protocol: DeviceProtocol
    topic: str  # Tasmota topic / Shelly prefix; the uid for the others
    label: str
    channels: tuple[ChannelSpec, ...]
    offset_ms: int  # devices are not synchronised: this one reports at offset + k·step
    line_ohm: float  # wiring resistance between the supply and the meter (voltage drop)
    energy_start_wh: float  # counter value when the simulation starts (device age)

    @property
    def appliances(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for ch in self.channels:
            seen.update(dict.fromkeys(ch.appliances))
        return tuple(seen)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(ch.name for ch in self.channels)


def build_layout(
    kind: SiteKind, n_devices: int, seed: int, site: str
) -> tuple[dict[str, Appliance], list[DeviceSpec]]:
    """The appliances of a site of ``kind`` with ``n_devices`` devices, and the devices."""
    if n_devices < 1:
        raise ValueError("a site needs at least one device")
    rng = rng_for(seed, "layout/" + site)
    three_phase = kind != SiteKind.HOME
    n_plugs = n_devices - (1 if kind == SiteKind.HOME else min(n_devices, 2))
    if kind == SiteKind.HOME:
        kinds = [k for k, p in _HOME_ITEMS if rng.random() < p]
        extra = 0
        while sum(SPECS[k].pluggable for k in kinds) < n_plugs:
            kinds.append(_HOME_EXTRAS[extra % len(_HOME_EXTRAS)])
            extra += 1
        groups = [""] * len(kinds)
    elif kind == SiteKind.OFFICE:
        kinds, groups = _office(n_plugs, rng.random(64).tolist())
    else:
        kinds, groups = _restaurant(n_plugs, rng.random(64).tolist())
    names = _names(kinds)
    roles = [SPECS[k].circuit for k in kinds]
    circuits = _circuits(names, roles)
    kind_of = dict(zip(names, kinds, strict=True))
    # Balance by rough demand; an AC's inrush rating says nothing about its running load.
    weights = {c: sum(min(SPECS[kind_of[n]].max_w, 3000.0) for n in m) for c, m in circuits.items()}
    phases = _phases(kind, weights) if three_phase else dict.fromkeys(circuits, 0)
    circuit_of = {n: c for c, members in circuits.items() for n in members}
    appliances: dict[str, Appliance] = {}
    for k, name, group in zip(kinds, names, groups, strict=True):
        spec = SPECS[k]
        params = draw_params(spec, rng_for(seed, f"params/{site}/{name}"))
        circuit = circuit_of[name]
        appliances[name] = Appliance(
            uid=f"{site}/{name}",
            name=name,
            spec=spec,
            params=params,
            site_kind=kind,
            seed=seed,
            group=group or name,
            phase=phases[circuit],
            circuit=circuit,
        )
    devices: list[DeviceSpec] = []
    if kind == SiteKind.HOME:
        devices.append(
            _device(
                seed,
                f"{site}-monitor",
                DeviceKind.MONITOR,
                DeviceProtocol.NATIVE,
                "whole-house CT monitor",
                (ChannelSpec(DEFAULT_CHANNEL, 0, tuple(appliances)),),
            )
        )
    else:
        chans = [
            ChannelSpec(
                PHASE_CHANNELS[ph], ph, tuple(n for n, a in appliances.items() if a.phase == ph)
            )
            for ph in range(3)
        ]
        chans += [ChannelSpec(c, phases[c], tuple(members)) for c, members in circuits.items()]
        devices.append(
            _device(
                seed,
                f"{site}-panel",
                DeviceKind.PANEL,
                DeviceProtocol.NATIVE,
                "3-phase panel meter",
                tuple(chans),
            )
        )
        if n_devices >= 2:
            role = _MONITORED_ROLE[kind]
            sub = tuple(n for n, a in appliances.items() if a.spec.circuit == role)
            devices.append(
                _device(
                    seed,
                    f"{site}-monitor",
                    DeviceKind.MONITOR,
                    DeviceProtocol.THINGSBOARD,
                    f"CT monitor on the {role} sub-board",
                    (ChannelSpec(DEFAULT_CHANNEL, 0, sub),),
                )
            )
    pluggable = [n for n, a in appliances.items() if a.spec.pluggable]
    for i, name in enumerate(pluggable[:n_plugs]):
        a = appliances[name]
        devices.append(
            _device(
                seed,
                f"{site}-plug{i + 1:02d}",
                DeviceKind.PLUG,
                _PLUG_PROTOCOLS[i % 4],
                f"smart plug: {a.spec.label} ({name})",
                (ChannelSpec(DEFAULT_CHANNEL, a.phase, (name,)),),
            )
        )
    return appliances, devices


def _device(
    seed: int,
    uid: str,
    kind: DeviceKind,
    protocol: DeviceProtocol,
    label: str,
    channels: tuple[ChannelSpec, ...],
) -> DeviceSpec:
    rng = rng_for(seed, "device/" + uid)
    h = stable_hash(uid)
    topic = {
        DeviceProtocol.TASMOTA: f"tasmota_{h & 0xFFFFFF:06X}",
        DeviceProtocol.SHELLY: f"shellyplusplugs-{h:012x}",
    }.get(protocol, uid)
    ohm = {
        DeviceKind.PLUG: (0.05, 0.2),
        DeviceKind.MONITOR: (0.1, 0.3),
        DeviceKind.PANEL: (0.05, 0.15),
    }[kind]
    start_kwh = {
        DeviceKind.PLUG: (0.0, 300.0),
        DeviceKind.MONITOR: (500.0, 20_000.0),
        DeviceKind.PANEL: (5_000.0, 200_000.0),
    }[kind]
    return DeviceSpec(
        uid=uid,
        kind=kind,
        protocol=protocol,
        topic=topic,
        label=label,
        channels=channels,
        offset_ms=int(rng.integers(0, 60_000)),
        line_ohm=float(rng.uniform(*ohm)),
        energy_start_wh=float(rng.uniform(*start_kwh)) * 1000.0,
    )


def _office(n_plugs: int, coin: Sequence[float]) -> tuple[list[str], list[str]]:
    def shared(people: int) -> list[str]:
        return (
            ["printer"] * max(1, round(people / 10))
            + ["coffee_machine"] * max(1, round(people / 15))
            + ["fridge"] * max(1, round(people / 20))
            + ["kettle"] * max(1, round(people / 20))
            + ["microwave"] * max(1, round(people / 15))
            + (["dishwasher"] if people >= 12 else [])
        )

    people = 8
    while len(shared(people)) + 2 * people < n_plugs:
        people += 1
    kinds = shared(people)
    groups = [""] * len(kinds)
    for i in range(people):
        kinds += ["pc", "monitor"]
        groups += [f"ws{i + 1:02d}"] * 2
    zones = math.ceil(people / 8)
    ac = ["ac_inverter" if coin[i % len(coin)] < 0.7 else "ac_onoff" for i in range(zones)]
    fixed = ["office_lighting"] * zones + ac + ["rack", "water_heater_small"]
    return kinds + fixed, groups + [""] * len(fixed)


def _restaurant(n_plugs: int, coin: Sequence[float]) -> tuple[list[str], list[str]]:
    def plugged(size: int) -> list[str]:
        return (
            ["commercial_fridge"] * (2 + size)
            + ["commercial_freezer"] * (1 + size // 2)
            + ["espresso", "microwave"]
        )

    size = 1
    while len(plugged(size)) < n_plugs:
        size += 1
    n_ac = 1 + size // 2
    ac = ["ac_inverter" if coin[i % len(coin)] < 0.6 else "ac_onoff" for i in range(n_ac)]
    fixed = [
        "oven",
        "oven",
        "commercial_dishwasher",
        "restaurant_lighting",
        "restaurant_lighting",
        "water_heater",
        "hood",
        *ac,
    ]
    kinds = plugged(size) + fixed
    return kinds, [""] * len(kinds)


def _names(kinds: Sequence[str]) -> list[str]:
    total = Counter(kinds)
    seen: Counter[str] = Counter()
    names = []
    for k in kinds:
        seen[k] += 1
        names.append(k if total[k] == 1 else f"{k}{seen[k]:02d}")
    return names


def _circuits(names: Sequence[str], roles: Sequence[str]) -> dict[str, list[str]]:
    circuits: dict[str, list[str]] = {}
    count: Counter[str] = Counter()
    current: dict[str, str] = {}
    for name, role in zip(names, roles, strict=True):
        cap = _CIRCUIT_CAPACITY.get(role, 1)
        c = current.get(role)
        if c is None or len(circuits[c]) >= cap:
            count[role] += 1
            c = f"{role}{count[role]:02d}"
            circuits[c] = []
            current[role] = c
        circuits[c].append(name)
    return circuits


def _phases(kind: SiteKind, weights: dict[str, float]) -> dict[str, int]:
    """Balance circuits over the three phases (heaviest first); the monitored sub-board on A."""
    role = _MONITORED_ROLE.get(kind)
    load = [0.0, 0.0, 0.0]
    phase: dict[str, int] = {}
    for c, w in weights.items():
        if role is not None and c.startswith(role) and c[len(role) :].isdigit():
            phase[c] = 0
            load[0] += w
    for c in sorted((c for c in weights if c not in phase), key=lambda c: -weights[c]):
        ph = load.index(min(load))
        phase[c] = ph
        load[ph] += weights[c]
    return phase
