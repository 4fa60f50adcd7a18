"""Tidy DataFrames from a results dict or results.json path, for Python users and notebooks.

results.json nests figures as {"value", "ci"}; these accessors flatten them into
value / ci_lo / ci_hi columns (NaN for null) so pandas filtering and plotting work.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def load_results(results: dict | str | os.PathLike) -> dict[str, Any]:
    """A results dict as is, or read from a results.json path (or the folder holding it)."""
    from cvaudit.audit.errors import DataError

    if isinstance(results, dict):
        return results
    path = Path(results)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise DataError(f"no results file at {path}; give a results.json path or the audit's output folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}); re-run the audit to rewrite it") from exc


def _f(x: Any) -> float:
    return float("nan") if x is None else float(x)


def _ci(fig: dict | None) -> tuple[float, float, float]:
    if not fig:
        return float("nan"), float("nan"), float("nan")
    ci = fig.get("ci") or [None, None]
    return _f(fig.get("value")), _f(ci[0]), _f(ci[1])


def group_frame(results: dict | str | os.PathLike) -> pd.DataFrame:
    """One row per (group, metric): attribute, group, n, n_eff, metric, value, ci_lo, ci_hi, status, ratio,
    ratio_net, p_value, p_holm, noise_shift, noise_removed (the flag's fields; docs/metrics.md)."""
    import pandas as pd

    rows = []
    for g in load_results(results).get("groups") or []:
        for metric, fig in (g.get("metrics") or {}).items():
            value, lo, hi = _ci(fig)
            fl = (g.get("flags") or {}).get(metric) or {}
            rows.append({"attribute": g["attribute"], "group": g["group"], "n": g.get("n"), "n_eff": g.get("n_eff"),
                         "metric": metric, "value": value, "ci_lo": lo, "ci_hi": hi, "status": fl.get("status"),
                         "ratio": _f(fl.get("ratio")), "ratio_net": _f(fl.get("ratio_net")),
                         "p_value": _f(fl.get("p_value")), "p_holm": _f(fl.get("p_holm")),
                         "noise_shift": _f(fl.get("noise_shift")), "noise_removed": _f(fl.get("noise_removed"))})  # fmt: skip
    cols = ["attribute", "group", "n", "n_eff", "metric", "value", "ci_lo", "ci_hi", "status", "ratio",
            "ratio_net", "p_value", "p_holm", "noise_shift", "noise_removed"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def disparity_frame(results: dict | str | os.PathLike) -> pd.DataFrame:
    """One row per (attribute, metric): each disparity figure as value plus <figure>_lo / <figure>_hi."""
    import pandas as pd

    from .disparity import FIGURES

    rows = []
    for d in load_results(results).get("disparity") or []:
        row: dict[str, Any] = {"attribute": d["attribute"], "metric": d["metric"]}
        for fig in FIGURES:
            row[fig], row[f"{fig}_lo"], row[f"{fig}_hi"] = _ci(d.get(fig))
        for key in ("best_group", "worst_group", "reference_group"):
            row[key] = d.get(key)
        rows.append(row)
    cols = ["attribute", "metric"] + [c for f in FIGURES for c in (f, f"{f}_lo", f"{f}_hi")]
    cols += ["best_group", "worst_group", "reference_group"]
    return pd.DataFrame(rows, columns=cols)


def item_frame(results: dict | str | os.PathLike) -> pd.DataFrame:
    """One row per item with its metrics as columns (NaN where undefined)."""
    import pandas as pd

    rows = []
    for it in load_results(results).get("items") or []:
        row = {k: v for k, v in it.items() if k not in ("metrics", "extra")}
        for metric, value in (it.get("metrics") or {}).items():
            row[metric] = _f(value)
        rows.append(row)
    return pd.DataFrame(rows)


def category_frame(results: dict | str | os.PathLike) -> pd.DataFrame:
    """results "categories" as a frame: attribute, group, category, metric, value, n_questions."""
    import pandas as pd

    cols = ["attribute", "group", "category", "metric", "value", "n_questions"]
    frame = pd.DataFrame(load_results(results).get("categories") or [], columns=cols)
    frame["value"] = frame["value"].astype(float)
    return frame


def baseline_frame(results: dict | str | os.PathLike) -> pd.DataFrame:
    """One row per (baseline, metric): baseline, metric, value, ci_lo, ci_hi (the baseline's overall figure) and
    diff, diff_lo, diff_hi (model minus baseline, paired); empty for results without baselines."""
    import pandas as pd

    rows = []
    for key, entry in (load_results(results).get("baselines") or {}).items():
        for metric, fig in (entry.get("overall") or {}).items():
            value, lo, hi = _ci(fig)
            diff, dlo, dhi = _ci((entry.get("model_minus_baseline") or {}).get(metric))
            rows.append({"baseline": key, "metric": metric, "value": value, "ci_lo": lo, "ci_hi": hi,
                         "diff": diff, "diff_lo": dlo, "diff_hi": dhi})  # fmt: skip
    return pd.DataFrame(rows, columns=["baseline", "metric", "value", "ci_lo", "ci_hi", "diff", "diff_lo", "diff_hi"])


def spread_frame(results: dict | str | os.PathLike) -> pd.DataFrame:
    """One row per attribute: how far apart the groups' answers are, model (model, model_lo, model_hi), survey
    (survey, ...) and their ratio (ratio, ...), and n_questions; empty for results without it."""
    import pandas as pd

    rows = []
    for s in load_results(results).get("spread") or []:
        row: dict[str, Any] = {"attribute": s.get("attribute")}
        for part in ("model", "survey", "ratio"):
            row[part], row[f"{part}_lo"], row[f"{part}_hi"] = _ci(s.get(part))
        row["n_questions"] = s.get("n_questions")
        rows.append(row)
    cols = ["attribute"] + [c for p in ("model", "survey", "ratio") for c in (p, f"{p}_lo", f"{p}_hi")] + ["n_questions"]
    return pd.DataFrame(rows, columns=cols)
