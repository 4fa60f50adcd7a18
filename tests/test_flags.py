"""Flags: Holm by hand, reference choice, tau band with CI and significance on constructed audits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.errors import ConfigError
from cvaudit.metrics import MetricsConfig, evaluate, holm
from cvaudit.metrics.flags import choose_reference, flag_attribute, ratio_to_reference


def test_holm_against_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, np.nan, 0.01])  # NaN skipped: m = 2
    np.testing.assert_allclose(out[[0, 2]], [0.2, 0.02])
    assert np.isnan(out[1])
    np.testing.assert_allclose(holm([0.6, 0.9]), [1.0, 1.0])  # capped at 1


def test_reference_choice():
    assert choose_reference(["a", "b", "c"], [10, 30, 30], "x", {}) == 1  # largest n, first on ties
    assert choose_reference(["a", "b"], [None, 5], "x", {}) == 1
    assert choose_reference(["a", "b"], [10, 30], "x", {"x": "a"}) == 0
    with pytest.raises(ConfigError, match="valid groups: a, b"):
        choose_reference(["a", "b"], [10, 30], "x", {"x": "zz"})


def test_ratio_inverts_for_lower_is_better():
    assert ratio_to_reference(np.array([0.4]), 0.5, True)[0] == pytest.approx(0.8)
    assert ratio_to_reference(np.array([0.4]), 0.2, False)[0] == pytest.approx(0.5)  # twice the error: worse
    assert ratio_to_reference(np.array([0.0]), 0.0, True)[0] == 1.0


def test_flag_attribute_needs_ci_band_and_significance():
    b = 500
    rng = np.random.default_rng(0)
    ref = rng.normal(0.6, 0.02, b)
    reps = np.column_stack([ref, ref - 0.3 + rng.normal(0, 0.01, b), ref - 0.02 + rng.normal(0, 0.01, b)])
    point = np.array([0.6, 0.3, 0.58])
    ci = (np.quantile(reps, 0.025, axis=0), np.quantile(reps, 0.975, axis=0))
    flags = flag_attribute(point, reps, ci, 0, True, 0.8, 0.05)
    assert [f.status for f in flags] == ["reference", "disfavoured", "neutral"]
    assert flags[1].ratio == pytest.approx(0.5)
    assert flags[1].p_value == pytest.approx(2 / (b + 1))  # every replicate difference is negative
    assert flags[1].p_holm == pytest.approx(min(1.0, 2 * flags[1].p_value))  # two tests in the family
    # the slightly lower group: significant maybe, but inside the tau band -> neutral
    assert 0.8 <= flags[2].ratio <= 1.25
    # without replicates there is no significance: nothing is flagged
    assert [f.status for f in flag_attribute(point, None, None, 0, True, 0.8, 0.05)][1] == "neutral"


def _audit(acc: dict[str, float], n: dict[str, int], n_q: int = 80, seed: int = 0):
    """Items whose per-question accuracy is Bernoulli(acc[group]); NMAE follows (1 - accuracy) on K = 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, p in acc.items():
        hits = rng.random(n_q) < p
        for q, hit in enumerate(hits):
            rows.append({"attribute": "ethnicity", "group": label, "question": f"Q{q}", "category": "c",
                         "positions": [0, 1], "model_dist": [0.8, 0.2] if hit else [0.2, 0.8],
                         "human_dist": [0.7, 0.3], "human_mode": [0]})  # fmt: skip
    groups = pd.DataFrame([{"attribute": "ethnicity", "group": g, "n": n[g], "n_eff": n[g] * 0.9} for g in acc])
    return pd.DataFrame(rows), groups


def test_constructed_audit_flags_clearly_worse_and_better_groups_only():
    acc = {"Chinese": 0.6, "Malay": 0.2, "Indian": 0.58, "Other": 0.95}
    items, groups = _audit(acc, {"Chinese": 1200, "Malay": 300, "Indian": 200, "Other": 60})
    res = evaluate(items, groups, MetricsConfig(n_boot=1000, seed=1))
    assert res["flags"]["reference"] == {"ethnicity": "Chinese"}  # the largest group
    status = {g["group"]: g["flags"]["accuracy"]["status"] for g in res["groups"]}
    assert status == {"Chinese": "reference", "Malay": "disfavoured", "Indian": "neutral", "Other": "favoured"}
    # NMAE is lower-is-better: the group with more errors is still "disfavoured"
    nstatus = {g["group"]: g["flags"]["nmae"]["status"] for g in res["groups"]}
    assert nstatus["Malay"] == "disfavoured" and nstatus["Indian"] == "neutral"
    malay = next(g for g in res["groups"] if g["group"] == "Malay")
    assert malay["flags"]["nmae"]["ratio"] < 0.8
    assert malay["flags"]["accuracy"]["p_holm"] < 0.05
    assert malay["flags"]["accuracy"]["p_holm"] >= malay["flags"]["accuracy"]["p_value"]


def test_user_reference_and_unknown_references():
    items, groups = _audit({"A": 0.5, "B": 0.5}, {"A": 100, "B": 50})
    res = evaluate(items, groups, MetricsConfig(n_boot=20, reference=(("ethnicity", "B"),)))
    assert res["flags"]["reference"] == {"ethnicity": "B"}
    with pytest.raises(ConfigError, match="valid groups: A, B"):
        evaluate(items, groups, MetricsConfig(n_boot=20, reference=(("ethnicity", "Zulu"),)))
    with pytest.raises(ConfigError, match="attributes in this audit: ethnicity"):
        evaluate(items, groups, MetricsConfig(n_boot=20, reference=(("sex", "Female"),)))


def test_holm_floor_is_noted_when_no_group_can_be_flagged():
    """30 groups far below the reference: 1,000 replicates cannot flag them (29 x 2/1001 > 0.05); 1,160 can."""
    from cvaudit.metrics.flags import holm_floor, replicates_to_flag

    assert holm_floor(29, 1000) == pytest.approx(58 / 1001) and holm_floor(3, 0) == 1.0
    assert replicates_to_flag(29, 0.05) == 1160
    assert holm_floor(29, 1160) < 0.05 <= holm_floor(29, 1159)
    acc = {"Ref": 0.97, **{f"G{i:02d}": 0.03 for i in range(29)}}
    items, groups = _audit(acc, {"Ref": 5000, **{f"G{i:02d}": 100 for i in range(29)}}, n_q=40)
    few = evaluate(items, groups, MetricsConfig(n_boot=1000, seed=1))
    assert {g["flags"]["accuracy"]["status"] for g in few["groups"]} == {"reference", "neutral"}
    (note,) = [n for n in few["metric_notes"] if "no group can be flagged" in n]
    assert "'ethnicity'" in note and "0.058" in note and "--n-boot 1160" in note
    enough = evaluate(items, groups, MetricsConfig(n_boot=1160, seed=1))
    assert not any("no group can be flagged" in n for n in enough["metric_notes"])
    assert {g["flags"]["accuracy"]["status"] for g in enough["groups"]} == {"reference", "disfavoured"}


@pytest.mark.parametrize("m, alpha", [(7, 0.07), (29, 0.05), (1, 0.05), (3, 0.01), (10, 0.1), (99, 0.05),
                                      (6, 0.03), (14, 0.07), (0, 0.05), (2, 1.0), (1, 1.5)])  # fmt: skip
def test_replicates_to_flag_is_the_smallest_that_works(m, alpha):
    """floor(2m / alpha) is one short for (7, 0.07): holm_floor(7, 199) == 0.07 exactly, not below it."""
    from cvaudit.metrics.flags import holm_floor, replicates_to_flag

    b = replicates_to_flag(m, alpha)
    assert holm_floor(m, b) < alpha
    assert b == 0 or holm_floor(m, b - 1) >= alpha
    if (m, alpha) == (7, 0.07):
        assert b == 200


def test_replicates_to_flag_refuses_a_non_positive_alpha():
    from cvaudit.metrics.flags import replicates_to_flag

    with pytest.raises(ValueError, match="alpha must be a positive finite number"):
        replicates_to_flag(3, 0.0)
