"""Sites, devices and the fleet: bounds, counters and resets, aggregates vs ground truth,
determinism, live mode."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from wattwatch.domain import METRICS, DeviceKind, Reading
from wattwatch.sim import DEVICE_METRICS, Fleet, MainsSpec, NoiseSpec, Site, to_readings
from wattwatch.sim.site import Columns, DeviceChunk

T0 = int(datetime(2025, 6, 6, tzinfo=UTC).timestamp() * 1000)  # a Friday
DAY_MS = 86_400_000
SITES = (("home", 6), ("office", 12), ("restaurant", 8))


@cache
def _chunks(kind: str, n: int, days: int = 2, step_s: float = 10.0) -> list[DeviceChunk]:
    site = Site(kind, n, seed=11, tz="Europe/Paris", reset_prob_per_day=0.0)
    return list(site.generate_chunks(T0, T0 + days * DAY_MS, step_s, truth=True))


def _site(kind: str, n: int) -> Site:
    return Site(kind, n, seed=11, tz="Europe/Paris", reset_prob_per_day=0.0)


@pytest.mark.parametrize(("kind", "n"), SITES)
def test_readings_stay_inside_physical_bounds(kind: str, n: int) -> None:
    site = _site(kind, n)
    for chunk in _chunks(kind, n):
        cols = chunk.columns
        dev = site.devices[chunk.uid]
        expected = set(DEVICE_METRICS) | ({"state"} if dev.kind == DeviceKind.PLUG else set())
        assert set(cols) == {"ts_ms", "channel"} | expected
        for metric in expected:
            v = cols[metric]
            spec = METRICS[metric]
            assert np.all(np.isfinite(v)), metric
            assert v.min() >= spec.lo and v.max() <= spec.hi, metric
        assert np.all((cols["voltage_v"] > 0.85 * 230) & (cols["voltage_v"] < 1.1 * 230))
        assert np.all(np.abs(cols["frequency_hz"] - 50.0) < 0.2)
        assert np.all((cols["power_factor"] >= 0.0) & (cols["power_factor"] <= 1.0))
        s = cols["apparent_power_va"]
        np.testing.assert_allclose(
            s, np.hypot(cols["power_w"], cols["reactive_power_var"]), atol=2e-3
        )
        # current is reported to 1 mA: up to 0.0005 A x 250 V of rounding
        np.testing.assert_allclose(cols["current_a"] * cols["voltage_v"], s, rtol=2e-3, atol=0.15)
        # Time-major rows, (channel, ts) unique.
        assert np.all(np.diff(cols["ts_ms"]) >= 0)
        keys = set(zip(cols["channel"].tolist(), cols["ts_ms"].tolist(), strict=True))
        assert len(keys) == cols["ts_ms"].size


@pytest.mark.parametrize(("kind", "n"), SITES)
def test_plugs_read_plausible_maxima_for_their_appliance(kind: str, n: int) -> None:
    site = _site(kind, n)
    for chunk in _chunks(kind, n):
        dev = site.devices[chunk.uid]
        if dev.kind != DeviceKind.PLUG:
            continue
        spec = site.appliances[dev.channels[0].appliances[0]].spec
        # At most +10 % supply voltage on a resistive load, plus meter noise.
        assert chunk.columns["power_w"].max() <= spec.max_w * 1.1**spec.v_exp * 1.02 + 2.0, (
            spec.kind
        )


@pytest.mark.parametrize(("kind", "n"), SITES)
def test_aggregates_equal_the_sum_of_their_appliances(kind: str, n: int) -> None:
    for chunk in _chunks(kind, n):
        truth = chunk.truth
        assert truth is not None
        cols = chunk.columns
        for name in truth.channels:
            rows = cols["channel"] == name
            measured = cols["power_w"][rows]
            expected = truth.channel_power(name)
            # Noise: 0.5 % gain + 0.2 W offset (sd); readings under 0.5 W read 0.
            tol = 6 * (0.005 * expected + 0.2) + 0.6
            assert np.all(np.abs(measured - expected) <= tol), (chunk.uid, name)
            # The counter integrates exactly the true power.
            e = cols["energy_wh"][rows]
            step_h = 10.0 / 3600.0
            assert e[-1] - e[0] == pytest.approx(
                float(expected[1:].sum() * step_h), rel=1e-6, abs=2e-3
            )


def test_a_panel_phase_is_the_sum_of_its_circuits_and_plugs_match_the_panel() -> None:
    site = _site("office", 12)
    panel = next(d for d in site.devices.values() if d.kind == DeviceKind.PANEL)
    chunk = next(c for c in _chunks("office", 12) if c.uid == panel.uid)
    truth = chunk.truth
    assert truth is not None
    for ph, phase in enumerate(("phase_a", "phase_b", "phase_c")):
        circuits = [c for c in panel.channels if c.phase == ph and not c.name.startswith("phase_")]
        total = sum((truth.channel_power(c.name) for c in circuits), np.zeros(truth.ts_ms.size))
        np.testing.assert_allclose(truth.channel_power(phase), total, rtol=1e-9, atol=1e-6)
    # A plug's appliance is inside the panel's truth with the same values.
    plug = next(d for d in site.devices.values() if d.kind == DeviceKind.PLUG)
    name = plug.channels[0].appliances[0]
    plug_truth = site.ground_truth(plug.uid, T0, T0 + DAY_MS, 10.0)
    assert name in truth.power_w
    assert plug_truth.power_w[name].mean() == pytest.approx(
        truth.power_w[name][: plug_truth.ts_ms.size].mean(), rel=0.05
    )


def test_ground_truth_matches_what_generation_reported() -> None:
    site = _site("home", 6)
    monitor = next(d for d in site.devices.values() if d.kind == DeviceKind.MONITOR)
    chunks = [c for c in _chunks("home", 6) if c.uid == monitor.uid]
    gt = site.ground_truth(monitor.uid, T0, T0 + 2 * DAY_MS, 10.0)
    np.testing.assert_array_equal(
        gt.ts_ms, np.concatenate([c.truth.ts_ms for c in chunks if c.truth])
    )
    for name, p in gt.power_w.items():
        np.testing.assert_allclose(
            p, np.concatenate([c.truth.power_w[name] for c in chunks if c.truth])
        )
    # The classic NILM set is behind the home's CT monitor.
    assert {"fridge", "kettle", "microwave", "washing_machine", "dishwasher"} <= set(gt.power_w)


def _resets_site(prob: float) -> Site:
    return Site(
        "home", 3, seed=5, tz="Europe/London", reset_prob_per_day=prob, reset_gap_s=(20.0, 90.0)
    )


def test_counters_are_monotonic_except_at_simulated_resets() -> None:
    site = _resets_site(0.5)
    days = 8
    cols: dict[str, list[Columns]] = {}
    for uid, c in site.generate(T0, T0 + days * DAY_MS, 10.0, chunk_s=6 * 3600):
        cols.setdefault(uid, []).append(c)
    n_resets = 0
    for uid, parts in cols.items():
        ts = np.concatenate([p["ts_ms"] for p in parts])
        e = np.concatenate([p["energy_wh"] for p in parts])
        power = np.concatenate([p["power_w"] for p in parts])
        cuts = site.resets(uid, T0 / 1000, (T0 + days * DAY_MS) / 1000)
        drops = np.flatnonzero(np.diff(e) < 0) + 1
        assert len(drops) == len(cuts)
        n_resets += len(cuts)
        for k, (t_cut, t_back) in zip(drops, cuts, strict=True):
            # Back from 0 Wh: at most what this (partial) interval's power adds.
            assert e[k] <= power[k] * 10.0 / 3600.0 * 1.05 + 0.01
            assert ts[k - 1] <= t_cut * 1000 < ts[k]  # the gap: nothing reported while off
            assert ts[k] > t_back * 1000
            assert ts[k] - ts[k - 1] >= (t_back - t_cut) * 1000
        regular = np.diff(ts) == 10_000
        assert regular.mean() > 0.99
    assert n_resets >= 3


def test_no_resets_when_the_probability_is_zero() -> None:
    site = _resets_site(0.0)
    for _uid, c in site.generate(T0, T0 + 3 * DAY_MS, 30.0):
        assert np.all(np.diff(c["energy_wh"]) >= 0)


def test_counters_continue_across_calls_and_chunkings() -> None:
    a = _site("home", 2)
    b = _site("home", 2)
    whole = {uid: c for uid, c in a.generate(T0, T0 + DAY_MS, 10.0)}
    parts: dict[str, list[Columns]] = {}
    for lo, hi in ((T0, T0 + DAY_MS // 3), (T0 + DAY_MS // 3, T0 + DAY_MS)):
        for uid, c in b.generate(lo, hi, 10.0, chunk_s=3600):
            parts.setdefault(uid, []).append(c)
    for uid, c in whole.items():
        joined = np.concatenate([p["energy_wh"] for p in parts[uid]])
        np.testing.assert_allclose(joined, c["energy_wh"], atol=2e-3)
        np.testing.assert_array_equal(np.concatenate([p["ts_ms"] for p in parts[uid]]), c["ts_ms"])


def test_determinism_with_a_seed() -> None:
    def run(seed: int) -> list[tuple[str, Columns]]:
        return list(
            Site("office", 5, seed=seed, tz="Europe/Berlin").generate(T0, T0 + DAY_MS // 2, 5.0)
        )

    one, two, other = run(3), run(3), run(4)
    assert [u for u, _ in one] == [u for u, _ in two]
    for (_, c1), (_, c2) in zip(one, two, strict=True):
        for k in c1:
            np.testing.assert_array_equal(c1[k], c2[k])
    assert not np.array_equal(one[0][1]["power_w"][:100], other[0][1]["power_w"][:100])


def test_schedules_follow_the_sites_local_time() -> None:
    peaks = {}
    for tz in ("Europe/Paris", "Asia/Tokyo"):
        site = Site("office", 1, seed=2, tz=tz)
        gt = site.ground_truth(next(iter(site.devices)), T0, T0 + 5 * DAY_MS, 60.0)
        total = sum(gt.power_w.values(), np.zeros(gt.ts_ms.size))
        local_h = np.array(
            [datetime.fromtimestamp(t / 1000, ZoneInfo(tz)).hour for t in gt.ts_ms[::60]]
        )
        hourly = total[::60]
        peaks[tz] = np.array([hourly[local_h == h].mean() for h in range(24)])
    for prof in peaks.values():
        assert prof[9:17].mean() > 2 * prof[0:5].mean()


def test_mains_voltage_drifts_and_sags() -> None:
    site = Site(
        "home",
        1,
        seed=9,
        tz="UTC",
        mains=MainsSpec(sags_per_day=30.0),
        noise=NoiseSpec(voltage_v=0.0),
    )
    (_, c), *_ = list(site.generate(T0, T0 + DAY_MS, 1.0))
    v = c["voltage_v"]
    assert 225 < np.median(v) < 235
    assert v.max() - np.percentile(v, 1) > 5  # drift plus load
    assert (v < 0.9 * 230).any()  # some sag deep enough to notice at 1 s
    assert np.all(v > 0.5 * 230)


def test_live_device_steps_and_relay() -> None:
    site = Site("home", 3, seed=4, tz="Europe/Paris", reset_prob_per_day=0.0)
    plug = site.device_sim("home-4-plug01")
    monitor = site.device_sim("home-4-monitor")
    energies = []
    for k in range(1, 40):
        readings = plug.step(T0 + k * 5000)
        assert len(readings) == 1
        r = readings[0]
        assert r.ts_ms == T0 + k * 5000 and r.channel == "mains" and r.values["state"] == 1.0
        energies.append(r.values["energy_wh"])
        assert len(monitor.step(T0 + k * 5000)) == 1
    assert energies == sorted(energies)
    assert plug.step(T0 + 39 * 5000) == []  # no time passed, nothing to say
    appliance = site.devices["home-4-plug01"].channels[0].appliances[0]
    assert plug.apply("off") == 0
    (r,) = plug.step(T0 + 41 * 5000)
    assert r.values["power_w"] == 0.0 and r.values["state"] == 0.0
    assert not site.relay_on(appliance)
    assert plug.apply("toggle") == 1 and plug.state == 1
    with pytest.raises(ValueError):
        monitor.apply("on")


def test_live_mode_continues_a_backfill() -> None:
    site = _site("home", 2)
    last = {}
    for uid, c in site.generate(T0, T0 + DAY_MS, 10.0):
        last[uid] = c["energy_wh"][-1]
    sim = site.device_sim("home-11-monitor")
    (r,) = sim.step(T0 + DAY_MS + 10_000)
    assert last["home-11-monitor"] <= r.values["energy_wh"] < last["home-11-monitor"] + 20.0


def test_columns_convert_to_readings() -> None:
    chunk = next(c for c in _chunks("restaurant", 8) if c.uid.endswith("panel"))
    cols = {k: v[:5000] for k, v in chunk.columns.items()}
    readings = to_readings(cols)
    assert len(readings) == 5000
    r = readings[7]
    assert isinstance(r, Reading) and isinstance(r.ts_ms, int) and isinstance(r.channel, str)
    assert set(r.values) == set(DEVICE_METRICS)
    assert r.values["power_w"] == float(cols["power_w"][7]) and r.channel == cols["channel"][7]


def test_layouts() -> None:
    home = Site("home", 1, seed=1)
    assert [d.kind for d in home.devices.values()] == [DeviceKind.MONITOR]
    office = Site("office", 50, seed=1)
    kinds = [d.kind for d in office.devices.values()]
    assert (
        kinds[:2] == [DeviceKind.PANEL, DeviceKind.MONITOR] and kinds.count(DeviceKind.PLUG) == 48
    )
    panel = next(iter(office.devices.values()))
    names = panel.channel_names
    assert names[:3] == ("phase_a", "phase_b", "phase_c") and len(set(names)) == len(names)
    covered = [a for c in panel.channels[3:] for a in c.appliances]
    assert sorted(covered) == sorted(office.appliances)  # every appliance on exactly one circuit
    plugged = [
        d.channels[0].appliances[0] for d in office.devices.values() if d.kind == DeviceKind.PLUG
    ]
    assert len(set(plugged)) == 48
    rest = Site("restaurant", 4, seed=1)
    monitor = rest.devices["restaurant-1-monitor"]
    assert all(
        rest.appliances[a].spec.kind.startswith("commercial_f")
        for a in monitor.channels[0].appliances
    )
    fleet = Fleet.of("home", 10, seed=1, sites=4)
    assert len(fleet.devices) == 10 and len(fleet.sites) == 4
    with pytest.raises(ValueError):
        Site("home", 0)


def test_fleet_generates_chunks_in_time_order() -> None:
    fleet = Fleet.of("restaurant", 6, seed=2, sites=2, tz="Europe/Rome")
    firsts = [
        int(c["ts_ms"][0]) // 3_600_000
        for _, c in fleet.generate(T0, T0 + 3 * 3_600_000, 30.0, chunk_s=3600)
    ]
    assert firsts == sorted(firsts) and len(firsts) == 3 * 6
