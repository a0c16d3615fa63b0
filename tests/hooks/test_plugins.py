"""Python plugins: the example plugin found by its entry point, hooks isolated from ingest."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.hooks.conftest import add_device
from typer.testing import CliRunner

from wattwatch.domain import now_ms
from wattwatch.hooks import specs
from wattwatch.hooks.dispatcher import EVENTS
from wattwatch.hooks.specs import hookimpl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "wattwatch-csv-export"


@pytest.fixture
def example_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example plugin as pip would leave it: its module importable, its entry point listed."""
    site = tmp_path / "site-packages"
    dist = site / "wattwatch_csv_export-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wattwatch-csv-export\nVersion: 0.1.0\n"
    )
    # The same entry point the example's pyproject.toml declares.
    (dist / "entry_points.txt").write_text("[wattwatch]\ncsv_export = wattwatch_csv_export\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield
    import sys

    sys.modules.pop("wattwatch_csv_export", None)


def test_example_declares_its_entry_point() -> None:
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points.wattwatch]\ncsv_export = "wattwatch_csv_export"' in text


class Broken:
    """A plugin with a bug: it must not stop the others, nor ingest."""

    calls = 0

    @hookimpl
    def wattwatch_reading_batch(self, readings: list[dict[str, Any]]) -> None:
        Broken.calls += 1
        raise RuntimeError("plugin bug")


def test_example_plugin_forwards_readings_to_csv(example_installed: None, app_client: Any) -> None:
    ww, client = app_client(before_start=lambda ww: ww.hooks.pm.register(Broken()))
    names = [name for name, _ in ww.hooks.pm.list_name_plugin()]
    assert "csv_export" in names
    device_id, auth = add_device(client)
    t = now_ms() - 60_000
    rows = [
        {"ts": t, "power_w": 812.5, "voltage_v": 229.8},
        {"ts": t + 5000, "power_w": 40.0, "energy_wh": 1234.5, "channel": "ac01"},
    ]
    r = client.post("/api/v1/telemetry", json=rows, headers=auth)
    assert r.json()["accepted"] == 2
    path = Path(ww.settings.data_dir) / "exports" / "readings.csv"
    deadline = time.monotonic() + 10
    lines: list[list[str]] = []
    while time.monotonic() < deadline:
        if path.exists():
            with path.open() as f:
                lines = list(csv.reader(f))
            if len(lines) == 3:
                break
        time.sleep(0.02)
    header, *body = lines
    assert header == [
        "device_id",
        "channel",
        "ts",
        "power_w",
        "energy_wh",
        "voltage_v",
        "current_a",
    ]
    got = sorted(body, key=lambda x: x[2])
    assert got[0] == [str(device_id), "mains", str(t), "812.5", "", "229.8", ""]
    assert got[1] == [str(device_id), "ac01", str(t + 5000), "40.0", "1234.5", "", ""]
    assert Broken.calls >= 1


def test_plugins_command_lists_builtins_and_the_example(example_installed: None) -> None:
    from wattwatch.cli import app

    result = CliRunner().invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    found = {p["name"]: p for p in json.loads(result.output)}
    assert found["wattwatch.builtin"]["hooks"] == ["wattwatch_notifiers"]
    example = found["csv_export"]
    assert example["package"] == "wattwatch-csv-export 0.1.0"
    assert example["hooks"] == [
        "wattwatch_reading_batch",
        "wattwatch_shutdown",
        "wattwatch_startup",
    ]


def test_every_hook_and_event_is_documented() -> None:
    doc = (ROOT / "docs" / "hooks.md").read_text()
    hooks = [name for name in dir(specs) if name.startswith("wattwatch_")]
    assert len(hooks) == 7
    for name in [*hooks, *EVENTS]:
        assert f"`{name}" in doc, f"{name} is not in docs/hooks.md"
