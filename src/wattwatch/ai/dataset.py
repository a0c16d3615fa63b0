"""Loading the 1-minute NILM evaluation CSVs (Time, Aggregate, appliances) and splitting them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

APPLIANCES: tuple[str, ...] = ("Kettle", "Dishwasher", "WashingMachine", "Microwave")

# On/off thresholds in W for truth and predictions alike (the protocol).
ON_THRESHOLDS_W: dict[str, float] = {
    "Kettle": 2000.0,
    "Microwave": 200.0,
    "Dishwasher": 500.0,
    "WashingMachine": 300.0,
}

MINUTES_PER_DAY = 1440


@dataclass(frozen=True, slots=True)
class NilmFrame:
    """One house: a regular 1-minute index, the aggregate (NaN in gaps) and appliance columns."""

    aggregate_w: pd.Series
    appliances_w: pd.DataFrame

    @property
    def valid(self) -> np.ndarray:
        """Boolean mask of the minutes that are not gaps."""
        return np.asarray(self.aggregate_w.notna().to_numpy(), dtype=bool)

    def slice(self, start: int, stop: int) -> NilmFrame:
        """Positional slice [start, stop) of the minute index."""
        return NilmFrame(self.aggregate_w.iloc[start:stop], self.appliances_w.iloc[start:stop])


def load_nilm_dir(path: Path) -> NilmFrame:
    """Read every CSV of a house folder into one regular 1-minute frame; gaps become NaN.

    Upstream encodes missing minutes as zeros in every column, so ``Aggregate == 0`` rows are
    masked (aggregate NaN, appliances NaN) rather than trusted.
    """
    files = sorted(Path(path).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no CSV files in {path}")
    frames = [pd.read_csv(f, parse_dates=["Time"]) for f in files]
    df = pd.concat(frames, ignore_index=True).drop_duplicates("Time").set_index("Time")
    df = df.sort_index()
    full = pd.date_range(df.index[0], df.index[-1], freq="1min", name="Time")
    df = df.reindex(full)
    gap = df["Aggregate"].isna() | (df["Aggregate"] <= 0)
    df.loc[gap, :] = np.nan
    apps = pd.DataFrame(
        {a: df[a].astype(float) if a in df.columns else np.nan for a in APPLIANCES}, index=df.index
    )
    return NilmFrame(df["Aggregate"].astype(float), apps)


def split_first_valid_days(frame: NilmFrame, days: int = 14) -> tuple[NilmFrame, NilmFrame]:
    """Split after the first ``days`` × 1440 valid (non-gap) minutes: (train, test)."""
    valid_cum = np.cumsum(frame.valid)
    need = days * MINUTES_PER_DAY
    if valid_cum.size == 0 or valid_cum[-1] <= need:
        raise ValueError(f"fewer than {days} valid days in the data")
    cut = int(np.searchsorted(valid_cum, need)) + 1
    n = len(frame.aggregate_w)
    return frame.slice(0, cut), frame.slice(cut, n)
