"""The size shift: a small group drawn from the reference's own population is not flagged for its size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cvaudit.metrics import MetricsConfig, evaluate
from cvaudit.metrics import aggregate as agg
from cvaudit.metrics.item import batch_from_items, compute_metrics
from cvaudit.metrics.noise import item_sizes, size_shift

METRICS = ["accuracy", "nmae", "representativeness", "similarity"]


def survey(sizes: dict[str, int], n_q: int, seed: int, model_noise: float = 0.3, shifted: str | None = None):
    """Items for one attribute: every group answers from one population (unless ``shifted``), sampled at its size;
    one model answer for all, close to the population (the case where size alone looks like bias)."""
    rng = np.random.default_rng(seed)
    rows = []
    pops, models, others = [], [], []
    for q in range(n_q):
        k = (3, 4, 5, 10)[q % 4]
        p = rng.dirichlet(np.ones(k))
        z = np.log(p) + model_noise * rng.standard_normal(k)
        pops.append(p)
        models.append(np.exp(z) / np.exp(z).sum())
        others.append(rng.dirichlet(np.ones(k)))
    for label, n in sizes.items():
        for q in range(n_q):
            pop = others[q] if label == shifted else pops[q]
            h = rng.multinomial(n, pop) / n
            rows.append({"attribute": "grp", "group": label, "question": f"Q{q}", "category": "c",
                         "positions": list(range(len(h))), "model_dist": list(models[q]), "human_dist": list(h),
                         "human_mode": [int(i) for i in np.flatnonzero(h >= h.max() - 1e-9)], "n": n,
                         "n_eff": float(n)})  # fmt: skip
    groups = pd.DataFrame({"attribute": "grp", "group": list(sizes), "n": list(sizes.values()),
                           "n_eff": [float(v) for v in sizes.values()]})  # fmt: skip
    return pd.DataFrame(rows), groups


def shifts(items, groups, draws=200, seed=0):
    batch = batch_from_items(items)
    layout = agg.make_layout(items, [(a, g) for a, g in zip(groups["attribute"], groups["group"])])
    rows = layout.attribute_rows()["grp"]
    return size_shift(batch, item_sizes(items, groups), layout, rows, 0, METRICS, seed, draws)


def predicted_and_made(surveys) -> tuple[np.ndarray, np.ndarray]:
    """Over (items, groups) surveys of a "big" and a "small" group: the mean predicted shift of the small group
    and the mean gap (small - big) its sample size made, per metric."""
    gaps, predicted = [], []
    for seed, (items, groups) in enumerate(surveys):
        im = pd.DataFrame(compute_metrics(batch_from_items(items), METRICS))
        im["group"] = items["group"].to_numpy()
        means = im.groupby("group")[METRICS].mean()
        gaps.append((means.loc["small"] - means.loc["big"]).to_numpy())
        s = shifts(items, groups, draws=160, seed=seed)
        predicted.append([s[m][1] for m in METRICS])
    return np.mean(predicted, axis=0), np.mean(gaps, axis=0)


def test_shift_grows_as_the_group_shrinks_and_is_zero_for_the_reference():
    items, groups = survey({"big": 3000, "mid": 300, "small": 30, "tiny": 12}, n_q=60, seed=1)
    s = shifts(items, groups)
    for m in METRICS:
        assert s[m][0] == 0.0  # the reference
    # distances to a sample only grow as the sample shrinks; the modal answer gets less stable
    for m in ("similarity", "representativeness", "accuracy"):
        assert s[m][1] > s[m][2] > s[m][3] and s[m][3] < -0.01, (m, s[m])
    assert s["nmae"][1] < s["nmae"][2] < s["nmae"][3] and s["nmae"][3] > 0.01


def test_shift_predicts_what_resampling_the_population_does():
    """Over many surveys from known populations, the mean shift at n=30 equals the mean gap sample size made."""
    pred, gap = predicted_and_made(
        [survey({"big": 4000, "small": 30}, n_q=40, seed=100 + seed) for seed in range(40)])
    close = [METRICS.index(m) for m in ("nmae", "representativeness", "similarity")]
    np.testing.assert_allclose(pred[close], gap[close], atol=0.01)
    # the modal answer's shift errs on the safe side (it can only remove flags): a little more than sample size made
    acc = METRICS.index("accuracy")
    assert gap[acc] - 0.03 < pred[acc] <= gap[acc] + 0.005, (pred[acc], gap[acc])
    assert gap[METRICS.index("similarity")] < -0.03  # the effect being corrected is not small


def opinions(sizes: dict[str, int], n_q: int, seed: int, concentration: float = 50.0):
    """Groups that really answer differently (each its own Dirichlet draw around a shared base), and a model
    that gives every group exactly its true answers: perfectly aligned, so no gap but sample size."""
    rng = np.random.default_rng(seed)
    truths = {}
    for q in range(n_q):
        k = (3, 4, 5, 10)[q % 4]
        base = rng.dirichlet(np.ones(k))
        for label in sizes:
            truths[(label, q)] = rng.dirichlet(base * concentration + 1e-3)
    rows = []
    for (label, q), p in truths.items():
        n = sizes[label]
        h = rng.multinomial(n, p) / n
        rows.append({"attribute": "grp", "group": label, "question": f"Q{q}", "category": "c",
                     "positions": list(range(len(p))), "model_dist": list(p), "human_dist": list(h),
                     "human_mode": [int(i) for i in np.flatnonzero(h >= h.max() - 1e-9)], "n": n, "n_eff": float(n)})  # fmt: skip
    groups = pd.DataFrame({"attribute": "grp", "group": list(sizes), "n": list(sizes.values()),
                           "n_eff": [float(v) for v in sizes.values()]})  # fmt: skip
    return pd.DataFrame(rows), groups


def test_shift_holds_when_groups_differ_and_the_model_follows_each():
    """A model equal to every group's own true answers: the small group's whole gap is sample size, although
    it does not answer like the reference (the stand-in must not be the reference's answers)."""
    pred, gap = predicted_and_made(
        [opinions({"big": 2000, "small": 30}, n_q=60, seed=300 + seed) for seed in range(12)])
    sim = METRICS.index("similarity")
    assert gap[sim] < -0.08
    dist = [METRICS.index(m) for m in ("representativeness", "similarity")]
    np.testing.assert_allclose(pred[dist], gap[dist], atol=0.01)
    # the modal-answer metrics: most of it (measured 87% on accuracy and NMAE; the reference's answers as the
    # stand-in gave a quarter of the similarity gap here)
    for m in ("accuracy", "nmae"):
        i = METRICS.index(m)
        assert 0.8 * abs(gap[i]) <= abs(pred[i]) <= 1.1 * abs(gap[i]) and np.sign(pred[i]) == np.sign(gap[i]), m
    # and the perfectly aligned small groups are not called significantly worse
    items, groups = opinions({"g0": 500, "g1": 200, "g2": 100, "g3": 30}, n_q=100, seed=7, concentration=100.0)
    res = evaluate(items, groups, MetricsConfig(n_boot=1000, seed=0))
    for g in res["groups"][1:]:
        for m in ("similarity", "representativeness"):
            assert g["flags"][m]["p_holm"] > 0.05, (g["group"], m, g["flags"][m])


def test_flags_net_of_the_shift_stop_flagging_sample_size():
    """Same population, sizes 3000 vs 25: the raw comparison calls the small group worse; net of its size
    shift it is not; a group that truly answers differently is still found."""
    items, groups = survey({"big": 3000, "small": 25, "other": 3000}, n_q=150, seed=7, shifted="other")
    raw = evaluate(items, groups, MetricsConfig(n_boot=400, noise_correction=False))
    net = evaluate(items, groups, MetricsConfig(n_boot=400))
    by = {r["group"]: r["flags"] for r in raw["groups"]}
    bn = {r["group"]: r["flags"] for r in net["groups"]}
    assert by["small"]["similarity"]["p_holm"] < 0.05  # size alone is "significant" on the raw figures
    assert bn["small"]["similarity"]["p_holm"] > 0.05
    assert bn["small"]["similarity"]["noise_shift"] < -0.03 and by["small"]["similarity"]["noise_shift"] is None
    assert all(bn["small"][m]["status"] == "neutral" for m in METRICS)
    assert bn["other"]["similarity"]["p_holm"] < 0.05 and bn["other"]["similarity"]["status"] == "disfavoured"
    # the figures themselves are as measured either way
    assert [g["metrics"] for g in raw["groups"]] == [g["metrics"] for g in net["groups"]]
    assert net["flags"]["noise_corrected"] is True and raw["flags"]["noise_corrected"] is False


def test_shift_is_deterministic_and_needs_sizes():
    items, groups = survey({"big": 500, "small": 40}, n_q=10, seed=3)
    a, b = shifts(items, groups, seed=5), shifts(items, groups, seed=5)
    for m in METRICS:
        assert a[m].tolist() == b[m].tolist()
    no_sizes = items.drop(columns=["n_eff"])
    s = shifts(no_sizes, groups.assign(n_eff=np.nan, n=np.nan))
    assert all(s[m][0] == 0.0 and np.isnan(s[m][1]) for m in METRICS)  # unknown: NaN, never a silent 0
    # a missing n_eff falls back to n; no n at all in the groups frame is not a crash
    np.testing.assert_allclose(shifts(no_sizes, groups.assign(n_eff=np.nan))["similarity"], a["similarity"], atol=0.01)
    res = evaluate(no_sizes, groups[["attribute", "group"]], MetricsConfig(n_boot=100))
    small = next(g for g in res["groups"] if g["group"] == "small")
    assert all(f["noise_shift"] is None and f["noise_removed"] is None for f in small["flags"].values())
    assert any("no sample size for small" in n and "raw figures" in n for n in res["metric_notes"])


def test_a_small_named_reference_still_gets_the_shift_right():
    """A small reference the run named: small minus big is the same sample-size effect seen from either side."""
    gaps, by_big, by_small = [], [], []
    for seed in range(30):
        items, groups = survey({"big": 4000, "small": 30}, n_q=40, seed=300 + seed)
        layout = agg.make_layout(items, [(a, g) for a, g in zip(groups["attribute"], groups["group"])])
        rows, batch, sizes = layout.attribute_rows()["grp"], batch_from_items(items), item_sizes(items, groups)
        by_big.append(size_shift(batch, sizes, layout, rows, 0, ["similarity"], seed)["similarity"][1])
        by_small.append(-size_shift(batch, sizes, layout, rows, 1, ["similarity"], seed)["similarity"][0])
        im = compute_metrics(batch, ["similarity"])["similarity"]
        gaps.append(im[items["group"].to_numpy() == "small"].mean() - im[items["group"].to_numpy() == "big"].mean())
    # small minus big, seen from either reference, matches what sample size did
    np.testing.assert_allclose([np.mean(by_big), np.mean(by_small)], [np.mean(gaps)] * 2, atol=0.01)


@pytest.mark.parametrize("n_boot", [0])
def test_no_bootstrap_no_shift(n_boot):
    items, groups = survey({"big": 500, "small": 40}, n_q=10, seed=3)
    res = evaluate(items, groups, MetricsConfig(n_boot=n_boot))
    assert res["flags"]["noise_corrected"] is False


@pytest.mark.parametrize("respondents", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_shift_only_ever_removes_flags(seed, respondents):
    """Net of the size shift a p-value can only rise and a flag only disappear, with or without resampled
    respondents: the correction never adds a gap."""
    rng = np.random.default_rng(seed)
    sizes = {f"g{i}": int(n) for i, n in enumerate(rng.integers(20, 2000, size=6))}
    sizes["g0"], sizes["g3"] = 3000, 2500  # the reference; a group that truly answers differently, easy to find
    items, groups = survey(sizes, n_q=60, seed=seed, model_noise=float(rng.uniform(0.2, 1.0)), shifted="g3")
    reps = None
    if respondents:  # survey replicates of each item: its answers redrawn at its size
        reps = [rng.multinomial(int(n), np.asarray(h), size=300) / int(n) for h, n in zip(items["human_dist"], items["n"])]
    raw = evaluate(items, groups, MetricsConfig(n_boot=300, noise_correction=False, respondents=respondents), reps)
    net = evaluate(items, groups, MetricsConfig(n_boot=300, respondents=respondents), reps)
    flagged = 0
    for r, t in zip(raw["groups"], net["groups"]):
        for m in METRICS:
            fr, fn = r["flags"][m], t["flags"][m]
            if fr["status"] == "reference":
                assert fn["noise_removed"] == 0.0
                continue
            assert fn["p_holm"] >= fr["p_holm"] - 1e-12, (r["group"], m)
            assert fn["status"] in (fr["status"], "neutral"), (r["group"], m)
            assert abs(fn["noise_removed"]) <= abs(fn["noise_shift"]) + 1e-12
            flagged += fr["status"] != "neutral"
    assert flagged  # the shifted group gives the check something to hold


def test_gap_from_size_explains_a_gap_between_groups_of_one_population():
    items, groups = survey({"big": 4000, "small": 30}, n_q=120, seed=11)
    res = evaluate(items, groups, MetricsConfig(n_boot=200))
    d = next(e for e in res["disparity"] if e["metric"] == "similarity")
    assert (d["best_group"], d["worst_group"]) == ("big", "small")
    assert d["gap"]["value"] > 0.05 and abs(d["gap_from_size"] - d["gap"]["value"]) < 0.02  # all of it, nearly
    raw = evaluate(items, groups, MetricsConfig(n_boot=200, noise_correction=False))
    assert all(e["gap_from_size"] is None for e in raw["disparity"])
