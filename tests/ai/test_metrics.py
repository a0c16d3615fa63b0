from __future__ import annotations

import math

import numpy as np
import pytest

from wattwatch.ai.nilm.metrics import energy_error, f1_on_off, mae_w, score


def test_f1_by_hand() -> None:
    y = [0, 2500, 2500, 0, 2500, 0]
    p = [0, 2500, 0, 2500, 2500, 0]
    f1, prec, rec = f1_on_off(y, p, 2000)
    # tp=2, fp=1, fn=1
    assert (
        prec == pytest.approx(2 / 3) and rec == pytest.approx(2 / 3) and f1 == pytest.approx(2 / 3)
    )


def test_f1_zero_without_true_positive() -> None:
    assert f1_on_off([0, 0], [0, 0], 10)[0] == 0.0
    assert f1_on_off([100, 0], [0, 100], 10)[0] == 0.0


def test_valid_mask_and_nan_are_excluded() -> None:
    y = np.array([0.0, 100.0, np.nan, 50.0])
    p = np.array([10.0, 80.0, 1000.0, 1000.0])
    valid = np.array([True, True, True, False])
    assert mae_w(y, p, valid) == pytest.approx(15.0)
    assert energy_error(y, p, valid) == pytest.approx(abs(90 - 100) / 100)


def test_energy_error_nan_without_energy() -> None:
    assert math.isnan(energy_error([0, 0], [1, 1]))


def test_score_bundle() -> None:
    s = score([0, 300, 300], [0, 300, 0], 200)
    assert s.f1 == pytest.approx(2 / 3)
    assert s.mae_w == pytest.approx(100.0)
    assert s.energy_error == pytest.approx(0.5)
