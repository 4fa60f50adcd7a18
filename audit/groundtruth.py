"""Human answer distributions per (group, question): the side of the audit the model is compared with.

All groups are done at once per question with one matrix product (groups x respondents
times respondents x options), so ~100 groups x 240 questions take well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .types import Group, Question

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .subgroups import GroupSet
    from .survey import SurveyData

MODE_TOL = 1e-9  # shares within this of the maximum count as tied modes
COLUMNS = ["attribute", "group", "question", "human_dist", "human_mode", "n", "n_eff", "missing", "suppressed"]


def option_index(values: np.ndarray, question: Question) -> np.ndarray:
    """Map raw WVS codes to option positions 0..K-1; missing or dropped codes become -1."""
    import numpy as np

    out = np.full(values.shape, -1, dtype=np.int64)
    for i, codes in enumerate(question.codes):
        out[np.isin(values, np.asarray(codes, dtype=float))] = i
    return out


def modes(dist: np.ndarray, tol: float = MODE_TOL) -> list[int]:
    """All options whose share is within ``tol`` of the largest (ties kept, not hidden)."""
    import numpy as np

    return [int(i) for i in np.flatnonzero(dist >= dist.max() - tol)]


def ground_truth(survey: SurveyData, groups: GroupSet | Sequence[Group], questions: Sequence[Question],
                 min_size: int = 30) -> pd.DataFrame:
    """One row per (group, question) in group-major order; see COLUMNS.

    human_dist is the weighted share of each option (weights normalised within the group,
    missing and dropped codes excluded); ``suppressed`` (human_dist and human_mode None)
    when fewer than ``min_size`` respondents of the group gave a valid answer.
    """
    import numpy as np
    import pandas as pd

    group_list = list(getattr(groups, "groups", groups))
    frame, w = survey.frame, np.asarray(survey.weights, dtype=float)
    n_resp, n_grp = len(frame), len(group_list)
    member = np.zeros((n_grp, n_resp))
    for gi, g in enumerate(group_list):
        member[gi, list(g.index)] = 1.0
    member_w, member_w2 = member * w, member * (w * w)
    sizes = member.sum(axis=1)

    per_q = []
    for q in questions:
        vals = frame[q.id].to_numpy(dtype=float) if q.id in frame.columns else np.full(n_resp, np.nan)
        idx = option_index(vals, q)
        onehot = np.zeros((n_resp, q.k))
        ok = idx >= 0
        onehot[np.flatnonzero(ok), idx[ok]] = 1.0
        valid = ok.astype(float)
        per_q.append((member_w @ onehot, member @ valid, member_w @ valid, member_w2 @ valid))

    rows = []
    for gi, g in enumerate(group_list):
        for q, (wcounts, n_valid, sw, sw2) in zip(questions, per_q):
            n = int(round(n_valid[gi]))
            n_eff = float(sw[gi] ** 2 / sw2[gi]) if sw2[gi] > 0 else 0.0
            suppressed = n < min_size or sw[gi] <= 0
            dist = None if suppressed else wcounts[gi] / sw[gi]
            rows.append({
                "attribute": g.attribute, "group": g.label, "question": q.id,
                "human_dist": None if dist is None else [float(x) for x in dist],
                "human_mode": None if dist is None else modes(dist),
                "n": n, "n_eff": n_eff, "missing": int(round(sizes[gi])) - n, "suppressed": bool(suppressed),
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def population_distributions(survey: SurveyData, questions: Sequence[Question]) -> dict[str, list[float]]:
    """Question id -> the whole sample's weighted answer shares (every respondent with a valid answer).

    The "population" baseline of the metrics: what a model that answered every group with the
    country's distribution would score. Questions nobody answered validly are left out.
    """
    import numpy as np

    frame, w = survey.frame, np.asarray(survey.weights, dtype=float)
    out: dict[str, list[float]] = {}
    for q in questions:
        if q.id not in frame.columns:
            continue
        idx = option_index(frame[q.id].to_numpy(dtype=float), q)
        ok = idx >= 0
        totals = np.bincount(idx[ok], weights=w[ok], minlength=q.k)[: q.k]
        if totals.sum() > 0:
            out[q.id] = [float(x) for x in totals / totals.sum()]
    return out
