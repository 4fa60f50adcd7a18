"""Paired bootstrap over questions (and, optionally, over respondents).

Questions are the sampled unit: one replicate draws n_questions question indices
with replacement and *every* group uses that same draw, so group differences,
gaps and ratios get intervals from their own replicate distribution. A replicate
is stored as per-question counts, so all replicates of a (groups x questions)
metric matrix are one matrix product: sums = M @ W.T, counts = defined @ W.T.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def question_indices(n_questions: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_questions) question indices drawn with replacement; the same seed gives the same draw."""
    rng = np.random.default_rng(seed)
    if n_questions <= 0 or n_boot <= 0:
        return np.zeros((max(n_boot, 0), max(n_questions, 0)), dtype=np.int64)
    return rng.integers(0, n_questions, size=(n_boot, n_questions), dtype=np.int64)


def replicate_counts(indices: np.ndarray, n_questions: int) -> np.ndarray:
    """How often each question occurs in each replicate: (n_boot, n_questions) float counts."""
    n_boot = indices.shape[0]
    flat = (indices + np.arange(n_boot)[:, None] * n_questions).ravel()
    return np.bincount(flat, minlength=n_boot * n_questions).reshape(n_boot, n_questions).astype(float)


def percentile_ci(replicates: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the finite replicates along ``axis`` (NaN where none is finite).

    Replicates in which a figure is undefined (e.g. a group with no defined question
    in that draw, or max = 0 for a ratio) are left out rather than counted as zero.
    """
    reps = np.moveaxis(np.asarray(replicates, dtype=float), axis, 0)
    reps = np.where(np.isfinite(reps), reps, np.nan)
    lo_q, hi_q = (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0
    if reps.shape[0] == 0:
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan.copy()
    finite = np.isfinite(reps)
    if finite.all():
        lo, hi = np.quantile(reps, [lo_q, hi_q], axis=0)
        return lo, hi
    with np.errstate(invalid="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = np.nanquantile(reps, [lo_q, hi_q], axis=0)
    return lo, hi


def paired_p_value(diff: np.ndarray, axis: int = 0) -> np.ndarray:
    """Two-sided bootstrap p-value that a paired difference is zero.

    p = 2 * min(#(d <= 0) + 1, #(d >= 0) + 1) / (B + 1), capped at 1: the +1 keeps
    p > 0 with a finite number of replicates. Non-finite replicates are ignored;
    NaN when no replicate is finite.
    """
    d = np.moveaxis(np.asarray(diff, dtype=float), axis, 0)
    finite = np.isfinite(d)
    b = finite.sum(axis=0)
    le = ((d <= 0) & finite).sum(axis=0)
    ge = ((d >= 0) & finite).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2.0 * (np.minimum(le, ge) + 1.0) / (b + 1.0)
    p = np.minimum(p, 1.0)
    return np.where(b > 0, p, np.nan)


def respondent_replicates(
    codes: np.ndarray, weights: np.ndarray | None, k: int, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_boot, k) weighted answer shares from resampling the group's respondents.

    ``codes`` are option indices 0..k-1 (negative or NaN = no valid answer, dropped
    first); each replicate draws as many valid respondents as there are, with
    replacement and equal probability, and computes the *weighted* share of each
    option, i.e. the ordinary bootstrap of the weighted estimator D_H.
    """
    codes = np.asarray(codes, dtype=float)
    w = np.ones_like(codes) if weights is None else np.asarray(weights, dtype=float)
    ok = np.isfinite(codes) & (codes >= 0) & (codes < k) & np.isfinite(w)
    c, w = codes[ok].astype(np.int64), w[ok]
    n = c.shape[0]
    if n == 0 or n_boot <= 0:
        return np.full((max(n_boot, 0), k), np.nan)
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = (c[idx] + np.arange(n_boot)[:, None] * k).ravel()
    sums = np.bincount(flat, weights=w[idx].ravel(), minlength=n_boot * k).reshape(n_boot, k)
    total = sums.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums / total, np.nan)


def item_respondent_replicates(
    items: pd.DataFrame, survey: Any, groups: Sequence[Any], questions: Sequence[Any], n_boot: int, seed: int
) -> list[np.ndarray]:
    """Respondent-bootstrap D_H replicates for each row of ``items`` ((n_boot, K) each), for ``evaluate``.

    ``survey`` is a SurveyData, ``groups`` the Group objects (their ``index`` gives the
    respondents), ``questions`` the Question objects; answers are mapped to options
    with the ground truth's own code mapping. Replicate b resamples each group's
    respondents once (with replacement) and uses that draw for all of the group's
    questions, as a respondent brings all their answers; each question then keeps the
    drawn respondents with a valid answer and takes weighted shares. One matrix
    product per group: multiplicities (n_boot x members) @ weighted one-hot answers.
    """
    from cvaudit.audit.groundtruth import option_index

    rng = np.random.default_rng([seed, 1])
    by_q = {q.id: q for q in questions}
    weights = np.asarray(survey.weights, dtype=float)
    n_resp = len(survey.frame)
    codes = {}
    for qid in dict.fromkeys(items["question"].astype(str)):
        q = by_q[qid]
        vals = survey.frame[qid].to_numpy(dtype=float) if qid in survey.frame.columns else np.full(n_resp, np.nan)
        codes[qid] = option_index(vals, q)
    wanted: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(items["attribute"].astype(str), items["group"].astype(str))):
        wanted.setdefault(key, []).append(i)
    out: list[np.ndarray | None] = [None] * len(items)
    qcol = items["question"].astype(str).tolist()
    for g in groups:
        rows_items = wanted.get((str(g.attribute), str(g.label)))
        if not rows_items:
            continue
        members = np.asarray(g.index, dtype=np.int64)
        n = members.shape[0]
        if n == 0 or n_boot <= 0:
            for i in rows_items:
                out[i] = np.full((max(n_boot, 0), by_q[qcol[i]].k), np.nan)
            continue
        draw = rng.integers(0, n, size=(n_boot, n))
        mult = np.bincount((draw + np.arange(n_boot)[:, None] * n).ravel(), minlength=n_boot * n)
        mult = mult.reshape(n_boot, n).astype(float)
        qids = [qcol[i] for i in rows_items]
        ks = [by_q[q].k for q in qids]
        offsets = np.concatenate([[0], np.cumsum(ks)])
        onehot = np.zeros((n, int(offsets[-1])))
        w = weights[members]
        for j, qid in enumerate(qids):
            c = codes[qid][members]
            ok = c >= 0
            onehot[np.flatnonzero(ok), offsets[j] + c[ok]] = w[ok]
        sums = mult @ onehot
        for j, i in enumerate(rows_items):
            block = sums[:, offsets[j] : offsets[j + 1]]
            total = block.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i] = np.where(total > 0, block / total, np.nan)
    from cvaudit.audit.errors import DataError

    missing = [i for i, r in enumerate(out) if r is None]
    if missing:
        i = missing[0]
        raise DataError(f"no Group object for item group {items['attribute'].iloc[i]}={items['group'].iloc[i]}; "
                        "pass the same groups the items were built from")  # fmt: skip
    return out  # type: ignore[return-value]
