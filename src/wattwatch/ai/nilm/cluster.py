"""Unsupervised first pass: cluster paired on/off events into candidates a user can name."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from wattwatch.ai.nilm.events import detect_events, event_signatures, pair_events
from wattwatch.ai.nilm.features import minute_of_day


@dataclass(slots=True)
class CandidateAppliance:
    """A cluster of similar on/off events: what a user sees and may name."""

    cluster_id: int
    n_events: int
    power_w: float
    duration_min: float
    energy_wh_per_run: float
    total_energy_wh: float
    typical_hour: int
    name: str | None = None


@dataclass(slots=True)
class EventClusterer:
    """Finds candidate appliances in an aggregate series; keeps user-given names."""

    max_clusters: int = 8
    min_events: int = 5
    min_power_w: float = 150.0
    seed: int = 0
    names: dict[int, str] = field(default_factory=dict)
    _km: KMeans | None = None
    _mu: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _sd: np.ndarray = field(default_factory=lambda: np.ones(0))

    def _pairs(self, aggregate_w: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
        x = aggregate_w.to_numpy(dtype=float)
        pairs = pair_events(detect_events(x), x)
        pairs = pairs[(pairs["power_w"] >= self.min_power_w) & (pairs["duration_min"] >= 1)]
        pairs = pairs.reset_index(drop=True)
        mod = minute_of_day(pd.DatetimeIndex(aggregate_w.index))
        return pairs, event_signatures(pairs, mod)

    def fit(self, aggregate_w: pd.Series) -> list[CandidateAppliance]:
        """Cluster the paired events of the series; returns the candidates, biggest energy first."""
        pairs, sig = self._pairs(aggregate_w)
        if len(pairs) < max(2, self.min_events):
            self._km = None
            return []
        self._mu = sig.mean(axis=0)
        self._sd = sig.std(axis=0) + 1e-9
        z = (sig - self._mu) / self._sd
        best: tuple[float, KMeans | None] = (-2.0, None)
        rng = np.random.default_rng(self.seed)
        sample = z if len(z) <= 3000 else z[rng.choice(len(z), 3000, replace=False)]
        for k in range(2, min(self.max_clusters, len(z) - 1) + 1):
            km = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(z)
            labels = km.predict(sample)
            if np.unique(labels).size < 2:
                continue
            sil = float(silhouette_score(sample, labels))
            if sil > best[0]:
                best = (sil, km)
        self._km = best[1]
        return self.describe(aggregate_w)

    def assign(self, aggregate_w: pd.Series) -> pd.DataFrame:
        """Paired events of a series with their cluster id and (user-given) name."""
        pairs, sig = self._pairs(aggregate_w)
        if self._km is None or len(pairs) == 0:
            pairs["cluster_id"] = pd.Series(dtype=int)
            pairs["name"] = pd.Series(dtype=object)
            return pairs
        pairs["cluster_id"] = self._km.predict((sig - self._mu) / self._sd).astype(int)
        pairs["name"] = [self.names.get(int(c)) for c in pairs["cluster_id"]]
        idx = pd.DatetimeIndex(aggregate_w.index)
        pairs["start"] = idx[pairs["on_idx"].to_numpy()]
        return pairs

    def describe(self, aggregate_w: pd.Series) -> list[CandidateAppliance]:
        """Summary of each cluster as seen in the series."""
        pairs = self.assign(aggregate_w)
        out: list[CandidateAppliance] = []
        for cid, g in pairs.groupby("cluster_id"):
            if len(g) < self.min_events:
                continue
            hours = pd.DatetimeIndex(g["start"]).hour
            out.append(
                CandidateAppliance(
                    cluster_id=int(cid),
                    n_events=len(g),
                    power_w=float(g["power_w"].median()),
                    duration_min=float(g["duration_min"].median()),
                    energy_wh_per_run=float(g["energy_wh"].median()),
                    total_energy_wh=float(g["energy_wh"].sum()),
                    typical_hour=int(np.bincount(np.asarray(hours), minlength=24).argmax()),
                    name=self.names.get(int(cid)),
                )
            )
        out.sort(key=lambda c: -c.total_energy_wh)
        return out

    def name_cluster(self, cluster_id: int, name: str) -> None:
        """Attach a user's name (e.g. "Kettle") to a candidate."""
        self.names[int(cluster_id)] = name
