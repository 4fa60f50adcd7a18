"""Paired question bootstrap: indices, matrix replicates vs a naive loop, coverage, respondent replicates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.errors import ConfigError, DataError
from cvaudit.audit.types import Group, Question
from cvaudit.metrics import MetricsConfig, evaluate
from cvaudit.metrics.aggregate import sum_counts
from cvaudit.metrics.bootstrap import (
    item_respondent_replicates,
    paired_p_value,
    percentile_ci,
    question_indices,
    replicate_counts,
    respondent_replicates,
)
from cvaudit.metrics.disparity import disparity_figures


def test_question_indices_are_seeded_and_in_range():
    a = question_indices(7, 20, seed=3)
    assert a.shape == (20, 7) and a.dtype.kind == "i"
    assert a.min() >= 0 and a.max() < 7
    assert np.array_equal(a, question_indices(7, 20, seed=3))
    assert not np.array_equal(a, question_indices(7, 20, seed=4))
    counts = replicate_counts(a, 7)
    assert np.array_equal(counts[5], np.bincount(a[5], minlength=7))
    assert (counts.sum(axis=1) == 7).all()


def test_matrix_replicates_equal_a_naive_pandas_loop():
    rng = np.random.default_rng(1)
    g, q, b = 5, 12, 40
    mat = rng.random((g, q))
    mat[rng.random((g, q)) < 0.25] = np.nan  # undefined / suppressed cells
    idx = question_indices(q, b, seed=0)
    fast = sum_counts(mat, replicate_counts(idx, q)).group_means()
    frame = pd.DataFrame(mat)
    for r in range(b):
        naive = frame.iloc[:, idx[r]].mean(axis=1, skipna=True).to_numpy()  # resampled columns, repeats kept
        np.testing.assert_allclose(fast[r], naive, rtol=1e-12, equal_nan=True)
        # the gap is recomputed from this replicate's group means (paired draw)
        assert disparity_figures(fast[r])["gap"] == pytest.approx(np.nanmax(naive) - np.nanmin(naive))


def test_paired_p_value_and_percentiles_by_hand():
    assert paired_p_value(np.ones(99)) == pytest.approx(2 * 1 / 100)  # no replicate <= 0
    assert paired_p_value(np.zeros(10)) == 1.0
    d = np.array([-1.0, 1.0, 2.0, 3.0])  # one of four <= 0 -> 2*(1+1)/5
    assert paired_p_value(d) == pytest.approx(0.8)
    lo, hi = percentile_ci(np.arange(101.0)[:, None], 0.9)
    assert (lo[0], hi[0]) == pytest.approx((5.0, 95.0))
    lo, hi = percentile_ci(np.array([[np.nan], [np.nan]]), 0.95)
    assert np.isnan(lo[0]) and np.isnan(hi[0])


def test_coverage_of_group_means_and_gaps_with_known_truth():
    """Simulated audits from a known question population: 95% intervals cover the truth ~95% of the time.

    Each audit draws 120 questions; per question a shared difficulty (which makes the
    groups correlated, so pairing matters) plus group-specific noise. True group means
    are 0.5 and 0.62, so the true gap is 0.12. 1000 audits x 400 replicates.
    """
    rng = np.random.default_rng(20260523)
    n_sim, n_q, n_boot = 1000, 120, 400
    true_means = np.array([0.5, 0.62])
    cover_mean = np.zeros(2)
    cover_gap = 0
    widths = []
    for s in range(n_sim):
        difficulty = rng.normal(0.0, 0.2, size=n_q)
        mat = true_means[:, None] + difficulty[None, :] + rng.normal(0.0, 0.1, size=(2, n_q))
        w = replicate_counts(question_indices(n_q, n_boot, seed=s), n_q)
        reps = sum_counts(mat, w).group_means()
        lo, hi = percentile_ci(reps, 0.95)
        cover_mean += (lo <= true_means) & (true_means <= hi)
        gap = disparity_figures(reps)["gap"]
        glo, ghi = percentile_ci(gap[:, None], 0.95)
        cover_gap += glo[0] <= 0.12 <= ghi[0]
        widths.append(ghi[0] - glo[0])
    rate_mean, rate_gap = cover_mean / n_sim, cover_gap / n_sim
    assert ((0.92 <= rate_mean) & (rate_mean <= 0.98)).all(), rate_mean
    assert 0.92 <= rate_gap <= 0.98, rate_gap
    # not trivially wide: the gap's true SE is sqrt(2 * 0.1^2 / 120); a 95% interval is ~3.92 SE wide
    true_se = np.sqrt(2 * 0.01 / n_q)
    assert np.mean(widths) == pytest.approx(3.92 * true_se, rel=0.15)


def test_respondent_replicates_weighted_shares():
    rng = np.random.default_rng(0)
    same = respondent_replicates(np.array([2, 2, 2, np.nan, -1]), np.array([1, 2, 3, 4, 5.0]), 3, 5, rng)
    np.testing.assert_allclose(same, np.tile([0.0, 0.0, 1.0], (5, 1)))  # invalid codes dropped
    codes = rng.integers(0, 3, size=400).astype(float)
    weights = rng.uniform(0.5, 2.0, size=400)
    reps = respondent_replicates(codes, weights, 3, 2000, rng)
    point = np.array([weights[codes == k].sum() for k in range(3)]) / weights.sum()
    np.testing.assert_allclose(reps.sum(axis=1), 1.0)
    np.testing.assert_allclose(reps.mean(axis=0), point, atol=0.005)
    # bootstrap SE of a weighted share: sqrt(sum w_i^2 (1{c_i=k} - p_k)^2) / sum w_i
    se = np.array([np.sqrt(np.sum(weights**2 * ((codes == k) - point[k]) ** 2)) / weights.sum() for k in range(3)])
    np.testing.assert_allclose(reps.std(axis=0), se, rtol=0.1)


def _items(n_q=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for label in ("A", "B"):
        for q in range(n_q):
            h = rng.dirichlet(np.ones(3) * 2)
            rows.append({"attribute": "sex", "group": label, "question": f"Q{q}", "category": "c",
                         "positions": [0, 1, 2], "model_dist": list(rng.dirichlet(np.ones(3))),
                         "human_dist": list(h), "human_mode": [int(np.argmax(h))]})  # fmt: skip
    groups = pd.DataFrame([{"attribute": "sex", "group": g, "n": 80, "n_eff": 70.0} for g in ("A", "B")])
    return pd.DataFrame(rows), groups


def test_respondent_bootstrap_through_evaluate():
    items, groups = _items()
    n_boot = 200
    rng = np.random.default_rng(5)
    # each item's D_H resampled from 40 synthetic respondents drawn from its own distribution
    reps = []
    for h in items["human_dist"]:
        codes = rng.choice(3, size=40, p=h).astype(float)
        reps.append(respondent_replicates(codes, None, 3, n_boot, rng))
    base = evaluate(items, groups, MetricsConfig(n_boot=n_boot))
    both = evaluate(items, groups, MetricsConfig(n_boot=n_boot, respondents=True), human_replicates=reps)
    assert both["bootstrap"]["respondents"] is True and base["bootstrap"]["respondents"] is False
    # point estimates do not change; the similarity interval widens with survey noise added
    for gb, gq in zip(both["groups"], base["groups"]):
        assert gb["metrics"]["similarity"]["value"] == gq["metrics"]["similarity"]["value"]
    width = lambda r: np.mean([np.diff(g["metrics"]["similarity"]["ci"])[0] for g in r["groups"]])  # noqa: E731
    assert width(both) > width(base)
    with pytest.raises(ConfigError, match="human replicates"):
        evaluate(items, groups, MetricsConfig(n_boot=10, respondents=True))
    with pytest.raises(DataError, match="shape"):
        evaluate(items, groups, MetricsConfig(n_boot=10, respondents=True), human_replicates=reps)


def test_item_respondent_replicates_from_a_survey():
    q = Question(id="Q1", text="t", options=("a", "b"), codes=((1,), (2, 3)), ordinal=True, category="c",
                 positions=(0.0, 1.0))  # fmt: skip
    frame = pd.DataFrame({"Q1": [1.0, 2.0, 3.0, np.nan, 1.0, 1.0]})
    survey = SimpleNamespace(frame=frame, weights=np.ones(6))
    ga = Group("sex", "A", (("sex", "A"),), 3, 3.0, index=(0, 1, 2))
    gb = Group("sex", "B", (("sex", "B"),), 3, 3.0, index=(3, 4, 5))
    items = pd.DataFrame({"attribute": ["sex", "sex"], "group": ["A", "B"], "question": ["Q1", "Q1"]})
    reps = item_respondent_replicates(items, survey, [ga, gb], [q], n_boot=300, seed=0)
    assert reps[0].shape == (300, 2)
    # B's valid answers are all code 1; a draw of only its non-answering member has no D_H (NaN row)
    finite = np.isfinite(reps[1]).all(axis=1)
    np.testing.assert_allclose(reps[1][finite], np.tile([1.0, 0.0], (finite.sum(), 1)))
    assert 0.9 < finite.mean() < 1.0  # (1/3)^3 of draws pick member 3 three times
    assert reps[0][:, 0].mean() == pytest.approx(1 / 3, abs=0.05)  # codes 2 and 3 both map to option b
    # A and B were resampled independently, but all questions of one group share the draw
    q2 = Question(id="Q2", text="t", options=("a", "b"), codes=((1,), (2, 3)), ordinal=True, category="c",
                  positions=(0.0, 1.0))  # fmt: skip
    survey.frame["Q2"] = survey.frame["Q1"]
    two = pd.DataFrame({"attribute": ["sex"] * 2, "group": ["A"] * 2, "question": ["Q1", "Q2"]})
    r1, r2 = item_respondent_replicates(two, survey, [ga], [q, q2], n_boot=50, seed=0)
    np.testing.assert_allclose(r1[:, 0], r2[:, 0])  # same respondents, same code-1 share


def test_one_question_is_tested_when_respondents_are_resampled():
    """With one question only the respondent bootstrap varies the replicates, so only it yields p-values."""
    items, groups = _items(n_q=1)
    rng = np.random.default_rng(6)
    reps = [respondent_replicates(rng.choice(3, size=40, p=h).astype(float), None, 3, 100, rng)
            for h in items["human_dist"]]  # fmt: skip
    resampled = evaluate(items, groups, MetricsConfig(n_boot=100, respondents=True, reference=(("sex", "A"),)),
                         human_replicates=reps)  # fmt: skip
    plain = evaluate(items, groups, MetricsConfig(n_boot=100, reference=(("sex", "A"),)))
    b = {r: next(g for g in res["groups"] if g["group"] == "B") for r, res in (("resampled", resampled), ("plain", plain))}
    assert 0 < b["resampled"]["flags"]["similarity"]["p_value"] <= 1
    assert b["plain"]["flags"]["similarity"]["p_value"] is None
    assert not any("no group is tested" in n for n in resampled["metric_notes"])
