"""Piecewise-constant power timelines: how appliance models describe a day, and how it is sampled.

An appliance model describes one local day as a sum of rectangular *pulses* of active and
reactive power (a kettle boil, a compressor run, a 1.5 s start-up spike). ``integrate`` turns
them into a :class:`Block`: the cumulative energy at every breakpoint, which is piecewise
linear. Sampling is then one ``np.interp`` of that curve at the report times: a meter's reading
at ``t`` is the *mean* power over ``(t - step, t]``, i.e. ``(E(t) - E(t - step)) / step``.

This is what real meters report (they integrate between reports), it is exact for any step
(a 1.5 s spike shows as a bump in a 5 s reading, as on a real Shelly), and the energy counter
and the power readings can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
ArrayLike = float | Sequence[float] | F64


def reactive(p_w: ArrayLike, pf: ArrayLike) -> F64:
    """Reactive power of a load drawing ``p_w`` at displacement power factor ``pf`` (>= 0)."""
    pf_a = np.clip(np.asarray(pf, dtype=np.float64), 1e-3, 1.0)
    return np.asarray(p_w, dtype=np.float64) * np.sqrt(1.0 - pf_a * pf_a) / pf_a


class Pulses:
    """A sum of rectangular power pulses on a day, in local seconds since midnight.

    Pulses may overlap (a drum motor running while the heater is on); their powers add.
    """

    __slots__ = ("_ends", "_p", "_q", "_starts")

    def __init__(self) -> None:
        self._starts: list[F64] = []
        self._ends: list[F64] = []
        self._p: list[F64] = []
        self._q: list[F64] = []

    def add(self, start: ArrayLike, end: ArrayLike, p_w: ArrayLike, pf: ArrayLike = 1.0) -> None:
        """Add pulses drawing ``p_w`` at power factor ``pf`` on ``[start, end)`` (broadcast)."""
        s, e, p, f = np.broadcast_arrays(
            np.atleast_1d(np.asarray(start, dtype=np.float64)),
            np.atleast_1d(np.asarray(end, dtype=np.float64)),
            np.atleast_1d(np.asarray(p_w, dtype=np.float64)),
            np.atleast_1d(np.asarray(pf, dtype=np.float64)),
        )
        if s.size == 0:
            return
        self._starts.append(s.astype(np.float64, copy=True))
        self._ends.append(e.astype(np.float64, copy=True))
        self._p.append(p.astype(np.float64, copy=True))
        self._q.append(reactive(p, f))

    def extend(self, other: Pulses) -> None:
        self._starts.extend(other._starts)
        self._ends.extend(other._ends)
        self._p.extend(other._p)
        self._q.extend(other._q)

    def arrays(self) -> tuple[F64, F64, F64, F64]:
        """(starts, ends, p_w, q_var) of every pulse."""
        if not self._starts:
            empty = np.empty(0, dtype=np.float64)
            return empty, empty, empty, empty
        return (
            np.concatenate(self._starts),
            np.concatenate(self._ends),
            np.concatenate(self._p),
            np.concatenate(self._q),
        )

    def __len__(self) -> int:
        return sum(a.size for a in self._starts)


@dataclass(frozen=True, slots=True)
class Block:
    """One day of one appliance as cumulative energy: ``e_p``/``e_q`` (J, var·s) at ``t_s``.

    ``t_s`` are absolute epoch seconds, non-decreasing, from the block start to its end;
    energies start at 0 and are linear between breakpoints.
    """

    t_s: F64
    e_p: F64
    e_q: F64

    @property
    def start_s(self) -> float:
        return float(self.t_s[0])

    @property
    def end_s(self) -> float:
        return float(self.t_s[-1])


def integrate(
    pulses: Pulses,
    start_s: float,
    length_s: float,
    dst_shift_s: float = 0.0,
    dst_at_s: float = 3 * 3600.0,
) -> Block:
    """The cumulative-energy curve of ``pulses`` over a block ``[start_s, start_s + length_s)``.

    Pulses are clipped to the block. On a daylight-saving day the block is 23 or 25 hours
    long; local times from ``dst_at_s`` on move by ``dst_shift_s`` (``length_s - 86400``) so
    that an 18:00 local event still happens at 18:00 local.
    """
    s, e, p, q = pulses.arrays()
    if dst_shift_s:
        s = s + dst_shift_s * (s >= dst_at_s)
        e = e + dst_shift_s * (e >= dst_at_s)
    s = np.clip(s, 0.0, length_s)
    e = np.clip(e, 0.0, length_s)
    keep = e > s
    s, e, p, q = s[keep], e[keep], p[keep], q[keep]
    times = np.concatenate(([0.0], s, e, [length_s]))
    dp = np.concatenate(([0.0], p, -p, [0.0]))
    dq = np.concatenate(([0.0], q, -q, [0.0]))
    order = np.argsort(times, kind="stable")
    times = times[order]
    level_p = np.cumsum(dp[order])
    level_q = np.cumsum(dq[order])
    dt = np.diff(times)
    e_p = np.empty_like(times)
    e_q = np.empty_like(times)
    e_p[0] = 0.0
    e_q[0] = 0.0
    # Levels are sums of non-negative pulses; rounding can leave -1e-13 after a pulse ends.
    np.cumsum(np.maximum(level_p[:-1], 0.0) * dt, out=e_p[1:])
    np.cumsum(np.maximum(level_q[:-1], 0.0) * dt, out=e_q[1:])
    return Block(times + start_s, e_p, e_q)


def chain(blocks: Sequence[Block]) -> Block:
    """Consecutive blocks as one curve (energies carried over from block to block)."""
    if len(blocks) == 1:
        return blocks[0]
    ts: list[F64] = []
    eps: list[F64] = []
    eqs: list[F64] = []
    off_p = 0.0
    off_q = 0.0
    for i, b in enumerate(blocks):
        sl = slice(None) if i == 0 else slice(1, None)  # drop the duplicated boundary point
        ts.append(b.t_s[sl])
        eps.append(b.e_p[sl] + off_p)
        eqs.append(b.e_q[sl] + off_q)
        off_p += float(b.e_p[-1])
        off_q += float(b.e_q[-1])
    return Block(np.concatenate(ts), np.concatenate(eps), np.concatenate(eqs))


def mean_power(curve: Block, edges_s: F64) -> tuple[F64, F64]:
    """Mean (P, Q) over each interval ``(edges[i], edges[i+1]]``: one value per interval."""
    e_p = np.interp(edges_s, curve.t_s, curve.e_p)
    e_q = np.interp(edges_s, curve.t_s, curve.e_q)
    width = np.diff(edges_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(width > 0, np.diff(e_p) / np.where(width > 0, width, 1.0), 0.0)
        q = np.where(width > 0, np.diff(e_q) / np.where(width > 0, width, 1.0), 0.0)
    # Differences of large cumulative energies leave ~1e-8 W where nothing runs: snap to 0.
    return np.where(p > 1e-6, p, 0.0), np.where(q > 1e-6, q, 0.0)


_NOISE_TABLE: list[npt.NDArray[np.float32]] = []
_NOISE_SIZE = 1 << 20


def gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    """Standard normal noise of ``shape``, fast: a slice of a fixed table at a random offset.

    Drawing fresh normals costs ~20 ns each, more than everything else a reading needs;
    measurement noise only has to look like noise, and a 1 Mi-sample table read from a
    random place does (its samples are independent; reuse across devices is invisible).
    """
    size = int(np.prod(shape))
    if size > _NOISE_SIZE // 2:
        return rng.standard_normal(shape, np.float32)
    if not _NOISE_TABLE:
        _NOISE_TABLE.append(np.random.default_rng(0x5EED).standard_normal(_NOISE_SIZE, np.float32))
    start = int(rng.integers(0, _NOISE_SIZE - size))
    return _NOISE_TABLE[0][start : start + size].reshape(shape)


def smooth_noise(white: F64, tau_steps: float) -> F64:
    """White noise low-pass filtered with an exponential kernel, rescaled to unit variance."""
    n_kernel = max(1, math.ceil(5 * tau_steps))
    kernel = np.exp(-np.arange(n_kernel, dtype=np.float64) / max(tau_steps, 1e-9))
    kernel /= math.sqrt(float(np.sum(kernel * kernel)))
    return np.convolve(white, kernel, mode="full")[: white.size]
