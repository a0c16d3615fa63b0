"""The AI service: labels, training and versioned models per device, appliance timelines and
"what is on now", forecasts with the site's tariff, and the periodic anomaly check.

It reads stored 1-minute (NILM, anomalies) and 1-hour (forecasts) rollups through the store
interface and runs the pure functions of ``wattwatch.ai``. pandas and scikit-learn come with
the ``[ml]`` extra and are imported only when a model is trained or used, so the rest of
wattwatch runs without them; every entry point then raises ``Unavailable`` (HTTP 503).
Everything here blocks: callers on the event loop use ``asyncio.to_thread``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from wattwatch.domain import Interval, Role, now_ms
from wattwatch.errors import InvalidInput, NoModel, NotFound, Unavailable
from wattwatch.periodic import PeriodicTask
from wattwatch.store.ai import LABEL_SOURCES, SqlAiStore
from wattwatch.store.base import ReadingStore
from wattwatch.store.registry import SqlRegistry
from wattwatch.tariffs import Tariff

if TYPE_CHECKING:
    import pandas as pd

    from wattwatch.registry.service import Principal

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
MAX_ROWS = 5_000_000

NILM_KIND = "nilm"
CLUSTERS_KIND = "clusters"
HORIZONS = ("24h", "7d", "month")
# Appliance timelines are computed on request: a month of minutes is about 15 s of trees.
MAX_TIMELINE_MS = 31 * DAY_MS
# Forecasts see this much history (the features use up to four weeks of lags).
FORECAST_HISTORY_MS = 91 * DAY_MS
FORECAST_CACHE_S = 600.0
# The anomaly detectors compare the last hours with the previous 14 days.
ANOMALY_HISTORY_MS = 21 * DAY_MS
# "What is on now" needs readings at most this old.
NOW_FRESH_MS = 30 * MINUTE_MS
# Times the models can put on a calendar (pandas' nanosecond range ends in 2262).
LATEST_MS = 7_258_118_400_000  # 2200-01-01
# Minutes before a labelled run that give the base load it is measured against.
LABEL_BASE_MIN = 15


def ml_available() -> bool:
    """True when the ``[ml]`` extra (pandas, scikit-learn) is installed.

    Looked up, not imported: importing them takes seconds, and ``serve`` asks at start-up.
    """
    return all(importlib.util.find_spec(name) is not None for name in ("pandas", "sklearn"))


_ML_IMPORT = threading.Lock()
_ml_imported = False
# Imported together, once: what the models are built from and what unpickling them needs.
_ML_MODULES = (
    "pandas",
    "sklearn",
    "wattwatch.ai.models",
    "wattwatch.ai.nilm",
    "wattwatch.ai.forecast",
    "wattwatch.ai.anomaly",
)


def require_ml() -> None:
    """Make sure the ``[ml]`` extra is there and imported (Unavailable when it is not).

    The first import happens here, under a lock: two requests that import scikit-learn for
    the first time at once (a device page asks for appliances and forecast together) can
    otherwise see it half initialised, "cannot import name 'clone' from partially
    initialized module 'sklearn.base'".
    """
    global _ml_imported
    if not ml_available():
        raise Unavailable(
            "appliance detection and forecasting need the [ml] extra: pip install 'wattwatch[ml]'"
        )
    if _ml_imported:
        return
    with _ML_IMPORT:
        if not _ml_imported:
            for name in _ML_MODULES:
                importlib.import_module(name)
            _ml_imported = True


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def canonical_appliance(name: str) -> str:
    """The evaluation's spelling of a known appliance ("washing machine" → WashingMachine)."""
    from wattwatch.ai.dataset import ON_THRESHOLDS_W

    known = {_norm(k): k for k in ON_THRESHOLDS_W}
    return known.get(_norm(name), name.strip())


def _known_threshold(name: str) -> float | None:
    from wattwatch.ai.dataset import ON_THRESHOLDS_W

    return ON_THRESHOLDS_W.get(canonical_appliance(name))


# -- time: stored epoch ms ⇄ the site's local wall-clock minutes the models see -----------
def local_index(ts_ms: np.ndarray, tz: str) -> pd.DatetimeIndex:
    import pandas as pd

    utc = pd.to_datetime(np.asarray(ts_ms, dtype=np.int64), unit="ms", utc=True)
    return pd.DatetimeIndex(utc.tz_convert(tz).tz_localize(None))


def local_to_ms(index: Any, tz: str) -> np.ndarray:
    """Epoch ms of local wall-clock times (the first of a repeated autumn hour)."""
    import pandas as pd

    idx = pd.DatetimeIndex(index)
    aware = idx.tz_localize(
        tz, ambiguous=np.ones(len(idx), dtype=bool), nonexistent="shift_forward"
    )
    return np.asarray(aware.as_unit("ns").asi8 // 1_000_000, dtype=np.int64)


def _regular(ts_ms: np.ndarray, values: np.ndarray, tz: str, freq: str) -> pd.Series:
    """A regular local-time series (NaN = no data); a repeated autumn hour is averaged."""
    import pandas as pd

    s = pd.Series(values, index=local_index(ts_ms, tz), dtype=float)
    s = s.groupby(level=0).mean()
    return s.asfreq(freq) if len(s) else s


class AiService:
    """Labels, models, inference and forecasts, with the caller's organisation checked."""

    def __init__(
        self,
        store: ReadingStore,
        registry: SqlRegistry,
        ai_store: SqlAiStore,
        *,
        keep_models: int = 5,
        train_days: int = 14,
        nilm_params: dict[str, Any] | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.db = registry
        self.ai = ai_store
        self.keep_models = keep_models
        self.train_days = train_days
        # NilmModel keyword arguments (tests use fewer trees)
        self.nilm_params = dict(nilm_params or {})
        self.clock = clock
        self._cache: dict[tuple[int, str], tuple[int, Any]] = {}
        self._forecasts: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
        self._anomaly_since: dict[int, int] = {}
        self._attempted: dict[int, int] = {}
        self._lock = threading.Lock()

    # -- devices, channels, readings ------------------------------------------------------
    def _device(self, org_id: int, device_id: int) -> dict[str, Any]:
        return self.db.get_device(org_id, device_id)

    def _site(self, device: dict[str, Any]) -> dict[str, Any] | None:
        if device["site_id"] is None or device["org_id"] is None:
            return None
        return self.db.get_site(device["org_id"], device["site_id"])

    def _tz(self, device: dict[str, Any]) -> str:
        site = self._site(device)
        return str(site["timezone"]) if site else "UTC"

    def aggregate_channels(self, device_id: int) -> list[int]:
        """The channels whose sum is the device's aggregate: all but its sub-meters (a plug's
        only channel when every channel is a sub-meter)."""
        chans = self.db.list_channels(device_id)
        main = [c["id"] for c in chans if not c["submeter"]]
        return main or [c["id"] for c in chans]

    def plug_channels(self, device: dict[str, Any]) -> dict[str, list[int]]:
        """Appliance name → channels metering it on the device's site (or the device itself):
        a channel naming an appliance that is a sub-meter or a plug's. These are on/off truth."""
        if device["site_id"] is not None and device["org_id"] is not None:
            devices = self.db.select_devices(device["org_id"], site_id=device["site_id"])
        else:
            devices = [device]
        out: dict[str, list[int]] = {}
        own = set(self.aggregate_channels(device["id"]))
        for d in devices:
            for c in self.db.list_channels(d["id"]):
                if not c["appliance"] or c["id"] in own:
                    continue
                if c["submeter"] or d["kind"] == "plug":
                    out.setdefault(canonical_appliance(str(c["appliance"])), []).append(c["id"])
        return out

    def minute_power(
        self, channel_ids: Sequence[int], from_ms: int, to_ms: int, tz: str
    ) -> pd.Series:
        """Mean power per minute (W, summed over the channels) on a regular local index."""
        return self._mean_power(channel_ids, Interval.MINUTE, MINUTE_MS, "1min", from_ms, to_ms, tz)

    def hourly_power(
        self, channel_ids: Sequence[int], from_ms: int, to_ms: int, tz: str
    ) -> pd.Series:
        """Mean power per hour (W = Wh in the hour), summed over the channels."""
        return self._mean_power(channel_ids, Interval.HOUR, HOUR_MS, "1h", from_ms, to_ms, tz)

    def _mean_power(
        self,
        channel_ids: Sequence[int],
        interval: Interval,
        step_ms: int,
        freq: str,
        from_ms: int,
        to_ms: int,
        tz: str,
    ) -> pd.Series:
        """Mean power per ``interval`` rollup bucket, summed over the channels (NaN: no data)."""
        require_ml()
        import pandas as pd

        start = from_ms - from_ms % step_ms
        rows = self.store.query_rollup(channel_ids, interval, start, to_ms, MAX_ROWS)
        grid = np.arange(start, to_ms, step_ms, dtype=np.int64)
        values = np.full(grid.size, np.nan)
        for r in rows:
            if r["pn"]:
                i = (r["ts"] - start) // step_ms
                w = r["psum"] / r["pn"] / 1000.0
                values[i] = w if np.isnan(values[i]) else values[i] + w
        if grid.size == 0:
            return pd.Series([], dtype=float, index=pd.DatetimeIndex([]))
        return _regular(grid, values, tz, freq)

    def newest_reading_ms(self, channel_ids: Sequence[int], until_ms: int) -> int | None:
        """Start of the newest stored minute of the channels before ``until_ms``."""
        look = 7 * DAY_MS
        for lo in (until_ms - look, until_ms - 400 * DAY_MS, 0):
            days = self.store.query_rollup(channel_ids, Interval.HOUR, lo, until_ms, MAX_ROWS)
            if days:
                last_hour = max(r["ts"] for r in days)
                mins = self.store.query_rollup(
                    channel_ids, Interval.MINUTE, last_hour, last_hour + HOUR_MS, MAX_ROWS
                )
                return int(max(r["ts"] for r in mins) if mins else last_hour)
        return None

    # -- labels ---------------------------------------------------------------------------
    def add_labels(
        self,
        principal: Principal,
        device_id: int,
        labels: Iterable[tuple[str, int, int]],
        source: str = "user",
    ) -> list[dict[str, Any]]:
        """Store (appliance, start_ms, end_ms) labels of a device; returns them with ids."""
        principal.require(Role.ADMIN)
        self._device(principal.org_id, device_id)
        if source not in LABEL_SOURCES:
            raise InvalidInput(f"label source is one of {', '.join(LABEL_SOURCES)}")
        created = now_ms()
        rows = []
        for appliance, start, end in labels:
            name = appliance.strip()
            if not name or len(name) > 120:
                raise InvalidInput("appliance names are 1 to 120 characters")
            if end <= start:
                raise InvalidInput("a label's end must be after its start")
            if start < 0 or end > LATEST_MS:
                raise InvalidInput("labels must lie between 1970 and 2200")
            if end - start > 7 * DAY_MS:
                raise InvalidInput("a label covers one run of an appliance: at most 7 days")
            rows.append(
                {
                    "device_id": device_id,
                    "appliance": canonical_appliance(name),
                    "start_ms": int(start),
                    "end_ms": int(end),
                    "source": source,
                    "created_by": principal.actor,
                    "created_ms": created,
                }
            )
        ids = self.ai.add_labels(rows)
        return [{"id": i, **r} for i, r in zip(ids, rows, strict=True)]

    def list_labels(
        self,
        principal: Principal,
        device_id: int,
        *,
        appliance: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> dict[str, Any]:
        device = self._device(principal.org_id, device_id)
        labels = self.ai.list_labels(
            device_id,
            appliance=canonical_appliance(appliance) if appliance else None,
            from_ms=from_ms,
            to_ms=to_ms,
        )
        plugs = [
            {"appliance": name, "channel_ids": ids}
            for name, ids in sorted(self.plug_channels(device).items())
        ]
        return {"labels": labels, "plugs": plugs}

    def delete_label(self, principal: Principal, device_id: int, label_id: int) -> None:
        principal.require(Role.ADMIN)
        self._device(principal.org_id, device_id)
        if not self.ai.delete_label(device_id, label_id):
            raise NotFound("label not found")

    # -- training ---------------------------------------------------------------------------
    def training_data(
        self, device: dict[str, Any], from_ms: int, to_ms: int
    ) -> tuple[pd.Series, pd.DataFrame, dict[str, float], dict[str, str]]:
        """(aggregate W, appliance W per minute (NaN = unknown), thresholds W, sources).

        Truth comes from sub-meters/plugs of the site (their power) and from labels: between
        an appliance's first and last label every minute outside a label counts as off (a
        labelling period is complete), inside a label the power above the base load of the
        minutes before it. A plug wins where both exist.
        """
        require_ml()
        import pandas as pd

        tz = self._tz(device)
        agg = self.minute_power(self.aggregate_channels(device["id"]), from_ms, to_ms, tz)
        columns: dict[str, np.ndarray] = {}
        thresholds: dict[str, float] = {}
        sources: dict[str, str] = {}
        labels = self.ai.list_labels(device["id"], from_ms=from_ms, to_ms=to_ms)
        by_name: dict[str, list[dict[str, Any]]] = {}
        for lab in labels:
            by_name.setdefault(canonical_appliance(lab["appliance"]), []).append(lab)
        x = agg.to_numpy(dtype=float)
        for name, labs in by_name.items():
            idx_ms = local_to_ms(agg.index, tz)
            lo = int(np.searchsorted(idx_ms, min(lab["start_ms"] for lab in labs)))
            hi = int(np.searchsorted(idx_ms, max(lab["end_ms"] for lab in labs)))
            y = np.full(x.size, np.nan)
            y[lo:hi] = 0.0
            runs: list[tuple[int, int, np.ndarray]] = []
            for lab in labs:
                s = int(np.searchsorted(idx_ms, lab["start_ms"]))
                e = int(np.searchsorted(idx_ms, lab["end_ms"]))
                if e <= s:
                    continue
                before = x[max(0, s - LABEL_BASE_MIN) : s]
                base = (
                    float(np.nanmin(before))
                    if np.isfinite(before).any()
                    else float(np.nanpercentile(x[s:e], 5))
                    if np.isfinite(x[s:e]).any()
                    else 0.0
                )
                runs.append((s, e, np.clip(x[s:e] - base, 0.0, None)))
            if not runs:
                continue
            on_w = np.concatenate([r[2] for r in runs])
            thr = _known_threshold(name) or max(50.0, 0.5 * float(np.nanmedian(on_w)))
            for s, e, w in runs:
                y[s:e] = np.where(np.isfinite(w), np.maximum(w, thr), np.nan)
            columns[name], thresholds[name] = y, thr
            kinds = sorted({lab["source"] for lab in labs})
            sources[name] = "+".join(kinds)
        for name, chans in self.plug_channels(device).items():
            p = self.minute_power(chans, from_ms, to_ms, tz).reindex(agg.index).to_numpy()
            if not np.isfinite(p).any():
                continue
            active = p[np.isfinite(p) & (p > 15.0)]
            thr = _known_threshold(name) or (
                max(15.0, 0.5 * float(np.median(active))) if active.size else 15.0
            )
            if name in columns:
                columns[name] = np.where(np.isfinite(p), p, columns[name])
                sources[name] = "plug+" + sources[name]
            else:
                columns[name], sources[name] = p, "plug"
            thresholds[name] = thr
        frame = pd.DataFrame(columns, index=agg.index)
        return agg, frame, thresholds, sources

    def train(
        self,
        principal: Principal | None,
        device_id: int,
        *,
        days: int | None = None,
        until_ms: int | None = None,
        org_id: int | None = None,
    ) -> dict[str, Any]:
        """Train the NILM model (when the device has labels or plugs) and the event clusterer
        on the ``days`` before ``until_ms`` (default: the newest reading); store new versions."""
        require_ml()
        from wattwatch.ai.models import dump_model
        from wattwatch.ai.nilm import EventClusterer, NilmModel

        if principal is not None:
            principal.require(Role.ADMIN)
            org_id = principal.org_id
        if org_id is None:
            raise InvalidInput("training needs an organisation")
        device = self._device(org_id, device_id)
        days = self.train_days if days is None else days
        if not 1 <= days <= 120:
            raise InvalidInput("training days must be 1..120")
        chans = self.aggregate_channels(device_id)
        if until_ms is None:
            newest = self.newest_reading_ms(chans, self.clock() + MINUTE_MS)
            if newest is None:
                raise InvalidInput("the device has no readings to learn from")
            until_ms = newest + MINUTE_MS
        from_ms = until_ms - days * DAY_MS
        t0 = time.perf_counter()
        agg, truth, thresholds, sources = self.training_data(device, from_ms, until_ms)
        valid = int(np.isfinite(agg.to_numpy(dtype=float)).sum())
        if valid < 1440:
            raise InvalidInput(
                f"need at least a day of readings in the {days} days before "
                f"{until_ms} ms (found {valid} minutes)"
            )
        tz = self._tz(device)
        window = {"from_ms": from_ms, "to_ms": until_ms, "minutes": valid, "timezone": tz}
        out: dict[str, Any] = {"device_id": device_id, "models": [], "skipped": []}
        learnable = {
            n: thr
            for n, thr in thresholds.items()
            if int(np.nansum(truth[n].to_numpy() >= thr)) >= 5
            and int(np.nansum(truth[n].to_numpy() < thr)) >= 5
        }
        if learnable:
            names = tuple(sorted(learnable))
            model = NilmModel(appliances=names, thresholds_w=dict(learnable), **self.nilm_params)
            model.fit(agg, truth[list(names)])
            fit_s = time.perf_counter() - t0
            apps = {}
            for n in names:
                y = truth[n].to_numpy()
                head = model.heads[n]
                apps[n] = {
                    "source": sources[n],
                    "threshold_w": round(learnable[n], 1),
                    "labelled_minutes": int(np.isfinite(y).sum()),
                    "on_minutes": int(np.nansum(y >= learnable[n])),
                    "on_power_w": round(head.on_power_w, 1),
                    # out-of-fold F1 of the time-blocked CV that chose the cut-off
                    "cv_f1": None if not np.isfinite(head.cv_f1) else round(head.cv_f1, 4),
                }
            metrics = {**window, "fit_s": round(fit_s, 2), "appliances": apps}
            out["models"].append(self._save(device_id, NILM_KIND, model, metrics, tz, dump_model))
        else:
            out["skipped"].append(
                {
                    "kind": NILM_KIND,
                    "reason": "no appliance has labels or a plug with runs in the window: "
                    "label runs (POST /labels), name a candidate, or mark a plug's channel "
                    "with the appliance it feeds",
                }
            )
        t1 = time.perf_counter()
        clusterer = EventClusterer()
        found = clusterer.fit(agg)
        cmetrics = {**window, "fit_s": round(time.perf_counter() - t1, 2), "candidates": len(found)}
        if found:
            out["models"].append(
                self._save(device_id, CLUSTERS_KIND, clusterer, cmetrics, tz, dump_model)
            )
        else:
            out["skipped"].append(
                {"kind": CLUSTERS_KIND, "reason": "too few on/off events for candidates"}
            )
        return out

    def _save(
        self,
        device_id: int,
        kind: str,
        model: object,
        metrics: dict[str, Any],
        tz: str,
        dump: Callable[..., bytes],
    ) -> dict[str, Any]:
        with self._lock:
            listed = self.ai.list_models(device_id, kind)
            version = (listed[0]["version"] + 1) if listed else 1
            blob = dump(model, kind, version, metrics, extra={"device_id": device_id, "tz": tz})
            stored = self.ai.add_model(
                device_id, kind, metrics, blob, self.clock(), keep=self.keep_models
            )
            self._cache[(device_id, kind)] = (stored, model)
        return {"kind": kind, "version": stored, "bytes": len(blob), "metrics": metrics}

    def _load(self, device_id: int, kind: str, *, required: bool = True) -> Any:
        listed = self.ai.list_models(device_id, kind)
        if not listed:
            if required:
                what = "appliance" if kind == NILM_KIND else "candidate"
                raise NoModel(
                    f"no {what} model for this device yet: train one "
                    f"(wattwatch ai train --device {device_id}, or POST .../models)"
                )
            return None
        version = int(listed[0]["version"])
        cached = self._cache.get((device_id, kind))
        if cached is not None and cached[0] == version:
            return cached[1]
        require_ml()
        from wattwatch.ai.models import ModelFormatError, load_model

        row = self.ai.newest_model(device_id, kind)
        if row is None:
            raise NoModel("the model was replaced meanwhile; try again")
        try:
            model, _meta = load_model(row["blob"], expected_kind=kind)
        except ModelFormatError as exc:
            raise NoModel(
                f"stored {kind} model v{version} cannot be read ({exc}); retrain"
            ) from None
        self._cache[(device_id, kind)] = (int(row["version"]), model)
        return model

    def list_models(self, principal: Principal, device_id: int) -> list[dict[str, Any]]:
        self._device(principal.org_id, device_id)
        return self.ai.list_models(device_id)

    # -- inference ------------------------------------------------------------------------
    def appliances(
        self, principal: Principal, device_id: int, from_ms: int, to_ms: int
    ) -> dict[str, Any]:
        """Per-appliance on-intervals and energy in [from, to), and what is on now."""
        require_ml()
        from wattwatch.ai.nilm import on_intervals

        device = self._device(principal.org_id, device_id)
        if to_ms <= from_ms:
            raise InvalidInput("'to' must be after 'from'")
        if to_ms - from_ms > MAX_TIMELINE_MS:
            raise InvalidInput("appliance timelines cover at most 31 days per request")
        if from_ms < 0 or to_ms > LATEST_MS:
            raise InvalidInput("'from' and 'to' must lie between 1970 and 2200")
        model = self._load(device_id, NILM_KIND)
        version = self.ai.list_models(device_id, NILM_KIND)[0]
        tz = self._tz(device)
        chans = self.aggregate_channels(device_id)
        spec = model.spec
        series = self.minute_power(
            chans,
            from_ms - spec.context_min * MINUTE_MS,
            to_ms + spec.future_min * MINUTE_MS,
            tz,
        )
        timeline: list[dict[str, Any]] = []
        summary = {
            n: {
                "name": n,
                "threshold_w": model.thresholds_w[n],
                "energy_wh": 0.0,
                "on_minutes": 0,
                "runs": 0,
            }
            for n in model.heads
        }
        if len(series) and np.isfinite(series.to_numpy(dtype=float)).any():
            power = model.predict_power(series)
            ms = local_to_ms(power.index, tz)
            inside = (ms >= from_ms) & (ms < to_ms)
            power = power[inside]
            for n in power.columns:
                col = power[n].to_numpy(dtype=float)
                summary[n]["energy_wh"] = round(float(np.nansum(col)) / 60.0, 1)
                summary[n]["on_minutes"] = int(np.nansum(col >= model.thresholds_w[n]))
            for iv in on_intervals(power, model.thresholds_w):
                summary[iv.appliance]["runs"] += 1
                start, end = local_to_ms([iv.start, iv.end], tz)
                timeline.append(
                    {
                        "appliance": iv.appliance,
                        "start": int(start),
                        "end": int(end),
                        "duration_min": iv.duration_min,
                        "energy_wh": round(iv.energy_wh, 1),
                        "mean_power_w": round(iv.mean_power_w, 1),
                    }
                )
        return {
            "from": from_ms,
            "to": to_ms,
            "model": {"version": version["version"], "created_ms": version["created_ms"]},
            "appliances": sorted(summary.values(), key=lambda a: -a["energy_wh"]),
            "timeline": timeline,
            "now": self._now(model, chans, tz),
        }

    def _now(self, model: Any, chans: list[int], tz: str) -> dict[str, Any] | None:
        """The status of the newest minute whose look-ahead is complete (like the online
        disaggregator: ``delay_min`` minutes behind the newest reading)."""
        now = self.clock()
        spec = model.spec
        series = self.minute_power(
            chans, now - (spec.context_min + spec.future_min + 5) * MINUTE_MS, now + 1, tz
        )
        x = series.to_numpy(dtype=float)
        valid = np.flatnonzero(np.isfinite(x))
        if valid.size == 0:
            return None
        newest_ms = int(local_to_ms(series.index[valid[-1] : valid[-1] + 1], tz)[0])
        if now - newest_ms > NOW_FRESH_MS:
            return None
        series = series.iloc[: valid[-1] + 1]
        pos = len(series) - 1 - spec.future_min
        while pos >= 0 and not np.isfinite(series.iloc[pos]):
            pos -= 1
        if pos < 0:
            return None
        power = model.predict_power(series)
        prob = model.predict_proba(series)
        at = int(local_to_ms(series.index[pos : pos + 1], tz)[0])
        apps = []
        for n in power.columns:
            w = float(power[n].iloc[pos])
            apps.append(
                {
                    "name": n,
                    "on": bool(w >= model.thresholds_w[n]),
                    "power_w": round(w, 1),
                    "probability": round(float(prob[n].iloc[pos]), 3),
                }
            )
        return {
            "ts": at,
            "delay_min": spec.future_min,
            "power_w": round(float(series.iloc[pos]), 1),
            "on": [a["name"] for a in apps if a["on"]],
            "appliances": apps,
        }

    # -- unsupervised candidates ----------------------------------------------------------
    def _recent_window(self, device_id: int, days: int) -> tuple[int, int]:
        newest = self.newest_reading_ms(self.aggregate_channels(device_id), self.clock() + 1)
        if newest is None:
            raise NoModel("the device has no readings")
        return newest + MINUTE_MS - days * DAY_MS, newest + MINUTE_MS

    def candidates(self, principal: Principal, device_id: int, days: int = 14) -> dict[str, Any]:
        """Clusters of similar on/off events in the recent readings, for the user to name."""
        require_ml()
        device = self._device(principal.org_id, device_id)
        clusterer = self._load(device_id, CLUSTERS_KIND)
        from_ms, to_ms = self._recent_window(device_id, days)
        series = self.minute_power(
            self.aggregate_channels(device_id), from_ms, to_ms, self._tz(device)
        )
        found = clusterer.describe(series) if len(series) else []
        return {
            "from": from_ms,
            "to": to_ms,
            "candidates": [
                {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(c).items()}
                for c in found
            ],
        }

    def name_candidate(
        self, principal: Principal, device_id: int, cluster_id: int, name: str, days: int = 14
    ) -> dict[str, Any]:
        """Name a candidate: its events in the recent readings become labels (source user),
        and the clusterer keeps the name (a new version)."""
        require_ml()
        from wattwatch.ai.models import dump_model

        principal.require(Role.ADMIN)
        device = self._device(principal.org_id, device_id)
        clusterer = self._load(device_id, CLUSTERS_KIND)
        name = canonical_appliance(name)
        if not name or len(name) > 120:
            raise InvalidInput("appliance names are 1 to 120 characters")
        tz = self._tz(device)
        from_ms, to_ms = self._recent_window(device_id, days)
        series = self.minute_power(self.aggregate_channels(device_id), from_ms, to_ms, tz)
        events = clusterer.assign(series)
        mine = events[events["cluster_id"] == cluster_id]
        if mine.empty:
            raise NotFound(f"no candidate {cluster_id} in the recent readings")
        ms = local_to_ms(series.index, tz)
        spans = [
            (name, int(ms[int(r.on_idx)]), int(ms[min(int(r.off_idx), len(ms) - 1)]) + MINUTE_MS)
            for r in mine.itertuples()
        ]
        labels = self.add_labels(principal, device_id, spans) if spans else []
        clusterer.name_cluster(cluster_id, name)
        listed = self.ai.list_models(device_id, CLUSTERS_KIND)
        metrics = dict(listed[0]["metrics"]) if listed else {}
        metrics["names"] = {str(k): v for k, v in clusterer.names.items()}
        self._save(device_id, CLUSTERS_KIND, clusterer, metrics, tz, dump_model)
        return {"cluster_id": cluster_id, "name": name, "labels_created": len(labels)}

    # -- forecasts ------------------------------------------------------------------------
    def forecast_device(self, principal: Principal, device_id: int, horizon: str) -> dict[str, Any]:
        device = self._device(principal.org_id, device_id)
        site = self._site(device)
        return self._forecast(
            ("device", device_id),
            self.aggregate_channels(device_id),
            str(site["timezone"]) if site else "UTC",
            Tariff.of(site["tariff"]) if site else None,
            horizon,
        )

    def forecast_site(self, principal: Principal, site_id: int, horizon: str) -> dict[str, Any]:
        site = self.db.get_site(principal.org_id, site_id)
        chans = [c["id"] for c in self.db.site_channels(principal.org_id, site_id)]
        return self._forecast(
            ("site", site_id), chans, str(site["timezone"]), Tariff.of(site["tariff"]), horizon
        )

    def _forecast(
        self,
        key: tuple[str, int],
        chans: list[int],
        tz: str,
        tariff: Tariff | None,
        horizon: str,
    ) -> dict[str, Any]:
        require_ml()
        from wattwatch.ai import forecast as fc

        if horizon not in HORIZONS:
            raise InvalidInput(f"horizon is one of {', '.join(HORIZONS)}")
        if not chans:
            raise NoModel("nothing to forecast: no metering channels")
        now = self.clock()
        series = self.hourly_power(chans, now - FORECAST_HISTORY_MS, now + 1, tz)
        x = series.to_numpy(dtype=float) if len(series) else np.zeros(0)
        ok = np.flatnonzero(np.isfinite(x))
        if ok.size < 8 * 24:
            raise NoModel("forecasts need more than a week of readings in the last 13 weeks")
        # from the first to the last hour with data: all-missing feature columns trip the trees
        series = series.iloc[ok[0] : ok[-1] + 1]
        cache_key = (key, horizon, tuple(chans), int(local_to_ms(series.index[-1:], tz)[0]))
        hit = self._forecasts.get(cache_key)
        if hit is not None and time.monotonic() - hit[0] < FORECAST_CACHE_S:
            return hit[1]
        price, standing, currency = 0.0, 0.0, None
        if tariff is not None:
            price = _effective_price(tariff, series)
            standing, currency = tariff.standing_charge_per_day, tariff.currency
        out: dict[str, Any] = {"horizon": horizon, "timezone": tz, "currency": currency}
        try:
            if horizon == "24h":
                f = fc.forecast_hourly(series, horizon_h=24)
                ms = local_to_ms(f["ts"], tz)
                out["unit"] = "Wh per hour"
                out["points"] = [
                    {
                        "ts": int(t),
                        "energy_wh": round(float(r.yhat), 1),
                        "lo": round(float(r.lo), 1),
                        "hi": round(float(r.hi), 1),
                        **(
                            {"cost": round(float(r.yhat) / 1000 * tariff.price_at(r.ts), 4)}
                            if tariff is not None
                            else {}
                        ),
                    }
                    for t, r in zip(ms, f.itertuples(), strict=True)
                ]
            elif horizon == "7d":
                f = fc.forecast_daily(series, horizon_d=7)
                ms = local_to_ms(f["ts"], tz)
                out["unit"] = "Wh per day"
                out["points"] = [
                    {
                        "ts": int(t),
                        "energy_wh": round(float(r.yhat) * 1000, 1),
                        "lo": round(float(r.lo) * 1000, 1),
                        "hi": round(float(r.hi) * 1000, 1),
                        **(
                            {"cost": round(float(r.yhat) * price + standing, 4)}
                            if tariff is not None
                            else {}
                        ),
                    }
                    for t, r in zip(ms, f.itertuples(), strict=True)
                ]
            else:
                m = fc.forecast_month_end(series, price, standing)
                out["month"] = {
                    "month_start": int(local_to_ms([m.month_start], tz)[0]),
                    "days_elapsed": m.days_elapsed,
                    "days_remaining": m.days_remaining,
                    "energy_so_far_wh": round(m.energy_so_far_kwh * 1000, 1),
                    "energy_wh": round(m.energy_kwh * 1000, 1),
                    "energy_lo_wh": round(m.energy_lo_kwh * 1000, 1),
                    "energy_hi_wh": round(m.energy_hi_kwh * 1000, 1),
                    **(
                        {
                            "bill": round(m.bill, 2),
                            "bill_lo": round(m.bill_lo, 2),
                            "bill_hi": round(m.bill_hi, 2),
                            "price_per_kwh": round(price, 4),
                            "standing_charge_per_day": standing,
                        }
                        if tariff is not None
                        else {}
                    ),
                }
        except ValueError as exc:
            raise NoModel(f"cannot forecast yet: {exc}") from None
        out["origin"] = int(local_to_ms(series.index[-1:], tz)[0])
        out["coverage"] = 0.8
        self._forecasts[cache_key] = (time.monotonic(), out)
        if len(self._forecasts) > 256:
            self._forecasts.clear()
        return out

    # -- lifecycle jobs (the background task) ---------------------------------------------
    def trainable_devices(self) -> list[dict[str, Any]]:
        """Devices with labels, or on a site with a plug/sub-meter naming an appliance."""
        labelled = set(self.ai.labelled_devices())
        out = []
        for d in self.db.all_devices():
            if d["org_id"] is None:
                continue
            if d["id"] in labelled or (d["kind"] != "plug" and self.plug_channels(d)):
                out.append(d)
        return out

    def retrain_due(self, interval_s: float) -> list[dict[str, Any]]:
        """Train every trainable device whose newest NILM model is older than ``interval_s``."""
        newest = self.ai.newest_created(NILM_KIND)
        now = self.clock()
        done = []
        for d in self.trainable_devices():
            # a device whose labels cannot train a model yet is tried once per interval too
            last = max(newest.get(d["id"], 0), self._attempted.get(d["id"], 0))
            if now - last < interval_s * 1000:
                continue
            self._attempted[d["id"]] = now
            try:
                done.append(self.train(None, d["id"], org_id=d["org_id"]))
            except (InvalidInput, NoModel) as exc:
                log.info("ai: device %s not retrained: %s", d["id"], exc)
            except Exception:
                log.exception("ai: retraining device %s failed", d["id"])
        return done

    def check_anomalies(
        self,
        rules: Sequence[dict[str, Any]],
        raise_anomaly: Callable[[int, Any], None],
        *,
        lookback_ms: int = DAY_MS,
    ) -> int:
        """Run the anomaly detectors on the recent readings of every device an enabled
        ``anomaly`` rule covers; findings detected since the last check (at first: within
        ``lookback_ms``) go to ``raise_anomaly(device_id, finding)``. Returns how many."""
        require_ml()
        import pandas as pd

        from wattwatch.ai.anomaly import detect_all
        from wattwatch.alerts.runtimes import AnomalyFinding

        devices: dict[int, dict[str, Any]] = {}
        for rule in rules:
            if rule.get("kind") != "anomaly":
                continue
            if rule.get("device_id") is not None:
                found = self.db.select_devices(rule["org_id"], device_ids=[rule["device_id"]])
            else:
                found = self.db.select_devices(rule["org_id"], site_id=rule.get("site_id"))
            devices.update({d["id"]: d for d in found})
        now = self.clock()
        raised = 0
        for device_id, device in sorted(devices.items()):
            since = self._anomaly_since.get(device_id, now - lookback_ms)
            try:
                tz = self._tz(device)
                chans = self.db.list_channels(device_id)
                agg = self.minute_power(
                    self.aggregate_channels(device_id), now - ANOMALY_HISTORY_MS, now + 1, tz
                )
                if not len(agg) or np.isfinite(agg.to_numpy(dtype=float)).sum() < 3 * 1440:
                    continue
                apps = None
                thresholds = {}
                named = [c for c in chans if c["appliance"]]
                if device["kind"] == "plug" and named:
                    name = canonical_appliance(str(named[0]["appliance"]))
                    apps = pd.DataFrame({name: agg})
                    thresholds[name] = _known_threshold(name) or 50.0
                findings = detect_all(agg, apps, thresholds)
            except Exception:
                log.exception("ai: anomaly check of device %s failed", device_id)
                continue
            newest_seen = since
            for f in findings:
                at = int(local_to_ms([f.detected_at], tz)[0])
                if at <= since:
                    continue
                newest_seen = max(newest_seen, at)
                raise_anomaly(
                    device_id,
                    AnomalyFinding(
                        kind=f.kind,
                        severity=f.severity,
                        magnitude=float(f.magnitude),
                        explanation=f.explanation,
                        detected_at=at,
                    ),
                )
                raised += 1
            self._anomaly_since[device_id] = max(newest_seen, now - lookback_ms)
        return raised


def _effective_price(tariff: Tariff, hourly: pd.Series) -> float:
    """Price per kWh for a forecast: flat, or time-of-use prices weighted by the last four
    weeks' hourly use (so a household that runs at night pays the night price)."""
    if tariff.is_flat:
        return tariff.price_per_kwh
    recent = hourly.iloc[-28 * 24 :].dropna()
    if recent.empty or float(recent.sum()) <= 0:
        return tariff.price_per_kwh
    prices = np.array([tariff.price_at(ts.to_pydatetime()) for ts in recent.index])
    return float(np.sum(prices * recent.to_numpy()) / float(recent.sum()))


class AiScheduler(PeriodicTask):
    """The background task of ``wattwatch serve``: retrains models every
    ``retrain_interval_s`` and runs the anomaly check every ``anomaly_interval_s`` (0 = off),
    each in a worker thread. Off when the ``[ml]`` extra is missing."""

    task_name = "ai-lifecycle"
    logger = log
    failure_message = "ai lifecycle task failed"

    def __init__(
        self,
        service: AiService,
        *,
        retrain_interval_s: float,
        anomaly_interval_s: float,
        anomaly_rules: Callable[[], Sequence[dict[str, Any]]],
        raise_anomaly: Callable[[int, Any], None],
        poll_s: float = 30.0,
        first_delay_s: float = 60.0,
    ) -> None:
        self.service = service
        self.retrain_interval_s = retrain_interval_s
        self.anomaly_interval_s = anomaly_interval_s
        self.anomaly_rules = anomaly_rules
        self.raise_anomaly = raise_anomaly
        self.poll_s = poll_s
        # not at once: a server starting up has better things to do
        self.first_delay_s = first_delay_s
        self.runs: dict[str, int] = {"retrain": 0, "anomaly": 0}

    @property
    def enabled(self) -> bool:
        return (self.retrain_interval_s > 0 or self.anomaly_interval_s > 0) and ml_available()

    def start(self) -> None:
        if self._task is None and not ml_available():
            log.info("ai: the [ml] extra is missing; no retraining or anomaly checks")
            return
        super().start()

    def run_due(self, now_s: float, last: dict[str, float]) -> None:
        """Do whatever is due at ``now_s`` (blocking)."""
        if (
            self.anomaly_interval_s > 0
            and now_s - last.get("anomaly", 0) >= self.anomaly_interval_s
        ):
            last["anomaly"] = now_s
            rules = [r for r in self.anomaly_rules() if r.get("kind") == "anomaly"]
            if rules:
                n = self.service.check_anomalies(rules, self.raise_anomaly)
                if n:
                    log.info("ai: %d anomaly finding(s) raised", n)
            self.runs["anomaly"] += 1
        if self.retrain_interval_s > 0 and now_s - last.get("retrain", 0) >= min(
            self.retrain_interval_s, 3600
        ):
            # checked hourly; each device is retrained once its newest model is due
            last["retrain"] = now_s
            self.service.retrain_due(self.retrain_interval_s)
            self.runs["retrain"] += 1
