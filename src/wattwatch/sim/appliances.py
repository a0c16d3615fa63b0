"""Appliance models: a declarative table of specs, and the behaviours that turn one into a day.

Each :class:`ApplianceSpec` names a *behaviour* (``compressor``, ``program``, ``thermostat``…),
the ranges its instance parameters are drawn from, how it is used at each kind of site, and its
electrical character (power factor per part, how power follows the mains voltage). A behaviour
is a function ``(appliance, day, rng) -> Pulses`` describing one local day as rectangular pulses
of (P, Q); :mod:`wattwatch.sim.timeline` integrates and samples them.

Electrical signatures (typical figures from appliance datasheets and NILM datasets such as
UK-DALE and REFIT): motors and compressors are inductive (PF 0.55-0.9, a locked-rotor inrush
of 3-6x for about a second at PF ~0.45); heating elements are resistive (PF 1, power ∝ V²);
switch-mode electronics draw constant power at PF 0.5-0.98 (with or without PFC). Harmonic
distortion of electronics is folded into their reactive power, so ``S = sqrt(P² + Q²)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from wattwatch.sim.schedules import (
    DAY_S,
    HOME_DAYTIME,
    HOME_DAYTIME_WEEKEND,
    HOME_EVENING,
    HOME_MEALS,
    HOME_MEALS_WEEKEND,
    HOME_SHOWERS,
    HOUR_S,
    OFFICE_COFFEE,
    OFFICE_HOURS,
    OFFICE_LUNCH,
    PRESENCE_CURVES,
    SERVICE_CURVE,
    Bumps,
    Day,
    SiteKind,
    Usage,
    intersect,
    rng_for,
    subtract,
)
from wattwatch.sim.timeline import F64, Block, Pulses, integrate

Params = Mapping[str, float]
Intervals = list[tuple[float, float]]


@dataclass(frozen=True)
class ApplianceSpec:
    """One kind of appliance: its behaviour, parameter ranges, usage by site kind, limits."""

    kind: str
    label: str
    behaviour: str
    params: Mapping[str, tuple[float, float]]
    # The highest mean power over >= 1 s a healthy unit can draw at nominal voltage (W).
    max_w: float
    # Power follows (V / V_nominal) ** v_exp: 2 for heating elements, ~0 for electronics.
    v_exp: float
    # A plug-in appliance (a smart plug can sit in front of it) or a hard-wired one.
    pluggable: bool
    # The panel circuit role it is wired to: "kitchen", "sockets", "light", "ac"…
    circuit: str
    usage: Mapping[SiteKind, Usage] = field(default_factory=dict)


@dataclass(frozen=True)
class Appliance:
    """One appliance instance at a site: its spec and the parameters drawn for it."""

    uid: str  # unique in the fleet: "<site>/<name>"
    name: str  # unique in the site: "fridge", "pc07"
    spec: ApplianceSpec
    params: Params
    site_kind: SiteKind
    seed: int
    group: str = ""  # appliances sharing a user (a workstation's PC and monitor)
    phase: int = 0
    circuit: str = ""

    def pulses(self, day: Day) -> Pulses:
        rng = rng_for(self.seed, "appliance/" + self.uid, day.ordinal)
        return BEHAVIOURS[self.spec.behaviour](self, day, rng)

    def block(self, day: Day) -> Block:
        """This appliance's cumulative-energy curve over ``day`` (nominal voltage)."""
        return integrate(self.pulses(day), day.start_s, day.length_s, day.dst_shift_s)

    def usage_times(self, day: Day, rng: np.random.Generator, scale: float = 1.0) -> F64:
        usage = self.spec.usage.get(self.site_kind)
        if usage is None or not day.open:
            return np.empty(0, dtype=np.float64)
        return usage.sample(day, rng, scale)

    def usage_curve(self, day: Day) -> Bumps | None:
        usage = self.spec.usage.get(self.site_kind)
        return None if usage is None else usage.curve(day)


def draw_params(spec: ApplianceSpec, rng: np.random.Generator) -> Params:
    """This unit's parameters: one draw from each of the spec's ranges."""
    return MappingProxyType({k: float(rng.uniform(lo, hi)) for k, (lo, hi) in spec.params.items()})


Behaviour = Callable[[Appliance, Day, np.random.Generator], Pulses]


# --------------------------------------------------------------------------------------------
# Behaviours


def compressor(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Fridge/freezer: thermostat cycles whose duty follows room temperature and door openings;
    a defrost heater every few hours (compressor off, then a long pull-down run)."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    doors = PRESENCE_CURVES[day.kind]
    busy_scale = 1.0 if day.open else 0.15
    period = p["period_min"] * 60.0
    defrost_every = p["defrost_h"] * HOUR_S
    t = -float(rng.uniform(0.0, period))  # the day starts somewhere in a cycle
    next_defrost = float(rng.uniform(0.0, defrost_every)) if p["defrost_w"] > 0 else math.inf
    runs: list[tuple[float, float]] = []
    defrosts: list[tuple[float, float]] = []
    while t < DAY_S:
        h = max(t, 0.0) / HOUR_S
        room = float(day.indoor_c(h))
        busy = float(doors.at(h)) * busy_scale
        duty = min(0.92, max(0.12, p["duty20"] + p["duty_per_c"] * (room - 20.0)))
        duty = min(0.95, duty + p["door_boost"] * busy)
        cycle = period * float(rng.uniform(0.85, 1.15))
        on = duty * cycle
        if t >= next_defrost:
            d = p["defrost_min"] * 60.0
            defrosts.append((t, t + d))
            t += d + float(rng.uniform(120.0, 300.0))  # drip time
            on *= float(rng.uniform(1.6, 2.4))  # pull-down after the defrost
            next_defrost += defrost_every * float(rng.uniform(0.9, 1.1))
        runs.append((t, t + on))
        t += on + (1.0 - duty) * cycle
    if runs:
        s, e = np.array(runs).T
        run_w, pf = p["run_w"], p["pf"]
        out.add(s, e, run_w, pf)
        # Unequal pressures after start: the motor draws more for the first minutes.
        out.add(s, np.minimum(s + 90.0, e), 0.25 * run_w, pf)
        out.add(s + 90.0, np.minimum(s + 300.0, e), 0.08 * run_w, pf)
        started = s >= 0.0  # a run already going at midnight has no inrush today
        out.add(s[started], s[started] + 1.0, (p["spike_x"] - 1.0) * run_w, 0.45)
    if defrosts:
        s, e = np.array(defrosts).T
        out.add(s, e, p["defrost_w"], 1.0)
    return out


_COLD_C = 12.0
_WATER_J_PER_L_C = 4186.0
# Hot-water draws by site kind: (share, litres of hot water, minutes).
_DRAWS: dict[SiteKind, tuple[tuple[float, tuple[float, float], tuple[float, float]], ...]] = {
    SiteKind.HOME: ((0.35, (25.0, 50.0), (5.0, 12.0)), (0.65, (1.5, 8.0), (0.4, 2.0))),
    SiteKind.OFFICE: ((1.0, (0.5, 3.0), (0.3, 1.5)),),
    SiteKind.RESTAURANT: ((0.7, (4.0, 15.0), (1.0, 4.0)), (0.3, (1.0, 4.0), (0.3, 1.0))),
}


def water_heater(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Storage water heater: a thermostat with hysteresis on a simulated (mixed) tank temperature
    that falls with standing losses and hot-water draws and rises while the element is on."""
    p = a.params
    out = Pulses()
    volume = p["volume_l"]
    heat = p["rated_w"] / (volume * _WATER_J_PER_L_C)  # °C/s with the element on
    loss = p["loss_c_per_h"] / HOUR_S
    setpoint, hyst = p["setpoint_c"], p["hysteresis_c"]
    starts = a.usage_times(day, rng)
    n = starts.size
    if n:
        menu = _DRAWS[day.kind]
        shares = np.array([m[0] for m in menu])
        pick = rng.choice(len(menu), size=n, p=shares / shares.sum())
        litres = np.empty(n)
        minutes = np.empty(n)
        for i, (_, (l0, l1), (m0, m1)) in enumerate(menu):
            sel = pick == i
            litres[sel] = rng.uniform(l0, l1, int(sel.sum()))
            minutes[sel] = rng.uniform(m0, m1, int(sel.sum()))
        ends = starts + minutes * 60.0
        # Drawing L litres of hot water replaces them with cold: the mixed tank cools by
        # L/V of the (set point - cold) difference, spread over the draw.
        rates = litres / volume * (setpoint - _COLD_C) / (minutes * 60.0)
    else:
        ends = rates = starts
    edges = np.concatenate(([0.0], starts, ends, [DAY_S]))
    deltas = np.concatenate(([0.0], rates, -rates, [0.0]))
    order = np.argsort(edges, kind="stable")
    edges = np.minimum(edges[order], DAY_S)
    draw = np.maximum(np.cumsum(deltas[order]), 0.0)
    temp = setpoint - float(rng.uniform(0.0, hyst))
    on = False
    on_since = 0.0
    runs: Intervals = []
    for i in range(edges.size - 1):
        t, t1, rd = float(edges[i]), float(edges[i + 1]), float(draw[i])
        while t < t1:
            rate = (heat if on else 0.0) - loss - rd
            if on and rate > 0 and t + (setpoint - temp) / rate < t1:
                t += (setpoint - temp) / rate
                temp, on = setpoint, False
                runs.append((on_since, t))
            elif not on and rate < 0 and t + (temp - setpoint + hyst) / -rate < t1:
                t += (temp - setpoint + hyst) / -rate
                temp, on, on_since = setpoint - hyst, True, t
            else:
                temp = max(_COLD_C, temp + rate * (t1 - t))
                t = t1
    if on:
        runs.append((on_since, DAY_S))
    if runs:
        s, e = np.array(runs).T
        out.add(s, e, p["rated_w"], 1.0)
    return out


def kettle(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Kettle: a resistive element at full power for the time the water takes to boil."""
    p = a.params
    out = Pulses()
    t = _no_overlap(a.usage_times(day, rng), 400.0)
    # Boil time follows how much water was put in; a 3 kW kettle boils a litre faster.
    dur = rng.uniform(p["min_s"], p["max_s"], t.size) * 2500.0 / p["rated_w"]
    out.add(t, t + dur, p["rated_w"] * rng.uniform(0.985, 1.0, t.size), 1.0)
    return out


_MICROWAVE_LEVELS = np.array([1.0, 0.7, 0.5, 0.3])
_MICROWAVE_LEVEL_P = np.array([0.6, 0.12, 0.15, 0.13])


def microwave(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Microwave: fan, turntable and lamp while running; the magnetron on continuously at full
    power, or switched on/off over a ~25 s period at lower power levels (and to defrost)."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    t = _no_overlap(a.usage_times(day, rng), 420.0)
    dur = rng.uniform(40.0, 360.0, t.size)
    level = rng.choice(_MICROWAVE_LEVELS, size=t.size, p=_MICROWAVE_LEVEL_P)
    out.add(t, t + dur, p["base_w"], 0.6)
    period = 25.0
    for start, d, lv in zip(t.tolist(), dur.tolist(), level.tolist(), strict=True):
        if lv >= 1.0:
            out.add(start + 1.5, start + d, p["magnetron_w"], p["pf"])
            continue
        k = np.arange(start + 1.5, start + d, period)
        out.add(k, np.minimum(k + lv * period, start + d), p["magnetron_w"], p["pf"])
    return out


def oven(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Oven: full power until hot, then the thermostat cycles the elements (more often while
    the door is opened during a restaurant's service); fan and lamp throughout."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    sessions: Intervals
    if day.kind == SiteKind.RESTAURANT:
        sessions = [(s + 1800.0, e - 1800.0) for s, e in day.presence("kitchen").on]
    else:
        t = _no_overlap(a.usage_times(day, rng), 2 * HOUR_S)
        sessions = list(
            zip(t.tolist(), (t + rng.uniform(25.0, 90.0, t.size) * 60.0).tolist(), strict=True)
        )
    rated = p["rated_w"]
    for s, e in sessions:
        pre = p["preheat_min"] * 60.0 * float(rng.uniform(0.85, 1.15))
        out.add(s, min(s + pre, e), rated, 1.0)
        period = p["period_s"]
        k = np.arange(s + pre + period * float(rng.uniform(0.3, 1.0)), e, period)
        busy = SERVICE_CURVE.at(k / HOUR_S) if day.kind == SiteKind.RESTAURANT else 0.0
        duty = np.clip(p["duty"] * (1.0 + 0.6 * busy) * rng.uniform(0.85, 1.15, k.size), 0.1, 0.9)
        out.add(k, np.minimum(k + duty * period, e), rated, 1.0)
        out.add(s, e, p["fan_w"], 0.6)
        out.add(s, e, p["lamp_w"], 1.0)
    return out


@dataclass(frozen=True)
class Part:
    """One load within a program phase.

    ``pattern``: ``const``; ``pulsed`` (``on_s`` on, ``off_s`` off: a drum turning each way);
    ``heat`` (on for the first ``share`` of the phase, until the water is hot); ``ramp``
    (stepping up to full power over the first half: a spin).
    """

    power: str  # the instance parameter holding its power
    pf: float
    pattern: str = "const"
    on_s: float = 0.0
    off_s: float = 0.0
    share: float = 1.0
    scale: float = 1.0


@dataclass(frozen=True)
class Phase:
    name: str
    minutes: tuple[float, float]
    parts: tuple[Part, ...]


_DRUM = Part("motor_w", 0.55, "pulsed", on_s=12.0, off_s=4.0)
_WASHER_DRAIN = Phase("drain", (1.0, 2.0), (Part("pump_w", 0.55),))
WASHER_PROGRAM: tuple[Phase, ...] = (
    Phase(
        "fill",
        (2.0, 4.0),
        (Part("valve_w", 0.4), Part("motor_w", 0.55, "pulsed", 8.0, 8.0, scale=0.6)),
    ),
    Phase(
        "heat",
        (14.0, 22.0),
        (
            Part("heater_w", 1.0, "heat", share=0.85),
            Part("motor_w", 0.55, "pulsed", 10.0, 6.0, scale=0.7),
        ),
    ),
    Phase("wash", (20.0, 40.0), (_DRUM,)),
    _WASHER_DRAIN,
    Phase("rinse", (10.0, 16.0), (_DRUM, Part("valve_w", 0.4, "heat", share=0.2))),
    _WASHER_DRAIN,
    Phase("rinse", (8.0, 14.0), (_DRUM, Part("valve_w", 0.4, "heat", share=0.2))),
    _WASHER_DRAIN,
    Phase("spin", (6.0, 12.0), (Part("spin_w", 0.7, "ramp"), Part("pump_w", 0.55))),
)
_DISH_DRAIN = Phase("drain", (1.0, 2.0), (Part("drain_w", 0.55),))
DISHWASHER_PROGRAM: tuple[Phase, ...] = (
    Phase("prewash", (4.0, 8.0), (Part("pump_w", 0.6),)),
    _DISH_DRAIN,
    Phase("heat", (15.0, 25.0), (Part("heater_w", 1.0, "heat", share=0.7), Part("pump_w", 0.6))),
    Phase("wash", (10.0, 20.0), (Part("pump_w", 0.6),)),
    _DISH_DRAIN,
    Phase("rinse", (5.0, 10.0), (Part("pump_w", 0.6),)),
    _DISH_DRAIN,
    Phase("heat", (10.0, 18.0), (Part("heater_w", 1.0, "heat", share=0.6), Part("pump_w", 0.6))),
    _DISH_DRAIN,
    Phase("dry", (20.0, 40.0), (Part("fan_w", 0.5),)),
)
PROGRAMS: dict[str, tuple[Phase, ...]] = {
    "washing_machine": WASHER_PROGRAM,
    "dishwasher": DISHWASHER_PROGRAM,
}
# Heating phases last longer for hotter programs: (relative heating time, probability).
_PROGRAM_HEAT = {
    "washing_machine": (np.array([0.35, 0.6, 1.0, 1.5]), np.array([0.25, 0.4, 0.3, 0.05])),
    "dishwasher": (np.array([0.8, 1.0, 1.25]), np.array([0.4, 0.45, 0.15])),
}


def program(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Washing machine, dishwasher: a multi-phase program (fill, heat, wash, rinse, spin/dry)."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    phases = PROGRAMS[a.spec.kind]
    heat_factors, heat_p = _PROGRAM_HEAT[a.spec.kind]
    t = _no_overlap(a.usage_times(day, rng), 3 * HOUR_S)
    for start in t.tolist():
        heat_factor = float(rng.choice(heat_factors, p=heat_p))
        now = start
        for ph in phases:
            heats = any(part.pattern == "heat" and part.power == "heater_w" for part in ph.parts)
            d = float(rng.uniform(*ph.minutes)) * 60.0 * (heat_factor if heats else 1.0)
            for part in ph.parts:
                w = p[part.power] * part.scale * float(rng.uniform(0.95, 1.05))
                _part(out, part, now, now + d, w)
            now += d
        out.add(start, now, p["control_w"], 0.5)
    return out


def _part(out: Pulses, part: Part, s: float, e: float, w: float) -> None:
    if part.pattern == "const":
        out.add(s, e, w, part.pf)
    elif part.pattern == "heat":
        out.add(s, s + part.share * (e - s), w, part.pf)
    elif part.pattern == "pulsed":
        k = np.arange(s, e, part.on_s + part.off_s)
        out.add(k, np.minimum(k + part.on_s, e), w, part.pf)
    elif part.pattern == "ramp":
        steps = 4
        half = (e - s) / 2.0
        k = s + np.arange(steps) * half / steps
        out.add(k, np.append(k[1:], e), w * (np.arange(1, steps + 1) / steps), part.pf)
    else:  # pragma: no cover - the table is ours
        raise ValueError(f"unknown program part pattern {part.pattern!r}")


def commercial_dishwasher(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Hood-type dishwasher: a wash-tank heater on its thermostat all day, and short wash cycles
    (pump, then a rinse booster heater) as racks come in; the tank reheats after each."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    windows = [(s, e + HOUR_S) for s, e in day.presence("kitchen").on]
    tank: Intervals = []  # one element: its on-times from every cause are merged
    for s, e in windows:
        tank.append((s, s + float(rng.uniform(15.0, 25.0)) * 60.0))  # fill and heat up
        k = np.arange(s + 1800.0, e, float(rng.uniform(300.0, 600.0)))
        on = p["tank_duty"] * 450.0 * rng.uniform(0.7, 1.3, k.size)
        tank.extend(zip(k.tolist(), (k + on).tolist(), strict=True))
    t = a.usage_times(day, rng)
    inside = np.zeros(t.size, dtype=bool)
    for s, e in windows:
        inside |= (t >= s) & (t < e)
    t = _no_overlap(t[inside], p["cycle_s"] + 30.0)
    c = p["cycle_s"] * rng.uniform(0.9, 1.1, t.size)
    out.add(t, t + c - 20.0, p["pump_w"], 0.8)
    out.add(t + c - 25.0, t + c, p["booster_w"], 1.0)
    reheat = t + c + rng.uniform(30.0, 90.0, t.size)
    tank.extend(zip((t + c).tolist(), reheat.tolist(), strict=True))
    merged = _merge(tank)
    if merged:
        s_arr, e_arr = np.array(merged).T
        out.add(s_arr, e_arr, p["tank_w"], 1.0)
    return out


def printer(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Office laser printer: standby, fuser warm-up, printing, then 'ready' until it sleeps."""
    p = a.params
    out = Pulses()
    sb = p["standby_w"]
    out.add(0.0, DAY_S, sb, 0.55)
    jobs = a.usage_times(day, rng)
    ready_s = p["ready_min"] * 60.0
    busy_until = -math.inf
    ready_until = -math.inf
    warm: list[float] = []
    prints: Intervals = []
    for t0 in jobs.tolist():
        t = max(t0, busy_until)
        if t > ready_until:
            warm.append(t)
            t += p["warmup_s"]
        pages = 1 + int(rng.geometric(0.3))
        end = t + 6.0 + pages * float(rng.uniform(1.5, 3.0))
        prints.append((t, end))
        busy_until = end
        ready_until = end + ready_s
    if warm:
        w = np.array(warm)
        out.add(w, w + p["warmup_s"], p["warmup_w"] - sb, 0.98)
    if prints:
        s, e = np.array(prints).T
        out.add(s, e, p["print_w"] - sb, 0.9)
        # Ready (fuser kept warm) from each job's end until the next job or the sleep timer.
        nxt = np.append(s[1:], math.inf)
        out.add(e, np.minimum(e + ready_s, nxt), p["ready_w"] - sb, 0.9)
    return out


def pc(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Desktop PC: asleep, or on with a load that jumps between idle and bursts of work;
    idle while its user is at lunch; some users never shut down (idle all night)."""
    p = a.params
    out = Pulses()
    sleep = p["sleep_w"]
    out.add(0.0, DAY_S, sleep, 0.5)
    on, away = _sessions(a, day, rng)
    idle, peak, pf = p["idle_w"], p["peak_w"], p["pf"]
    if p["left_on"] < 0.12:  # this user never shuts down: idle when not in use
        out.add(0.0, DAY_S, idle - sleep, pf)
        floor = idle
    else:
        floor = sleep
    for s, e in on:
        boot = float(rng.uniform(40.0, 90.0))
        out.add(s, min(s + boot, e), 0.7 * peak - floor, pf)
        seg_s, seg_e = _segments(rng, s + boot, e, p["seg_s"])
        level = idle + (peak - idle) * rng.beta(0.5, 3.0, seg_s.size)
        mid = (seg_s + seg_e) / 2.0
        for as_, ae in away:
            level[(mid >= as_) & (mid < ae)] = idle
        out.add(seg_s, seg_e, level - floor, pf)
    return out


def monitor(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Monitor: on while its user works; power-save shortly after they leave the desk."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    on, away = _sessions(a, day, rng)
    on = subtract(on, [(s + 600.0, e) for s, e in away if e > s + 600.0])
    for s, e in on:
        out.add(s, e, p["on_w"] * float(rng.uniform(0.9, 1.05)) - p["standby_w"], p["pf"])
    return out


def tv(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Television: evening sessions; power follows picture brightness."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    starts = _no_overlap(a.usage_times(day, rng), 600.0)
    sessions = [(s, s + float(rng.uniform(0.4, 3.0)) * HOUR_S) for s in starts.tolist()]
    for s, e in intersect(_merge(sessions), list(day.presence("household").on)):
        seg_s, seg_e = _segments(rng, s, e, 40.0)
        bright = np.clip(rng.normal(1.0, 0.12, seg_s.size), 0.6, 1.3)
        out.add(seg_s, seg_e, p["on_w"] * bright - p["standby_w"], p["pf"])
    return out


def lighting(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """A lighting circuit: office zones on working hours (dimmed by daylight), restaurant rooms
    on opening hours, home lights when someone is in and it is dark (rooms on and off)."""
    p = a.params
    out = Pulses()
    rated, pf = p["rated_w"], p["pf"]
    if day.kind == SiteKind.HOME:
        lit = intersect(list(day.presence("household").on), _dark_intervals(day))
        for s, e in lit:
            if rng.random() > p.get("use_p", 1.0):
                continue
            seg_s, seg_e = _segments(rng, s, e, 20.0 * 60.0)
            out.add(seg_s, seg_e, rated * rng.uniform(0.2, 1.0, seg_s.size), pf)
        return out
    if day.kind == SiteKind.OFFICE:
        on: Intervals = []
        if not day.weekend:
            on.append((rng.uniform(7.2, 8.4) * HOUR_S, rng.uniform(17.8, 19.8) * HOUR_S))
            if rng.random() < 0.5:  # the cleaners
                c = float(rng.uniform(19.8, 20.5)) * HOUR_S
                on.append((c, c + float(rng.uniform(0.4, 1.0)) * HOUR_S))
        elif rng.random() < 0.05:
            c = float(rng.uniform(9.0, 14.0)) * HOUR_S
            on.append((c, c + float(rng.uniform(1.0, 4.0)) * HOUR_S))
        for s, e in on:
            k = np.arange(s, e, 900.0)  # daylight-linked dimming steps every 15 min
            h = k / HOUR_S
            daylight = np.clip(
                np.sin(np.pi * (h - day.sunrise_h) / (day.sunset_h - day.sunrise_h)), 0, 1
            )
            level = 1.0 - p.get("dimming", 0.2) * daylight * rng.uniform(0.7, 1.0)
            out.add(k, np.minimum(k + 900.0, e), rated * level, pf)
        return out
    for s, e in day.presence("staff").on:  # restaurant
        k = np.arange(s, e, 900.0)
        service = SERVICE_CURVE.at(k / HOUR_S)
        level = np.where(service > 0.2, 1.0, 0.55)
        out.add(k, np.minimum(k + 900.0, e), rated * level, pf)
    return out


def ac(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Split air conditioner (cooling, or heating when it is a heat pump) on the site's hours.

    Inverter units pull down at full power then modulate with the load (outdoor temperature);
    fixed-speed units cycle the compressor on and off (with an inrush at each start)."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    hot = day.outdoor_mean_c + day.outdoor_amp_c > p["cool_above"]
    cold = day.outdoor_mean_c < p["heat_below"] and p["heat_pump"] > 0.5
    if not (hot or cold):
        return out
    on = _ac_hours(a, day, rng, hot)
    inverter = a.spec.kind == "ac_inverter"
    for s, e in on:
        if e <= s:
            continue
        out.add(s, e, p["fan_w"], 0.6)
        pull = float(rng.uniform(10.0, 20.0)) * 60.0
        seg_s, seg_e = _segments(rng, s + pull, e, 240.0)
        h = (seg_s + seg_e) / 2.0 / HOUR_S
        out_c = day.outdoor_c(h)
        load = (out_c - 21.0) / 12.0 if hot else (19.0 - out_c) / 16.0
        load = np.clip(load + rng.normal(0.0, 0.08, seg_s.size), 0.0, 1.0)
        if inverter:
            out.add(s, min(s + pull, e), p["max_w"], p["pf"])
            w = p["min_w"] + (p["max_w"] - p["min_w"]) * load
            run = load > 0.08  # below that the compressor stops and only the fan runs
            out.add(seg_s[run], seg_e[run], w[run], p["pf"])
            continue
        period = p["period_min"] * 60.0
        k = np.arange(s, e, period)
        kh = k / HOUR_S
        kl = np.clip(
            ((day.outdoor_c(kh) - 21.0) / 12.0 if hot else (19.0 - day.outdoor_c(kh)) / 16.0),
            0.0,
            1.0,
        )
        duty = np.clip(0.25 + 0.75 * kl, 0.2, 1.0)
        duty[0] = 1.0  # pull-down
        ke = np.minimum(k + duty * period, e)
        out.add(k, ke, p["rated_w"], p["pf"])
        out.add(k, k + 1.0, (p["spike_x"] - 1.0) * p["rated_w"], 0.45)
    return out


def coffee_machine(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Bean-to-cup coffee machine: warm-up when cold, per cup grinder, heater and pump;
    keep-warm heater pulses between cups until it switches itself off."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    cups = a.usage_times(day, rng)
    auto_off = p["auto_off_min"] * 60.0
    heater = p["heater_w"]
    warm_until = -math.inf
    last_end = -math.inf
    keep: Intervals = []
    for t0 in cups.tolist():
        t = max(t0, last_end + 5.0)
        if t > warm_until:
            wu = float(rng.uniform(40.0, 80.0))
            out.add(t, t + wu, heater, 1.0)
            t += wu
        elif keep:
            keep[-1] = (keep[-1][0], min(keep[-1][1], t))
        out.add(t, t + float(rng.uniform(8.0, 12.0)), p["grinder_w"], 0.7)
        out.add(t + 10.0, t + 10.0 + float(rng.uniform(25.0, 45.0)), heater, 1.0)
        out.add(t + 10.0, t + 35.0, p["pump_w"], 0.6)
        last_end = t + 55.0
        warm_until = last_end + auto_off
        keep.append((last_end, warm_until))
    for s, e in keep:
        k = np.arange(s + 240.0, e, float(rng.uniform(240.0, 360.0)))
        out.add(k, np.minimum(k + rng.uniform(8.0, 15.0, k.size), e), heater, 1.0)
    return out


def espresso(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Restaurant espresso machine: boiler heats up at opening and holds temperature on its
    thermostat, working harder as shots are pulled; grinder and pump per shot."""
    p = a.params
    out = Pulses()
    out.add(0.0, DAY_S, p["standby_w"], 0.5)
    boiler = p["boiler_w"]
    for s, e in day.presence("bar").on:
        warm = float(rng.uniform(15.0, 25.0)) * 60.0
        out.add(s, s + warm, boiler, 1.0)
        period = float(rng.uniform(150.0, 300.0))
        k = np.arange(s + warm, e, period)
        duty = np.clip(p["idle_duty"] + 0.3 * SERVICE_CURVE.at(k / HOUR_S), 0.05, 0.8)
        out.add(k, k + duty * period, boiler, 1.0)
    shots = _no_overlap(a.usage_times(day, rng), 35.0)
    out.add(shots, shots + 8.0, p["grinder_w"], 0.7)
    out.add(shots + 10.0, shots + 35.0, p["pump_w"], 0.6)
    return out


def steady(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Always-on load (network rack, standby of everything in a home) wandering slowly;
    busier during the site's opening hours."""
    p = a.params
    out = Pulses()
    seg_s, seg_e = _segments(rng, 0.0, DAY_S, 600.0)
    busy = PRESENCE_CURVES[day.kind].at((seg_s + seg_e) / 2.0 / HOUR_S) if day.open else 0.0
    wander = np.clip(rng.normal(0.0, 1.0, seg_s.size), -3.0, 3.0)
    level = p["base_w"] * (1.0 + p["wander"] * wander + p["busy"] * busy)
    out.add(seg_s, seg_e, np.maximum(level, 0.2 * p["base_w"]), p["pf"])
    return out


def hood(a: Appliance, day: Day, rng: np.random.Generator) -> Pulses:
    """Kitchen extraction hood: low speed during preparation, high speed in service."""
    p = a.params
    out = Pulses()
    for s, e in day.presence("kitchen").on:
        k = np.arange(s, e, 600.0)
        high = SERVICE_CURVE.at(k / HOUR_S) > 0.35
        out.add(k, np.minimum(k + 600.0, e), p["rated_w"] * np.where(high, 1.0, 0.45), p["pf"])
    return out


BEHAVIOURS: dict[str, Behaviour] = {
    "compressor": compressor,
    "water_heater": water_heater,
    "kettle": kettle,
    "microwave": microwave,
    "oven": oven,
    "program": program,
    "commercial_dishwasher": commercial_dishwasher,
    "printer": printer,
    "pc": pc,
    "monitor": monitor,
    "tv": tv,
    "lighting": lighting,
    "ac": ac,
    "coffee_machine": coffee_machine,
    "espresso": espresso,
    "steady": steady,
    "hood": hood,
}


# --------------------------------------------------------------------------------------------
# Helpers


def _no_overlap(starts: F64, min_gap_s: float) -> F64:
    """Push back uses that would start before the previous one is over (one kettle, one cup)."""
    if starts.size < 2:
        return starts
    out = starts.copy()
    for i in range(1, out.size):
        out[i] = max(out[i], out[i - 1] + min_gap_s)
    return out[out < DAY_S]


def _segments(rng: np.random.Generator, s: float, e: float, mean_s: float) -> tuple[F64, F64]:
    """Split ``[s, e)`` into consecutive segments of exponential length (mean ``mean_s``)."""
    if e <= s:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty
    n = int((e - s) / mean_s * 1.5) + 8
    edges = s + np.cumsum(rng.exponential(mean_s, n))
    while edges[-1] < e:
        edges = np.concatenate((edges, edges[-1] + np.cumsum(rng.exponential(mean_s, n))))
    cut = int(np.searchsorted(edges, e))
    ends = np.append(edges[:cut], e)
    starts = np.concatenate(([s], ends[:-1]))
    return starts, ends


def _merge(intervals: Intervals) -> Intervals:
    out: Intervals = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _dark_intervals(day: Day) -> Intervals:
    return [(0.0, (day.sunrise_h + 0.5) * HOUR_S), ((day.sunset_h - 0.75) * HOUR_S, DAY_S)]


def _sessions(a: Appliance, day: Day, rng: np.random.Generator) -> tuple[Intervals, Intervals]:
    """When a PC or monitor is used: its user's presence at the office, sessions at home."""
    if day.kind == SiteKind.OFFICE:
        pres = day.presence(a.group or a.name)
        return list(pres.on), list(pres.away)
    # Home: the user's sessions are drawn from the group's stream so PC and screen agree.
    grng = rng_for(a.seed, "sessions/" + (a.group or a.name), day.ordinal)
    starts = a.usage_times(day, grng)
    sessions = [(s, s + float(grng.uniform(0.3, 2.5)) * HOUR_S) for s in starts.tolist()]
    return intersect(_merge(sessions), list(day.presence("household").on)), []


def _ac_hours(a: Appliance, day: Day, rng: np.random.Generator, hot: bool) -> Intervals:
    if day.kind == SiteKind.OFFICE:
        if day.weekend:
            return []
        return [(rng.uniform(7.0, 8.2) * HOUR_S, rng.uniform(17.3, 19.0) * HOUR_S)]
    if day.kind == SiteKind.RESTAURANT:
        return [(s + 1800.0, e) for s, e in day.presence("staff").on]
    home = list(day.presence("household").on)
    if hot:
        return intersect(
            home, [(rng.uniform(12.5, 17.0) * HOUR_S, rng.uniform(21.5, 23.9) * HOUR_S)]
        )
    return intersect(home, [(6.0 * HOUR_S, 9.0 * HOUR_S), (16.5 * HOUR_S, 23.0 * HOUR_S)])


# --------------------------------------------------------------------------------------------
# The table


def _u(
    per_day: float, weekday: Bumps, weekend: Bumps | None = None, weekend_factor: float = 1.0
) -> Usage:
    return Usage(per_day, weekday, weekend, weekend_factor)


_HOME = SiteKind.HOME
_OFFICE = SiteKind.OFFICE
_REST = SiteKind.RESTAURANT
_OFFICE_WEEKEND = 0.03  # the odd person who comes in on a Saturday
_FRIDGE = {
    "spike_x": (4.0, 6.0),
    "period_min": (35.0, 60.0),
    "duty_per_c": (0.012, 0.02),
    "door_boost": (0.04, 0.1),
    "defrost_min": (15.0, 30.0),
    "standby_w": (0.5, 2.0),
    "pf": (0.65, 0.85),
}
_AC = {
    "cool_above": (23.5, 26.5),
    "heat_below": (6.0, 12.0),
    "heat_pump": (0.0, 1.0),
    "fan_w": (25.0, 60.0),
    "standby_w": (1.0, 3.0),
}

SPECS: dict[str, ApplianceSpec] = {
    s.kind: s
    for s in (
        ApplianceSpec(
            kind="fridge",
            label="fridge-freezer",
            behaviour="compressor",
            params={
                **_FRIDGE,
                "run_w": (85.0, 125.0),
                "duty20": (0.28, 0.4),
                "defrost_w": (200.0, 400.0),
                "defrost_h": (8.0, 24.0),
            },
            max_w=900.0,
            v_exp=0.5,
            pluggable=True,
            circuit="kitchen",
        ),
        ApplianceSpec(
            kind="freezer",
            label="upright freezer",
            behaviour="compressor",
            params={
                **_FRIDGE,
                "run_w": (100.0, 150.0),
                "duty20": (0.38, 0.52),
                "defrost_w": (250.0, 400.0),
                "defrost_h": (12.0, 24.0),
            },
            max_w=1100.0,
            v_exp=0.5,
            pluggable=True,
            circuit="kitchen",
        ),
        ApplianceSpec(
            kind="commercial_fridge",
            label="reach-in fridge",
            behaviour="compressor",
            params={
                **_FRIDGE,
                "run_w": (250.0, 450.0),
                "spike_x": (3.0, 4.5),
                "period_min": (15.0, 30.0),
                "duty20": (0.35, 0.5),
                "door_boost": (0.1, 0.2),
                "defrost_w": (300.0, 600.0),
                "defrost_h": (6.0, 8.0),
                "defrost_min": (15.0, 25.0),
                "standby_w": (5.0, 15.0),
            },
            max_w=2400.0,
            v_exp=0.5,
            pluggable=True,
            circuit="cold",
        ),
        ApplianceSpec(
            kind="commercial_freezer",
            label="reach-in freezer",
            behaviour="compressor",
            params={
                **_FRIDGE,
                "run_w": (350.0, 600.0),
                "spike_x": (3.0, 4.0),
                "period_min": (15.0, 30.0),
                "duty20": (0.45, 0.6),
                "door_boost": (0.1, 0.2),
                "defrost_w": (400.0, 800.0),
                "defrost_h": (6.0, 8.0),
                "defrost_min": (15.0, 25.0),
                "standby_w": (5.0, 15.0),
            },
            max_w=2800.0,
            v_exp=0.5,
            pluggable=True,
            circuit="cold",
        ),
        ApplianceSpec(
            kind="water_heater",
            label="water heater",
            behaviour="water_heater",
            params={
                "rated_w": (2000.0, 3000.0),
                "volume_l": (100.0, 200.0),
                "setpoint_c": (55.0, 65.0),
                "hysteresis_c": (4.0, 8.0),
                "loss_c_per_h": (0.3, 0.6),
            },
            max_w=3000.0,
            v_exp=2.0,
            pluggable=False,
            circuit="water",
            usage={_HOME: _u(8.0, HOME_SHOWERS), _REST: _u(45.0, SERVICE_CURVE)},
        ),
        ApplianceSpec(
            kind="water_heater_small",
            label="under-sink water heater",
            behaviour="water_heater",
            params={
                "rated_w": (1500.0, 2200.0),
                "volume_l": (10.0, 30.0),
                "setpoint_c": (50.0, 60.0),
                "hysteresis_c": (4.0, 8.0),
                "loss_c_per_h": (0.8, 1.5),
            },
            max_w=2200.0,
            v_exp=2.0,
            pluggable=False,
            circuit="kitchen",
            usage={_OFFICE: _u(30.0, OFFICE_COFFEE, weekend_factor=_OFFICE_WEEKEND)},
        ),
        ApplianceSpec(
            kind="kettle",
            label="kettle",
            behaviour="kettle",
            params={"rated_w": (2000.0, 3000.0), "min_s": (100.0, 130.0), "max_s": (200.0, 250.0)},
            max_w=3000.0,
            v_exp=2.0,
            pluggable=True,
            circuit="kitchen",
            usage={
                _HOME: _u(4.0, HOME_MEALS, HOME_MEALS_WEEKEND),
                _OFFICE: _u(8.0, OFFICE_COFFEE, weekend_factor=_OFFICE_WEEKEND),
            },
        ),
        ApplianceSpec(
            kind="microwave",
            label="microwave",
            behaviour="microwave",
            params={
                "magnetron_w": (950.0, 1350.0),
                "base_w": (80.0, 130.0),
                "pf": (0.9, 0.97),
                "standby_w": (1.5, 4.0),
            },
            max_w=1500.0,
            v_exp=0.5,
            pluggable=True,
            circuit="kitchen",
            usage={
                _HOME: _u(2.5, HOME_MEALS, HOME_MEALS_WEEKEND),
                _OFFICE: _u(10.0, OFFICE_LUNCH, weekend_factor=_OFFICE_WEEKEND),
                _REST: _u(12.0, SERVICE_CURVE),
            },
        ),
        ApplianceSpec(
            kind="oven",
            label="oven",
            behaviour="oven",
            params={
                "rated_w": (2000.0, 3500.0),
                "preheat_min": (8.0, 15.0),
                "period_s": (45.0, 120.0),
                "duty": (0.3, 0.5),
                "fan_w": (20.0, 45.0),
                "lamp_w": (15.0, 25.0),
                "standby_w": (0.5, 2.0),
            },
            max_w=3600.0,
            v_exp=2.0,
            pluggable=False,
            circuit="oven",
            usage={
                _HOME: _u(0.45, Bumps(((18.6, 0.8, 1.0), (12.3, 0.7, 0.4))), weekend_factor=1.5)
            },
        ),
        ApplianceSpec(
            kind="washing_machine",
            label="washing machine",
            behaviour="program",
            params={
                "heater_w": (1800.0, 2200.0),
                "motor_w": (120.0, 300.0),
                "spin_w": (300.0, 500.0),
                "pump_w": (25.0, 45.0),
                "valve_w": (5.0, 12.0),
                "control_w": (2.0, 6.0),
                "standby_w": (0.3, 1.0),
            },
            max_w=2600.0,
            v_exp=1.8,
            pluggable=True,
            circuit="sockets",
            usage={_HOME: _u(0.45, HOME_DAYTIME, HOME_DAYTIME_WEEKEND, weekend_factor=1.8)},
        ),
        ApplianceSpec(
            kind="dishwasher",
            label="dishwasher",
            behaviour="program",
            params={
                "heater_w": (1800.0, 2200.0),
                "pump_w": (60.0, 120.0),
                "drain_w": (25.0, 45.0),
                "fan_w": (5.0, 15.0),
                "control_w": (2.0, 5.0),
                "standby_w": (0.3, 1.0),
            },
            max_w=2500.0,
            v_exp=1.8,
            pluggable=True,
            circuit="kitchen",
            usage={
                _HOME: _u(0.7, Bumps(((20.8, 1.0, 1.0), (14.0, 1.5, 0.3)))),
                _OFFICE: _u(0.7, Bumps(((14.5, 1.0, 1.0), (17.5, 0.8, 0.8))), weekend_factor=0.0),
            },
        ),
        ApplianceSpec(
            kind="commercial_dishwasher",
            label="hood dishwasher",
            behaviour="commercial_dishwasher",
            params={
                "tank_w": (2000.0, 3000.0),
                "booster_w": (2500.0, 3500.0),
                "pump_w": (500.0, 900.0),
                "cycle_s": (90.0, 150.0),
                "tank_duty": (0.15, 0.3),
                "standby_w": (2.0, 5.0),
            },
            max_w=7500.0,
            v_exp=1.8,
            pluggable=False,
            circuit="dish",
            usage={_REST: _u(70.0, Bumps(((14.2, 1.0, 1.0), (22.0, 1.0, 1.0), (11.0, 1.0, 0.3))))},
        ),
        ApplianceSpec(
            kind="printer",
            label="laser printer",
            behaviour="printer",
            params={
                "standby_w": (5.0, 15.0),
                "warmup_w": (800.0, 1000.0),
                "warmup_s": (12.0, 35.0),
                "print_w": (400.0, 600.0),
                "ready_w": (25.0, 60.0),
                "ready_min": (5.0, 15.0),
            },
            max_w=1000.0,
            v_exp=1.5,
            pluggable=True,
            circuit="sockets",
            usage={_OFFICE: _u(45.0, OFFICE_HOURS, weekend_factor=_OFFICE_WEEKEND)},
        ),
        ApplianceSpec(
            kind="pc",
            label="desktop PC",
            behaviour="pc",
            params={
                "sleep_w": (1.0, 4.0),
                "idle_w": (30.0, 60.0),
                "peak_w": (100.0, 250.0),
                "pf": (0.88, 0.98),
                "seg_s": (30.0, 120.0),
                "left_on": (0.0, 1.0),
            },
            max_w=250.0,
            v_exp=0.0,
            pluggable=True,
            circuit="sockets",
            usage={_HOME: _u(1.2, HOME_EVENING, HOME_DAYTIME_WEEKEND)},
        ),
        ApplianceSpec(
            kind="monitor",
            label="monitor",
            behaviour="monitor",
            params={"on_w": (15.0, 35.0), "standby_w": (0.2, 0.5), "pf": (0.5, 0.65)},
            max_w=40.0,
            v_exp=0.0,
            pluggable=True,
            circuit="sockets",
        ),
        ApplianceSpec(
            kind="tv",
            label="television",
            behaviour="tv",
            params={"on_w": (60.0, 150.0), "standby_w": (0.3, 1.0), "pf": (0.55, 0.95)},
            max_w=200.0,
            v_exp=0.0,
            pluggable=True,
            circuit="sockets",
            usage={_HOME: _u(1.6, HOME_EVENING, HOME_DAYTIME_WEEKEND)},
        ),
        ApplianceSpec(
            kind="lighting",
            label="lighting",
            behaviour="lighting",
            params={"rated_w": (100.0, 300.0), "pf": (0.55, 0.9)},
            max_w=300.0,
            v_exp=0.3,
            pluggable=False,
            circuit="light",
        ),
        ApplianceSpec(
            kind="lamp",
            label="lamp",
            behaviour="lighting",
            params={"rated_w": (5.0, 60.0), "pf": (0.5, 0.95), "use_p": (0.4, 0.9)},
            max_w=60.0,
            v_exp=0.3,
            pluggable=True,
            circuit="sockets",
        ),
        ApplianceSpec(
            kind="office_lighting",
            label="office lighting zone",
            behaviour="lighting",
            params={"rated_w": (250.0, 400.0), "pf": (0.9, 0.97), "dimming": (0.1, 0.35)},
            max_w=400.0,
            v_exp=0.3,
            pluggable=False,
            circuit="light",
        ),
        ApplianceSpec(
            kind="restaurant_lighting",
            label="restaurant lighting",
            behaviour="lighting",
            params={"rated_w": (800.0, 1500.0), "pf": (0.85, 0.95)},
            max_w=1500.0,
            v_exp=0.3,
            pluggable=False,
            circuit="light",
        ),
        ApplianceSpec(
            kind="ac_inverter",
            label="inverter split AC",
            behaviour="ac",
            params={**_AC, "min_w": (300.0, 400.0), "max_w": (1200.0, 1500.0), "pf": (0.9, 0.98)},
            max_w=1560.0,
            v_exp=0.0,
            pluggable=False,
            circuit="ac",
        ),
        ApplianceSpec(
            kind="ac_onoff",
            label="fixed-speed split AC",
            behaviour="ac",
            params={
                **_AC,
                "rated_w": (900.0, 1500.0),
                "pf": (0.75, 0.9),
                "spike_x": (2.5, 4.0),
                "period_min": (12.0, 20.0),
                "fan_w": (40.0, 70.0),
            },
            max_w=6100.0,
            v_exp=0.3,
            pluggable=False,
            circuit="ac",
        ),
        ApplianceSpec(
            kind="coffee_machine",
            label="coffee machine",
            behaviour="coffee_machine",
            params={
                "heater_w": (1200.0, 1500.0),
                "grinder_w": (120.0, 180.0),
                "pump_w": (40.0, 60.0),
                "standby_w": (1.0, 4.0),
                "auto_off_min": (30.0, 90.0),
            },
            max_w=1800.0,
            v_exp=2.0,
            pluggable=True,
            circuit="kitchen",
            usage={
                _HOME: _u(3.0, HOME_MEALS, HOME_MEALS_WEEKEND),
                _OFFICE: _u(30.0, OFFICE_COFFEE, weekend_factor=_OFFICE_WEEKEND),
            },
        ),
        ApplianceSpec(
            kind="espresso",
            label="espresso machine",
            behaviour="espresso",
            params={
                "boiler_w": (2000.0, 3000.0),
                "grinder_w": (250.0, 400.0),
                "pump_w": (50.0, 90.0),
                "idle_duty": (0.1, 0.2),
                "standby_w": (1.0, 3.0),
            },
            max_w=3500.0,
            v_exp=2.0,
            pluggable=True,
            circuit="kitchen",
            usage={_REST: _u(120.0, SERVICE_CURVE)},
        ),
        ApplianceSpec(
            kind="hood",
            label="extraction hood",
            behaviour="hood",
            params={"rated_w": (300.0, 800.0), "pf": (0.7, 0.85)},
            max_w=800.0,
            v_exp=0.3,
            pluggable=False,
            circuit="hood",
        ),
        ApplianceSpec(
            kind="rack",
            label="network rack",
            behaviour="steady",
            params={
                "base_w": (150.0, 600.0),
                "pf": (0.9, 0.98),
                "wander": (0.02, 0.05),
                "busy": (0.05, 0.15),
            },
            max_w=900.0,
            v_exp=0.0,
            pluggable=False,
            circuit="it",
        ),
        ApplianceSpec(
            kind="base_load",
            label="always-on loads",
            behaviour="steady",
            params={
                "base_w": (30.0, 90.0),
                "pf": (0.5, 0.7),
                "wander": (0.05, 0.15),
                "busy": (0.1, 0.4),
            },
            max_w=170.0,
            v_exp=0.0,
            pluggable=False,
            circuit="sockets",
        ),
    )
}
