"""Baselines (uniform answer, the country's answer for everyone) and the spread of answers across groups."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from cvaudit.metrics import MetricsConfig, evaluate
from scipy.spatial.distance import jensenshannon
from test_evaluate import make_items


def _population(items: pd.DataFrame, seed: int = 5) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {q: list(rng.dirichlet(np.ones(len(f["human_dist"].iloc[0])))) for q, f in items.groupby("question")}


def test_uniform_baseline_is_the_expectation_of_a_random_choice():
    items, groups = make_items(seed=3)
    items.loc[5, "human_mode"] = [0, 1]  # a tied mode counts for either choice
    ev = evaluate(items, groups, MetricsConfig(n_boot=50, seed=1))
    uni = ev["baselines"]["uniform"]
    acc, nmae, rep, sim = [], [], [], []
    for row in items.itertuples():
        k = len(row.human_dist)
        h = np.asarray(row.human_dist) / np.sum(row.human_dist)
        acc.append(len(row.human_mode) / k)
        sim.append(1 - jensenshannon(np.full(k, 1 / k), h, base=2))
        if row.positions is not None:
            pos = np.asarray(row.positions, dtype=float)
            modes = np.asarray(row.human_mode)
            nmae.append(np.mean([np.min(np.abs(pos[modes] - pos[j])) for j in range(k)]) / (pos.max() - pos.min()))
            cdf = np.cumsum(np.full(k, 1 / k) - h)[:-1]
            rep.append(1 - np.sum(np.abs(cdf) * np.diff(pos)) / (pos.max() - pos.min()))
    for name, want in (("accuracy", acc), ("nmae", nmae), ("representativeness", rep), ("similarity", sim)):
        assert uni["overall"][name]["value"] == pytest.approx(np.mean(want), abs=1e-7), name
        diff = ev["overall"][name]["value"] - uni["overall"][name]["value"]
        assert uni["model_minus_baseline"][name]["value"] == pytest.approx(diff, abs=1e-12)
    by_group = {(g["attribute"], g["group"]): g["metrics"] for g in uni["groups"]}
    first = items[(items["attribute"] == "sex") & (items["group"] == "Female")]
    assert by_group[("sex", "Female")]["accuracy"] == pytest.approx(
        np.mean([len(m) / len(h) for m, h in zip(first["human_mode"], first["human_dist"])]))  # fmt: skip
    assert "population" not in ev["baselines"]  # only with the country's distributions


def test_uniform_tie_breaks_only_for_metrics_that_read_the_choice():
    """A metric of the whole distribution (reads_choice=False) is scored once on the uniform answer; one that
    reads the top option (the default for a plug-in) is averaged over the K tie-breaks."""
    from cvaudit.metrics import compute_metrics, register_metric
    from cvaudit.metrics.baselines import uniform_values
    from cvaudit.metrics.item import batch_from_items
    from cvaudit.metrics.registry import unregister_metric

    @register_metric("first_is_top_test")
    def first_is_top(b):
        return (b.model_choice == 0).astype(float)

    @register_metric("mass_on_first_test", reads_choice=False)
    def mass_on_first(b):
        return b.model[:, 0]

    try:
        items, _ = make_items(seed=4)
        batch = batch_from_items(items)
        names = ["first_is_top_test", "mass_on_first_test", "similarity", "accuracy"]
        got = uniform_values(batch, names)
        k = batch.k.astype(float)
        np.testing.assert_allclose(got["first_is_top_test"], 1 / k)  # one tie-break in K puts option 0 on top
        np.testing.assert_allclose(got["mass_on_first_test"], 1 / k)  # the uniform answer itself, no tie-break
        # similarity on the plain uniform answer equals the tie-break average to rounding
        kmax = batch.model.shape[1]
        uniform = np.where(np.arange(kmax)[None, :] < batch.k[:, None], 1 / k[:, None], 0.0)
        plain = compute_metrics(replace(batch, model=uniform), ["similarity"])["similarity"]
        np.testing.assert_allclose(got["similarity"], plain, atol=1e-12)
    finally:
        unregister_metric("first_is_top_test")
        unregister_metric("mass_on_first_test")


def test_population_baseline_and_paired_difference():
    items, groups = make_items(seed=4)
    population = _population(items)
    ev = evaluate(items, groups, MetricsConfig(n_boot=200, seed=2), population=population)
    pop = ev["baselines"]["population"]
    # scored by hand: the population distribution as the model's answer to every item
    as_model = items.assign(model_dist=[population[q] for q in items["question"]])
    ref = evaluate(as_model, groups, MetricsConfig(n_boot=200, seed=2))
    for name in ("accuracy", "nmae", "representativeness", "similarity"):
        assert pop["overall"][name] == pytest.approx(ref["overall"][name], abs=1e-12), name
    # paired: a model that *is* the baseline differs from it by exactly zero in every replicate
    same = evaluate(as_model, groups, MetricsConfig(n_boot=200, seed=2), population=population)
    for name, fig in same["baselines"]["population"]["model_minus_baseline"].items():
        assert fig["value"] == pytest.approx(0.0, abs=1e-12) and fig["ci"] == pytest.approx([0.0, 0.0], abs=1e-12), name
    # unpaired replicates would not give zero width: the baseline's own interval is wide
    lo, hi = pop["overall"]["similarity"]["ci"]
    assert hi - lo > 0.01


def test_population_baseline_skips_questions_without_a_distribution():
    items, groups = make_items(seed=6)
    population = _population(items)
    del population["Q3"]
    population["Q4"] = population["Q4"][:-1]  # wrong number of options: not used
    ev = evaluate(items, groups, MetricsConfig(n_boot=20), population=population)
    kept = items[~items["question"].isin(["Q3", "Q4"])]
    ref = evaluate(kept.assign(model_dist=[population[q] for q in kept["question"]]), groups,
                   MetricsConfig(n_boot=20))  # fmt: skip
    assert ev["baselines"]["population"]["overall"]["similarity"]["value"] == pytest.approx(
        ref["overall"]["similarity"]["value"], abs=1e-12)  # fmt: skip


def test_spread_is_the_mean_pairwise_js_distance_of_the_groups_answers():
    items, groups = make_items(seed=7)
    ev = evaluate(items, groups, MetricsConfig(n_boot=100, seed=3))
    spread = {s["attribute"]: s for s in ev["spread"]}
    assert set(spread) == {"sex", "age"}
    for attr, side, col in (("age", "model", "model_dist"), ("age", "survey", "human_dist"), ("sex", "survey", "human_dist")):
        sub = items[items["attribute"] == attr]
        per_q = []
        for _q, f in sub.groupby("question"):
            dists = [np.asarray(d) / np.sum(d) for d in f[col]]
            per_q.append(np.mean([jensenshannon(a, b, base=2) for a, b in itertools.combinations(dists, 2)]))
        assert spread[attr][side]["value"] == pytest.approx(np.mean(per_q), abs=1e-7), (attr, side)
        lo, hi = spread[attr][side]["ci"]
        assert lo <= spread[attr][side]["value"] <= hi
    s = spread["age"]
    assert s["ratio"]["value"] == pytest.approx(s["model"]["value"] / s["survey"]["value"])
    assert s["n_questions"] == items["question"].nunique()
    # a model that gives every group the same answer does not spread at all
    flat = items.assign(model_dist=[[1 / len(d)] * len(d) for d in items["human_dist"]])
    for s in evaluate(flat, groups, MetricsConfig(n_boot=20))["spread"]:
        assert s["model"]["value"] == pytest.approx(0.0, abs=1e-7) and s["ratio"]["value"] == pytest.approx(0.0, abs=1e-7)


def test_population_distributions_are_the_weighted_shares_of_the_whole_sample():
    from cvaudit.audit.groundtruth import population_distributions
    from cvaudit.audit.questions import load_bank
    from cvaudit.audit.survey import demo_survey

    survey = demo_survey("SG")
    bank = load_bank()
    qs = [bank["Q1"], bank["Q46"], bank["Q152"]]
    got = population_distributions(survey, qs)
    for q in qs:
        answers = survey.frame[q.id]
        mass = np.array([survey.weights[answers.isin(codes).to_numpy()].sum() for codes in q.codes])
        np.testing.assert_allclose(got[q.id], mass / mass.sum(), atol=1e-12)


def test_baseline_and_spread_frames_flatten_the_results():
    from cvaudit.metrics import baseline_frame, spread_frame
    from results_factory import make_results

    rec = make_results(n_questions=6, n_boot=50)
    base = baseline_frame(rec)
    assert set(base["baseline"]) == {"uniform", "population"} and len(base) == 2 * len(rec["overall"])
    row = base[(base["baseline"] == "uniform") & (base["metric"] == "similarity")].iloc[0]
    fig = rec["baselines"]["uniform"]["model_minus_baseline"]["similarity"]
    assert (row["diff"], row["diff_lo"], row["diff_hi"]) == (fig["value"], *fig["ci"])
    spread = spread_frame(rec)
    assert list(spread["attribute"]) == [s["attribute"] for s in rec["spread"]]
    assert spread["ratio"].tolist() == pytest.approx([s["ratio"]["value"] for s in rec["spread"]])
    del rec["baselines"], rec["spread"]
    assert baseline_frame(rec).empty and spread_frame(rec).empty and "diff_lo" in baseline_frame(rec).columns


def _survey(n_sizes, n_q=60, differ=0.0, seed=0):
    """Groups of one population (differ=0) or of shifted ones, each survey drawn at its size."""
    rng = np.random.default_rng(seed)
    rows, grows = [], []
    base = [rng.dirichlet(np.ones(4) * 3) for _ in range(n_q)]
    for gi, n in enumerate(n_sizes):
        grows.append({"attribute": "sex", "group": f"g{gi}", "n": n, "n_eff": float(n)})
        for q in range(n_q):
            p = base[q] if not differ else (1 - differ) * base[q] + differ * rng.dirichlet(np.ones(4))
            h = rng.multinomial(n, p) / n
            rows.append({"attribute": "sex", "group": f"g{gi}", "question": f"Q{q}", "positions": [0, 1, 2, 3],
                         "model_dist": list(p), "human_dist": list(h), "human_mode": [int(np.argmax(h))],
                         "n": n, "n_eff": float(n)})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(grows)


def test_spread_reports_the_noise_floor_sampling_alone_gives():
    # one population: the survey's spread is sampling noise, and survey_noise says how much
    items, groups = _survey([40, 60, 300])
    s = evaluate(items, groups, MetricsConfig(n_boot=50))["spread"][0]
    assert s["survey"]["value"] > 0.05 and s["survey_noise"] == pytest.approx(s["survey"]["value"], rel=0.15)
    # groups that really differ and large samples: the floor is a small part of the spread
    items, groups = _survey([3000, 3000, 3000], differ=0.5, seed=1)
    s = evaluate(items, groups, MetricsConfig(n_boot=50))["spread"][0]
    assert s["survey_noise"] < 0.2 * s["survey"]["value"]
    # deterministic for a seed; no sizes known: no floor
    again = evaluate(items, groups, MetricsConfig(n_boot=50))["spread"][0]
    assert again["survey_noise"] == s["survey_noise"]
    bare = evaluate(items.drop(columns=["n_eff"]), groups.drop(columns=["n", "n_eff"]), MetricsConfig(n_boot=50))
    assert bare["spread"][0]["survey_noise"] is None


def test_whole_country_cells_get_no_population_baseline():
    """For the whole-country group the population's answers are its own survey answers: no baseline there."""
    items, groups = make_items(seed=8, groups={"all": ["All respondents"], "sex": ["Female", "Male"]})
    population = _population(items)
    ev = evaluate(items, groups, MetricsConfig(n_boot=20), population=population)
    pop = ev["baselines"]["population"]
    n_sex = int((items["attribute"] == "sex").sum())
    assert pop["n_cells"]["similarity"] == n_sex and ev["baselines"]["uniform"]["n_cells"]["similarity"] == len(items)
    assert next(g for g in pop["groups"] if g["attribute"] == "all")["metrics"]["similarity"] is None
    only_country = items[items["attribute"] == "all"]
    ev = evaluate(only_country, groups[groups["attribute"] == "all"], MetricsConfig(n_boot=20), population=population)
    assert "population" not in ev["baselines"] and "uniform" in ev["baselines"]


def test_respondent_bootstrap_reaches_the_baseline_intervals():
    """With --respondent-bootstrap both sides of model - baseline are scored against the same resampled survey."""
    from cvaudit.metrics.bootstrap import respondent_replicates
    from test_bootstrap import _items

    items, groups = _items(n_q=1)  # one question: the question bootstrap alone cannot vary
    n_boot, rng = 300, np.random.default_rng(11)
    reps = [respondent_replicates(rng.choice(3, size=30, p=h).astype(float), None, 3, n_boot, rng)
            for h in items["human_dist"]]  # fmt: skip
    population = _population(items)
    plain = evaluate(items, groups, MetricsConfig(n_boot=n_boot), population=population)["baselines"]
    both = evaluate(items, groups, MetricsConfig(n_boot=n_boot, respondents=True), human_replicates=reps,
                    population=population)["baselines"]  # fmt: skip
    assert plain["uniform"]["respondents"] is False and both["uniform"]["respondents"] is True
    for key in ("uniform", "population"):
        lo, hi = plain[key]["model_minus_baseline"]["similarity"]["ci"]
        assert lo == pytest.approx(hi)  # one question: zero width without the survey's sampling error
        assert both[key]["model_minus_baseline"]["similarity"]["value"] == plain[key]["model_minus_baseline"]["similarity"]["value"]
    # by hand: replicate b scores the model and the uniform answer against survey replicate b
    sim = lambda p, h: 1 - jensenshannon(p, h, base=2)  # noqa: E731
    diffs = [np.mean([sim(np.asarray(m), r[b] / r[b].sum()) - sim(np.full(3, 1 / 3), r[b] / r[b].sum())
                      for m, r in zip(items["model_dist"], reps)]) for b in range(n_boot)]  # fmt: skip
    got = both["uniform"]["model_minus_baseline"]["similarity"]["ci"]
    assert got == pytest.approx(list(np.quantile(diffs, [0.025, 0.975])), abs=1e-9)
    assert got[1] - got[0] > 0.01
    # a model that is the population baseline still differs from it by exactly zero in every replicate
    as_pop = items.assign(model_dist=[population[q] for q in items["question"]])
    same = evaluate(as_pop, groups, MetricsConfig(n_boot=n_boot, respondents=True), human_replicates=reps,
                    population=population)["baselines"]["population"]  # fmt: skip
    assert same["model_minus_baseline"]["similarity"]["ci"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert same["overall"]["similarity"]["ci"][1] > same["overall"]["similarity"]["ci"][0]
