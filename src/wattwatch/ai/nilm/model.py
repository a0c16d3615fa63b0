"""Supervised NILM: gradient-boosted trees on windowed aggregate features, one head per appliance.

Each appliance head is a hurdle model: a classifier says on/off (power ≥ the appliance's on
threshold), one regressor gives the power when on, another the residual power when off (e.g. a
dishwasher's pump between heating phases). The classifier's probability cut-off is chosen by
time-blocked cross-validation on the training data alone, maximising on/off F1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from wattwatch.ai.dataset import ON_THRESHOLDS_W
from wattwatch.ai.nilm.features import FeatureSpec, minute_of_day, window_features

DEFAULT_HGB: dict[str, object] = {
    "max_iter": 250,
    "learning_rate": 0.08,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 20,
    "l2_regularization": 1.0,
}


@dataclass(slots=True)
class ApplianceHead:
    """The fitted parts for one appliance."""

    name: str
    threshold_w: float
    prob_cutoff: float = 0.5
    classifier: HistGradientBoostingClassifier | None = None
    power_on: HistGradientBoostingRegressor | None = None
    power_off: HistGradientBoostingRegressor | None = None
    on_power_w: float = 0.0
    cv_f1: float = float("nan")


@dataclass(slots=True)
class OnInterval:
    """One predicted run of an appliance."""

    appliance: str
    start: pd.Timestamp
    end: pd.Timestamp
    duration_min: int
    energy_wh: float
    mean_power_w: float


def _best_cutoff(prob: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Probability cut-off maximising F1 of (prob ≥ cut) against truth; (cut, f1)."""
    best = (0.5, 0.0)
    for cut in np.concatenate([np.linspace(0.02, 0.1, 5), np.linspace(0.125, 0.9, 32)]):
        pred = prob >= cut
        tp = float(np.sum(pred & truth))
        if tp == 0:
            continue
        prec = tp / float(np.sum(pred))
        rec = tp / float(np.sum(truth))
        f1 = 2 * prec * rec / (prec + rec)
        if f1 > best[1] + 1e-9:
            best = (float(cut), f1)
    return best


@dataclass(slots=True)
class NilmModel:
    """Supervised disaggregator for one monitor's 1-minute aggregate."""

    appliances: tuple[str, ...] = tuple(ON_THRESHOLDS_W)
    thresholds_w: dict[str, float] = field(default_factory=lambda: dict(ON_THRESHOLDS_W))
    spec: FeatureSpec = field(default_factory=FeatureSpec)
    hgb_params: dict[str, object] = field(default_factory=lambda: dict(DEFAULT_HGB))
    cv_folds: int = 3
    random_state: int = 0
    # OpenMP threads for the trees; 1 keeps a busy shared machine responsive (and is what
    # the timings in docs/ai.md use), None lets scikit-learn use every core
    n_threads: int | None = 1
    heads: dict[str, ApplianceHead] = field(default_factory=dict)

    def features(self, aggregate_w: pd.Series) -> np.ndarray:
        """Feature matrix of an aggregate series with a regular 1-minute DatetimeIndex."""
        mod = minute_of_day(pd.DatetimeIndex(aggregate_w.index))
        return window_features(aggregate_w.to_numpy(dtype=float), self.spec, mod)

    def _clf(self) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(random_state=self.random_state, **self.hgb_params)

    def _reg(self) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(random_state=self.random_state, **self.hgb_params)

    def fit(self, aggregate_w: pd.Series, appliances_w: pd.DataFrame) -> NilmModel:
        """Train every head on the valid minutes (finite aggregate and label)."""
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._fit(aggregate_w, appliances_w)

    def _fit(self, aggregate_w: pd.Series, appliances_w: pd.DataFrame) -> NilmModel:
        x_all = self.features(aggregate_w)
        agg_ok = np.isfinite(aggregate_w.to_numpy(dtype=float))
        self.heads = {}
        for name in self.appliances:
            thr = self.thresholds_w[name]
            head = ApplianceHead(name=name, threshold_w=thr)
            self.heads[name] = head
            if name not in appliances_w:
                continue
            y_all = appliances_w[name].to_numpy(dtype=float)
            ok = agg_ok & np.isfinite(y_all)
            x, y = x_all[ok], y_all[ok]
            on = y >= thr
            if on.sum() < 5 or (~on).sum() < 5:
                continue
            head.on_power_w = float(np.median(y[on]))
            head.prob_cutoff, head.cv_f1 = self._cv_cutoff(x, on)
            head.classifier = self._clf().fit(x, on)
            if on.sum() >= 20:
                head.power_on = self._reg().fit(x[on], y[on])
            off_y = y[~on]
            if float(np.mean(off_y)) > 1.0:
                head.power_off = self._reg().fit(x[~on], off_y)
        return self

    def _cv_cutoff(self, x: np.ndarray, on: np.ndarray) -> tuple[float, float]:
        if self.cv_folds < 2:
            return 0.5, float("nan")
        n = x.shape[0]
        prob = np.full(n, np.nan)
        edges = np.linspace(0, n, self.cv_folds + 1).astype(int)
        for k in range(self.cv_folds):
            test = np.zeros(n, dtype=bool)
            test[edges[k] : edges[k + 1]] = True
            if on[~test].sum() < 5 or (~on[~test]).sum() < 5:
                continue
            clf = self._clf().fit(x[~test], on[~test])
            prob[test] = clf.predict_proba(x[test])[:, 1]
        ok = np.isfinite(prob)
        if not ok.any() or not on[ok].any():
            return 0.5, float("nan")
        return _best_cutoff(prob[ok], on[ok])

    def predict_proba(self, aggregate_w: pd.Series, x: np.ndarray | None = None) -> pd.DataFrame:
        """P(on) per minute and appliance (NaN in gaps)."""
        if x is None:
            x = self.features(aggregate_w)
        ok = np.isfinite(aggregate_w.to_numpy(dtype=float))
        out = {}
        for name, head in self.heads.items():
            p = np.full(len(aggregate_w), np.nan)
            p[ok] = 0.0
            if head.classifier is not None and ok.any():
                p[ok] = head.classifier.predict_proba(x[ok])[:, 1]
            out[name] = p
        return pd.DataFrame(out, index=aggregate_w.index)

    def predict_power(self, aggregate_w: pd.Series) -> pd.DataFrame:
        """Estimated power in W per minute and appliance (NaN in gaps).

        On minutes get at least the on threshold and off minutes stay below it, so thresholding
        the estimate gives back exactly the classifier's on/off decision.
        """
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self._predict_power(aggregate_w)

    def _predict_power(self, aggregate_w: pd.Series) -> pd.DataFrame:
        x = self.features(aggregate_w)
        agg = aggregate_w.to_numpy(dtype=float)
        ok = np.isfinite(agg)
        prob = self.predict_proba(aggregate_w, x)
        out = {}
        for name, head in self.heads.items():
            y = np.full(len(agg), np.nan)
            y[ok] = 0.0
            on = ok & (prob[name].to_numpy() >= head.prob_cutoff)
            off = ok & ~on
            if on.any():
                if head.power_on is not None:
                    p_on = head.power_on.predict(x[on])
                else:
                    p_on = np.full(int(on.sum()), head.on_power_w)
                # never more than the aggregate itself
                y[on] = np.clip(np.minimum(p_on, agg[on]), head.threshold_w, None)
            if off.any() and head.power_off is not None:
                y[off] = np.clip(head.power_off.predict(x[off]), 0.0, head.threshold_w * 0.99)
            out[name] = y
        return pd.DataFrame(out, index=aggregate_w.index)

    def timelines(self, aggregate_w: pd.Series, merge_gap_min: int = 2) -> list[OnInterval]:
        """Predicted on-intervals of every appliance, with their energy."""
        power = self.predict_power(aggregate_w)
        return on_intervals(power, self.thresholds_w, merge_gap_min)

    def energy_wh(self, aggregate_w: pd.Series) -> dict[str, float]:
        """Estimated energy per appliance over the series (Wh, 1-minute samples)."""
        power = self.predict_power(aggregate_w)
        return {name: float(np.nansum(power[name].to_numpy())) / 60.0 for name in power.columns}


def on_intervals(
    power_w: pd.DataFrame, thresholds_w: dict[str, float], merge_gap_min: int = 2
) -> list[OnInterval]:
    """Runs of power ≥ threshold per column; off-gaps up to ``merge_gap_min`` are bridged."""
    out: list[OnInterval] = []
    idx = pd.DatetimeIndex(power_w.index)
    for name in power_w.columns:
        y = power_w[name].to_numpy(dtype=float)
        on = np.nan_to_num(y, nan=0.0) >= thresholds_w.get(name, 0.0)
        pos = np.flatnonzero(on)
        if pos.size == 0:
            continue
        breaks = np.flatnonzero(np.diff(pos) > merge_gap_min + 1)
        starts = np.concatenate([[pos[0]], pos[breaks + 1]])
        ends = np.concatenate([pos[breaks], [pos[-1]]])
        for s, e in zip(starts, ends, strict=True):
            seg = np.nan_to_num(y[s : e + 1], nan=0.0)
            out.append(
                OnInterval(
                    appliance=str(name),
                    start=idx[s],
                    end=idx[e] + pd.Timedelta(minutes=1),
                    duration_min=int(e - s + 1),
                    energy_wh=float(seg.sum()) / 60.0,
                    mean_power_w=float(seg.mean()),
                )
            )
    out.sort(key=lambda iv: iv.start)
    return out
