"""Baseline disaggregators for honest comparison: Mean, Combinatorial Optimisation, exact FHMM.

CO and FHMM follow NILMTK (Batra et al. 2014): appliance states are k-means centroids of the
sub-metered training power (2–3 clusters chosen by silhouette, a 0 W state added); CO picks, per
minute, the state combination whose summed power is closest to the aggregate; FHMM fits one
Gaussian HMM per appliance, combines them into a factorial HMM on the joint state space
(Kronecker products of the start and transition probabilities, summed means and variances)
and decodes the aggregate exactly with Viterbi. As in NILMTK, neither models the unmetered
rest of the house by default; ``model_rest=True`` adds it (aggregate − Σ sub-meters) as one more
state variable, a fairer variant reported separately in the docs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from hmmlearn.hmm import GaussianHMM
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

MAX_CLUSTERS = 3
_SUBSAMPLE = 5000


def appliance_states(
    power_w: np.ndarray, max_clusters: int = MAX_CLUSTERS, seed: int = 0
) -> np.ndarray:
    """Sorted power levels (W) of one appliance: k-means centroids plus a 0 W off state."""
    x = power_w[np.isfinite(power_w)]
    if x.size == 0:
        return np.array([0.0])
    rng = np.random.default_rng(seed)
    sample = x if x.size <= _SUBSAMPLE else rng.choice(x, _SUBSAMPLE, replace=False)
    best: tuple[float, np.ndarray] = (-2.0, np.array([float(np.mean(x))]))
    for k in range(2, max_clusters + 1):
        if np.unique(sample).size < k:
            break
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x.reshape(-1, 1))
        labels = km.predict(sample.reshape(-1, 1))
        if np.unique(labels).size < 2:
            continue
        sil = float(silhouette_score(sample.reshape(-1, 1), labels))
        if sil > best[0]:
            best = (sil, km.cluster_centers_.ravel())
    states = np.sort(np.clip(best[1], 0.0, None))
    if states[0] > 10.0:
        states = np.concatenate([[0.0], states])
    else:
        states[0] = 0.0
    return states


REST = "_rest"


def _training_columns(
    aggregate_w: pd.Series, appliances_w: pd.DataFrame, model_rest: bool
) -> dict[str, np.ndarray]:
    """Appliance training series on valid minutes, plus the unmetered rest when asked."""
    agg = aggregate_w.to_numpy(dtype=float)
    ok = np.isfinite(agg)
    cols = {
        str(c): np.where(ok, appliances_w[c].to_numpy(dtype=float), np.nan) for c in appliances_w
    }
    if model_rest:
        total = np.nansum(np.column_stack(list(cols.values())), axis=1)
        cols[REST] = np.where(ok, np.clip(agg - total, 0.0, None), np.nan)
    return cols


def _segments(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) runs of True."""
    v = np.concatenate([[False], valid, [False]]).astype(np.int8)
    d = np.diff(v)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


@dataclass(slots=True)
class MeanDisaggregator:
    """Predicts each appliance's mean training power at every minute."""

    means_w: dict[str, float] = field(default_factory=dict)

    def fit(self, aggregate_w: pd.Series, appliances_w: pd.DataFrame) -> MeanDisaggregator:
        ok = np.isfinite(aggregate_w.to_numpy(dtype=float))
        self.means_w = {
            str(c): float(np.nanmean(appliances_w[c].to_numpy(dtype=float)[ok]))
            for c in appliances_w
        }
        return self

    def predict_power(self, aggregate_w: pd.Series) -> pd.DataFrame:
        ok = np.isfinite(aggregate_w.to_numpy(dtype=float))
        out = {}
        for name, mean in self.means_w.items():
            y = np.full(len(aggregate_w), np.nan)
            y[ok] = mean
            out[name] = y
        return pd.DataFrame(out, index=aggregate_w.index)


@dataclass(slots=True)
class CombinatorialOptimisation:
    """NILMTK-style CO: nearest sum of appliance states, independently at every minute."""

    max_clusters: int = MAX_CLUSTERS
    model_rest: bool = False
    states_w: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, aggregate_w: pd.Series, appliances_w: pd.DataFrame) -> CombinatorialOptimisation:
        cols = _training_columns(aggregate_w, appliances_w, self.model_rest)
        self.states_w = {n: appliance_states(y, self.max_clusters) for n, y in cols.items()}
        return self

    def predict_power(self, aggregate_w: pd.Series) -> pd.DataFrame:
        names = list(self.states_w)
        combos = np.array(list(itertools.product(*(self.states_w[n] for n in names))))
        sums = combos.sum(axis=1)
        order = np.argsort(sums)
        sums_sorted = sums[order]
        agg = aggregate_w.to_numpy(dtype=float)
        ok = np.isfinite(agg)
        pos = np.clip(np.searchsorted(sums_sorted, agg[ok]), 1, len(sums_sorted) - 1)
        left = sums_sorted[pos - 1]
        right = sums_sorted[pos]
        pick = np.where(np.abs(agg[ok] - left) <= np.abs(right - agg[ok]), pos - 1, pos)
        if len(sums_sorted) == 1:
            pick = np.zeros(int(ok.sum()), dtype=int)
        chosen = combos[order[pick]]
        out = {}
        for j, name in enumerate(names):
            if name == REST:
                continue
            y = np.full(len(agg), np.nan)
            y[ok] = chosen[:, j]
            out[name] = y
        return pd.DataFrame(out, index=aggregate_w.index)


@dataclass(slots=True)
class ExactFHMM:
    """NILMTK-style exact factorial HMM, one Gaussian HMM per appliance, Viterbi decoding."""

    max_clusters: int = MAX_CLUSTERS
    model_rest: bool = False
    names: list[str] = field(default_factory=list)
    joint: GaussianHMM | None = None
    joint_means_w: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    def fit(self, aggregate_w: pd.Series, appliances_w: pd.DataFrame) -> ExactFHMM:
        cols = _training_columns(aggregate_w, appliances_w, self.model_rest)
        models: list[GaussianHMM] = []
        self.names = list(cols)
        for name in self.names:
            y = cols[name]
            states = appliance_states(y[np.isfinite(y)], self.max_clusters)
            k = states.size
            hmm = GaussianHMM(
                n_components=k,
                covariance_type="full",
                n_iter=20,
                random_state=0,
                init_params="stc",
                params="stmc",
                min_covar=1.0,
            )
            hmm.means_ = states.reshape(-1, 1)
            segs = [y[a:b] for a, b in _segments(np.isfinite(y)) if b - a >= 2]
            data = np.concatenate(segs).reshape(-1, 1)
            hmm.fit(data, lengths=[s.size for s in segs])
            # sort states by mean so that state 0 is "off" (NILMTK's sort_learnt_parameters)
            order = np.argsort(hmm.means_.ravel())
            hmm.startprob_ = hmm.startprob_[order]
            hmm.transmat_ = hmm.transmat_[np.ix_(order, order)]
            means = hmm.means_[order]
            covars = np.maximum(hmm.covars_[order], 1.0)
            hmm.means_ = means
            hmm.covars_ = covars
            models.append(hmm)
        start = np.array([1.0])
        trans = np.array([[1.0]])
        for m in models:
            start = np.kron(start, m.startprob_)
            trans = np.kron(trans, m.transmat_)
        per_state = [m.means_.ravel() for m in models]
        per_var = [m.covars_.reshape(m.n_components, -1)[:, 0] for m in models]
        combos = np.array(list(itertools.product(*per_state)))
        var_sum = np.array(list(itertools.product(*per_var))).sum(axis=1)
        joint = GaussianHMM(n_components=combos.shape[0], covariance_type="full", init_params="")
        joint.startprob_ = start / start.sum()
        joint.transmat_ = trans / trans.sum(axis=1, keepdims=True)
        joint.means_ = combos.sum(axis=1).reshape(-1, 1)
        joint.covars_ = var_sum.reshape(-1, 1, 1)
        self.joint = joint
        self.joint_means_w = combos
        return self

    def predict_power(self, aggregate_w: pd.Series) -> pd.DataFrame:
        if self.joint is None:
            raise RuntimeError("fit the model first")
        agg = aggregate_w.to_numpy(dtype=float)
        out = np.full((len(agg), len(self.names)), np.nan)
        for a, b in _segments(np.isfinite(agg)):
            states = self.joint.predict(agg[a:b].reshape(-1, 1))
            out[a:b] = self.joint_means_w[states]
        df = pd.DataFrame(out, index=aggregate_w.index, columns=self.names)
        return df.drop(columns=[REST], errors="ignore")
