"""Disaggregation metrics: on/off F1, MAE in W and total-energy error, scored on valid minutes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True, slots=True)
class Scores:
    """Per-appliance scores of one method on one test set."""

    f1: float
    precision: float
    recall: float
    mae_w: float
    energy_error: float


def _valid(y_true: np.ndarray, y_pred: np.ndarray, valid: ArrayLike | None) -> np.ndarray:
    mask = np.isfinite(y_true) & np.isfinite(y_pred)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    return np.asarray(mask, dtype=bool)


def f1_on_off(
    y_true: ArrayLike, y_pred: ArrayLike, threshold_w: float, valid: ArrayLike | None = None
) -> tuple[float, float, float]:
    """(F1, precision, recall) of "on" = power ≥ threshold, per valid time step.

    By convention F1 is 0 when there is no true positive (including when nothing is on at all).
    """
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    m = _valid(t, p, valid)
    on_t = t[m] >= threshold_w
    on_p = p[m] >= threshold_w
    tp = float(np.sum(on_t & on_p))
    fp = float(np.sum(~on_t & on_p))
    fn = float(np.sum(on_t & ~on_p))
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    return 2 * precision * recall / (precision + recall), precision, recall


def mae_w(y_true: ArrayLike, y_pred: ArrayLike, valid: ArrayLike | None = None) -> float:
    """Mean absolute error in W over valid time steps."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    m = _valid(t, p, valid)
    return float(np.mean(np.abs(p[m] - t[m]))) if m.any() else float("nan")


def energy_error(y_true: ArrayLike, y_pred: ArrayLike, valid: ArrayLike | None = None) -> float:
    """|Σŷ − Σy| / Σy over valid time steps (NaN when the appliance used no energy)."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    m = _valid(t, p, valid)
    total = float(np.sum(t[m]))
    if total <= 0:
        return float("nan")
    return abs(float(np.sum(p[m])) - total) / total


def score(
    y_true: ArrayLike, y_pred: ArrayLike, threshold_w: float, valid: ArrayLike | None = None
) -> Scores:
    """All metrics at once."""
    f1, precision, recall = f1_on_off(y_true, y_pred, threshold_w, valid)
    return Scores(
        f1=f1,
        precision=precision,
        recall=recall,
        mae_w=mae_w(y_true, y_pred, valid),
        energy_error=energy_error(y_true, y_pred, valid),
    )
