"""Shared fixtures for the AI tests: the real NILM data (skipped when absent), synthetic houses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_CANDIDATES = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nilm",
    Path("/work/shared/data/nilm"),
)


def nilm_data_dir() -> Path | None:
    for c in _CANDIDATES:
        if (c / "ukdale_house2").is_dir():
            return c.resolve()
    return None


@pytest.fixture(scope="session")
def nilm_dir() -> Path:
    d = nilm_data_dir()
    if d is None:
        pytest.skip("shared NILM data not available")
    return d


def synthetic_house(days: int, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """Minute data: base load with a daily shape, a fridge-like cycle, kettle and microwave runs."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    idx = pd.date_range(start, periods=n, freq="1min")
    minute = np.arange(n) % 1440
    base = 150 + 40 * np.sin(2 * np.pi * minute / 1440) + rng.normal(0, 5, n)
    fridge = np.where((np.arange(n) // 20) % 3 == 0, 90.0, 0.0)
    kettle = np.zeros(n)
    micro = np.zeros(n)
    for d in range(days):
        for _ in range(4):
            t = d * 1440 + int(rng.integers(360, 1380))
            kettle[t : t + int(rng.integers(2, 5))] = 2900 + rng.normal(0, 30)
        for _ in range(2):
            t = d * 1440 + int(rng.integers(600, 1320))
            micro[t : t + int(rng.integers(1, 4))] = 1200 + rng.normal(0, 20)
    agg = base + fridge + kettle + micro
    return pd.DataFrame({"Aggregate": agg, "Kettle": kettle, "Microwave": micro}, index=idx)
