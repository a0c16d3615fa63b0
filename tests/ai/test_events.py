from __future__ import annotations

import numpy as np
from tests.ai.conftest import synthetic_house

from wattwatch.ai.nilm.cluster import EventClusterer
from wattwatch.ai.nilm.events import adaptive_threshold, detect_events, pair_events


def test_detects_clean_steps_with_sign_and_size() -> None:
    x = np.full(200, 100.0)
    x[50:80] += 2000.0  # on at 50, off at 80
    x[120:121] += 1000.0
    ev = detect_events(x)
    assert list(ev["idx"]) == [50, 80, 120, 121]
    assert np.allclose(ev["delta_w"], [2000, -2000, 1000, -1000])


def test_step_split_over_two_minutes_is_one_event() -> None:
    x = np.full(100, 200.0)
    x[40] = 1200.0  # switched on mid-minute: the mean is half-way
    x[41:60] = 2200.0
    ev = detect_events(x)
    first = ev.iloc[0]
    assert first["idx"] == 40 and first["width_min"] == 2
    assert abs(first["delta_w"] - 2000.0) < 1e-9


def test_threshold_adapts_to_noise() -> None:
    rng = np.random.default_rng(1)
    quiet = 100 + rng.normal(0, 2, 300)
    noisy = 100 + rng.normal(0, 60, 300)
    thr = adaptive_threshold(np.concatenate([quiet, noisy]))
    assert thr[150] == 80.0  # the floor
    assert thr[450] > 150.0
    # noise alone does not produce a flood of events in the noisy half
    ev = detect_events(np.concatenate([quiet, noisy]))
    assert (ev["idx"] >= 300).sum() < 10


def test_gaps_are_not_events() -> None:
    x = np.full(100, 300.0)
    x[30:40] = np.nan
    x[40:] = 3000.0  # level after the gap differs but no step is observed
    assert detect_events(x).empty


def test_pairing_gives_power_and_duration() -> None:
    x = np.full(300, 100.0)
    x[10:13] += 3000.0
    x[100:130] += 500.0
    x[110:112] += 1200.0  # nested inside the 500 W run
    pairs = pair_events(detect_events(x), x)
    got = sorted(
        (round(p), int(d)) for p, d in zip(pairs["power_w"], pairs["duration_min"], strict=True)
    )
    assert got == [(500, 30), (1200, 2), (3000, 3)]


def test_clusterer_separates_kettle_and_microwave() -> None:
    df = synthetic_house(10)
    c = EventClusterer(max_clusters=4)
    cands = c.fit(df["Aggregate"])
    powers = sorted(round(x.power_w, -2) for x in cands if x.n_events >= 10)
    assert any(2700 <= p <= 3100 for p in powers)
    assert any(1000 <= p <= 1400 for p in powers)
    c.name_cluster(cands[0].cluster_id, "Kettle")
    assert c.describe(df["Aggregate"])[0].name == "Kettle"
