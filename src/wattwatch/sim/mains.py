"""The supply at a site: per-phase RMS voltage (daily drift, slow wander, sags and swells) and
the grid frequency.

Voltage sags when the feeder is loaded (evening peak) and rises at night: a daily drift of
±2-3 % following a typical residential load shape, a slow random wander (minutes to hours),
rare sags (motor starts, faults upstream: 10-40 % for 0.5-20 s) and swells (+5-12 %), and a
small per-phase offset. Frequency wanders ±0.05 Hz round its nominal value. Each local day is
built from its own seeded random stream, and the slow paths are filtered across the previous
day's noise too, so they are continuous over midnight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from wattwatch.sim.schedules import HOUR_S, Day, rng_for
from wattwatch.sim.timeline import F64, smooth_noise

# Relative feeder load by local hour (European residential shape, 0..1): voltage falls with it.
_FEEDER_LOAD = np.array(
    [0.35, 0.3, 0.27, 0.25, 0.25, 0.3, 0.45, 0.6, 0.65, 0.62, 0.6, 0.6,
     0.62, 0.6, 0.57, 0.57, 0.62, 0.75, 0.9, 1.0, 0.95, 0.8, 0.6, 0.45]
)  # fmt: skip
_DRIFT_SHAPE = (
    (_FEEDER_LOAD - _FEEDER_LOAD.mean()) / (_FEEDER_LOAD.max() - _FEEDER_LOAD.min()) * -2.0
)
_PATH_STEP_S = 60.0


@dataclass(frozen=True)
class MainsSpec:
    """How a site's supply behaves (defaults: 230 V / 50 Hz European low-voltage network)."""

    nominal_v: float = 230.0
    nominal_hz: float = 50.0
    drift: float = 0.025  # daily swing, fraction of nominal (peak of the shape)
    wander: float = 0.006  # slow random wander, sd as a fraction of nominal
    wander_tau_min: float = 20.0
    phase_offset: float = 0.01  # per-phase offsets are drawn within ± this fraction
    sags_per_day: float = 0.15
    swells_per_day: float = 0.03
    hz_wander: float = 0.02  # sd of the frequency wander (Hz)
    hz_tau_min: float = 5.0
    events: bool = True


@dataclass(frozen=True, slots=True)
class _MainsDay:
    t_s: F64  # absolute seconds, every minute from the day's start to its end
    wander: F64  # (3, n) relative
    hz: F64  # (n,) Hz offsets
    drift: F64  # (n,) relative, the daily shape at those times
    events: tuple[
        tuple[float, float, float, int], ...
    ]  # (start, end, relative change, phase or -1)


class Mains:
    """Voltage and frequency at one site; ``days`` maps absolute times to the site's days."""

    def __init__(
        self,
        spec: MainsSpec,
        seed: int,
        key: str,
        days: Callable[[float, float], Sequence[Day]],
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.key = key
        self._days = days
        rng = rng_for(seed, "mains/" + key)
        self.offsets = rng.uniform(-spec.phase_offset, spec.phase_offset, 3)
        self.drift_amp = spec.drift * float(rng.uniform(0.8, 1.2))
        self._cache: dict[int, _MainsDay] = {}

    def _noise(self, ordinal: int, n: int) -> F64:
        rng = rng_for(self.seed, "mains-noise/" + self.key, ordinal)
        return rng.normal(0.0, 1.0, (4, n))

    def _day(self, day: Day) -> _MainsDay:
        found = self._cache.get(day.ordinal)
        if found is not None:
            return found
        if len(self._cache) > 8:
            self._cache.clear()
        spec = self.spec
        n = int(np.ceil(day.length_s / _PATH_STEP_S)) + 1
        t = day.start_s + np.minimum(np.arange(n) * _PATH_STEP_S, day.length_s)
        # Filter today's noise after yesterday's so the paths run on across midnight.
        white = np.concatenate(
            (self._noise(day.ordinal - 1, n), self._noise(day.ordinal, n)), axis=1
        )
        v_tau = spec.wander_tau_min * 60.0 / _PATH_STEP_S
        hz_tau = spec.hz_tau_min * 60.0 / _PATH_STEP_S
        wander = np.stack([smooth_noise(white[i], v_tau)[n:] for i in range(3)]) * spec.wander
        hz = smooth_noise(white[3], hz_tau)[n:] * spec.hz_wander
        hour = (t - day.start_s) / HOUR_S
        drift = self.drift_amp * np.interp(
            hour % 24.0, np.arange(25.0), np.append(_DRIFT_SHAPE, _DRIFT_SHAPE[0])
        )
        events: list[tuple[float, float, float, int]] = []
        if spec.events:
            rng = rng_for(self.seed, "mains-events/" + self.key, day.ordinal)
            for _ in range(int(rng.poisson(spec.sags_per_day))):
                s = day.start_s + float(rng.uniform(0.0, day.length_s))
                phase = int(rng.integers(-1, 3))
                events.append(
                    (s, s + float(rng.uniform(0.5, 20.0)), -float(rng.uniform(0.1, 0.4)), phase)
                )
            for _ in range(int(rng.poisson(spec.swells_per_day))):
                s = day.start_s + float(rng.uniform(0.0, day.length_s))
                phase = int(rng.integers(-1, 3))
                events.append(
                    (s, s + float(rng.uniform(1.0, 10.0)), float(rng.uniform(0.05, 0.12)), phase)
                )
        found = _MainsDay(t, wander, hz, drift, tuple(events))
        self._cache[day.ordinal] = found
        return found

    def sample(self, edges_s: F64, phases: Sequence[int] = (0, 1, 2)) -> tuple[F64, F64]:
        """Mean RMS voltage of each phase ``(3, n)`` and frequency ``(n,)`` over the intervals
        ``(edges[i], edges[i+1]]``, before any measurement noise. Only ``phases`` are
        computed (the others read as nominal)."""
        days = [self._day(d) for d in self._days(float(edges_s[0]), float(edges_s[-1]))]
        t_mid = edges_s[1:]
        if len(days) == 1:
            d0 = days[0]
            path_t, wander, hz, drift = d0.t_s, d0.wander, d0.hz, d0.drift
        else:
            path_t = np.concatenate([d.t_s for d in days])
            wander = np.concatenate([d.wander for d in days], axis=1)
            hz = np.concatenate([d.hz for d in days])
            drift = np.concatenate([d.drift for d in days])
        rel_drift = np.interp(t_mid, path_t, drift)
        volts = np.ones((3, t_mid.size), dtype=np.float64)
        for ph in phases:
            volts[ph] = 1.0 + self.offsets[ph] + rel_drift + np.interp(t_mid, path_t, wander[ph])
        width = np.maximum(np.diff(edges_s), 1e-9)
        for d in days:
            for s, e, change, phase in d.events:
                if e <= edges_s[0] or s >= edges_s[-1]:
                    continue
                overlap = np.clip(
                    np.minimum(e, edges_s[1:]) - np.maximum(s, edges_s[:-1]), 0.0, None
                )
                if phase < 0:
                    volts += change * overlap / width
                else:
                    volts[phase] += change * overlap / width
        volts *= self.spec.nominal_v
        freq = self.spec.nominal_hz + np.interp(t_mid, path_t, hz)
        return volts, freq
