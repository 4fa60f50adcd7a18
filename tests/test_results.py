"""results.json assembly and item tables, on small hand-made inputs (no model)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from cvaudit.audit import results as res
from cvaudit.audit.config import RunConfig
from cvaudit.audit.errors import ModelError
from cvaudit.audit.methods.base import get_method_class
from cvaudit.audit.types import Country, DataSource, Group, ItemPrediction, Question

SG = Country("SG", "SGP", 702, "Singapore")
Q1 = Question(id="Q1", text="Family?", options=("Very", "Rather", "Not very", "Not at all"),
              codes=((1,), (2,), (3,), (4,)), ordinal=True, category="Social", positions=(0, 1, 2, 3))
Q8 = Question(id="Q8", text="Independence?", options=("Mentioned", "Not mentioned"), codes=((1,), (2,)),
              ordinal=False, category="Qualities")  # fmt: skip
F = Group("sex", "Female", (("sex", "Female"),), n=120, n_eff=100.5)
M = Group("sex", "Male", (("sex", "Male"),), n=110, n_eff=98.0)


def truth() -> pd.DataFrame:
    rows = [
        ("sex", "Female", "Q1", [0.5, 0.3, 0.1, 0.1], [0], 118, 99.0, 2, False),
        ("sex", "Female", "Q8", [0.4, 0.6], [1], 117, 98.0, 3, False),
        ("sex", "Male", "Q1", [0.25, 0.25, 0.25, 0.25], [0, 1, 2, 3], 105, 93.0, 5, False),
        ("sex", "Male", "Q8", None, [], 20, 18.0, 90, True),  # too few answers: suppressed
    ]
    cols = ["attribute", "group", "question", "human_dist", "human_mode", "n", "n_eff", "missing", "suppressed"]
    return pd.DataFrame(rows, columns=cols)


def predictions(scale: float = 1.0) -> dict:
    return {
        (F.id, "Q1"): ItemPrediction((0.1 * scale, 0.2 * scale, 0.3 * scale, 0.4 * scale)),
        (F.id, "Q8"): ItemPrediction((0.7, 0.3), extra={"note": "x"}),
        (M.id, "Q1"): ItemPrediction((0.4, 0.3, 0.2, 0.1)),
        (M.id, "Q8"): ItemPrediction((0.5, 0.5)),
    }


def test_build_items_drops_suppressed_cells_and_normalises():
    items = res.build_items([F, M], [Q1, Q8], truth(), predictions(scale=2.0))  # unnormalised input
    assert list(items.columns) == list(res.ITEM_COLUMNS)
    assert list(zip(items.group, items.question)) == [("Female", "Q1"), ("Female", "Q8"), ("Male", "Q1")]
    np.testing.assert_allclose(items.model_dist[0], [0.1, 0.2, 0.3, 0.4])
    for d in items.model_dist:
        assert abs(sum(d) - 1.0) < 1e-12
    assert items.model_choice.tolist() == [3, 0, 0]
    assert items.positions[1] is None and items.positions[0] == [0.0, 1.0, 2.0, 3.0]
    assert items.human_mode[2] == [0, 1, 2, 3]  # ties kept
    assert items.extra[1] == {"note": "x"}
    assert items.n.tolist() == [118, 117, 105] and items.missing.tolist() == [2, 3, 5]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({(F.id, "Q1"): None}, "no prediction"),
        ({(F.id, "Q1"): ItemPrediction((0.5, 0.5))}, "2 probabilities for Q1"),
        ({(F.id, "Q1"): ItemPrediction((float("nan"), 0.2, 0.3, 0.5))}, "invalid distribution"),
        ({(F.id, "Q1"): ItemPrediction((-0.1, 0.5, 0.3, 0.3))}, "invalid distribution"),
    ],
)
def test_build_items_rejects_bad_predictions(bad, message):
    preds = predictions()
    preds.update(bad)
    preds = {k: v for k, v in preds.items() if v is not None}
    with pytest.raises(ModelError, match=message):
        res.build_items([F, M], [Q1, Q8], truth(), preds)


def test_items_csv_and_parquet_round_trip(tmp_path):
    items = res.build_items([F, M], [Q1, Q8], truth(), predictions())
    res.write_items(items, tmp_path)
    csv = pd.read_csv(tmp_path / "items.csv")
    assert len(csv) == 3
    assert [json.loads(x) for x in csv.model_dist] == items.model_dist.tolist()
    assert csv.positions.isna()[1]  # a nominal item has no positions
    table = pq.read_table(tmp_path / "items.parquet").to_pandas()
    assert [list(x) for x in table.model_dist] == items.model_dist.tolist()
    assert [list(x) for x in table.human_mode] == items.human_mode.tolist()
    assert table.positions[1] is None
    assert json.loads(table.extra[1]) == {"note": "x"}


def test_item_tables_carry_the_metrics(tmp_path):
    """Each metric is a column (results.json's order first); undefined is empty, a clashing name is prefixed."""
    items = res.build_items([F, M], [Q1, Q8], truth(), predictions())
    im = pd.DataFrame({"n": [1.0, 2.0, 3.0], "similarity": [0.9, 0.8, 0.7], "nmae": [0.1, np.nan, 0.3]})
    res.write_items(items, tmp_path, im)
    csv = pd.read_csv(tmp_path / "items.csv")
    table = pq.read_table(tmp_path / "items.parquet").to_pandas()
    for t in (csv, table):
        assert list(t.columns[-3:]) == ["nmae", "similarity", "metric_n"]
        assert t["n"].tolist() == items["n"].tolist()  # the respondent count is not overwritten
        assert t["metric_n"].tolist() == [1.0, 2.0, 3.0]
        assert t["nmae"].isna().tolist() == [False, True, False]
    assert pq.read_table(tmp_path / "items.parquet").column("nmae").null_count == 1


def fake_evaluation(items: pd.DataFrame) -> dict:
    """A stand-in for cvaudit.metrics.evaluate with the schema's sections."""
    fig = {"value": 0.5, "ci": [0.4, 0.6]}
    return {
        "item_metrics": pd.DataFrame(
            {"accuracy": [0.0, 1.0, 1.0], "nmae": [1.0, np.nan, 0.0],
             "representativeness": [0.6, np.nan, 0.9], "similarity": [0.7, 0.8, 0.9]}  # fmt: skip
        ),
        "groups": [{"attribute": "sex", "group": g, "n": 1, "n_eff": 1.0, "metrics": {"accuracy": fig}, "flags": {}}
                   for g in ("Female", "Male")],  # fmt: skip
        "overall": {"accuracy": fig},
        "categories": [],
        "disparity": [],
        "flags": {"tau": 0.8, "alpha": 0.05, "correction": "holm", "reference": {"sex": "Female"}},
        "bootstrap": {"unit": "question", "replicates": 10, "level": 0.95, "seed": 0, "respondents": False},
    }


def source() -> DataSource:
    return DataSource(path="/tmp/x.csv", sha256="ab" * 32, synthetic=True, format="csv", country=SG,
                      n_respondents=230, weight_column="W_WEIGHT")  # fmt: skip


def test_assemble_follows_the_schema(tmp_path):
    config = RunConfig(out=str(tmp_path), attributes=("sex",), limit=2)
    items = res.build_items([F, M], [Q1, Q8], truth(), predictions())
    method = get_method_class("none")()
    record = res.assemble(
        config=config, model_info={"id": "tiny", "fingerprint": "f"}, method=method, source=source(),
        questions=[Q1, Q8], suppressed=[Group("sex", "Other", (("sex", "Other"),), n=4, n_eff=4.0)], items=items,
        evaluation=fake_evaluation(items), timings={"load_s": 1.23456}, device={"type": "cpu"},
        method_report={"T": [{"a": 1}]},
    )  # fmt: skip
    assert record["schema_version"] == "1" and record["complete"] is True
    assert record["timing_fields"] == ["created_at", "timings", "device"]
    assert record["config"]["attributes"] == ["sex"] and record["seed"] == 0
    assert record["method"] == {"name": "none", "params": {}, "fingerprint": method.fingerprint()}
    assert record["data"]["synthetic"] is True and record["data"]["notes"][0].startswith("SYNTHETIC DATA")
    assert record["data"]["country"] == {"alpha2": "SG", "alpha3": "SGP", "numeric": 702, "name": "Singapore"}
    assert record["questions"]["ids"] == ["Q1", "Q8"]
    assert record["questions"]["details"][1]["positions"] is None
    assert record["subgroups"]["suppressed"] == [{"attribute": "sex", "group": "Other", "n": 4}]
    assert record["subgroups"]["unavailable"] == {} and record["questions"]["excluded"] == []
    assert record["items"][1]["metrics"]["nmae"] is None and record["items"][1]["metrics"]["accuracy"] == 1.0
    assert record["timings"] == {"load_s": 1.235}
    assert record["method_report"] == {"T": [{"a": 1}]}
    for key in ("groups", "overall", "categories", "disparity", "flags", "bootstrap"):
        assert key in record
    path = res.write_results(record, tmp_path)
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text)["items"][0]["model_dist"] == record["items"][0]["model_dist"]
    stripped = res.strip_timing(json.loads(text))
    assert not {"created_at", "timings", "device"} & set(stripped)


def test_pending_record_is_marked_incomplete(tmp_path):
    res.write_pending(tmp_path, RunConfig(out=str(tmp_path)))
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["complete"] is False and "resume" in record["note"]
    assert "groups" not in record and not any(tmp_path.glob(".*tmp"))


def test_item_records_without_metrics_keep_rows():
    items = res.build_items([F, M], [Q1, Q8], truth(), predictions())
    recs = res.item_records(items, None)
    assert len(recs) == 3 and "metrics" not in recs[0]
    assert math.isclose(sum(recs[0]["model_dist"]), 1.0)
