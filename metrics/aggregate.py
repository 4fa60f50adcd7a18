"""Averages over questions: per group, per attribute (pooled), overall and per category.

Every average is a ratio of sums to counts over the *defined* cells of a
(groups x questions) matrix (NaN = undefined or suppressed), so point estimates
and bootstrap replicates share one code path: replicate counts W (n_boot x
questions) give sums = M0 @ W.T and counts = D @ W.T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def finite(x: Any) -> float | None:
    """A float, or None for anything that is not a finite number (results.json has null, never NaN)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def figure(value: Any, lo: Any = None, hi: Any = None) -> dict[str, Any]:
    """results.json's figure: {"value", "ci": [lo, hi] or null when any end is undefined}."""
    v, a, b = finite(value), finite(lo), finite(hi)
    return {"value": v, "ci": [a, b] if (v is not None and a is not None and b is not None) else None}


@dataclass(frozen=True)
class Layout:
    """Where each item sits in the (groups x questions) grid."""

    groups: tuple[tuple[str, str], ...]  # (attribute, group) in output order
    questions: tuple[str, ...]
    row: np.ndarray  # item -> group index
    col: np.ndarray  # item -> question index

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.groups), len(self.questions)

    def attribute_rows(self) -> dict[str, np.ndarray]:
        """Group indices of each attribute, attributes in order of first appearance."""
        out: dict[str, list[int]] = {}
        for i, (attr, _g) in enumerate(self.groups):
            out.setdefault(attr, []).append(i)
        return {a: np.asarray(v, dtype=np.int64) for a, v in out.items()}


def make_layout(items: pd.DataFrame, group_keys: list[tuple[str, str]]) -> Layout:
    """Grid for ``items``; groups ordered as ``group_keys`` then any extra group seen in items.

    Raises DataError if a (group, question) appears twice: an average would silently
    double-count it.
    """
    from cvaudit.audit.errors import DataError

    attrs = items["attribute"].astype(str).tolist()
    labels = items["group"].astype(str).tolist()
    qcol = items["question"].astype(str).tolist()
    keys = list(dict.fromkeys(group_keys))
    seen = set(keys)
    for key in zip(attrs, labels):
        if key not in seen:
            seen.add(key)
            keys.append(key)
    gindex = {k: i for i, k in enumerate(keys)}
    questions = list(dict.fromkeys(qcol))
    qindex = {q: i for i, q in enumerate(questions)}
    row = np.fromiter((gindex[k] for k in zip(attrs, labels)), dtype=np.int64, count=len(items))
    col = np.fromiter((qindex[q] for q in qcol), dtype=np.int64, count=len(items))
    flat = row * max(len(questions), 1) + col
    if len(np.unique(flat)) != len(flat):
        dup = items.loc[items.duplicated(subset=["attribute", "group", "question"]),
                        ["attribute", "group", "question"]].iloc[0]  # fmt: skip
        raise DataError(
            f"item ({dup['attribute']}={dup['group']}, {dup['question']}) appears more than once; "
            "give one row per (group, question)"
        )
    return Layout(tuple(keys), tuple(questions), row, col)


def to_matrix(values: np.ndarray, layout: Layout) -> np.ndarray:
    """Item values -> (groups x questions) matrix, NaN where no item or undefined."""
    values = np.asarray(values, dtype=float)
    lead = values.shape[:-1]
    mat = np.full(lead + layout.shape, np.nan)
    mat[..., layout.row, layout.col] = values
    return mat


@dataclass(frozen=True)
class SumCounts:
    """Sums and counts of defined cells per (replicate, group); point estimates have one replicate."""

    sums: np.ndarray  # (B, G)
    counts: np.ndarray  # (B, G)

    def group_means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.sums / np.where(self.counts > 0, self.counts, 1), np.nan)

    def pooled(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Mean over all defined cells of the given groups (all groups when None): (B,)."""
        s = self.sums if rows is None else self.sums[:, rows]
        c = self.counts if rows is None else self.counts[:, rows]
        ts, tc = s.sum(axis=1), c.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tc > 0, ts / np.where(tc > 0, tc, 1), np.nan)


def sum_counts(matrix: np.ndarray, weights: np.ndarray) -> SumCounts:
    """Weighted sums/counts of a (G, Q) matrix (or (B, G, Q), one per replicate) under W (B, Q)."""
    defined = np.isfinite(matrix)
    m0 = np.where(defined, matrix, 0.0)
    if matrix.ndim == 2:
        return SumCounts(weights @ m0.T, weights @ defined.T.astype(float))
    return SumCounts(np.einsum("bgq,bq->bg", m0, weights), np.einsum("bgq,bq->bg", defined.astype(float), weights))


def point_weights(n_questions: int) -> np.ndarray:
    return np.ones((1, n_questions))


def category_table(items: pd.DataFrame, item_values: dict[str, np.ndarray], layout: Layout) -> list[dict]:
    """Per (attribute, group, category, metric): mean over that category's questions and their count."""
    import pandas as pd

    if "category" not in items.columns or len(items) == 0:
        return []
    frame = pd.DataFrame({"g": layout.row, "category": items["category"].astype(str).to_numpy()})
    cat_order = {c: i for i, c in enumerate(dict.fromkeys(frame["category"]))}
    rows: list[dict] = []
    for name, vals in item_values.items():
        frame["v"] = np.asarray(vals, dtype=float)
        agg = frame.groupby(["g", "category"], sort=False)["v"].agg(["mean", "count"]).reset_index()
        for g, cat, mean, count in agg[["g", "category", "mean", "count"]].itertuples(index=False):
            attr, label = layout.groups[int(g)]
            rows.append({"attribute": attr, "group": label, "category": cat, "metric": name,
                         "value": None if count == 0 or not np.isfinite(mean) else float(mean),
                         "n_questions": int(count)})  # fmt: skip
    metric_order = {n: i for i, n in enumerate(item_values)}
    group_order = {k: i for i, k in enumerate(layout.groups)}
    rows.sort(key=lambda r: (group_order[(r["attribute"], r["group"])], cat_order[r["category"]],
                             metric_order[r["metric"]]))  # fmt: skip
    return rows
