"""Disparity figures against fairlearn's MetricFrame and hand computations; degenerate cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cvaudit.metrics import MetricsConfig, disparity_figures, evaluate, seed003_table
from cvaudit.metrics.disparity import best_worst
from fairlearn.metrics import MetricFrame
from hypothesis import given, settings
from hypothesis import strategies as st

NO_BOOT = MetricsConfig(n_boot=0)


def random_items(seed: int, groups: dict[str, list[str]], n_q: int, drop: float = 0.0):
    """Random items (4-option ordinal questions, every 4th nominal); some cells dropped (suppressed)."""
    rng = np.random.default_rng(seed)
    rows, grows = [], []
    for attr, labels in groups.items():
        for label in labels:
            grows.append({"attribute": attr, "group": label, "n": int(rng.integers(30, 900)), "n_eff": 25.0})
            for q in range(n_q):
                if rng.random() < drop:
                    continue
                h = rng.dirichlet(np.ones(4))
                rows.append({"attribute": attr, "group": label, "question": f"Q{q}", "category": f"C{q % 3}",
                             "positions": None if q % 4 == 3 else [0, 1, 2, 3],
                             "model_dist": list(rng.dirichlet(np.ones(4) * 0.7)), "human_dist": list(h),
                             "human_mode": [int(np.argmax(h))]})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(grows)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 5), st.integers(1, 25))
def test_disparity_matches_fairlearn_metricframe(seed, n_groups, n_q):
    groups = {"religion": [f"R{i}" for i in range(n_groups)]}
    items, gframe = random_items(seed, groups, n_q, drop=0.2)
    if items.empty:
        return
    res = evaluate(items, gframe, NO_BOOT)
    by = {(d["attribute"], d["metric"]): d for d in res["disparity"]}
    im = res["item_metrics"]
    for metric in ("accuracy", "nmae", "representativeness", "similarity"):
        ok = im[metric].notna()
        if ok.sum() == 0:
            continue
        mf = MetricFrame(metrics=lambda yt, yp: float(np.mean(yp)), y_true=im.loc[ok, metric],
                         y_pred=im.loc[ok, metric], sensitive_features=items.loc[ok, "group"])  # fmt: skip
        d = by[("religion", metric)]
        # group means equal MetricFrame.by_group
        gvals = {g["group"]: g["metrics"][metric]["value"] for g in res["groups"]}
        for label, value in mf.by_group.items():
            assert gvals[label] == pytest.approx(value, abs=1e-12)
        if len(mf.by_group) < 2:
            assert d["gap"]["value"] is None
            continue
        assert d["gap"]["value"] == pytest.approx(mf.difference(), abs=1e-12)
        assert d["max_abs_to_overall"]["value"] == pytest.approx(mf.difference(method="to_overall"), abs=1e-12)
        if mf.group_max() > 0:
            assert d["ratio"]["value"] == pytest.approx(mf.ratio(), abs=1e-12)
        else:
            assert d["ratio"]["value"] is None


def test_normalised_range_cv_and_direction_by_hand():
    figs = disparity_figures(np.array([0.5, 0.25, 0.75]), overall=np.array(0.6))
    assert figs["gap"] == pytest.approx(0.5)
    assert figs["ratio"] == pytest.approx(0.25 / 0.75)
    assert figs["normalised_range"] == pytest.approx(0.5 / 0.75)
    assert figs["cv"] == pytest.approx(np.sqrt(((0.0) ** 2 + 0.25**2 + 0.25**2) / 3) / 0.5)  # population std
    assert figs["max_abs_to_overall"] == pytest.approx(0.35)
    assert best_worst(np.array([0.5, 0.25, 0.75]), higher_is_better=True) == (2, 1)
    assert best_worst(np.array([0.5, 0.25, 0.75]), higher_is_better=False) == (1, 2)  # NMAE: low is best
    # replicates along the last axis, NaN groups left out
    reps = disparity_figures(np.array([[0.2, np.nan, 0.4], [0.0, 0.0, 0.0], [np.nan, np.nan, 0.3]]))
    assert reps["gap"][0] == pytest.approx(0.2) and reps["ratio"][0] == pytest.approx(0.5)
    assert reps["gap"][1] == 0.0 and np.isnan(reps["ratio"][1]) and np.isnan(reps["normalised_range"][1])
    assert np.isnan(reps["cv"][1])  # mean 0
    assert all(np.isnan(reps[k][2]) for k in reps)  # one defined group: no disparity


def _const_items(values: dict[str, list[float]], attribute="sex"):
    """Items whose accuracy is fixed by construction: 1 where the value is 1 (model picks the mode)."""
    rows = []
    for label, accs in values.items():
        for q, a in enumerate(accs):
            model = [0.9, 0.1] if a else [0.1, 0.9]
            rows.append({"attribute": attribute, "group": label, "question": f"Q{q}", "category": "c",
                         "positions": [0, 1], "model_dist": model, "human_dist": [0.8, 0.2], "human_mode": [0]})
    groups = pd.DataFrame([{"attribute": attribute, "group": g, "n": 100, "n_eff": 90.0} for g in values])
    return pd.DataFrame(rows), groups


def test_hand_computed_disparity_and_seed003_table():
    items, groups = _const_items({"A": [1, 1, 1, 0], "B": [1, 0, 0, 0], "C": [1, 1, 0, 0]})
    res = evaluate(items, groups, NO_BOOT)
    acc = next(d for d in res["disparity"] if d["metric"] == "accuracy")
    assert acc["gap"]["value"] == pytest.approx(0.5)
    assert acc["ratio"]["value"] == pytest.approx(0.25 / 0.75)
    assert acc["cv"]["value"] == pytest.approx(np.std([0.75, 0.25, 0.5]) / 0.5)
    assert acc["max_abs_to_overall"]["value"] == pytest.approx(0.25)  # pooled overall 0.5
    assert (acc["best_group"], acc["worst_group"]) == ("A", "B")
    nmae = next(d for d in res["disparity"] if d["metric"] == "nmae")
    assert (nmae["best_group"], nmae["worst_group"]) == ("A", "B")  # NMAE = 1 - accuracy here
    assert nmae["normalised_range"]["value"] == pytest.approx((0.75 - 0.25) / 0.75)
    table = seed003_table(res)
    assert list(table.columns) == ["attribute", "accuracy_normalised_range", "accuracy_cv",
                                   "nmae_normalised_range", "nmae_cv"]  # fmt: skip
    row = table.iloc[0]
    assert row["accuracy_normalised_range"] == pytest.approx(0.5 / 0.75)
    assert row["nmae_cv"] == pytest.approx(np.std([0.25, 0.75, 0.5]) / 0.5)


def test_country_group_is_the_overall_when_present():
    items, groups = _const_items({"A": [1, 1, 1, 0], "B": [1, 0, 0, 0]})
    all_items, all_groups = _const_items({"All respondents": [1, 1, 1, 1]}, attribute="all")
    res = evaluate(pd.concat([items, all_items], ignore_index=True), pd.concat([groups, all_groups]), NO_BOOT)
    acc = next(d for d in res["disparity"] if d["metric"] == "accuracy" and d["attribute"] == "sex")
    assert acc["overall"]["value"] == 1.0
    assert acc["max_abs_to_overall"]["value"] == pytest.approx(0.75)  # |0.25 - 1.0|
    single = next(d for d in res["disparity"] if d["attribute"] == "all")
    assert single["gap"]["value"] is None and single["ratio"]["value"] is None and "note" in single
    assert single["best_group"] is None


def test_degenerate_max_zero_equal_groups_and_all_nan_group():
    items, groups = _const_items({"A": [0, 0], "B": [0, 0]})
    res = evaluate(items, groups, MetricsConfig(n_boot=50))
    acc = next(d for d in res["disparity"] if d["metric"] == "accuracy")
    assert acc["gap"]["value"] == 0.0
    assert acc["ratio"]["value"] is None and acc["normalised_range"]["value"] is None
    assert acc["cv"]["value"] is None
    assert acc["best_group"] is None and acc["worst_group"] is None  # all equal: nobody is best
    # group C has only nominal items: no NMAE, so NMAE disparity uses A and B only
    items2, groups2 = _const_items({"A": [1, 0], "B": [0, 0], "C": [1, 1]})
    items2.loc[items2["group"] == "C", "positions"] = None
    res2 = evaluate(items2, groups2, MetricsConfig(n_boot=50))
    nmae = next(d for d in res2["disparity"] if d["metric"] == "nmae")
    assert nmae["gap"]["value"] == pytest.approx(0.5)
    gc = next(g for g in res2["groups"] if g["group"] == "C")
    assert gc["metrics"]["nmae"] == {"value": None, "ci": None}
    assert gc["flags"]["nmae"]["status"] == "undefined"
    assert gc["metrics"]["accuracy"]["value"] == 1.0
