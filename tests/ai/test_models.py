from __future__ import annotations

import pytest
from tests.ai.conftest import synthetic_house

from wattwatch.ai.models import ModelFormatError, dump_model, load_model, read_meta
from wattwatch.ai.nilm.model import NilmModel


def test_round_trip_keeps_predictions_and_meta() -> None:
    df = synthetic_house(3, seed=1)
    m = NilmModel(appliances=("Kettle",), cv_folds=0, hgb_params={"max_iter": 20})
    m.fit(df["Aggregate"].iloc[:2880], df[["Kettle"]].iloc[:2880])
    blob = dump_model(m, "nilm", 3, {"f1": {"Kettle": 0.9}}, extra={"house": "synthetic"})
    meta = read_meta(blob)
    assert meta.kind == "nilm" and meta.version == 3 and meta.metrics["f1"]["Kettle"] == 0.9
    back, meta2 = load_model(blob, expected_kind="nilm")
    assert meta2 == meta
    test = df["Aggregate"].iloc[2880:]
    assert back.predict_power(test).equals(m.predict_power(test))


def test_rejects_foreign_bytes_and_wrong_kind() -> None:
    with pytest.raises(ModelFormatError):
        load_model(b"not a model")
    blob = dump_model({"a": 1}, "forecast", 1)
    with pytest.raises(ModelFormatError):
        load_model(blob, expected_kind="nilm")
    with pytest.raises(ModelFormatError):
        load_model(blob[:-5])
