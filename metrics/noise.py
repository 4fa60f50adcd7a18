"""How much of a group's gap to its reference is survey sampling noise: a size-matched null.

A group's answer distribution D_H is estimated from its respondents, and every
metric is nonlinear in it (the modal answer flips, distances do not average out),
so noise moves the expected figure, and more for small groups: a 30-person group
drawn from the same population as a 2,000-person reference looks less well
aligned. Flags that compare the two would report sample size as bias.

The shift: for each question, take the reference's D_H as the population (the
reference is the attribute's largest group, so its D_H is the best estimate at
hand), draw answer distributions from Multinomial(n, D_H) / n at the group's
effective size and at the reference's, score the group's own model answer
against both, and take the difference of the means. A group's shift is the mean
over its questions. Flags subtract it from the group's figure before comparing
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

DRAWS = 64  # the shift is a mean over draws and questions: its Monte Carlo error is far below the shifts it removes


def item_sizes(items: pd.DataFrame, groups: pd.DataFrame) -> np.ndarray:
    """Each item's multinomial size: its own effective number of answers (``n_eff`` column), else its
    group's; rounded, at least 1; NaN when unknown."""
    by_group = {(str(a), str(g)): v for a, g, v in zip(groups["attribute"], groups["group"],
                                                       groups["n_eff"] if "n_eff" in groups else groups["n"])}  # fmt: skip
    own = items["n_eff"] if "n_eff" in items.columns else [None] * len(items)
    out = np.array([
        float(v) if v is not None and np.isfinite(float(v)) else float(by_group.get((str(a), str(g))) or np.nan)
        for a, g, v in zip(items["attribute"], items["group"], own)
    ], dtype=float)  # fmt: skip
    return np.where(np.isfinite(out), np.maximum(1.0, np.round(out)), np.nan)


def _expected(batch: ItemBatch, n: np.ndarray, names: list[str], rng: np.random.Generator, draws: int,
              chunk: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Per item, the mean metric over ``draws`` human distributions drawn from Multinomial(n, human) / n."""
    n_items, kmax = batch.human.shape
    total = {m: np.zeros(n_items) for m in names}
    counted = {m: np.zeros(n_items) for m in names}
    step = max(1, int(chunk))
    for start in range(0, draws, step):
        nb = min(step, draws - start)
        counts = rng.multinomial(n, batch.human, size=(nb, n_items))  # (nb, n_items, kmax)
        human = (counts / n[None, :, None]).reshape(nb * n_items, kmax)
        values = compute_metrics(batch.repeat(nb).with_human(human), names)
        for m in names:
            v = values[m].reshape(nb, n_items)
            fin = np.isfinite(v)
            total[m] += np.where(fin, v, 0.0).sum(axis=0)
            counted[m] += fin.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {m: np.where(counted[m] > 0, total[m] / counted[m], np.nan) for m in names}


def size_shift(
    batch: ItemBatch, sizes: np.ndarray, layout: agg.Layout, rows: Sequence[int], ref: int,
    names: Sequence[str], seed: int, draws: int = DRAWS, chunk: int = 50,
) -> dict[str, np.ndarray]:  # fmt: skip
    """(len(rows),) per metric: the expected change in each group's figure from its sample size alone.

    ``rows`` are the attribute's layout groups and ``ref`` the reference's position
    in ``rows`` (its shift is 0). ``sizes`` (n items,) from :func:`item_sizes`.
    Questions the reference lacks, and items without a size, add no shift.
    Deterministic for a seed.
    """
    names = list(names)
    rows = [int(r) for r in rows]
    out = {m: np.zeros(len(rows)) for m in names}
    ref_row = rows[ref]
    ref_item = {int(c): i for i, (r, c) in enumerate(zip(layout.row, layout.col)) if r == ref_row}
    pairs = []  # (position in rows, group's item, reference's item)
    for pos, g in enumerate(rows):
        if pos == ref:
            continue
        for i in np.flatnonzero(layout.row == g):
            j = ref_item.get(int(layout.col[i]))
            if j is not None and batch.valid[i] and batch.valid[j] and np.isfinite(sizes[i]) and np.isfinite(sizes[j]):
                pairs.append((pos, int(i), j))
    if not pairs:
        return out
    pos_arr, gi, ri = (np.array(x) for x in zip(*pairs))
    # the group's model answer against the reference's population, at the two sample sizes
    sub = ItemBatch(batch.model[gi], batch.human[ri], batch.positions[gi], batch.k[gi], batch.ordinal[gi],
                    batch.modes[ri], np.ones(len(gi), dtype=bool))  # fmt: skip
    rng = np.random.default_rng([int(seed), 2, ref_row])
    at_group = _expected(sub, sizes[gi].astype(np.int64), names, rng, draws, chunk)
    at_ref = _expected(sub, sizes[ri].astype(np.int64), names, rng, draws, chunk)
    for m in names:
        d = at_group[m] - at_ref[m]
        ok = np.isfinite(d)
        sums = np.bincount(pos_arr[ok], weights=d[ok], minlength=len(rows))
        counts = np.bincount(pos_arr[ok], minlength=len(rows))
        out[m] = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    return out
