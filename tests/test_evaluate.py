"""evaluate(): the results.json sections, their shape, determinism, degenerate inputs, frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.errors import DataError
from cvaudit.audit.io import atomic_write_json, dumps_json
from cvaudit.metrics import (
    MetricsConfig,
    category_frame,
    disparity_frame,
    evaluate,
    group_frame,
    item_frame,
    seed003_table,
)

METRICS = ["accuracy", "nmae", "representativeness", "similarity"]
FIGS = ["gap", "ratio", "normalised_range", "cv", "max_abs_to_overall"]


def make_items(seed=0, n_q=12, groups=None):
    groups = groups or {"sex": ["Female", "Male"], "age": ["18-29", "30-49", "50+"]}
    rng = np.random.default_rng(seed)
    rows, grows = [], []
    for attr, labels in groups.items():
        for label in labels:
            grows.append({"attribute": attr, "group": label, "n": int(rng.integers(40, 400)), "n_eff": 33.5})
            for q in range(n_q):
                k = 3 + q % 3
                h = rng.dirichlet(np.ones(k))
                rows.append({"attribute": attr, "group": label, "question": f"Q{q}", "category": f"Cat{q % 2}",
                             "options": [str(i) for i in range(k)],
                             "positions": None if q == 0 else list(range(k)),
                             "model_dist": list(rng.dirichlet(np.ones(k))), "human_dist": list(h),
                             "human_mode": [int(np.argmax(h))], "n": 50})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(grows)


def test_sections_match_the_results_schema():
    items, groups = make_items()
    items.index = [f"row{i}" for i in range(len(items))]  # not a RangeIndex: item_metrics must still align
    res = evaluate(items, groups, MetricsConfig(n_boot=200))
    assert {"item_metrics", "groups", "overall", "categories", "disparity", "flags", "bootstrap"} <= set(res)
    im = res["item_metrics"]
    assert list(im.columns) == METRICS and im.index.equals(items.index)
    assert np.isnan(im["nmae"].to_numpy()[items["question"].to_numpy() == "Q0"]).all()  # nominal item
    assert len(res["groups"]) == 5
    g = res["groups"][0]
    assert set(g) == {"attribute", "group", "n", "n_eff", "metrics", "flags"}
    assert (g["attribute"], g["group"], g["n"], g["n_eff"]) == ("sex", "Female", groups["n"][0], 33.5)
    for m in METRICS:
        fig = g["metrics"][m]
        assert set(fig) == {"value", "ci"} and fig["ci"][0] <= fig["value"] <= fig["ci"][1]
        assert set(g["flags"][m]) == {"status", "ratio", "p_value", "p_holm", "ratio_net", "noise_shift", "noise_removed"}
        assert set(res["overall"][m]) == {"value", "ci"}
    # overall = mean over every evaluated (group, question) cell
    assert res["overall"]["accuracy"]["value"] == pytest.approx(im["accuracy"].mean())
    assert res["overall"]["nmae"]["value"] == pytest.approx(im["nmae"].mean())  # NaN left out
    d = res["disparity"][0]
    assert {"attribute", "metric", *FIGS, "best_group", "worst_group", "reference_group"} <= set(d)
    assert len(res["disparity"]) == 2 * len(METRICS)
    assert res["flags"] == {"tau": 0.8, "alpha": 0.05, "correction": "holm", "noise_corrected": True,
                            "noise_draws": 128, "reference": {"sex": groups["group"][int(np.argmax(groups["n"][:2]))],
                                          "age": groups["group"][2 + int(np.argmax(groups["n"][2:]))]}}  # fmt: skip
    assert res["bootstrap"] == {"unit": "question", "replicates": 200, "level": 0.95, "seed": 0, "respondents": False}
    cat = res["categories"][0]
    assert set(cat) == {"attribute", "group", "category", "metric", "value", "n_questions"}
    sub = im.loc[(items["group"] == "Female") & (items["category"] == "Cat1"), "nmae"]
    row = next(c for c in res["categories"] if (c["group"], c["category"], c["metric"]) == ("Female", "Cat1", "nmae"))
    assert row["value"] == pytest.approx(sub.mean()) and row["n_questions"] == sub.notna().sum()
    assert any("nominal" in note and "ordered scale" in note for note in res["metric_notes"])
    # JSON-ready: serialises without NaN, and no numpy types
    rest = {k: v for k, v in res.items() if k != "item_metrics"}
    assert json.loads(dumps_json(rest)) == json.loads(json.dumps(rest))


def test_same_seed_same_numbers_other_seed_other_intervals():
    items, groups = make_items(seed=3)
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k != "item_metrics"}, sort_keys=True)  # noqa: E731
    a = evaluate(items, groups, MetricsConfig(n_boot=100, seed=7))
    b = evaluate(items.sample(frac=1.0, random_state=1), groups, MetricsConfig(n_boot=100, seed=7))
    c = evaluate(items, groups, MetricsConfig(n_boot=100, seed=8))
    assert strip(a) == strip(evaluate(items, groups, MetricsConfig(n_boot=100, seed=7)))
    assert a["groups"][0]["metrics"]["similarity"]["value"] == pytest.approx(
        b["groups"][0]["metrics"]["similarity"]["value"]
    )
    assert a["groups"][0]["metrics"]["similarity"]["ci"] != c["groups"][0]["metrics"]["similarity"]["ci"]


def test_group_ci_is_the_percentile_of_paired_question_resamples():
    """Independent re-derivation: resample question ids with the documented generator, average by pandas."""
    items, groups = make_items(seed=4, n_q=9)
    res = evaluate(items, groups, MetricsConfig(n_boot=300, seed=11))
    im = res["item_metrics"].assign(group=items["group"], question=items["question"])
    qids = list(dict.fromkeys(items["question"]))
    draws = np.random.default_rng(11).integers(0, len(qids), size=(300, len(qids)))
    table = im.pivot(index="group", columns="question", values="similarity")[qids]
    means = np.array([table.iloc[:, d].mean(axis=1).to_numpy() for d in draws])  # (B, groups sorted by name)
    female = list(table.index).index("Female")
    lo, hi = np.quantile(means[:, female], [0.025, 0.975])
    got = next(g for g in res["groups"] if g["group"] == "Female")["metrics"]["similarity"]["ci"]
    assert got == pytest.approx([lo, hi])
    # the gap's interval comes from the replicate gaps of the same draws
    sex_rows = [list(table.index).index(x) for x in ("Female", "Male")]
    gaps = np.ptp(means[:, sex_rows], axis=1)
    d = next(x for x in res["disparity"] if (x["attribute"], x["metric"]) == ("sex", "similarity"))
    assert d["gap"]["ci"] == pytest.approx(list(np.quantile(gaps, [0.025, 0.975])))


def test_one_question_single_group_and_missing_group():
    items, groups = make_items(n_q=1, groups={"all": ["All respondents"], "sex": ["Female", "Male"]})
    groups = pd.concat([groups, pd.DataFrame([{"attribute": "sex", "group": "Other", "n": 5, "n_eff": 5.0}])])
    res = evaluate(items, groups, MetricsConfig(n_boot=50))
    other = next(g for g in res["groups"] if g["group"] == "Other")  # no items (suppressed everywhere)
    assert all(other["metrics"][m] == {"value": None, "ci": None} for m in METRICS)
    assert res["flags"]["reference"]["sex"] != "Other"  # a group without items is never the reference
    single = [d for d in res["disparity"] if d["attribute"] == "all"]
    assert all(d["gap"]["value"] is None and d["note"] for d in single)
    fem = next(g for g in res["groups"] if g["group"] == "Female")
    lo, hi = fem["metrics"]["similarity"]["ci"]
    assert lo == hi == fem["metrics"]["similarity"]["value"]  # one question cannot vary
    assert any("one question" in n for n in res["metric_notes"])
    res0 = evaluate(items, groups, MetricsConfig(n_boot=0))
    assert res0["groups"][0]["metrics"]["accuracy"]["ci"] is None
    assert res0["bootstrap"]["replicates"] == 0


def test_one_question_gets_no_p_values_or_flags():
    """One question, no resampled respondents: replicates equal the point, so nothing is tested or flagged."""
    def audit(n_q):
        items, groups = make_items(n_q=n_q, groups={"religion": ["A", "B", "C"]})
        # A and B: the model gives the survey's answers; C: it sits on the option C's survey holds least
        items["model_dist"] = [list(h) if g != "C" else list(np.eye(len(h))[int(np.argmin(h))] * 0.97 + 0.01)
                               for g, h in zip(items["group"], items["human_dist"])]  # fmt: skip
        return evaluate(items, groups, MetricsConfig(n_boot=200, noise_correction=False, reference=(("religion", "A"),)))

    one = audit(1)
    c = next(g for g in one["groups"] if g["group"] == "C")
    assert c["metrics"]["similarity"]["value"] < 0.5  # a large gap that a paired test would call certain
    for g in one["groups"]:
        for flag in g["flags"].values():
            assert flag["status"] in ("neutral", "reference", "undefined") and flag["p_value"] is None and flag["p_holm"] is None
    assert any("no group is tested or flagged" in n for n in one["metric_notes"])
    three = audit(3)  # the same gap over three questions is tested and flagged
    c3 = next(g for g in three["groups"] if g["group"] == "C")
    assert c3["flags"]["similarity"]["p_value"] is not None and c3["flags"]["similarity"]["status"] == "disfavoured"
    assert not any("no group is tested" in n for n in three["metric_notes"])


def test_bad_inputs_raise_data_errors():
    items, groups = make_items(n_q=2)
    with pytest.raises(DataError, match="model_dist"):
        evaluate(items.drop(columns=["model_dist"]), groups, MetricsConfig(n_boot=5))
    with pytest.raises(DataError, match="more than once"):
        evaluate(pd.concat([items, items.iloc[:1]]), groups, MetricsConfig(n_boot=5))


def test_frames_read_a_results_file(tmp_path):
    items, groups = make_items()
    res = evaluate(items, groups, MetricsConfig(n_boot=100))
    record = {k: v for k, v in res.items() if k != "item_metrics"}
    record["items"] = [{"attribute": a, "group": g, "question": q, "metrics": m}
                       for a, g, q, m in zip(items["attribute"], items["group"], items["question"],
                                             res["item_metrics"].to_dict(orient="records"))]  # fmt: skip
    path = atomic_write_json(tmp_path / "results.json", record)
    gf = group_frame(path)
    assert len(gf) == 5 * len(METRICS)
    row = gf[(gf["group"] == "Male") & (gf["metric"] == "nmae")].iloc[0]
    male = next(g for g in res["groups"] if g["group"] == "Male")
    assert row["value"] == male["metrics"]["nmae"]["value"] and row["ci_hi"] == male["metrics"]["nmae"]["ci"][1]
    assert row["status"] == male["flags"]["nmae"]["status"]
    df = disparity_frame(tmp_path)  # the folder works too
    assert len(df) == 8 and {"gap", "gap_lo", "gap_hi", "best_group"} <= set(df.columns)
    it = item_frame(record)
    assert np.isnan(it.loc[it["question"] == "Q0", "nmae"]).all() and len(it) == len(items)
    assert len(category_frame(record)) == len(res["categories"])
    assert list(seed003_table(path)["attribute"]) == ["sex", "age"]
    with pytest.raises(DataError, match="no results file"):
        group_frame(tmp_path / "missing.json")


def test_few_replicates_are_noted():
    items, groups = make_items()
    few = evaluate(items, groups, MetricsConfig(n_boot=20))
    assert any("only 20 bootstrap replicates" in n for n in few["metric_notes"])
    assert not any("bootstrap replicates" in n for n in evaluate(items, groups, MetricsConfig(n_boot=200))["metric_notes"])


def test_negative_model_share_is_a_data_error_not_a_null():
    items, groups = make_items(n_q=3)
    items.at[4, "model_dist"] = [-0.1, 1.1] + [0.0] * (len(items.at[4, "model_dist"]) - 2)
    with pytest.raises(DataError, match="model_dist of item row 4 has a negative or non-finite share"):
        evaluate(items, groups, MetricsConfig(n_boot=10))


def test_a_metric_defined_on_one_question_only_is_not_tested():
    """Ordinal metrics on one ordinal question among nominal ones cannot vary either: no p-value, no flag."""
    items, groups = make_items(n_q=2, groups={"religion": ["A", "B", "C"]})  # Q0 nominal, Q1 ordinal
    items["model_dist"] = [list(h) if g != "C" else list(np.eye(len(h))[int(np.argmin(h))] * 0.97 + 0.01)
                           for g, h in zip(items["group"], items["human_dist"])]  # fmt: skip
    res = evaluate(items, groups, MetricsConfig(n_boot=200, noise_correction=False, reference=(("religion", "A"),)))
    c = next(g for g in res["groups"] if g["group"] == "C")
    for m in ("nmae", "representativeness"):
        assert c["flags"][m]["p_value"] is None and c["flags"][m]["status"] == "neutral", m
    assert c["flags"]["similarity"]["p_value"] is not None  # defined on both questions: tested
    assert any("nmae: groups with a value on one question only are not tested" in n for n in res["metric_notes"])
