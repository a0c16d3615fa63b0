"""The AI service on a real house: training on 14 days and inference for one device-day.

Loads a NILM folder (default ../shared/data/nilm/ukdale_house2) into a fresh data dir: the
aggregate as a monitor's ``mains`` channel, each sub-metered appliance as a plug on the same
site whose channel names the appliance (label source "plug"), for the first 14 valid days
plus the following day(s). Then runs ``wattwatch ai train --device 1 --json`` in its own
process (the CLI path a user runs) on the 14 days, and times ``AiService.appliances`` for the
next day (one device-day: timeline, energy, and "what is on now"), best of 3.
Targets: training ≤ 2 min, inference ≤ 1 s per device-day.

Usage: python bench/ai_service.py [--dataset DIR] [--infer-days 1] [--keep-dir]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wattwatch.ai.dataset import load_nilm_dir, split_first_valid_days
from wattwatch.app import Wattwatch
from wattwatch.config import Settings
from wattwatch.domain import DeviceKind, Role
from wattwatch.registry.service import Principal
from wattwatch.store.base import StoredRow

MINUTE_MS = 60_000
DAY_MS = 86_400_000


def write(ww: Wattwatch, device_id: int, channel: str, start_ms: int, watts: np.ndarray) -> int:
    ch = ww.store.registry.channel_ids_of(device_id)[channel]
    rows = [
        StoredRow(ch, start_ms + i * MINUTE_MS, round(float(w) * 1000), None, None, None, None)
        for i, w in enumerate(watts)
        if np.isfinite(w)
    ]
    for k in range(0, len(rows), 20_000):
        ww.store.write_readings(rows[k : k + 20_000])
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    root = Path(__file__).resolve().parents[2]
    ap.add_argument("--dataset", type=Path, default=root / "shared/data/nilm/ukdale_house2")
    ap.add_argument("--train-days", type=int, default=14)
    ap.add_argument("--infer-days", type=int, default=1)
    ap.add_argument("--keep-dir", action="store_true")
    args = ap.parse_args()

    frame = load_nilm_dir(args.dataset)
    train, test = split_first_valid_days(frame, args.train_days)
    n_train = len(train.aggregate_w)
    n_all = n_train + args.infer_days * 1440 + 61  # + the look-ahead of the last minute
    t0 = frame.aggregate_w.index[0]
    start_ms = int(t0.value // 1_000_000)
    until_ms = start_ms + n_train * MINUTE_MS
    tmp = Path(tempfile.mkdtemp(prefix="ww-ai-bench-"))
    data_dir = tmp / "data"
    data_dir.mkdir()
    ww = Wattwatch.open(Settings(data_dir=data_dir), lock=False)
    org = ww.registry.db.create_org("bench")
    owner = Principal(user_id=0, org_id=org, role=Role.OWNER, email="bench")
    site = ww.registry.create_site(owner, "house", "UTC", {})
    monitor, _ = ww.registry.create_device(owner, name="mains monitor", site_id=site["id"])
    t = time.perf_counter()
    n = write(ww, monitor["id"], "mains", start_ms, frame.aggregate_w.to_numpy()[:n_all])
    for name in frame.appliances_w.columns:
        plug, _ = ww.registry.create_device(
            owner, name=f"{name} plug", site_id=site["id"], kind=DeviceKind.PLUG, channels=["p"]
        )
        ww.registry.set_channel(owner, plug["id"], "p", {"appliance": name, "submeter": True})
        # the plugs are the labelling period: only the training days
        n += write(ww, plug["id"], "p", start_ms, frame.appliances_w[name].to_numpy()[:n_train])
    load_s = time.perf_counter() - t
    ww.close()
    days = math.ceil((until_ms - start_ms) / DAY_MS)
    cmd = [
        sys.executable,
        "-m",
        "wattwatch",
        "ai",
        "train",
        "--device",
        str(monitor["id"]),
        "--days",
        str(days),
        "--until",
        str(until_ms),
        "--data-dir",
        str(data_dir),
        "--json",
    ]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, check=False)
    train_wall_s = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"ai train failed:\n{out.stdout}\n{out.stderr}")
    trained = json.loads(out.stdout)
    nilm = next(m for m in trained["models"] if m["kind"] == "nilm")

    ww = Wattwatch.open(Settings(data_dir=data_dir), lock=False)
    assert ww.ai is not None
    times = []
    result = None
    for _ in range(3):
        ww.ai._cache.clear()  # the first call of a day also loads the model from the store
        t = time.perf_counter()
        end_ms = until_ms + args.infer_days * DAY_MS
        result = ww.ai.appliances(owner, monitor["id"], until_ms, end_ms)
        times.append(time.perf_counter() - t)
    assert result is not None
    truth = test.appliances_w.iloc[: args.infer_days * 1440]
    report = {
        "dataset": args.dataset.name,
        "readings_loaded": n,
        "load_s": round(load_s, 1),
        "train_window_days": days,
        "train_minutes": nilm["metrics"]["minutes"],
        "train_fit_s": nilm["metrics"]["fit_s"],
        "train_cli_wall_s": round(train_wall_s, 1),
        "train_cli_s": trained["seconds"],
        "cv_f1": {k: v["cv_f1"] for k, v in nilm["metrics"]["appliances"].items()},
        "infer_days": args.infer_days,
        "infer_s": [round(x, 3) for x in times],
        "infer_best_s_per_day": round(min(times) / args.infer_days, 3),
        "energy_wh_estimated": {a["name"]: a["energy_wh"] for a in result["appliances"]},
        "energy_wh_true": {k: round(float(np.nansum(truth[k])) / 60, 1) for k in truth.columns},
        "load_avg": os.getloadavg(),
    }
    ww.close()
    print(json.dumps(report, indent=2))
    if not args.keep_dir:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
