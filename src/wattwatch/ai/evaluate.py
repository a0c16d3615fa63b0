"""Honest evaluation on a house folder: NILM (wattwatch vs CO, FHMM, Mean) and day-ahead forecasts.

Protocols:
  in-house  train on the first 14 valid days of DATASET, test on the rest;
  transfer  train on the first 14 valid days of --train DIR (``--train-days``, 0 = all of it),
            test on all of DATASET (its labels only score).
On/off truth and predictions use the same thresholds (ON_THRESHOLDS_W), scored per valid
minute. Run:
``python -m wattwatch.ai.evaluate --dataset DIR [--protocol transfer --train DIR] --json``.
``--anomaly`` evaluates the anomaly detectors instead: faults injected into the house's real
data (a base-load step on the aggregate, every cycle of one appliance run longer) and false
alarms on the untouched data (``run_anomaly_evaluation``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from wattwatch.ai.anomaly import evaluate_anomaly_detection
from wattwatch.ai.dataset import (
    APPLIANCES,
    ON_THRESHOLDS_W,
    NilmFrame,
    load_nilm_dir,
    split_first_valid_days,
)
from wattwatch.ai.forecast import evaluate_day_ahead
from wattwatch.ai.nilm.baselines import CombinatorialOptimisation, ExactFHMM, MeanDisaggregator
from wattwatch.ai.nilm.metrics import score
from wattwatch.ai.nilm.model import NilmModel

PROTOCOLS = ("in-house", "transfer")


class Disaggregator(Protocol):
    def fit(self, aggregate_w: pd.Series, appliances_w: pd.DataFrame) -> Any: ...

    def predict_power(self, aggregate_w: pd.Series) -> pd.DataFrame: ...


def _methods(extra_baselines: bool) -> dict[str, Disaggregator]:
    methods: dict[str, Disaggregator] = {
        "wattwatch": NilmModel(),
        "co": CombinatorialOptimisation(),
        "fhmm": ExactFHMM(),
        "mean": MeanDisaggregator(),
    }
    if extra_baselines:
        methods["co+rest"] = CombinatorialOptimisation(model_rest=True)
        methods["fhmm+rest"] = ExactFHMM(model_rest=True)
    return methods


def _split(
    dataset: Path, protocol: str, train: Path | None, train_days: int
) -> tuple[NilmFrame, NilmFrame]:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    frame = load_nilm_dir(dataset)
    if protocol == "in-house":
        return split_first_valid_days(frame, 14)
    if protocol == "transfer":
        if train is None:
            raise ValueError("protocol 'transfer' needs a training folder (--train)")
        source = load_nilm_dir(train)
        if train_days > 0:
            source = split_first_valid_days(source, train_days)[0]
        return source, frame
    raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")


def run_evaluation(
    dataset: Path,
    protocol: str = "in-house",
    train: Path | None = None,
    *,
    train_days: int = 14,
    extra_baselines: bool = False,
    timings: bool = False,
) -> dict[str, Any]:
    """Scores of every method per appliance, and day-ahead forecast MASE, for one house folder.

    Returns ``{"protocol", "results": [{"appliance", "method", "f1", "mae_w",
    "energy_error"}, …], "forecast": {"mase", "mase_seasonal_naive"}}``; with ``timings``
    also ``"timings_s"`` (fit and predict seconds per method, test days).
    """
    train_frame, test_frame = _split(
        Path(dataset), protocol, None if train is None else Path(train), train_days
    )
    valid = test_frame.valid
    results: list[dict[str, Any]] = []
    spent: dict[str, dict[str, float]] = {}
    for method, model in _methods(extra_baselines).items():
        t0 = time.perf_counter()
        model.fit(train_frame.aggregate_w, train_frame.appliances_w[list(APPLIANCES)])
        t1 = time.perf_counter()
        pred = model.predict_power(test_frame.aggregate_w)
        t2 = time.perf_counter()
        spent[method] = {"fit_s": t1 - t0, "predict_s": t2 - t1}
        for appliance in APPLIANCES:
            s = score(
                test_frame.appliances_w[appliance].to_numpy(dtype=float),
                pred[appliance].to_numpy(dtype=float),
                ON_THRESHOLDS_W[appliance],
                valid,
            )
            results.append(
                {
                    "appliance": appliance,
                    "method": method,
                    "f1": s.f1,
                    "mae_w": s.mae_w,
                    "energy_error": s.energy_error,
                }
            )
    # the forecast is always scored on the last 4 weeks of DATASET itself
    full = load_nilm_dir(Path(dataset)).aggregate_w
    fc = evaluate_day_ahead(full, test_days=28)
    out: dict[str, Any] = {
        "protocol": protocol,
        "results": results,
        "forecast": {"mase": fc["mase"], "mase_seasonal_naive": fc["mase_seasonal_naive"]},
    }
    if timings:
        out["timings_s"] = {
            "test_days": float(valid.sum()) / 1440.0,
            "train_days": float(train_frame.valid.sum()) / 1440.0,
            **spent,
        }
        out["forecast_detail"] = fc
    return out


def run_anomaly_evaluation(
    dataset: Path, *, n_starts: int = 24, step_w: float = 150.0, stretch: float = 1.5
) -> dict[str, Any]:
    """Injected-fault detection and false alarms of the anomaly detectors on one house folder.

    ``n_starts`` fault times spread over the data after a 28-day warm-up; each fault alone:
    a ``step_w`` base-load step on the aggregate, every cycle of one sub-metered appliance
    ``stretch`` × longer (extra energy added to the aggregate). Returns
    ``{"dataset", "device_months_each", "horizon_days", "devices": {device: {"fault",
    "injected", "eligible", "detected_within_24h", "detected_within_horizon",
    "median_delay_h", "false_alarms", "false_alarms_per_device_month", …}}}``; delays count
    from the fault's first effect (the step, the first stretched cycle).
    """
    frame = load_nilm_dir(Path(dataset))
    report = evaluate_anomaly_detection(
        frame.aggregate_w,
        frame.appliances_w[list(APPLIANCES)],
        ON_THRESHOLDS_W,
        n_starts=n_starts,
        step_w=step_w,
        stretch=stretch,
    )
    return {"dataset": Path(dataset).name, **report}


def _anomaly_table(report: dict[str, Any]) -> str:
    lines = [
        f"anomaly detection on {report['dataset']} "
        f"({report['device_months_each']:.2f} device-months after the warm-up each)",
        f"{'device':15s} {'fault':15s} {'eligible':>8s} {'<=24 h':>6s} "
        f"{'<=' + str(report['horizon_days']) + ' d':>6s} {'median h':>8s} "
        f"{'false':>5s} {'per month':>9s}",
    ]
    for dev, r in report["devices"].items():
        lines.append(
            f"{dev:15s} {r['fault']:15s} {r['eligible']:>4d}/{r['injected']:<3d} "
            f"{r['detected_within_24h']:>6d} {r['detected_within_horizon']:>6d} "
            f"{r['median_delay_h']:>8.1f} {r['false_alarms']:>5d} "
            f"{r['false_alarms_per_device_month']:>9.2f}"
        )
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """NaN/inf (e.g. the energy error of an appliance that used no energy) become null."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"protocol: {report['protocol']}",
        f"{'appliance':15s} {'method':10s} {'F1':>6s} {'MAE W':>8s} {'energy err':>10s}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['appliance']:15s} {r['method']:10s} {r['f1']:6.3f} {r['mae_w']:8.1f} "
            f"{r['energy_error']:10.3f}"
        )
    fc = report["forecast"]
    lines.append(
        f"forecast MASE {fc['mase']:.3f} vs seasonal naive {fc['mase_seasonal_naive']:.3f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wattwatch.ai.evaluate", description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True, help="house folder of 1-minute CSVs")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="in-house")
    parser.add_argument("--train", type=Path, default=None, help="training house (transfer)")
    parser.add_argument(
        "--train-days", type=int, default=14, help="transfer: valid days of --train used (0 = all)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--extra-baselines", action="store_true", help="also CO/FHMM with the unmetered rest"
    )
    parser.add_argument("--timings", action="store_true", help="add fit/predict seconds")
    parser.add_argument(
        "--anomaly", action="store_true", help="evaluate the anomaly detectors (injected faults)"
    )
    parser.add_argument(
        "--starts", type=int, default=24, help="--anomaly: fault times per device (default 24)"
    )
    args = parser.parse_args(argv)
    if args.anomaly:
        try:
            if args.starts < 1:
                raise ValueError("--starts must be at least 1")
            anomaly = run_anomaly_evaluation(args.dataset, n_starts=args.starts)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(_json_safe(anomaly), indent=2, allow_nan=False))
        else:
            print(_anomaly_table(anomaly))
        return 0
    try:
        report = run_evaluation(
            args.dataset,
            args.protocol,
            args.train,
            train_days=args.train_days,
            extra_baselines=args.extra_baselines,
            timings=args.timings,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_json_safe(report), indent=2, allow_nan=False))
    else:
        print(_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
