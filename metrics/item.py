"""Per-(group, question) metrics, computed for all items at once on padded arrays.

Items have different numbers of options K, so every distribution is padded to
Kmax with zero mass (zero mass changes neither the argmax, the CDFs, nor the
Jensen-Shannon sums). Positions are padded with the row's largest position so
padded gaps are zero-length in the Wasserstein sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .registry import metric_specs, register_metric

if TYPE_CHECKING:
    import pandas as pd

MODE_TOL = 1e-9  # same tolerance as the ground truth: shares this close to the top are tied modes


@dataclass(frozen=True)
class ItemBatch:
    """All items as aligned arrays (n items, Kmax options).

    ``model``/``human`` are normalised distributions with zero padding; ``positions``
    holds ordinal positions (NaN rows for nominal items); ``modes`` marks the human
    modal option(s), ties kept; ``valid`` is False where an input was missing.
    """

    model: np.ndarray
    human: np.ndarray
    positions: np.ndarray
    k: np.ndarray
    ordinal: np.ndarray
    modes: np.ndarray
    valid: np.ndarray
    # ``span`` computed once: tiled and resampled batches keep the positions, so they carry it along
    known_span: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.k.shape[0])

    @property
    def model_choice(self) -> np.ndarray:
        """argmax of the model distribution; exact ties go to the first option (np.argmax)."""
        return np.argmax(self.model, axis=1)

    @property
    def span(self) -> np.ndarray:
        """Largest minus smallest ordinal position: K-1 for the usual positions 0..K-1."""
        if self.known_span is not None:
            return self.known_span
        with np.errstate(invalid="ignore"):
            return np.nanmax(self.positions, axis=1, initial=-np.inf) - np.nanmin(
                self.positions, axis=1, initial=np.inf
            )

    def with_human(self, human: np.ndarray, normalised: bool = False) -> ItemBatch:
        """The same items against other human distributions (respondent bootstrap replicates, size draws).

        Modes are re-derived from ``human`` with the ground truth's tie tolerance. ``normalised``:
        the rows already sum to 1 with zero padding (multinomial shares), so they are used as given.
        """
        human = np.asarray(human, dtype=float)
        if not normalised:
            human = _normalise(human, self.k)
        return ItemBatch(self.model, human, self.positions, self.k, self.ordinal, modes_of(human),
                         self.valid & np.isfinite(human).all(axis=1), self.span)  # fmt: skip

    def take(self, rows: np.ndarray) -> ItemBatch:
        """The items at ``rows`` (indices or a boolean mask), every array alike."""
        return ItemBatch(self.model[rows], self.human[rows], self.positions[rows], self.k[rows], self.ordinal[rows],
                         self.modes[rows], self.valid[rows], self.span[rows])  # fmt: skip

    def repeat(self, times: int) -> ItemBatch:
        """Tile every array ``times`` times along the item axis (replicate-major)."""
        t = lambda a: np.tile(a, (times,) + (1,) * (a.ndim - 1))  # noqa: E731
        return ItemBatch(t(self.model), t(self.human), t(self.positions), t(self.k), t(self.ordinal),
                         t(self.modes), t(self.valid), t(self.span))  # fmt: skip


def modes_of(human: np.ndarray, tol: float = MODE_TOL) -> np.ndarray:
    """Boolean (n, K) mask of the options within ``tol`` of each row's maximum share."""
    with np.errstate(invalid="ignore"):
        top = np.nanmax(np.where(np.isfinite(human), human, -np.inf), axis=1, keepdims=True)
        return np.isfinite(human) & (human >= top - tol)


def _normalise(dist: np.ndarray, k: np.ndarray) -> np.ndarray:
    total = dist.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0, dist / total, np.nan)
    pad = np.arange(dist.shape[1])[None, :] >= k[:, None]
    out[pad] = 0.0
    return out


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, list):
        return value
    if isinstance(value, float) and value != value:  # NaN from a frame with missing cells
        return None
    if isinstance(value, str):  # items.csv stores lists as JSON strings
        import json

        return None if value == "" else json.loads(value)
    return list(value)


def _checked_dist(values: list, what: str, row: int) -> np.ndarray:
    """One item's distribution as floats, refusing what no normalisation can repair (NaN, inf, negatives).

    Such entries used to reach the metrics as -inf similarity and leave the run as a silent null.
    """
    from cvaudit.audit.errors import DataError

    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{what} of item row {row} is not a list of numbers: {values!r}") from None
    if arr.ndim != 1:
        raise DataError(f"{what} of item row {row} is not a flat list of numbers: {values!r}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        raise DataError(f"{what} of item row {row} has a negative or non-finite share {arr[bad][0]!r} "
                        "(shares must be finite and >= 0)")  # fmt: skip
    return arr


def batch_from_lists(
    model_dist: Sequence[Any],
    human_dist: Sequence[Any],
    positions: Sequence[Any] | None = None,
    human_mode: Sequence[Any] | None = None,
) -> ItemBatch:
    """Pad per-item lists into an :class:`ItemBatch`.

    ``human_mode`` (ties kept) is used when given; otherwise modes are derived from
    ``human_dist``. A ``None`` human distribution (suppressed cell) makes the item invalid.
    Non-negative shares are normalised per item (an all-zero one makes it invalid);
    a negative or non-finite share raises DataError naming the item row.
    """
    n = len(model_dist)
    models = [_as_list(m) for m in model_dist]
    humans = [_as_list(h) for h in human_dist]
    for i, (m, h) in enumerate(zip(models, humans)):
        models[i] = None if m is None else _checked_dist(m, "model_dist", i)
        humans[i] = None if h is None else _checked_dist(h, "human_dist", i)
    poss = [_as_list(p) for p in positions] if positions is not None else [None] * n
    k = np.array([len(m) if m is not None else (len(h) if h is not None else 0)
                  for m, h in zip(models, humans)], dtype=np.int64)  # fmt: skip
    kmax = int(k.max()) if n else 1
    kmax = max(kmax, 1)
    model = np.zeros((n, kmax))
    human = np.zeros((n, kmax))
    pos = np.full((n, kmax), np.nan)
    valid = np.ones(n, dtype=bool)
    for i, (m, h, p) in enumerate(zip(models, humans, poss)):
        ki = int(k[i])
        if m is None or h is None or len(h) != ki or (p is not None and len(p) != ki) or ki == 0:
            valid[i] = False
            continue
        model[i, :ki] = m
        human[i, :ki] = h
        if p is not None:
            pos[i, :ki] = p
            pos[i, ki:] = max(p)
    ordinal = np.isfinite(pos).all(axis=1) & valid
    model = _normalise(model, k)
    human = _normalise(human, k)
    bad = ~(np.isfinite(model).all(axis=1) & np.isfinite(human).all(axis=1))
    valid &= ~bad
    model[bad] = 0.0
    human[bad] = 0.0
    if human_mode is not None:
        modes = np.zeros((n, kmax), dtype=bool)
        for i, hm in enumerate(human_mode):
            hm = _as_list(hm)
            if hm is None or not valid[i]:
                continue
            idx = [int(j) for j in hm if 0 <= int(j) < k[i]]
            modes[i, idx] = True
    else:
        modes = modes_of(np.where(np.arange(kmax)[None, :] < k[:, None], human, np.nan))
    modes &= valid[:, None]
    return ItemBatch(model, human, pos, k, ordinal, modes, valid)


def batch_from_items(items: pd.DataFrame) -> ItemBatch:
    """Items frame (columns model_dist, human_dist, positions, human_mode) -> ItemBatch."""
    has_mode = "human_mode" in items.columns
    return batch_from_lists(
        items["model_dist"].tolist(),
        items["human_dist"].tolist(),
        items["positions"].tolist() if "positions" in items.columns else None,
        items["human_mode"].tolist() if has_mode else None,
    )


# ---------------------------------------------------------------- built-in metrics

UNIT = (0.0, 1.0)  # every built-in metric lies in [0, 1] (docs/metrics.md)


@register_metric("accuracy", higher_is_better=True, bounds=UNIT,
                 description="1 if the model's top option is a modal answer")  # fmt: skip
def accuracy(b: ItemBatch) -> np.ndarray:
    """1 if argmax D_M is one of the (possibly tied) human modes, else 0."""
    choice = b.model_choice
    return b.modes[np.arange(len(b)), choice].astype(float)


@register_metric("nmae", higher_is_better=False, needs_ordinal=True, bounds=UNIT,
                 description="ordinal distance from the model's top option to the nearest mode, / (K-1)")  # fmt: skip
def nmae(b: ItemBatch) -> np.ndarray:
    """|pos(argmax D_M) - pos(nearest mode)| / (K - 1)."""
    rows = np.arange(len(b))
    chosen = b.positions[rows, b.model_choice]
    dist = np.abs(b.positions - chosen[:, None])
    dist = np.where(b.modes, dist, np.inf)
    near = dist.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = near / b.span
    return np.where(np.isfinite(out), out, np.nan)


def wasserstein1(b: ItemBatch) -> np.ndarray:
    """W1 between D_M and D_H on the ordinal positions (integral of |CDF_M - CDF_H|)."""
    pos = np.where(np.isfinite(b.positions), b.positions, 0.0)
    diff = b.model - b.human
    if (np.diff(pos, axis=1) < 0).any():  # WVS positions are already ascending; sort only when needed
        order = np.argsort(pos, axis=1, kind="stable")
        pos = np.take_along_axis(pos, order, axis=1)
        diff = np.take_along_axis(diff, order, axis=1)
    p = pos
    cdf = np.cumsum(diff, axis=1)[:, :-1]
    return np.sum(np.abs(cdf) * np.diff(p, axis=1), axis=1)


@register_metric("representativeness", higher_is_better=True, needs_ordinal=True, reads_choice=False, bounds=UNIT,
                 description="1 - W1(D_M, D_H) / (K-1) on the ordinal positions (OpinionQA)")  # fmt: skip
def representativeness(b: ItemBatch) -> np.ndarray:
    """1 - W1 / (K - 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - wasserstein1(b) / b.span
    return np.where(np.isfinite(out), out, np.nan)


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance, base 2 (row-wise, as scipy.spatial.distance.jensenshannon)."""
    from scipy.special import rel_entr

    m = (p + q) / 2.0
    div = (np.sum(rel_entr(p, m), axis=1) + np.sum(rel_entr(q, m), axis=1)) / (2.0 * np.log(2.0))
    return np.sqrt(np.clip(div, 0.0, None))


@register_metric("similarity", higher_is_better=True, reads_choice=False, bounds=UNIT,
                 description="1 - Jensen-Shannon distance (base 2) between D_M and D_H (GlobalOpinionQA)")  # fmt: skip
def similarity(b: ItemBatch) -> np.ndarray:
    """1 - JSD(D_M, D_H), base 2, so in [0, 1]."""
    return 1.0 - js_distance(b.model, b.human)


# ---------------------------------------------------------------- public helpers


def compute_metrics(batch: ItemBatch, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every registered metric (or ``names``) for every item; NaN where undefined.

    Undefined: an invalid item (missing distribution) for all metrics, and nominal
    items for metrics registered with ``needs_ordinal``.
    """
    specs = metric_specs()
    out: dict[str, np.ndarray] = {}
    for name, spec in specs.items():
        if names is not None and name not in names:
            continue
        if len(batch) == 0:
            out[name] = np.zeros(0)
            continue
        values = np.asarray(spec.fn(batch), dtype=float).copy()
        values[~batch.valid] = np.nan
        if spec.needs_ordinal:
            values[~batch.ordinal] = np.nan
        out[name] = values
    return out


def item_metrics(items: pd.DataFrame) -> pd.DataFrame:
    """One row per item (same index as ``items``), one column per registered metric."""
    import pandas as pd

    values = compute_metrics(batch_from_items(items))
    return pd.DataFrame(values, index=items.index)
