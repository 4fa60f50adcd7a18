"""Model-card exports: MCT-style performance metrics JSON and HF model-index YAML."""

from __future__ import annotations

import json

import pytest
import yaml
from cvaudit.reports import export_model_card
from results_factory import make_results


@pytest.fixture(scope="module")
def record() -> dict:
    return make_results(n_questions=6, n_boot=100)


def test_model_card_metrics_shape(tmp_path, record):
    paths = export_model_card(record, tmp_path)
    assert [p.name for p in paths] == ["model_card_metrics.json", "model-index.yaml"]
    card = json.loads(paths[0].read_text())
    assert card["synthetic_data"] is True and "SYNTHETIC" in card["dataset"]
    perf = card["quantitative_analysis"]["performance_metrics"]
    for m in perf:
        assert set(m) <= {"type", "value", "slice", "confidence_interval"} and {"type", "value", "slice"} <= set(m)
        ci = m.get("confidence_interval")
        if ci is not None:
            assert set(ci) == {"lower_bound", "upper_bound"}
            assert ci["lower_bound"] <= m["value"] + 1e-9 and m["value"] <= ci["upper_bound"] + 1e-9
    by_key = {(m["type"], m["slice"]): m for m in perf}
    for g in record["groups"]:
        for metric, fig in g["metrics"].items():
            if fig["value"] is None:
                continue
            m = by_key[(metric, f"{g['attribute']}={g['group']}")]
            assert m["value"] == pytest.approx(fig["value"], abs=1e-6)
            assert m["confidence_interval"]["lower_bound"] == pytest.approx(fig["ci"][0], abs=1e-6)
    assert by_key[("accuracy", "overall")]["value"] == pytest.approx(record["overall"]["accuracy"]["value"], abs=1e-6)
    gap = next(d for d in record["disparity"] if d["attribute"] == "age" and d["metric"] == "similarity")["gap"]
    assert by_key[("similarity_gap", "age")]["value"] == pytest.approx(gap["value"], abs=1e-6)


def test_model_index_yaml(tmp_path, record):
    path = export_model_card(record, tmp_path)[1]
    text = path.read_text()
    assert text.startswith("#") and "WARNING: synthetic" in text
    doc = yaml.safe_load(text)
    entry = doc["model-index"][0]
    assert entry["name"] == record["model"]["id"]
    res = entry["results"][0]
    assert set(res["task"]) == {"type", "name"} and set(res["dataset"]) == {"type", "name"}
    assert res["dataset"]["type"] == "wvs-wave7-sgp"
    names = [m["name"] for m in res["metrics"]]
    assert "representativeness (ethnicity=Malay)" in names
    for m in res["metrics"]:
        assert set(m) == {"type", "value", "name"} and isinstance(m["value"], float)
    n_groups = len(record["groups"])
    assert len(res["metrics"]) == 4 * (n_groups + 1)  # overall + each group, for each metric


def test_export_refuses_incomplete(tmp_path, record):
    from cvaudit.audit.cli import main
    from results_factory import incomplete

    path = tmp_path / "results.json"
    path.write_text(json.dumps(incomplete(record)))
    with pytest.raises(SystemExit) as exc:
        main(["export", str(path), "--out", str(tmp_path / "x")])
    assert exc.value.code == 2 and not (tmp_path / "x").exists()


def test_cells_the_method_left_out_reach_the_model_card(tmp_path, record):
    """Figures on part of the grid say so in both exports: the card lists the cells, the YAML has a note."""
    rec = json.loads(json.dumps(record))
    cells = [{"attribute": "sex", "group": "Male", "question": "Q1"}]
    rec["excluded_cells"] = {"reason": "training examples of the checkpoint", "cells": cells}
    card_path, yaml_path = export_model_card(rec, tmp_path)
    card = json.loads(card_path.read_text())
    assert card["excluded_cells"] == {"n": 1, "reason": "training examples of the checkpoint", "cells": cells}
    assert "# NOTE: 1 (group, question) cell(s) are in no figure (training examples of the checkpoint)" in yaml_path.read_text()
    plain_card, plain_yaml = export_model_card(record, tmp_path / "plain")
    assert "excluded_cells" not in json.loads(plain_card.read_text()) and "NOTE" not in plain_yaml.read_text()
