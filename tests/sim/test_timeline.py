"""Pulses → cumulative energy → mean power: exactness, conservation, chaining."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattwatch.sim.timeline import Pulses, chain, gaussian, integrate, mean_power, reactive

START = 1_700_000_000.0


def test_a_pulse_is_seen_as_the_mean_over_each_interval() -> None:
    pulses = Pulses()
    pulses.add(10.0, 20.0, 1000.0, 1.0)
    pulses.add(12.0, 13.0, 500.0, 0.5)  # a 1 s spike inside it
    block = integrate(pulses, START, 60.0)
    edges = START + np.arange(0.0, 35.0, 5.0)
    p, q = mean_power(block, edges)
    np.testing.assert_allclose(p, [0.0, 0.0, 1100.0, 1000.0, 0.0, 0.0])
    np.testing.assert_allclose(q[2], 500.0 * np.sqrt(1 - 0.25) / 0.5 / 5.0)
    assert q[0] == q[3] == 0.0


def test_reactive_power_follows_the_power_factor() -> None:
    assert float(reactive(100.0, 1.0)) == pytest.approx(0.0)
    assert float(reactive(100.0, 0.8)) == pytest.approx(75.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-100.0, 4000.0),
            st.floats(0.0, 600.0),
            st.floats(0.0, 3000.0),
            st.floats(0.3, 1.0),
        ),
        max_size=20,
    ),
    st.floats(0.5, 97.0),
)
def test_energy_is_conserved_on_any_grid(
    raw: list[tuple[float, float, float, float]], step: float
) -> None:
    length = 3600.0
    pulses = Pulses()
    expected = 0.0
    for s, d, w, pf in raw:
        pulses.add(s, s + d, w, pf)
        expected += (
            w * max(0.0, min(s + d, length) - max(s, 0.0)) if s + d > 0 and s < length else 0.0
        )
    block = integrate(pulses, START, length)
    edges = np.append(START + np.arange(0.0, length, step), START + length)
    p, _ = mean_power(block, edges)
    assert np.all(p >= 0.0)
    assert float(np.sum(p * np.diff(edges))) == pytest.approx(expected, rel=1e-9, abs=1e-3)


def test_chained_blocks_continue_the_energy() -> None:
    a, b = Pulses(), Pulses()
    a.add(0.0, 100.0, 100.0)
    b.add(0.0, 100.0, 200.0)
    curve = chain([integrate(a, START, 100.0), integrate(b, START + 100.0, 100.0)])
    p, _ = mean_power(curve, START + np.array([0.0, 50.0, 100.0, 150.0, 200.0]))
    np.testing.assert_allclose(p, [100.0, 100.0, 200.0, 200.0])


def test_gaussian_noise_is_seeded_and_standard() -> None:
    one = gaussian(np.random.default_rng(1), (3, 1000))
    two = gaussian(np.random.default_rng(1), (3, 1000))
    np.testing.assert_array_equal(one, two)
    big = gaussian(np.random.default_rng(2), (200_000,))
    assert abs(float(big.mean())) < 0.02
    assert float(big.std()) == pytest.approx(1.0, abs=0.02)
