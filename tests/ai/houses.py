"""Stored test houses for the AI service: a site with a monitor (and plugs), minute readings
written straight into the store, and a quick NILM model configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tests.ai.conftest import synthetic_house
from tests.registry.accounts import account

from wattwatch.app import Wattwatch
from wattwatch.domain import DeviceKind, now_ms
from wattwatch.registry.service import Principal
from wattwatch.store.base import StoredRow

MINUTE_MS = 60_000
# Few, shallow trees: the tests check the plumbing, docs/ai.md the accuracy.
QUICK_NILM: dict[str, Any] = {
    "hgb_params": {
        "max_iter": 20,
        "learning_rate": 0.2,
        "max_leaf_nodes": 7,
        "min_samples_leaf": 20,
        "l2_regularization": 1.0,
    },
    "cv_folds": 2,
}


@dataclass
class House:
    ww: Wattwatch
    owner: Principal
    token: str
    site_id: int
    monitor: dict[str, Any]
    plug: dict[str, Any] | None
    start_ms: int
    end_ms: int
    kettle_w: np.ndarray
    micro_w: np.ndarray
    aggregate_w: np.ndarray


def write_power(ww: Wattwatch, device_id: int, channel: str, start_ms: int, watts: Any) -> None:
    """One reading per minute from ``start_ms`` (NaN: none)."""
    ch = ww.store.registry.channel_ids_of(device_id)[channel]
    rows = [
        StoredRow(ch, start_ms + i * MINUTE_MS, round(float(w) * 1000), None, None, None, None)
        for i, w in enumerate(np.asarray(watts, dtype=float))
        if np.isfinite(w)
    ]
    for k in range(0, len(rows), 20_000):
        ww.store.write_readings(rows[k : k + 20_000])


def make_house(
    ww: Wattwatch,
    days: int = 4,
    *,
    with_plug: bool = True,
    email: str = "owner@house.example",
    timezone: str = "UTC",
    tariff: dict[str, Any] | None = None,
    seed: int = 1,
) -> House:
    """A synthetic house whose readings end at the current minute."""
    owner, token = account(ww, email)
    site = ww.registry.create_site(owner, "Home", timezone, tariff or {})
    monitor, _ = ww.registry.create_device(owner, name="mains monitor", site_id=site["id"])
    plug = None
    frame = synthetic_house(days, seed=seed)
    end = now_ms() // MINUTE_MS * MINUTE_MS + MINUTE_MS
    start = end - len(frame) * MINUTE_MS
    write_power(ww, monitor["id"], "mains", start, frame["Aggregate"].to_numpy())
    if with_plug:
        plug, _ = ww.registry.create_device(
            owner, name="kettle plug", site_id=site["id"], kind=DeviceKind.PLUG, channels=["plug"]
        )
        ww.registry.set_channel(
            owner, plug["id"], "plug", {"appliance": "kettle", "submeter": True}
        )
        write_power(ww, plug["id"], "plug", start, frame["Kettle"].to_numpy())
    return House(
        ww,
        owner,
        token,
        site["id"],
        monitor,
        plug,
        start,
        end,
        frame["Kettle"].to_numpy(),
        frame["Microwave"].to_numpy(),
        frame["Aggregate"].to_numpy(),
    )


def runs(watts: np.ndarray, start_ms: int, threshold_w: float) -> list[tuple[int, int]]:
    """(start_ms, end_ms) of the runs above the threshold."""
    on = np.concatenate([[False], watts >= threshold_w, [False]])
    d = np.diff(on.astype(int))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [
        (start_ms + int(s) * MINUTE_MS, start_ms + int(e) * MINUTE_MS)
        for s, e in zip(starts, ends, strict=True)
    ]
