"""Baselines and group spread: what the figures mean next to a model that knows nothing, or only the country.

A figure alone does not say whether the model is any good: similarity and
representativeness are high even for a uniform answer, and accuracy is 1/K by
chance. Two reference "models" are scored on exactly the same items, with the same
paired question bootstrap as the audited model, so "model minus baseline" gets its
own interval:

* ``uniform``: every option equally likely. For metrics that read the model's top
  option (accuracy, NMAE) a uniform answer has no top option, so its value is the
  expectation over a choice made at random: the metric is averaged over the K
  choices (a vanishing tie-break toward each option in turn), which leaves the
  distribution metrics at the uniform distribution's own value.
* ``population``: every group answered with the whole country's survey distribution
  (all respondents, weighted). A persona method that does not beat it adds nothing
  over knowing the country; it is only computed when the caller gives those
  distributions (a run always does).

``group_spread`` measures how much the model's answers differ between the groups of
an attribute (mean pairwise Jensen-Shannon distance per question, averaged over the
questions), next to the same figure for the survey: a model whose persona prompts
barely move it shows a spread far below the survey's, and its group gaps then mostly
mirror differences between the survey groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import aggregate as agg
from .bootstrap import percentile_ci
from .item import ItemBatch, compute_metrics, js_distance

if TYPE_CHECKING:
    import pandas as pd

TIE_BREAK = 1e-9  # moves a uniform answer's top option without changing its distribution metrics
BASELINE_TEXT = {
    "uniform": "every option equally likely (choice-based metrics: expected value of a random choice)",
    "population": "every group answered with the whole country's survey distribution",
}


_fig = agg.figure


def uniform_values(batch: ItemBatch, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-item metric values of a uniform answer, averaged over the K tie-breaks.

    Tie-break j only exists for the items with more than j options, so each pass scores those alone.
    Metrics of the whole distribution (``reads_choice=False``) are scored once, on the uniform answer
    itself: the tie-breaks only move its top option.
    """
    from .registry import metric_specs

    n, kmax = batch.model.shape
    cols = np.arange(kmax)[None, :]
    live = cols < batch.k[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        base = np.where(live, 1.0 / np.maximum(batch.k[:, None], 1), 0.0)
    specs = metric_specs()
    whole = [m for m in names if m in specs and not specs[m].reads_choice]
    choice = [m for m in names if m not in whole]
    out = compute_metrics(dataclasses.replace(batch, model=base), whole) if whole else {}
    totals = {m: np.zeros(n) for m in choice}
    for j in range(kmax if choice else 0):
        use = np.flatnonzero(batch.k > j)  # option j exists for these items
        if not use.size:
            continue
        model = base[use].copy()
        model[:, j] += TIE_BREAK
        model /= model.sum(axis=1, keepdims=True)
        model[~live[use]] = 0.0
        sub = batch.take(use)
        values = compute_metrics(dataclasses.replace(sub, model=model), choice)
        for m in choice:
            totals[m][use] += values[m]
    with np.errstate(invalid="ignore", divide="ignore"):
        out.update({m: np.where(batch.k > 0, totals[m] / np.maximum(batch.k, 1), np.nan) for m in choice})
    return out


def _population_model(batch: ItemBatch, questions: Sequence[str],
                      population: Mapping[str, Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each item's whole-country distribution (n, K) and whether it has one (n,)."""
    n, kmax = batch.model.shape
    model = np.zeros((n, kmax))
    known = np.zeros(n, dtype=bool)
    for i, q in enumerate(questions):
        dist = population.get(str(q))
        k = int(batch.k[i])
        if dist is None or len(dist) != k or k == 0:
            continue
        d = np.asarray(dist, dtype=float)
        if not np.isfinite(d).all() or d.sum() <= 0:
            continue
        model[i, :k] = d / d.sum()
        known[i] = True
    return model, known


def population_values(batch: ItemBatch, questions: Sequence[str], population: Mapping[str, Sequence[float]],
                      names: Sequence[str]) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-item metric values when every group gets its question's whole-country distribution."""
    model, known = _population_model(batch, questions, population)
    return compute_metrics(dataclasses.replace(batch, model=model, valid=batch.valid & known), list(names))


# A baseline "side": per-item values of the baseline on a batch whose items are tiled ``times`` times
# (``times`` = 1 for the point estimate, a block of respondent replicates otherwise).
Side = Callable[[ItemBatch, int], dict[str, np.ndarray]]


def _sides(batch: ItemBatch, items: pd.DataFrame, names: Sequence[str], population: Mapping[str, Sequence[float]] | None,
           country_attribute: str) -> dict[str, Side]:  # fmt: skip
    sides: dict[str, Side] = {"uniform": lambda b, _times: uniform_values(b, names)}
    if population is not None:
        model, known = _population_model(batch, items["question"].astype(str).tolist(), population)
        # the whole-country group's own answers are the population's: a baseline it cannot be compared with
        own = (items["attribute"].astype(str) == country_attribute).to_numpy()

        def population_side(b: ItemBatch, times: int) -> dict[str, np.ndarray]:
            tile = (lambda a: np.tile(a, (times,) + (1,) * (a.ndim - 1))) if times > 1 else (lambda a: a)
            values = compute_metrics(dataclasses.replace(b, model=tile(model), valid=b.valid & tile(known)),
                                     list(names))  # fmt: skip
            return {m: np.where(tile(own), np.nan, v) for m, v in values.items()}

        sides["population"] = population_side
    return sides


def _paired(model_m: np.ndarray, base_m: np.ndarray, reps_m: np.ndarray | None, reps_b: np.ndarray | None,
            level: float) -> dict[str, Any]:  # fmt: skip
    """Overall baseline figure and model-minus-baseline, from the point matrices and paired replicate means."""
    n_q = model_m.shape[1]
    point_b = agg.sum_counts(base_m, agg.point_weights(n_q)).pooled()[0]
    point_m = agg.sum_counts(model_m, agg.point_weights(n_q)).pooled()[0]
    if reps_m is not None and reps_b is not None and reps_b.shape[0]:
        blo, bhi = percentile_ci(reps_b[:, None], level)
        dlo, dhi = percentile_ci((reps_m - reps_b)[:, None], level)
        return {"overall": _fig(point_b, blo[0], bhi[0]), "model_minus_baseline": _fig(point_m - point_b, dlo[0], dhi[0])}
    return {"overall": _fig(point_b), "model_minus_baseline": _fig(point_m - point_b)}


def _both(model_m: np.ndarray, base_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two matrices on the cells both define: the same cells on both sides of the difference."""
    both = np.isfinite(base_m) & np.isfinite(model_m)
    return np.where(both, model_m, np.nan), np.where(both, base_m, np.nan)


class RespondentPairs:
    """Per baseline and metric, the (model, baseline) overall mean of every replicate when the survey's
    respondents are resampled too: replicate b scores both against survey replicate b and question draw b.

    Fed block by block (:meth:`add`) by the model's own replicate pass, so each block of resampled
    items is built and scored for the model once.
    """

    def __init__(self, batch: ItemBatch, items: pd.DataFrame, names: Sequence[str], layout: agg.Layout,
                 weights: np.ndarray, population: Mapping[str, Sequence[float]] | None = None,
                 country_attribute: str = "all") -> None:  # fmt: skip
        self.sides = _sides(batch, items, names, population, country_attribute)
        self.names, self.layout, self.weights = list(names), layout, weights
        n_boot = weights.shape[0]
        self.means = {k: {m: (np.full(n_boot, np.nan), np.full(n_boot, np.nan)) for m in self.names}
                      for k in self.sides}  # fmt: skip

    def add(self, b0: int, b1: int, rep_batch: ItemBatch, model_values: Mapping[str, np.ndarray]) -> None:
        """Replicates b0..b1: ``rep_batch`` holds the items tiled b1 - b0 times, ``model_values`` the model's metrics."""
        times = b1 - b0
        for key, side in self.sides.items():
            base_values = side(rep_batch, times)
            for m in self.names:
                pm, pb = _both(agg.to_matrix(model_values[m].reshape(times, -1), self.layout),
                               agg.to_matrix(base_values[m].reshape(times, -1), self.layout))  # fmt: skip
                self.means[key][m][0][b0:b1] = agg.sum_counts(pm, self.weights[b0:b1]).pooled()
                self.means[key][m][1][b0:b1] = agg.sum_counts(pb, self.weights[b0:b1]).pooled()


def baselines(batch: ItemBatch, items: pd.DataFrame, layout: agg.Layout, model_values: Mapping[str, np.ndarray],
              weights: np.ndarray, level: float, population: Mapping[str, Sequence[float]] | None = None,
              country_attribute: str = "all", resampled: RespondentPairs | None = None) -> dict[str, Any]:  # fmt: skip
    """results.json "baselines": per baseline, its overall figure, the model's paired difference and group means.

    The whole-country group (``country_attribute``) is left out of the population baseline: there the
    population's distribution *is* the group's own survey answer, a baseline that cannot be beaten. A run
    with no other group gets no population baseline. ``resampled`` (filled by the respondent bootstrap,
    when the survey is resampled too) puts the survey's sampling error into the intervals: both sides of
    each replicate are scored against the same resampled survey.
    """
    names = list(model_values)
    sides = resampled.sides if resampled is not None else _sides(batch, items, names, population, country_attribute)
    found = {key: side(batch, 1) for key, side in sides.items()}
    if "population" in found and all(np.isnan(v).all() for v in found["population"].values()):
        del found["population"]  # no group but the whole country: nothing to compare
    out: dict[str, Any] = {}
    for key, values in found.items():
        entry: dict[str, Any] = {"description": BASELINE_TEXT[key], "overall": {}, "model_minus_baseline": {},
                                 "n_cells": {}, "groups": [], "respondents": resampled is not None}  # fmt: skip
        group_means = {}
        for m in names:
            base_m = agg.to_matrix(values[m], layout)
            model_m, paired_b = _both(agg.to_matrix(model_values[m], layout), base_m)
            if resampled is not None:
                reps_m, reps_b = resampled.means[key][m]
            else:
                reps_m = agg.sum_counts(model_m, weights).pooled()
                reps_b = agg.sum_counts(paired_b, weights).pooled()
            paired = _paired(model_m, paired_b, reps_m, reps_b, level)
            entry["overall"][m] = paired["overall"]
            entry["model_minus_baseline"][m] = paired["model_minus_baseline"]
            entry["n_cells"][m] = int(np.isfinite(model_m).sum())  # the cells both sides average (fewer than the model's if any lack a baseline)
            group_means[m] = agg.sum_counts(base_m, agg.point_weights(base_m.shape[1])).group_means()[0]
        for i, (attr, label) in enumerate(layout.groups):
            entry["groups"].append({"attribute": attr, "group": label,
                                    "metrics": {m: _fig(group_means[m][i])["value"] for m in names}})  # fmt: skip
        out[key] = entry
    return out


NOISE_DRAWS = 64  # surveys simulated per attribute for the spread that sampling alone gives, at most ...
NOISE_PAIR_DRAWS = 1024  # ... and at most this many (pair, draw) JS distances per question: fewer draws for
# many groups (an intersection of 40 groups has 780 pairs), whose average over the pairs is steadier anyway


def _noise_floor(human: np.ndarray, sizes: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> float | None:
    """Mean pairwise JS distance the survey groups would show if all answered alike (the attribute's pooled
    answers), each drawn at its own effective size: the part of the survey's spread that is sampling noise."""
    g_h = human[rows]  # (G, Q, K), NaN where a group has no item
    g_n = sizes[rows]  # (G, Q)
    have = np.isfinite(g_h[..., 0]) & np.isfinite(g_n)
    if not have.any():
        return None
    w = np.where(have, g_n, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.nansum(np.nan_to_num(g_h) * w[..., None], axis=0) / w.sum(axis=0)[:, None]  # (Q, K)
    n_q, kmax = pooled.shape
    ok_q = np.isfinite(pooled).all(axis=1) & (w.sum(axis=0) > 0)
    pooled = np.where(ok_q[:, None], pooled, 0.0)
    pooled[ok_q] /= pooled[ok_q].sum(axis=1, keepdims=True)
    pooled[~ok_q, 0] = 1.0  # placeholder for questions nobody answered (masked out below)
    n_draw = np.where(have, np.maximum(1, np.round(np.nan_to_num(g_n))), 1).astype(np.int64)
    n_pairs = max(1, len(rows) * (len(rows) - 1) // 2)
    n_sim = int(np.clip(NOISE_PAIR_DRAWS // n_pairs, 8, NOISE_DRAWS))
    draws = rng.multinomial(n_draw, np.broadcast_to(pooled, g_h.shape), size=(n_sim, *n_draw.shape))
    shares = draws / n_draw[None, :, :, None]  # (D, G, Q, K)
    per_q = _pairwise_js(shares, have & ok_q[None, :])
    return float(np.nanmean(per_q)) if np.isfinite(per_q).any() else None


def _pairwise_js(dists: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Per question, the mean over the group pairs that both have it of their JS distance (averaged over
    the leading draw axis): ``dists`` (D, G, Q, K), ``have`` (G, Q). NaN where no pair has the question."""
    n_draws, n_groups, n_q, kmax = dists.shape
    total = np.zeros(n_q)
    count = np.zeros(n_q)
    for a in range(n_groups):
        for b in range(a + 1, n_groups):
            use = have[a] & have[b]
            if use.any():
                d = js_distance(dists[:, a].reshape(-1, kmax), dists[:, b].reshape(-1, kmax)).reshape(n_draws, n_q)
                total += np.where(use, d.mean(axis=0), 0.0)
                count += use
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def group_spread(batch: ItemBatch, layout: agg.Layout, weights: np.ndarray, level: float,
                 sizes: np.ndarray | None = None, seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """Per attribute with two or more groups: mean pairwise JS distance between its groups' answers, model and survey.

    ``sizes`` (each item's effective sample size, :func:`cvaudit.metrics.noise.item_sizes`) adds
    ``survey_noise``: the survey spread sampling alone would give, which the survey figure contains and the
    model's (no sampling) does not.
    """
    n_g, n_q = layout.shape
    kmax = batch.model.shape[1]
    model = np.full((n_g, n_q, kmax), np.nan)
    human = np.full((n_g, n_q, kmax), np.nan)
    ok = batch.valid
    model[layout.row[ok], layout.col[ok]] = batch.model[ok]
    human[layout.row[ok], layout.col[ok]] = batch.human[ok]
    size_grid = np.full((n_g, n_q), np.nan)
    if sizes is not None:
        size_grid[layout.row, layout.col] = sizes
    out = []
    for attr, rows in layout.attribute_rows().items():
        if len(rows) < 2:
            continue
        have = np.isfinite(model[rows, :, 0])  # (G, Q): the group has a scored item on the question
        per_q = {side: _pairwise_js(np.nan_to_num(arr[rows])[None], have)
                 for side, arr in (("model", model), ("survey", human))}  # fmt: skip
        defined = np.isfinite(per_q["model"])
        if not defined.any():
            continue
        entry: dict[str, Any] = {"attribute": attr}
        mats = {side: per_q[side][None, :] for side in per_q}  # one "group" row per side
        points = {s: agg.sum_counts(m, agg.point_weights(n_q)).pooled()[0] for s, m in mats.items()}
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio_point = points["model"] / points["survey"] if points["survey"] > 0 else np.nan
        if weights.shape[0]:
            reps = {s: agg.sum_counts(m, weights).pooled() for s, m in mats.items()}
            for s in ("model", "survey"):
                lo, hi = percentile_ci(reps[s][:, None], level)
                entry[s] = _fig(points[s], lo[0], hi[0])
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio_reps = np.where(reps["survey"] > 0, reps["model"] / np.where(reps["survey"] > 0, reps["survey"], 1), np.nan)
            lo, hi = percentile_ci(ratio_reps[:, None], level)
            entry["ratio"] = _fig(ratio_point, lo[0], hi[0])
        else:
            entry.update(model=_fig(points["model"]), survey=_fig(points["survey"]), ratio=_fig(ratio_point))
        entry["n_questions"] = int(defined.sum())
        floor = None
        if sizes is not None:
            floor = _noise_floor(human, size_grid, rows, np.random.default_rng([int(seed), 3, int(rows[0])]))
        entry["survey_noise"] = floor
        out.append(entry)
    return out
