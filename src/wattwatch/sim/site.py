"""Sites, the fleet and live devices: from appliance models to the readings devices report.

A :class:`Site` (home, office, restaurant) owns appliances, a supply (:class:`Mains`) and
devices (see :mod:`wattwatch.sim.layout`). Generation is columnar: for a device and a time
grid it samples each appliance's energy curve, scales it with the supply voltage (a kettle
draws less in a sag), sums the appliances of each channel, then *measures* like a meter does:
noise on power, reactive power and voltage, voltage drop in the wiring, a no-load threshold,
and a cumulative energy counter that integrates the true power.

Counters are monotonic except at simulated resets: with ``reset_prob_per_day`` a device loses
power for a few seconds, reports nothing meanwhile and comes back with its counter at 0.
Counters carry on between calls, as a device's would (``generate`` for January, then for
February, then a :class:`DeviceSim` for live readings continue the same counters).

Readings at ``t`` report the mean over ``(t - step, t]``. Each device reports on its own grid
``offset + k·step`` (devices are not synchronised). Everything is a pure function of the seed
and the arguments, except the counters' carry-over just described.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from wattwatch.domain import CommandAction, DeviceKind, Reading
from wattwatch.sim.appliances import Appliance
from wattwatch.sim.layout import DeviceSpec, build_layout
from wattwatch.sim.mains import Mains, MainsSpec
from wattwatch.sim.schedules import Climate, Day, SiteKind, rng_for
from wattwatch.sim.timeline import F64, Block, chain, gaussian, mean_power

Columns = dict[str, npt.NDArray[Any]]
I64 = npt.NDArray[np.int64]

# The metrics every simulated device reports (plugs add ``state``), in column order.
DEVICE_METRICS: tuple[str, ...] = (
    "power_w",
    "energy_wh",
    "voltage_v",
    "current_a",
    "power_factor",
    "frequency_hz",
    "apparent_power_va",
    "reactive_power_var",
)


@dataclass(frozen=True)
class NoiseSpec:
    """Measurement error of the simulated meters (typical of metering ICs in plugs and CTs)."""

    power_rel: float = 0.005  # gain error sd, fraction of reading
    power_abs_w: float = 0.2  # offset noise sd
    voltage_v: float = 0.15
    frequency_hz: float = 0.003
    no_load_w: float = 0.5  # below this a meter reports 0 W (and 0 var)


@dataclass
class Truth:
    """Ground truth for one device over a grid: each appliance's active and reactive power
    (W, var, the mean over each interval, noise-free) and which appliances each channel sums."""

    ts_ms: I64
    power_w: dict[str, F64]
    reactive_power_var: dict[str, F64]
    channels: dict[str, tuple[str, ...]]

    def channel_power(self, channel: str) -> F64:
        """The true active power of ``channel``: the sum of its appliances."""
        total = np.zeros(self.ts_ms.size, dtype=np.float64)
        for name in self.channels[channel]:
            total += self.power_w[name]
        return total


class DeviceChunk(NamedTuple):
    uid: str
    columns: Columns
    truth: Truth | None


@dataclass
class _Rendered:
    volts: F64  # (3, n) supply voltage per phase
    freq: F64  # (n,)
    p: dict[str, F64] = field(default_factory=dict)
    q: dict[str, F64] = field(default_factory=dict)


class Site:
    """One simulated site: its appliances, supply and devices."""

    def __init__(
        self,
        kind: SiteKind | str,
        n_devices: int = 1,
        seed: int = 0,
        tz: str = "UTC",
        *,
        name: str | None = None,
        climate: Climate | None = None,
        mains: MainsSpec | None = None,
        noise: NoiseSpec | None = None,
        reset_prob_per_day: float = 0.01,
        reset_gap_s: tuple[float, float] = (5.0, 60.0),
    ) -> None:
        self.kind = SiteKind(kind)
        self.seed = int(seed)
        self.tz = ZoneInfo(tz)
        self.name = name or f"{self.kind.value}-{self.seed}"
        self.climate = climate or Climate()
        self.noise = noise or NoiseSpec()
        if not 0.0 <= reset_prob_per_day <= 1.0:
            raise ValueError("reset_prob_per_day must be within 0..1")
        if not 0.0 < reset_gap_s[0] <= reset_gap_s[1] <= 3600.0:
            raise ValueError("reset_gap_s must be (lo, hi) with 0 < lo <= hi <= 3600")
        self.reset_prob_per_day = reset_prob_per_day
        self.reset_gap_s = reset_gap_s
        appliances, devices = build_layout(self.kind, n_devices, self.seed, self.name)
        self.appliances: dict[str, Appliance] = appliances
        self.devices: dict[str, DeviceSpec] = {d.uid: d for d in devices}
        self.mains = Mains(mains or MainsSpec(), self.seed, self.name, self.days_between)
        self._days: dict[int, Day] = {}
        self._blocks: OrderedDict[tuple[str, int], Block] = OrderedDict()
        self._max_blocks = 3 * len(self.appliances) + 8
        self._counters: dict[str, F64] = {}
        self._relay_off: set[str] = set()

    def __repr__(self) -> str:
        n = len(self.devices)
        return f"Site({self.kind.value!r}, {n} devices, seed={self.seed}, tz={self.tz.key!r})"

    # -- days and curves ---------------------------------------------------------------------

    def day(self, local_date: date) -> Day:
        found = self._days.get(local_date.toordinal())
        if found is None:
            if len(self._days) > 64:
                self._days.clear()
            found = Day(self.kind, self.seed, local_date, self.tz, self.climate)
            self._days[local_date.toordinal()] = found
        return found

    def days_between(self, t0_s: float, t1_s: float) -> list[Day]:
        """The local days covering ``[t0_s, t1_s]`` (epoch seconds)."""
        d0 = datetime.fromtimestamp(t0_s, self.tz).date()
        d1 = datetime.fromtimestamp(t1_s, self.tz).date()
        return [self.day(d0 + timedelta(days=i)) for i in range((d1 - d0).days + 1)]

    def _curve(self, a: Appliance, t0_s: float, t1_s: float) -> Block:
        blocks = []
        for d in self.days_between(t0_s, t1_s):
            key = (a.name, d.ordinal)
            b = self._blocks.get(key)
            if b is None:
                b = a.block(d)
                self._blocks[key] = b
                if len(self._blocks) > self._max_blocks:
                    self._blocks.popitem(last=False)
            else:
                self._blocks.move_to_end(key)
            blocks.append(b)
        return chain(blocks)

    def _render(self, names: Sequence[str], edges_s: F64, phases: Iterable[int] = ()) -> _Rendered:
        needed = {self.appliances[n].phase for n in names} | set(phases)
        volts, freq = self.mains.sample(edges_s, sorted(needed))
        out = _Rendered(volts, freq)
        nominal = self.mains.spec.nominal_v
        for name in names:
            a = self.appliances[name]
            if name in self._relay_off:
                p = np.zeros(edges_s.size - 1)
                q = np.zeros(edges_s.size - 1)
            else:
                p, q = mean_power(self._curve(a, float(edges_s[0]), float(edges_s[-1])), edges_s)
                if a.spec.v_exp:
                    f = (volts[a.phase] / nominal) ** a.spec.v_exp
                    p *= f
                    q *= f
            out.p[name] = p
            out.q[name] = q
        return out

    # -- devices -----------------------------------------------------------------------------

    def device(self, uid: str) -> DeviceSpec:
        try:
            return self.devices[uid]
        except KeyError:
            raise KeyError(f"no device {uid!r} at site {self.name!r}") from None

    def grid(self, uid: str, start_ms: int, end_ms: int, step_s: float) -> I64:
        """Report times of device ``uid`` in ``[start_ms, end_ms)``: ``offset + k·step``."""
        step_ms = _step_ms(step_s)
        first = start_ms + (self.device(uid).offset_ms - start_ms) % step_ms
        return np.arange(first, end_ms, step_ms, dtype=np.int64)

    def set_relay(self, appliance: str, on: bool) -> None:
        """Switch the plug in front of ``appliance`` (the appliance stops drawing power)."""
        if appliance not in self.appliances:
            raise KeyError(f"no appliance {appliance!r} at site {self.name!r}")
        if on:
            self._relay_off.discard(appliance)
        else:
            self._relay_off.add(appliance)

    def relay_on(self, appliance: str) -> bool:
        return appliance not in self._relay_off

    def resume_counters(self, uid: str, energy_wh: Sequence[float | None]) -> None:
        """Continue device ``uid``'s energy counters from ``energy_wh`` (one per channel, in
        channel order; None keeps that channel's current value), as a device restarted with
        its counters saved in flash does: the next reading adds to these values."""
        dev = self.device(uid)
        if len(energy_wh) != len(dev.channels):
            raise ValueError(f"{uid} has {len(dev.channels)} channels, got {len(energy_wh)}")
        current = self._counters.get(uid)
        if current is None:
            current = np.full(len(dev.channels), dev.energy_start_wh)
        self._counters[uid] = np.array(
            [c if e is None else float(e) for c, e in zip(current, energy_wh, strict=True)]
        )

    def resets(self, uid: str, t0_s: float, t1_s: float) -> list[tuple[float, float]]:
        """Power cuts of device ``uid`` starting in ``[t0_s, t1_s]``: (start s, back on s)."""
        out: list[tuple[float, float]] = []
        if self.reset_prob_per_day <= 0:
            return out
        for d in self.days_between(t0_s, t1_s):
            rng = rng_for(self.seed, "reset/" + uid, d.ordinal)
            if rng.random() < self.reset_prob_per_day:
                t = d.start_s + float(rng.uniform(0.0, d.length_s))
                if t0_s <= t <= t1_s:
                    out.append((t, t + float(rng.uniform(*self.reset_gap_s))))
        return out

    def _measure(
        self,
        dev: DeviceSpec,
        ts_ms: I64,
        edges_s: F64,
        rng: np.random.Generator,
        with_truth: bool,
    ) -> DeviceChunk:
        n = ts_ms.size
        r = self._render(dev.appliances, edges_s, [ch.phase for ch in dev.channels])
        nch = len(dev.channels)
        p_true = np.zeros((nch, n))
        q_true = np.zeros((nch, n))
        for c, ch in enumerate(dev.channels):
            for name in ch.appliances:
                p_true[c] += r.p[name]
                q_true[c] += r.q[name]
        v_supply = r.volts[[ch.phase for ch in dev.channels]]
        nz = self.noise
        e = gaussian(rng, (5, nch, n))
        i_true = np.sqrt(p_true * p_true + q_true * q_true) / v_supply
        volts = v_supply - dev.line_ohm * i_true + nz.voltage_v * e[0]
        p = p_true * (1.0 + nz.power_rel * e[1]) + nz.power_abs_w * e[2]
        q = q_true * (1.0 + nz.power_rel * e[3]) + nz.power_abs_w * e[4]
        # No current through the meter (relay open, nothing on): nothing to add noise to.
        idle = (p < nz.no_load_w) | (p_true <= 0.0)
        p[idle] = 0.0
        q[idle | (q < 0.0)] = 0.0
        s = np.sqrt(p * p + q * q)
        amps = s / volts
        pf = np.divide(p, s, out=np.zeros_like(p), where=s > 0.0)
        freq = r.freq + nz.frequency_hz * gaussian(rng, (n,))

        # Energy: the meter integrates the true power; resets restart it from 0.
        width = np.diff(edges_s)
        inc = p_true * (width / 3600.0)
        keep = np.ones(n, dtype=bool)
        frac = np.full(n, -1.0)
        ts_s = ts_ms / 1000.0
        span = self.reset_gap_s[1]
        for t_cut, t_back in self.resets(dev.uid, float(edges_s[0]) - span, float(edges_s[-1])):
            keep &= ~((ts_s > t_cut) & (ts_s <= t_back))
            k = int(np.searchsorted(edges_s, t_back, side="right")) - 1
            if 0 <= k < n:
                frac[k] = (edges_s[k + 1] - t_back) / width[k]
        start = self._counters.get(dev.uid)
        if start is None:
            start = np.full(nch, dev.energy_start_wh)
        cum = np.cumsum(inc, axis=1)
        is_reset = frac >= 0.0
        if is_reset.any():
            last = np.maximum.accumulate(np.where(is_reset, np.arange(n), -1))
            li = np.maximum(last, 0)
            restarted = cum - cum[:, li] + inc[:, li] * frac[li]
            energy = np.where(last >= 0, restarted, start[:, None] + cum)
        else:
            energy = start[:, None] + cum
        self._counters[dev.uid] = energy[:, -1].copy()

        values = {
            "power_w": p,
            "energy_wh": energy,
            "voltage_v": volts,
            "current_a": amps,
            "power_factor": pf,
            "frequency_hz": np.broadcast_to(freq, (nch, n)),
            "apparent_power_va": s,
            "reactive_power_var": q,
        }
        all_kept = bool(keep.all())
        n_kept = n if all_kept else int(keep.sum())
        ts_kept = ts_ms if all_kept else ts_ms[keep]
        cols: Columns = {
            "ts_ms": ts_kept if nch == 1 else np.repeat(ts_kept, nch),
            "channel": np.tile(np.array(dev.channel_names), n_kept),
        }
        for metric, m in values.items():
            m = m if all_kept else m[:, keep]
            flat = m[0].copy() if nch == 1 else m.T.flatten()  # rows: time-major, then channel
            # Meters report finite resolution; 1/1000 of the unit is what the store keeps.
            cols[metric] = np.round(flat, 3, out=flat)
        if dev.kind == DeviceKind.PLUG:
            on = self.relay_on(dev.channels[0].appliances[0])
            cols["state"] = np.full(n_kept * nch, 1.0 if on else 0.0)
        truth = None
        if with_truth:
            truth = Truth(ts_ms, r.p, r.q, {ch.name: ch.appliances for ch in dev.channels})
        return DeviceChunk(dev.uid, cols, truth)

    # -- generation --------------------------------------------------------------------------

    def generate(
        self,
        start_ms: int,
        end_ms: int,
        step_s: float = 5.0,
        *,
        chunk_s: float = 86_400.0,
        devices: Sequence[str] | None = None,
    ) -> Iterator[tuple[str, Columns]]:
        """Readings of every device (or ``devices``) in ``[start_ms, end_ms)``, in chunks of
        ``chunk_s``: yields ``(uid, columns)`` per device per chunk, chunks in time order."""
        for chunk in self.generate_chunks(
            start_ms, end_ms, step_s, chunk_s=chunk_s, devices=devices
        ):
            yield chunk.uid, chunk.columns

    def generate_chunks(
        self,
        start_ms: int,
        end_ms: int,
        step_s: float = 5.0,
        *,
        chunk_s: float = 86_400.0,
        devices: Sequence[str] | None = None,
        truth: bool = False,
    ) -> Iterator[DeviceChunk]:
        """As :meth:`generate`, with each chunk's ground truth when ``truth``."""
        uids = list(self.devices) if devices is None else list(devices)
        for c0, c1 in _chunks(start_ms, end_ms, chunk_s):
            yield from self._chunk(c0, c1, step_s, uids, truth)

    def _chunk(
        self, c0: int, c1: int, step_s: float, uids: Sequence[str], truth: bool
    ) -> Iterator[DeviceChunk]:
        step_ms = _step_ms(step_s)
        for uid in uids:
            dev = self.device(uid)
            ts = self.grid(uid, c0, c1, step_s)
            if ts.size == 0:
                continue
            edges = np.concatenate(([ts[0] - step_ms], ts)) / 1000.0
            rng = rng_for(self.seed, "noise/" + uid, int(ts[0] // 1000))
            yield self._measure(dev, ts, edges, rng, truth)

    def ground_truth(self, uid: str, start_ms: int, end_ms: int, step_s: float = 5.0) -> Truth:
        """Per-appliance true power behind device ``uid`` on its grid in ``[start_ms, end_ms)``
        (noise-free, no gaps); the same values :meth:`generate_chunks` reports as truth."""
        dev = self.device(uid)
        ts = self.grid(uid, start_ms, end_ms, step_s)
        p: dict[str, list[F64]] = {n: [] for n in dev.appliances}
        q: dict[str, list[F64]] = {n: [] for n in dev.appliances}
        step_ms = _step_ms(step_s)
        for c0, c1 in _chunks(start_ms, end_ms, 86_400.0):
            part = ts[(ts >= c0) & (ts < c1)]
            if part.size == 0:
                continue
            r = self._render(dev.appliances, np.concatenate(([part[0] - step_ms], part)) / 1000.0)
            for name in dev.appliances:
                p[name].append(r.p[name])
                q[name].append(r.q[name])
        empty = np.empty(0, dtype=np.float64)
        return Truth(
            ts,
            {n: np.concatenate(v) if v else empty for n, v in p.items()},
            {n: np.concatenate(v) if v else empty for n, v in q.items()},
            {ch.name: ch.appliances for ch in dev.channels},
        )

    def device_sim(self, uid: str, step_s: float = 5.0) -> DeviceSim:
        return DeviceSim(self, uid, step_s)


class DeviceSim:
    """One device in live mode: ``step(now_ms)`` returns what it reports at ``now_ms``
    (the mean since its previous report), continuing the site's energy counters."""

    def __init__(self, site: Site, uid: str, step_s: float = 5.0) -> None:
        self.site = site
        self.spec = site.device(uid)
        self.uid = uid
        self.step_ms = _step_ms(step_s)
        self._last_ms: int | None = None
        self._rng = rng_for(site.seed, "live-noise/" + uid)

    @property
    def kind(self) -> DeviceKind:
        return self.spec.kind

    def step(self, now_ms: int) -> list[Reading]:
        prev = now_ms - self.step_ms if self._last_ms is None else self._last_ms
        if now_ms <= prev:
            return []
        self._last_ms = now_ms
        edges = np.array([prev, now_ms], dtype=np.float64) / 1000.0
        chunk = self.site._measure(
            self.spec, np.array([now_ms], dtype=np.int64), edges, self._rng, False
        )
        return to_readings(chunk.columns)

    @property
    def state(self) -> int:
        """Relay state of a plug (1 = on); other devices have no relay and are always 1."""
        if self.spec.kind != DeviceKind.PLUG:
            return 1
        return int(self.site.relay_on(self.spec.channels[0].appliances[0]))

    def apply(self, action: CommandAction | str) -> int:
        """Carry out an on/off/toggle command on a plug; returns the new relay state."""
        if self.spec.kind != DeviceKind.PLUG:
            raise ValueError(f"{self.uid} is a {self.spec.kind.value}: it has no relay")
        act = CommandAction(action)
        on = {CommandAction.ON: True, CommandAction.OFF: False}.get(act, not self.state)
        self.site.set_relay(self.spec.channels[0].appliances[0], on)
        return int(on)


class Fleet:
    """Several sites generated together, chunk by chunk in time order."""

    def __init__(self, sites: Sequence[Site]) -> None:
        self.sites = list(sites)
        self._site_of: dict[str, Site] = {}
        for s in self.sites:
            for uid in s.devices:
                if uid in self._site_of:
                    raise ValueError(
                        f"device uid {uid!r} appears at two sites (give the sites distinct names)"
                    )
                self._site_of[uid] = s

    @classmethod
    def of(
        cls,
        kind: SiteKind | str,
        n_devices: int,
        seed: int = 0,
        tz: str = "UTC",
        *,
        sites: int = 1,
        **kwargs: Any,
    ) -> Fleet:
        """``n_devices`` devices spread over ``sites`` sites of ``kind`` (seeds seed, seed+1…)."""
        if sites < 1 or n_devices < sites:
            raise ValueError("need 1 <= sites <= n_devices")
        per, extra = divmod(n_devices, sites)
        kind = SiteKind(kind)
        return cls(
            [
                Site(
                    kind, per + (i < extra), seed + i, tz, name=f"{kind.value}-{seed + i}", **kwargs
                )
                for i in range(sites)
            ]
        )

    @property
    def devices(self) -> dict[str, DeviceSpec]:
        return {uid: s.devices[uid] for uid, s in self._site_of.items()}

    def site_of(self, uid: str) -> Site:
        try:
            return self._site_of[uid]
        except KeyError:
            raise KeyError(f"no device {uid!r} in the fleet") from None

    def generate(
        self, start_ms: int, end_ms: int, step_s: float = 5.0, *, chunk_s: float = 86_400.0
    ) -> Iterator[tuple[str, Columns]]:
        """Every device's readings in ``[start_ms, end_ms)``: ``(uid, columns)`` per device per
        chunk of ``chunk_s``, chunk after chunk (memory stays bounded for long backfills)."""
        for chunk in self.generate_chunks(start_ms, end_ms, step_s, chunk_s=chunk_s):
            yield chunk.uid, chunk.columns

    def generate_chunks(
        self,
        start_ms: int,
        end_ms: int,
        step_s: float = 5.0,
        *,
        chunk_s: float = 86_400.0,
        truth: bool = False,
    ) -> Iterator[DeviceChunk]:
        for c0, c1 in _chunks(start_ms, end_ms, chunk_s):
            for s in self.sites:
                yield from s._chunk(c0, c1, step_s, list(s.devices), truth)

    def ground_truth(self, uid: str, start_ms: int, end_ms: int, step_s: float = 5.0) -> Truth:
        return self.site_of(uid).ground_truth(uid, start_ms, end_ms, step_s)

    def device_sim(self, uid: str, step_s: float = 5.0) -> DeviceSim:
        return DeviceSim(self.site_of(uid), uid, step_s)


def to_readings(columns: Columns) -> list[Reading]:
    """Columns (as yielded by ``generate``) as :class:`~wattwatch.domain.Reading` records."""
    metrics = [k for k in columns if k not in ("ts_ms", "channel")]
    ts = columns["ts_ms"].tolist()
    channels = columns["channel"].tolist()
    values = [columns[k].tolist() for k in metrics]
    return [
        Reading(values=dict(zip(metrics, row, strict=True)), ts_ms=t, channel=c)
        for t, c, *row in zip(ts, channels, *values, strict=True)
    ]


def _step_ms(step_s: float) -> int:
    step_ms = round(step_s * 1000)
    if step_ms < 100:
        raise ValueError("step_s must be at least 0.1 s")
    return step_ms


def _chunks(start_ms: int, end_ms: int, chunk_s: float) -> Iterator[tuple[int, int]]:
    chunk_ms = max(1000, int(chunk_s * 1000))
    for c0 in range(int(start_ms), int(end_ms), chunk_ms):
        yield c0, min(c0 + chunk_ms, int(end_ms))
