"""Appliance models: signatures inside physical bounds, the physics each one promises, schedules."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from wattwatch.sim.appliances import SPECS, Appliance, ApplianceSpec, draw_params
from wattwatch.sim.schedules import Climate, Day, SiteKind, rng_for
from wattwatch.sim.timeline import mean_power

PARIS = ZoneInfo("Europe/Paris")
# A weekday and a weekend day, in winter and in summer.
DAYS = (date(2025, 1, 15), date(2025, 1, 18), date(2025, 7, 16), date(2025, 7, 19))


def _kind_for(spec: ApplianceSpec) -> SiteKind:
    if spec.usage:
        return next(iter(spec.usage))
    if spec.kind.startswith(("office", "rack", "monitor")):
        return SiteKind.OFFICE
    if spec.kind.startswith(("restaurant", "commercial", "hood", "espresso")):
        return SiteKind.RESTAURANT
    return SiteKind.HOME


def _unit(spec: ApplianceSpec, kind: SiteKind, seed: int = 7) -> Appliance:
    params = draw_params(spec, rng_for(seed, "test/" + spec.kind))
    return Appliance(f"t/{spec.kind}", spec.kind, spec, params, kind, seed, group="ws01")


def _day(kind: SiteKind, d: date, seed: int = 7, climate: Climate | None = None) -> Day:
    return Day(kind, seed, d, PARIS, climate or Climate())


def _sampled(a: Appliance, day: Day, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    block = a.block(day)
    edges = np.arange(day.start_s, day.start_s + day.length_s + step / 2, step)
    return mean_power(block, edges)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_every_appliance_stays_within_its_physical_bounds(kind: str) -> None:
    spec = SPECS[kind]
    site_kind = _kind_for(spec)
    a = _unit(spec, site_kind)
    used = 0.0
    for d in DAYS:
        p, q = _sampled(a, _day(site_kind, d))
        assert np.all(np.isfinite(p)) and np.all(np.isfinite(q))
        assert p.min() >= 0.0 and q.min() >= 0.0
        assert p.max() <= spec.max_w + 1e-6, f"{kind} drew {p.max():.0f} W > {spec.max_w}"
        s = np.hypot(p, q)
        pf = np.divide(p, s, out=np.ones_like(p), where=s > 1e-6)
        assert np.all((pf > 0.0) & (pf <= 1.0 + 1e-12))
        assert np.all(q <= 5.0 * p + 1e-9)  # PF never below ~0.2
        used = max(used, float(p.max()))
    # Every appliance does something in four days (AC only where it is hot or cold enough).
    assert used > 0.0


def test_determinism_with_a_seed() -> None:
    spec = SPECS["washing_machine"]
    d = _day(SiteKind.HOME, date(2025, 3, 8))
    one = _unit(spec, SiteKind.HOME, seed=3).block(d)
    two = _unit(spec, SiteKind.HOME, seed=3).block(d)
    np.testing.assert_array_equal(one.t_s, two.t_s)
    np.testing.assert_array_equal(one.e_p, two.e_p)
    other = _unit(spec, SiteKind.HOME, seed=4).block(_day(SiteKind.HOME, date(2025, 3, 8), seed=4))
    assert other.e_p[-1] != one.e_p[-1]


def _runs(p: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    on = np.concatenate(([False], p > threshold, [False]))
    d = np.diff(on.astype(int))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def test_kettle_boils_at_rated_power_for_minutes() -> None:
    a = _unit(SPECS["kettle"], SiteKind.HOME)
    runs = []
    for d in DAYS:
        p, q = _sampled(a, _day(SiteKind.HOME, d))
        runs += [p[s:e] for s, e in _runs(p, 1000.0)]
        assert np.all(q < 1e-6)  # resistive
    assert len(runs) >= 4
    for r in runs:
        assert 90 <= r.size <= 330
        assert np.median(r) == pytest.approx(a.params["rated_w"], rel=0.02)


def test_fridge_cycles_more_in_a_warm_room_and_defrosts() -> None:
    a = _unit(SPECS["fridge"], SiteKind.HOME)
    cool = Climate(annual_mean_c=0.0, seasonal_amp_c=0.0)
    warm = Climate(annual_mean_c=32.0, seasonal_amp_c=0.0)
    duty = {}
    for name, climate in (("cool", cool), ("warm", warm)):
        on = 0.0
        for i in range(4):
            p, _ = _sampled(a, _day(SiteKind.HOME, date(2025, 5, 5 + i), climate=climate), 10.0)
            on += float(np.mean((p > 0.7 * a.params["run_w"]) & (p < 1.6 * a.params["run_w"])))
        duty[name] = on / 4
    assert 0.15 < duty["cool"] < duty["warm"] < 0.95
    # The defrost heater (resistive, 200-400 W) shows within two days.
    starts, ends, pw, qv = a.pulses(_day(SiteKind.HOME, date(2025, 5, 5))).arrays()
    _, _, pw2, qv2 = a.pulses(_day(SiteKind.HOME, date(2025, 5, 6))).arrays()
    heater = np.concatenate((pw, pw2)) == a.params["defrost_w"]
    assert heater.any()
    assert np.all(np.concatenate((qv, qv2))[heater] == 0.0)
    # Each compressor start has an inrush of several times the running power, at low PF.
    spike = np.isclose(pw, (a.params["spike_x"] - 1) * a.params["run_w"])
    assert spike.sum() > 10
    assert np.all(ends[spike] - starts[spike] <= 1.0 + 1e-9)


def test_water_heater_thermostat_switches_the_element_fully() -> None:
    a = _unit(SPECS["water_heater"], SiteKind.HOME)
    total_on = 0.0
    for d in DAYS:
        p, _ = _sampled(a, _day(SiteKind.HOME, d), 60.0)
        full = p > 0.999 * a.params["rated_w"]
        partial = (p > 1.0) & ~full
        assert partial.sum() <= 2 * len(_runs(p, 1.0)) + 2  # only the minutes a switch falls in
        total_on += float(full.mean())
    # Showers and sinks: the element runs a few hours a day, not all day.
    assert 0.02 < total_on / len(DAYS) < 0.5


def test_microwave_cycles_its_magnetron_at_lower_power() -> None:
    a = _unit(SPECS["microwave"], SiteKind.OFFICE)
    d = _day(SiteKind.OFFICE, date(2025, 1, 15))
    starts, ends, pw, _ = a.pulses(d).arrays()
    mag = pw == a.params["magnetron_w"]
    durations = ends[mag] - starts[mag]
    assert mag.sum() > 0
    assert (durations < 24.0).any(), "some heating at reduced power (duty-cycled)"
    p, _ = _sampled(a, d)
    assert 1000.0 < p.max() <= 1500.0


def test_washing_machine_program_heats_then_spins() -> None:
    a = _unit(SPECS["washing_machine"], SiteKind.HOME)
    programs = []
    for i in range(10):
        d = _day(SiteKind.HOME, date(2025, 3, 1 + i))
        starts, ends, pw, _ = a.pulses(d).arrays()
        ctl = pw == a.params["control_w"]
        programs += (ends[ctl] - starts[ctl]).tolist()
        heater = np.isclose(pw, a.params["heater_w"], rtol=0.06)
        if ctl.any():
            assert heater.any()
    assert programs, "ten days without laundry"
    assert all(55 * 60 <= d <= 150 * 60 for d in programs)


def test_printer_levels() -> None:
    a = _unit(SPECS["printer"], SiteKind.OFFICE)
    p, _ = _sampled(a, _day(SiteKind.OFFICE, date(2025, 1, 15)))
    assert p.min() == pytest.approx(a.params["standby_w"])
    assert 5.0 <= p.min() <= 15.0
    assert np.any(np.abs(p - a.params["warmup_w"]) < 1.0)
    assert np.any(np.abs(p - a.params["print_w"]) < 1.0)


def test_office_use_follows_local_working_hours_and_weekdays() -> None:
    a = _unit(SPECS["pc"], SiteKind.OFFICE)
    hours = np.zeros(24)
    weekend = 0.0
    for i in range(14):
        d = _day(SiteKind.OFFICE, date(2025, 2, 3 + i))
        p, _ = _sampled(a, d, 60.0)
        if d.weekend:
            weekend += float(p.mean())
        else:
            hours += p.reshape(24, 60).mean(axis=1)
    assert hours[10] > 5 * hours[3]
    assert hours[14] > 5 * hours[22]
    assert weekend / 4 < hours.mean() / 10 * 0.5


@pytest.mark.parametrize("local", [date(2025, 3, 30), date(2025, 10, 26)])
def test_daylight_saving_days_are_23_and_25_hours(local: date) -> None:
    d = _day(SiteKind.HOME, local)
    assert d.length_s in (23 * 3600.0, 25 * 3600.0)
    a = _unit(SPECS["fridge"], SiteKind.HOME)
    block = a.block(d)
    assert block.end_s - block.start_s == d.length_s
