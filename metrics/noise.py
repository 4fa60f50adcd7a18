"""How much of a group's gap to its reference is survey sampling noise: a size-matched null.

A group's answer distribution D_H is estimated from its respondents, and every
metric is nonlinear in it (the modal answer flips, distances do not average out),
so noise moves the expected figure, and more for small groups: a 30-person group
drawn from the same population as a 2,000-person reference looks less well
aligned. Flags that compare the two would report sample size as bias.

The shift: the group's true answers are unknown (its D_H is the noisy estimate), so
stand-ins are taken on the line from the group's model answer to its D_H, and the
one is kept whose expected closeness to the model at the group's own effective size
(JS distance of the model to Multinomial(n, stand-in) / n draws, averaged over the
group's questions) equals the closeness measured. The shift is then the mean
difference, over the group's questions, between each metric scored against draws
at the group's size and at the reference's. It is what sample size does to a model
*as close to the group as measured*, whether or not the group answers like the
reference: a model that follows every group's own opinions exactly is as exposed to
it as one that gives all groups the country's answer. Flags take the part of the gap
it explains off the group's figure before comparing
(:mod:`cvaudit.metrics.evaluate`); the figures themselves are reported as measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import aggregate as agg
from .item import ItemBatch, compute_metrics, js_distance

if TYPE_CHECKING:
    import pandas as pd

# Monte Carlo error of a group's shift (sd over seeds, 34 questions, n = 30): 0.011 on accuracy (shift about
# -0.10), 0.007 on NMAE, 0.002 on similarity, 0.001 on representativeness; less with more questions
DRAWS = 128  # per size, and split over GRID for the reference's closeness
# where the stand-in for the reference's true answers is looked for, between the model's answer (0) and its survey answer (1)
GRID = np.linspace(0.0, 1.0, 5)


def item_sizes(items: pd.DataFrame, groups: pd.DataFrame) -> np.ndarray:
    """Each item's multinomial size: its own effective number of answers (``n_eff`` column), else its
    group's ``n_eff``, else its group's ``n``; rounded, at least 1; NaN when none is known."""

    def number(v: object) -> float:
        try:
            f = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return np.nan
        return f if np.isfinite(f) and f > 0 else np.nan

    by_group: dict[tuple[str, str], float] = {}
    for rec in groups.to_dict(orient="records"):
        size = number(rec.get("n_eff"))
        by_group[(str(rec["attribute"]), str(rec["group"]))] = size if np.isfinite(size) else number(rec.get("n"))
    own = items["n_eff"] if "n_eff" in items.columns else [None] * len(items)
    out = np.array([
        number(v) if np.isfinite(number(v)) else by_group.get((str(a), str(g)), np.nan)
        for a, g, v in zip(items["attribute"], items["group"], own)
    ], dtype=float)  # fmt: skip
    return np.where(np.isfinite(out), np.maximum(1.0, np.round(out)), np.nan)


Score = Callable[[ItemBatch], dict[str, np.ndarray]]


def _expected(batch: ItemBatch, n: np.ndarray, score: Score, rng: np.random.Generator, draws: int,
              chunk: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per item, the mean of each statistic ``score`` returns over ``draws`` human distributions drawn from
    Multinomial(n, human) / n (``score``: the metrics, or the model's JS distance to the draws)."""
    n_items, kmax = batch.human.shape
    total: dict[str, np.ndarray] = {}
    counted: dict[str, np.ndarray] = {}
    step = max(1, int(chunk))
    for start in range(0, draws, step):
        nb = min(step, draws - start)
        counts = rng.multinomial(n, batch.human, size=(nb, n_items))  # (nb, items, kmax)
        human = (counts / n[None, :, None]).reshape(nb * n_items, kmax)
        tiled = batch.repeat(nb).with_human(human, normalised=True)
        for m, values in score(tiled).items():
            v = values.reshape(nb, n_items)
            fin = np.isfinite(v)
            total[m] = total.get(m, np.zeros(n_items)) + np.where(fin, v, 0.0).sum(axis=0)
            counted[m] = counted.get(m, np.zeros(n_items)) + fin.sum(axis=0)
    if not total:  # no draws: every statistic undefined
        return {m: np.full(n_items, np.nan) for m in score(batch)}
    with np.errstate(invalid="ignore", divide="ignore"):
        return {m: np.where(counted[m] > 0, total[m] / counted[m], np.nan) for m in total}


def _metrics(names: Sequence[str]) -> Score:
    return lambda b: compute_metrics(b, list(names))


def _closeness(b: ItemBatch) -> dict[str, np.ndarray]:
    """The statistic a stand-in is matched on: the model's JS distance to the drawn answers."""
    return {"js": js_distance(b.model, b.human)}


def _crossing(e: np.ndarray, observed: float) -> tuple[int, float] | None:
    """Where the piecewise-linear curve ``e`` (over the grid) first meets ``observed``, as (segment,
    fraction); else the nearer grid end. None when any value is undefined."""
    if not (np.isfinite(e).all() and np.isfinite(observed)):
        return None
    d = e - observed
    for j in range(len(e) - 1):
        if d[j] == 0 or d[j] * d[j + 1] < 0:
            return j, (0.0 if d[j] == 0 else float(d[j] / (d[j] - d[j + 1])))
    return (0, 0.0) if abs(d[0]) <= abs(d[-1]) else (len(e) - 2, 1.0)


def _line(batch: ItemBatch, rows: np.ndarray, lam: np.ndarray | float) -> ItemBatch:
    """The items at ``rows`` with their survey answers replaced by stand-ins on the line from the model's answer
    (lam = 0) to the survey's (lam = 1): normalised with zero padding, as both ends are."""
    model, survey = batch.model[rows], batch.human[rows]
    lam = np.asarray(lam, dtype=float)
    stand_in = model + (lam[:, None] if lam.ndim else lam) * (survey - model)
    return ItemBatch(model, stand_in, batch.positions[rows], batch.k[rows], batch.ordinal[rows], batch.modes[rows],
                     np.ones(len(rows), dtype=bool), batch.span[rows])  # fmt: skip


def reference_closeness(batch: ItemBatch, rows: np.ndarray, n: np.ndarray, rng: np.random.Generator,
                        draws: int, chunk: int) -> float | None:  # fmt: skip
    """How close the model is to the reference's *true* answers: the mean JS distance, model to stand-in, of
    the stand-in on the line model -> survey whose expected distance at the reference's own size (draws from
    it) equals the distance measured. The measured distance alone is too large by the reference's sampling
    noise. None when the reference has no sized item."""
    if not len(rows):
        return None
    measured = float(np.mean(js_distance(batch.model[rows], batch.human[rows])))
    per_point = max(4, int(draws) // len(GRID))
    expected, own = np.zeros(len(GRID)), np.zeros(len(GRID))
    for j, lam in enumerate(GRID):
        sub = _line(batch, rows, float(lam))
        expected[j] = float(np.mean(_expected(sub, n, _closeness, rng, per_point, chunk)["js"]))
        own[j] = float(np.mean(js_distance(sub.model, sub.human)))
    at = _crossing(expected, measured)
    if at is None:
        return None
    j, t = at
    return (1 - t) * own[j] + t * own[j + 1]


def _matching_lam(batch: ItemBatch, rows: np.ndarray, pos: np.ndarray, n_groups: int, target: float,
                  steps: int = 30) -> np.ndarray:  # fmt: skip
    """Per group, the lam in [0, 1] whose stand-ins are ``target`` away from the model (mean JS distance over
    the group's items; it grows with lam, JS divergence being convex), 1 when even the survey is closer."""
    lo, hi = np.zeros(n_groups), np.ones(n_groups)
    at_one = _group_mean(js_distance(batch.model[rows], batch.human[rows]), np.ones(len(rows), bool), pos, n_groups)
    for _ in range(steps):
        mid = (lo + hi) / 2
        sub = _line(batch, rows, mid[pos])
        d = _group_mean(js_distance(sub.model, sub.human), np.ones(len(rows), bool), pos, n_groups)
        below = d < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.where(np.nan_to_num(at_one, nan=np.inf) <= target, 1.0, (lo + hi) / 2)


def size_shift(
    batch: ItemBatch, sizes: np.ndarray, layout: agg.Layout, rows: Sequence[int], ref: int,
    names: Sequence[str], seed: int, draws: int = DRAWS, chunk: int = 50, ref_size: float | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """(len(rows),) per metric: the expected change in each group's figure from its sample size alone, if the
    model were as close to the group's true answers as it is to the reference's (the fairness null).

    ``rows`` are the attribute's layout groups and ``ref`` the reference's position
    in ``rows`` (its shift is 0). ``sizes`` (n items,) from :func:`item_sizes`. How
    close the model is to the reference's true answers is estimated first
    (:func:`reference_closeness`). Each group's stand-in truth lies on the line from
    its model answer to its survey answer, at that distance from the model; its model
    answer is scored against draws from the stand-in at the group's size and at the
    reference's (its own item's, else ``ref_size``), and the shift is the mean
    difference over the group's questions. The stand-in's distance comes from the
    reference alone, so a group's own sampling luck does not move it. NaN for a group
    whose sizes are unknown. Deterministic for a seed.
    """
    names = list(names)
    rows = [int(r) for r in rows]
    out = {m: np.full(len(rows), np.nan) for m in names}
    for m in names:
        out[m][ref] = 0.0
    # every item's position in ``rows`` (-1 outside the attribute)
    pos_of_row = np.full(len(layout.groups), -1)
    pos_of_row[rows] = np.arange(len(rows))
    item_pos = pos_of_row[layout.row]
    in_rows = (item_pos >= 0) & batch.valid
    # the reference's size on each question: its own item's, else its group's
    ref_row = rows[ref]
    fallback = float(ref_size) if ref_size is not None and np.isfinite(ref_size) and ref_size > 0 else np.nan
    n_ref_col = np.full(len(layout.questions), fallback)
    ref_items = np.flatnonzero(layout.row == ref_row)
    n_ref_col[layout.col[ref_items]] = np.where(np.isfinite(sizes[ref_items]), sizes[ref_items], fallback)
    n_ref_item = n_ref_col[layout.col]
    use = in_rows & (item_pos != ref) & np.isfinite(sizes) & np.isfinite(n_ref_item)
    gi = np.flatnonzero(use)
    gi = gi[np.lexsort((gi, item_pos[gi]))]  # group by group, as the figures are laid out
    ri = np.flatnonzero(in_rows & (item_pos == ref) & np.isfinite(n_ref_item))
    if not len(gi) or not len(ri):
        return out
    rng = np.random.default_rng([int(seed), 2, ref_row])
    n_ref_draw = np.maximum(1.0, np.round(np.nan_to_num(n_ref_item, nan=1.0))).astype(np.int64)  # per item
    n_own_ref = n_ref_draw[ri]
    target = reference_closeness(batch, ri, n_own_ref, rng, draws, chunk)
    if target is None:
        return out
    pos_arr = item_pos[gi]
    lam = _matching_lam(batch, gi, pos_arr, len(rows), target)
    sub = _line(batch, gi, lam[pos_arr])
    at_group = _expected(sub, sizes[gi].astype(np.int64), _metrics(names), rng, draws, chunk)
    at_ref = _expected(sub, n_ref_draw[gi], _metrics(names), rng, draws, chunk)
    known = np.bincount(pos_arr, minlength=len(rows)) > 0
    for m in names:
        d = at_group[m] - at_ref[m]
        mean = _group_mean(d, np.isfinite(d), pos_arr, len(rows))
        # a group with sized items but no defined value (e.g. NMAE on nominal questions) shifts by 0
        out[m] = np.where(known, np.nan_to_num(mean, nan=0.0), out[m])
        out[m][ref] = 0.0
    return out


def _group_mean(values: np.ndarray, ok: np.ndarray, pos: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.bincount(pos[ok], weights=values[ok], minlength=n_groups)
    counts = np.bincount(pos[ok], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
