"""Online NILM inference: consume readings as they stream in and answer "what is on now"."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from wattwatch.ai.nilm.model import NilmModel

_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class ApplianceStatus:
    """The estimate for one minute: which appliances are on and their power."""

    ts_ms: int
    on: dict[str, bool]
    power_w: dict[str, float]
    probability: dict[str, float]
    delay_min: int


class OnlineDisaggregator:
    """Streams readings (any rate) into 1-minute means and disaggregates each closed minute.

    A model with ``spec.lookahead_min = L`` reads L + 1 minutes after the minute it describes
    (``spec.future_min``), so the status it reports is for the minute L + 1 minutes ago
    (``delay_min``); a model trained with ``FeatureSpec(lookahead_min=0)`` answers for the
    minute before the latest closed one.
    """

    def __init__(self, model: NilmModel) -> None:
        if not model.heads:
            raise ValueError("the model is not fitted")
        self.model = model
        self.delay_min = model.spec.future_min
        self._size = model.spec.context_min + self.delay_min + 2
        self._minutes: deque[tuple[int, float]] = deque(maxlen=self._size)
        self._bucket_ms: int | None = None
        self._bucket_sum = 0.0
        self._bucket_n = 0
        self._latest: ApplianceStatus | None = None

    def update(self, ts_ms: int, power_w: float) -> ApplianceStatus | None:
        """Add one reading; returns a new status when a minute closes, else None."""
        bucket = (int(ts_ms) // _MINUTE_MS) * _MINUTE_MS
        status = None
        if self._bucket_ms is None:
            self._bucket_ms = bucket
        elif bucket > self._bucket_ms:
            status = self._close_minute()
            self._bucket_ms = bucket
        elif bucket < self._bucket_ms:
            return None  # late reading for a closed minute: dropped
        if np.isfinite(power_w) and power_w > 0:
            self._bucket_sum += float(power_w)
            self._bucket_n += 1
        return status

    def flush(self) -> ApplianceStatus | None:
        """Close the current minute now (e.g. at the end of a batch)."""
        if self._bucket_ms is None:
            return None
        status = self._close_minute()
        self._bucket_ms = None
        return status

    def what_is_on(self) -> ApplianceStatus | None:
        """The latest status (None until enough minutes have been seen)."""
        return self._latest

    def _close_minute(self) -> ApplianceStatus | None:
        assert self._bucket_ms is not None
        value = self._bucket_sum / self._bucket_n if self._bucket_n else float("nan")
        if self._minutes:
            last = self._minutes[-1][0]
            # missing minutes are gaps, not zeros
            for t in range(last + _MINUTE_MS, self._bucket_ms, _MINUTE_MS):
                self._minutes.append((t, float("nan")))
        self._minutes.append((self._bucket_ms, value))
        self._bucket_sum, self._bucket_n = 0.0, 0
        if len(self._minutes) <= self.delay_min:
            return None
        ts = pd.to_datetime([t for t, _ in self._minutes], unit="ms")
        series = pd.Series([v for _, v in self._minutes], index=ts, dtype=float)
        pos = len(series) - 1 - self.delay_min
        x = self.model.features(series)
        row = series.iloc[pos : pos + 1]
        if not np.isfinite(row.iloc[0]):
            return None
        # one row at a time: thread start-up would cost more than the trees
        with threadpool_limits(limits=1, user_api="openmp"):
            power = self._predict_row(series, x, pos)
        self._latest = power
        return power

    def _predict_row(self, series: pd.Series, x: np.ndarray, pos: int) -> ApplianceStatus:
        agg = float(series.iloc[pos])
        on: dict[str, bool] = {}
        watts: dict[str, float] = {}
        probs: dict[str, float] = {}
        xr = x[pos : pos + 1]
        for name, head in self.model.heads.items():
            p = 0.0
            if head.classifier is not None:
                p = float(head.classifier.predict_proba(xr)[0, 1])
            is_on = p >= head.prob_cutoff
            if is_on:
                w = head.on_power_w
                if head.power_on is not None:
                    w = float(head.power_on.predict(xr)[0])
                w = max(min(w, agg), head.threshold_w)
            elif head.power_off is not None:
                w = float(np.clip(head.power_off.predict(xr)[0], 0.0, head.threshold_w * 0.99))
            else:
                w = 0.0
            on[name], watts[name], probs[name] = is_on, w, p
        ts_ms = int(series.index[pos].value // 1_000_000)
        return ApplianceStatus(ts_ms, on, watts, probs, self.delay_min)
