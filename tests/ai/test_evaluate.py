from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from wattwatch.ai.evaluate import _json_safe, main, run_evaluation


def test_transfer_needs_train(nilm_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dataset", str(nilm_dir / "refit_house20"), "--protocol", "transfer"]) == 2
    assert "--train" in capsys.readouterr().err


def test_unknown_dataset_is_an_error(tmp_path: Path) -> None:
    assert main(["--dataset", str(tmp_path)]) == 2
    with pytest.raises(FileNotFoundError):
        run_evaluation(tmp_path)
    with pytest.raises(ValueError, match="unknown protocol"):
        run_evaluation(tmp_path, protocol="nope")


def test_json_output_has_no_nan() -> None:
    report = {"results": [{"energy_error": math.nan, "f1": 0.5}], "forecast": {"mase": 0.8}}
    text = json.dumps(_json_safe(report), allow_nan=False)
    assert json.loads(text)["results"][0] == {"energy_error": None, "f1": 0.5}
