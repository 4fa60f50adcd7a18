"""Disparity of one metric across the groups of one attribute.

All figures work on the last axis (groups) of an array, so the same function gives
the point estimate (shape (G,)) and every bootstrap replicate at once (shape (B, G)):
each replicate's gap is the gap of that replicate's group means. Groups whose value
is undefined (NaN) are left out; fewer than two defined groups -> NaN (no disparity).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

FIGURES = ("gap", "ratio", "normalised_range", "cv", "max_abs_to_overall")


def disparity_figures(values: np.ndarray, overall: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """gap, ratio, normalised_range, cv and max_abs_to_overall along the last axis.

    gap = max - min; ratio = min / max; normalised_range = (max - min) / max (both NaN
    when max <= 0); cv = population std / mean (NaN when mean = 0);
    max_abs_to_overall = max |value - overall| (``overall`` has the leading shape).
    """
    v = np.asarray(values, dtype=float)
    v = np.where(np.isfinite(v), v, np.nan)
    n_def = np.isfinite(v).sum(axis=-1)
    enough = n_def >= 2
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        vmax, vmin = np.nanmax(v, axis=-1), np.nanmin(v, axis=-1)
        mean, std = np.nanmean(v, axis=-1), np.nanstd(v, axis=-1)
        gap = vmax - vmin
        pos = vmax > 0
        ratio = np.where(pos, vmin / np.where(pos, vmax, 1.0), np.nan)
        nrange = np.where(pos, gap / np.where(pos, vmax, 1.0), np.nan)
        nz = mean != 0
        cv = np.where(nz, std / np.where(nz, mean, 1.0), np.nan)
        if overall is None:
            mabs = np.full(gap.shape, np.nan)
        else:
            o = np.asarray(overall, dtype=float)[..., None]
            mabs = np.nanmax(np.abs(v - o), axis=-1)
    out = {"gap": gap, "ratio": ratio, "normalised_range": nrange, "cv": cv, "max_abs_to_overall": mabs}
    return {k: np.where(enough, x, np.nan) for k, x in out.items()}


def best_worst(values: np.ndarray, higher_is_better: bool) -> tuple[int | None, int | None]:
    """Indices of the best and worst defined group (first in order on ties); None if none defined."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        return None, None
    hi = np.where(ok, v, -np.inf)
    lo = np.where(ok, v, np.inf)
    top, bottom = int(np.argmax(hi)), int(np.argmin(lo))
    return (top, bottom) if higher_is_better else (bottom, top)


def seed003_table(results: dict | str | pd.DataFrame) -> pd.DataFrame:
    """Seed 003's disparity table: accuracy and NMAE normalised range and CV per attribute.

    Accepts a results dict, a results.json path, or a :func:`disparity_frame`.
    Columns: attribute, accuracy_normalised_range, accuracy_cv, nmae_normalised_range, nmae_cv.
    """
    import pandas as pd

    from .frames import disparity_frame

    frame = results if isinstance(results, pd.DataFrame) else disparity_frame(results)
    frame = frame[frame["metric"].isin(["accuracy", "nmae"])]
    attrs = list(dict.fromkeys(frame["attribute"]))
    rows = []
    for attr in attrs:
        row: dict = {"attribute": attr}
        for metric in ("accuracy", "nmae"):
            sel = frame[(frame["attribute"] == attr) & (frame["metric"] == metric)]
            for fig in ("normalised_range", "cv"):
                row[f"{metric}_{fig}"] = float(sel[fig].iloc[0]) if len(sel) else float("nan")
        rows.append(row)
    cols = ["attribute", "accuracy_normalised_range", "accuracy_cv", "nmae_normalised_range", "nmae_cv"]
    return pd.DataFrame(rows, columns=cols)
