"""Demographic subgroups of one country's respondents, with readable labels for personas and reports.

Each attribute maps WVS codes to labels; groups smaller than ``min_size`` (unweighted)
are listed as suppressed rather than dropped silently, and an attribute whose column
is absent or empty is reported in ``GroupSet.unavailable`` instead of failing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from .errors import ConfigError, DataError
from .types import Group

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .survey import SurveyData

ATTRIBUTES = ("sex", "age", "ethnicity", "religion", "education", "income", "marital", "settlement", "employment")
AGE_BANDS = ("16-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_EDGES = (16, 25, 35, 45, 55, 65)  # lower bounds of AGE_BANDS
SEX = {1: "Male", 2: "Female"}
RELIGION = {0: "No religion", 1: "Catholic", 2: "Protestant", 3: "Orthodox", 4: "Jewish", 5: "Muslim",
            6: "Hindu", 7: "Buddhist", 8: "Other Christian", 9: "Other religion"}
EDUCATION = {1: "Lower education", 2: "Middle education", 3: "Higher education"}
EDUCATION_FROM_ISCED = {0: 1, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 3}  # WVS Q275R recode
INCOME = {1: "Low income", 2: "Medium income", 3: "High income"}
INCOME_FROM_STEP = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 2, 8: 3, 9: 3, 10: 3}  # WVS Q288R recode
MARITAL = {1: "Married", 2: "Living together as married", 3: "Divorced", 4: "Separated", 5: "Widowed", 6: "Single"}
SETTLEMENT = {1: "Urban", 2: "Rural"}
EMPLOYMENT = {1: "Full time", 2: "Part time", 3: "Self employed", 4: "Retired", 5: "Homemaker", 6: "Student",
              7: "Unemployed", 8: "Other employment"}
# attribute -> (columns it may be built from, in preference order); documented in docs/data.md
COLUMNS = {"sex": ("Q260",), "age": ("X003R", "Q262"), "ethnicity": ("Q290",), "religion": ("Q289",),
           "education": ("Q275R", "Q275"), "income": ("Q288R", "Q288"), "marital": ("Q273",),
           "settlement": ("H_URBRURAL",), "employment": ("Q279",)}


@dataclass(frozen=True)
class GroupSet:
    """Groups kept for the audit, those below ``min_size``, and attributes that could not be built."""

    groups: list[Group]
    suppressed: list[Group]
    attributes: tuple[str, ...] = ()
    intersections: tuple[str, ...] = ()
    min_size: int = 30
    unavailable: dict[str, str] = field(default_factory=dict)  # attribute -> reason

    def frame(self) -> pd.DataFrame:
        """attribute, group, n, n_eff: the ``groups`` table that metrics.evaluate expects."""
        import pandas as pd

        return pd.DataFrame([{"attribute": g.attribute, "group": g.label, "n": g.n, "n_eff": g.n_eff}
                             for g in self.groups], columns=["attribute", "group", "n", "n_eff"])


@lru_cache(maxsize=1)
def _ethnicity_table() -> dict[str, dict[str, str]]:
    text = resources.files("cvaudit.audit.data").joinpath("ethnicity.json").read_text(encoding="utf-8")
    return json.loads(text)


def ethnicity_labels(country_numeric: int) -> dict[int, str]:
    """Q290 code -> readable label for one country (codebook, country prefix removed)."""
    return {int(k): v for k, v in _ethnicity_table().get(str(int(country_numeric)), {}).items()}


def kish(weights: np.ndarray) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2; 0 for an empty group."""
    import numpy as np

    w = np.asarray(weights, dtype=float)
    s2 = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def _col(frame: pd.DataFrame, name: str) -> pd.Series | None:
    if name in frame.columns and frame[name].notna().any():
        return frame[name]
    return None


def _coded(frame: pd.DataFrame, attribute: str, country_numeric: int) -> tuple[pd.Series, list[str]] | str:
    """Per-respondent label (NaN when missing) and the label order; or the reason it is unavailable."""
    import numpy as np
    import pandas as pd

    def mapped(series: pd.Series, table: dict[int, str]) -> pd.Series:
        return series.map(lambda v: table.get(int(v)) if pd.notna(v) else None)

    cols = COLUMNS[attribute]
    present = [c for c in cols if _col(frame, c) is not None]
    if not present:
        return f"column {' or '.join(cols)} absent or all missing"
    if attribute == "age":
        out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        if _col(frame, "Q262") is not None:
            age = frame["Q262"]
            band = np.searchsorted(np.asarray(AGE_EDGES), age.to_numpy(), side="right") - 1
            ok = age.notna() & (band >= 0)
            out[ok] = [AGE_BANDS[b] for b in band[ok.to_numpy()]]
        if _col(frame, "X003R") is not None:  # the official recode wins where present
            x = mapped(frame["X003R"], {i + 1: b for i, b in enumerate(AGE_BANDS)})
            out = x.where(x.notna(), out)
        return out, list(AGE_BANDS)
    if attribute == "ethnicity":
        table = ethnicity_labels(country_numeric)
        codes = frame["Q290"]
        extra = {int(c): f"Ethnic group {int(c)}" for c in codes.dropna().unique() if int(c) not in table}
        table = {**table, **extra}
        order = list(dict.fromkeys(table[c] for c in sorted(table)))
        return mapped(codes, table), order
    if attribute in ("education", "income"):
        labels, fallback = (EDUCATION, EDUCATION_FROM_ISCED) if attribute == "education" else (INCOME, INCOME_FROM_STEP)
        recoded, raw = cols
        out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        if _col(frame, raw) is not None:
            out = mapped(frame[raw], {k: labels[v] for k, v in fallback.items()})
        if _col(frame, recoded) is not None:
            x = mapped(frame[recoded], labels)
            out = x.where(x.notna(), out)
        return out, list(labels.values())
    table = {"sex": SEX, "religion": RELIGION, "marital": MARITAL, "settlement": SETTLEMENT,
             "employment": EMPLOYMENT}[attribute]
    return mapped(frame[cols[0]], table), list(table.values())


def build_groups(survey: SurveyData, attributes: Sequence[str] | None = None, intersections: Sequence[str] = (),
                 min_size: int = 30) -> GroupSet:
    """Single-attribute groups (``attributes``, all nine when None) and ``intersections`` like "sex:age".

    ``attributes=["none"]`` (or ``["all"]``) gives one group, "All respondents"; with
    ``intersections`` it gives the intersection groups alone.
    """
    import numpy as np

    if min_size < 1:
        raise ConfigError(f"--min-size must be at least 1, got {min_size}")
    frame, w = survey.frame, np.asarray(survey.weights, dtype=float)
    attrs = list(ATTRIBUTES) if attributes is None else [a.strip().lower() for a in attributes if a.strip()]
    inters = [i.strip().lower() for i in intersections if i.strip()]
    if attrs in (["none"], ["all"]) and inters:
        attrs = []  # "--attributes none --intersections a:b": the intersections alone (seed 003 held-out groups)
    elif attrs in (["none"], ["all"]):
        idx = tuple(range(len(frame)))
        g = Group("all", "All respondents", (("all", "All respondents"),), len(frame), kish(w), idx)
        return GroupSet([g] if len(frame) >= min_size else [], [] if len(frame) >= min_size else [g],
                        ("none",), tuple(inters), min_size)
    for a in [*attrs, *(p for i in inters for p in i.split(":"))]:
        if a not in ATTRIBUTES:
            raise ConfigError(f"unknown attribute {a!r}: use one of {', '.join(ATTRIBUTES)} or 'none'")
    for i in inters:
        if len(i.split(":")) < 2 or len(set(i.split(":"))) != len(i.split(":")):
            raise ConfigError(f"bad intersection {i!r}: write two or more different attributes as 'sex:age'")

    coded: dict[str, tuple[pd.Series, list[str]]] = {}
    unavailable: dict[str, str] = {}
    for a in dict.fromkeys([*attrs, *(p for i in inters for p in i.split(":"))]):
        res = _coded(frame, a, survey.country.numeric)
        if isinstance(res, str):
            unavailable[a] = res
        else:
            coded[a] = res

    kept: list[Group] = []
    suppressed: list[Group] = []

    def add(attribute: str, parts: list[str], mask: np.ndarray) -> None:
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        g = Group(attribute, ", ".join(parts), tuple(zip(attribute.split(":"), parts)), int(idx.size),
                  kish(w[idx]), tuple(int(i) for i in idx))
        (kept if idx.size >= min_size else suppressed).append(g)

    for a in attrs:
        if a not in coded:
            continue
        labels, order = coded[a]
        values = labels.to_numpy(dtype=object)
        for lab in order:
            add(a, [lab], values == lab)
    for inter in inters:
        parts = inter.split(":")
        missing = [p for p in parts if p not in coded]
        if missing:
            unavailable[inter] = f"needs {', '.join(missing)}"
            continue
        cols = [coded[p][0].to_numpy(dtype=object) for p in parts]
        combos = [[]]
        for p in parts:
            combos = [c + [lab] for c in combos for lab in coded[p][1]]
        before = len(kept)
        for combo in combos:
            mask = np.ones(len(frame), dtype=bool)
            for col, lab in zip(cols, combo):
                mask &= col == lab
            add(inter, combo, mask)
        if len(kept) == before:  # asked for, and not one cell large enough: say so, not just a count
            unavailable[inter] = f"every cell has fewer than {min_size} respondents"
    return GroupSet(kept, suppressed, tuple(attrs), tuple(inters), min_size, unavailable)


def require_groups(groupset: GroupSet, min_size: int | None = None) -> GroupSet:
    """``groupset`` if it has a group to audit, else the one-line DataError ``cvaudit run`` gives.

    Shared by ``cvaudit data`` and ``cvaudit run`` so the preview refuses exactly what the
    audit refuses, with the same reason, instead of printing "0 across 0 attributes".
    """
    if groupset.groups:
        return groupset
    gone = {str(k): str(v) for k, v in dict(groupset.unavailable or {}).items()}
    if gone:  # the columns are missing: --min-size is not the cause
        why = "; ".join(f"{a}: {r}" for a, r in sorted(gone.items()))
        raise DataError(f"no subgroup can be built ({why}); use the full WVS respondent file or other --attributes")
    size = groupset.min_size if min_size is None else min_size
    raise DataError(f"no subgroup has at least {size} respondents; lower --min-size or choose other --attributes")
