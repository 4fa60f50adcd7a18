"""How much of a group's gap to its reference is survey sampling noise: a size-matched null.

A group's answer distribution D_H is estimated from its respondents, and every
metric is nonlinear in it (the modal answer flips, distances do not average out),
so noise moves the expected figure, and more for small groups: a 30-person group
drawn from the same population as a 2,000-person reference looks less well
aligned. Flags that compare the two would report sample size as bias.

The shift: for each of the group's questions, take the D_H of the attribute's
largest group as the population (the best estimate at hand; it is the reference
unless the run named a smaller one), draw answer distributions from
Multinomial(n, D_H) / n at the group's effective size and at the reference's,
score the group's own model answer against both, and take the difference of the
means. A group's shift is the mean over its questions. Flags take the part of the
gap it explains off the group's figure before comparing
(:mod:`cvaudit.metrics.evaluate`); the figures themselves are reported as measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import aggregate as agg
from .item import ItemBatch, compute_metrics

if TYPE_CHECKING:
    import pandas as pd

# Monte Carlo error of a group's shift: about 0.006 on accuracy for 34 questions at n = 30 (the shift is
# about -0.03 there), less on the distance metrics and with more questions (tests/test_noise.py)
DRAWS = 128


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


def _expected(batch: ItemBatch, n: np.ndarray, names: list[str], rng: np.random.Generator, draws: int,
              chunk: int, source: np.ndarray | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Per item, the mean metric over ``draws`` human distributions drawn from Multinomial(n, human) / n.

    ``source`` (one index per item) says which draw an item is scored against: items with the same
    source share their draws, so the multinomial is sampled once per source (its first item's ``n``
    and ``human``), not once per item.
    """
    n_items, kmax = batch.human.shape
    if source is None:
        source = np.arange(n_items)
    uniq, first, where = np.unique(source, return_index=True, return_inverse=True)
    src_n, src_p = n[first], batch.human[first]
    total = {m: np.zeros(n_items) for m in names}
    counted = {m: np.zeros(n_items) for m in names}
    step = max(1, int(chunk))
    for start in range(0, draws, step):
        nb = min(step, draws - start)
        counts = rng.multinomial(src_n, src_p, size=(nb, len(uniq)))  # (nb, sources, kmax)
        human = (counts / src_n[None, :, None])[:, where, :].reshape(nb * n_items, kmax)
        values = compute_metrics(batch.repeat(nb).with_human(human, normalised=True), names)
        for m in names:
            v = values[m].reshape(nb, n_items)
            fin = np.isfinite(v)
            total[m] += np.where(fin, v, 0.0).sum(axis=0)
            counted[m] += fin.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {m: np.where(counted[m] > 0, total[m] / counted[m], np.nan) for m in names}


def size_shift(
    batch: ItemBatch, sizes: np.ndarray, layout: agg.Layout, rows: Sequence[int], ref: int,
    names: Sequence[str], seed: int, draws: int = DRAWS, chunk: int = 50, ref_size: float | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """(len(rows),) per metric: the expected change in each group's figure from its sample size alone.

    ``rows`` are the attribute's layout groups and ``ref`` the reference's position
    in ``rows`` (its shift is 0). ``sizes`` (n items,) from :func:`item_sizes`.
    For every question of the group, the answers of the attribute's largest group on
    it stand in for the population; the group's model answer is scored
    against draws at the group's size and at the reference's (its own item's size,
    else ``ref_size``), and the shift is the mean difference over the group's
    questions, so it covers the same cells as the group's figure. NaN for a group
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
    # the population stand-in per question: the answers of the attribute's largest group on it (the best
    # estimated; the reference unless the run named a smaller one); ties go to the first item
    cand = np.flatnonzero(in_rows)
    cols = layout.col[cand]
    order = np.lexsort((cand, -np.where(np.isfinite(sizes[cand]), sizes[cand], 0.0), cols))
    first = order[np.r_[True, np.diff(cols[order]) != 0]] if len(order) else order
    best = np.full(len(layout.questions), -1)
    best[cols[first]] = cand[first]
    # the reference's size on each question: its own item's, else its group's
    ref_row = rows[ref]
    fallback = float(ref_size) if ref_size is not None and np.isfinite(ref_size) and ref_size > 0 else np.nan
    n_ref_col = np.full(len(layout.questions), fallback)
    ref_items = np.flatnonzero(layout.row == ref_row)
    n_ref_col[layout.col[ref_items]] = np.where(np.isfinite(sizes[ref_items]), sizes[ref_items], fallback)
    n_ref_item = n_ref_col[layout.col]
    use = in_rows & (item_pos != ref) & np.isfinite(sizes) & np.isfinite(n_ref_item) & (best[layout.col] >= 0)
    gi = np.flatnonzero(use)
    gi = gi[np.lexsort((gi, item_pos[gi]))]  # group by group, as the figures are laid out
    if not len(gi):
        return out
    pos_arr = item_pos[gi]
    n_ref_l = np.maximum(1.0, np.round(n_ref_item[gi]))
    population = batch.human[best[layout.col[gi]]]
    sub = ItemBatch(batch.model[gi], population, batch.positions[gi], batch.k[gi], batch.ordinal[gi],
                    batch.modes[gi], np.ones(len(gi), dtype=bool), batch.span[gi])  # fmt: skip
    rng = np.random.default_rng([int(seed), 2, ref_row])
    at_group = _expected(sub, sizes[gi].astype(np.int64), names, rng, draws, chunk)
    # every group's model is scored against the same reference-size draws of a question (its population
    # stand-in and the reference's size are the question's, not the group's): sampled once per question
    at_ref = _expected(sub, np.array(n_ref_l, dtype=np.int64), names, rng, draws, chunk, source=layout.col[gi])
    known = np.bincount(pos_arr, minlength=len(rows)) > 0
    for m in names:
        d = at_group[m] - at_ref[m]
        ok = np.isfinite(d)
        sums = np.bincount(pos_arr[ok], weights=d[ok], minlength=len(rows))
        counts = np.bincount(pos_arr[ok], minlength=len(rows))
        # a group with sized items but no defined value (e.g. NMAE on nominal questions) shifts by 0
        vals = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
        out[m] = np.where(known, vals, out[m])
        out[m][ref] = 0.0
    return out
