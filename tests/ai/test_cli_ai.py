"""``wattwatch ai train`` and ``wattwatch ai models`` on a data dir."""

from __future__ import annotations

import json

from tests.ai.houses import make_house
from typer.testing import CliRunner

from wattwatch.app import Wattwatch
from wattwatch.cli import app


def test_ai_train_and_models_on_a_data_dir(ww: Wattwatch) -> None:
    # no labels and no plug: only the candidate clusters are trained (quick)
    house = make_house(ww, days=6, with_plug=False)
    data = str(ww.settings.data_dir)
    mid = str(house.monitor["id"])
    runner = CliRunner()
    r = runner.invoke(app, ["ai", "train", "--device", mid, "--data-dir", data, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert [m["kind"] for m in out["models"]] == ["clusters"]
    assert out["skipped"][0]["kind"] == "nilm" and "label" in out["skipped"][0]["reason"]
    assert out["models"][0]["metrics"]["minutes"] == 6 * 1440
    r = runner.invoke(app, ["ai", "models", "--device", mid, "--data-dir", data, "--json"])
    assert r.exit_code == 0, r.output
    (model,) = json.loads(r.output)
    assert model["kind"] == "clusters" and model["version"] == 1
    r = runner.invoke(app, ["ai", "train", "--device", "999", "--data-dir", data])
    assert r.exit_code == 2 and "no claimed device 999" in r.output
    r = runner.invoke(app, ["ai", "train", "--device", mid, "--data-dir", data, "--days", "0"])
    assert r.exit_code == 1 and "training days" in r.output
