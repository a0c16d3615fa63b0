"""Example wattwatch plugin: append every committed reading to <data dir>/exports/readings.csv.

Install it next to wattwatch (``pip install ./examples/wattwatch-csv-export``), restart
``wattwatch serve``, and ``wattwatch plugins`` lists it. It forwards readings to a second store
(here a CSV file) without touching ingest: hooks run in a worker thread after the commit.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

from wattwatch.hooks.specs import hookimpl

COLUMNS = ("device_id", "channel", "ts", "power_w", "energy_wh", "voltage_v", "current_a")

_lock = threading.Lock()
_path: Path | None = None


@hookimpl
def wattwatch_startup(context: Any) -> None:
    global _path
    _path = Path(context.data_dir) / "exports" / "readings.csv"
    _path.parent.mkdir(parents=True, exist_ok=True)


@hookimpl
def wattwatch_reading_batch(device_id: int, readings: list[dict[str, Any]]) -> None:
    if _path is None:
        return
    with _lock:
        new = not _path.exists()
        with _path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(COLUMNS)
            for r in readings:
                writer.writerow([device_id, *(r.get(k, "") for k in COLUMNS[1:])])


@hookimpl
def wattwatch_shutdown() -> None:
    global _path
    _path = None
