"""DISCA persona panels: WVS-grounded personas built from a target group's own respondents.

Seed 000/001 instantiates a country as three age cohorts (under 36, 36-55, over
55) plus the all-ages aggregate, each described by ten value dimensions read
from its members' weighted WVS answers. Here the target is any audited
subgroup: its respondents are split by a second attribute (age cohorts by
default) and the panel's last member is the whole target: by default
(``whole="wvs"``, as the ``disca`` method) the paper's value-grounded all-ages
member; ``whole="persona"`` speaks the ``persona`` method's exact text instead,
so a prior persona run's scores are reused. A panel has at least two split cells
or none (``size`` 1 or >= 3): fewer cells cannot disagree among themselves.
Wording lives in ``texts/disca_persona.txt`` and ``texts/disca_dimensions.json``;
docs/methods-disca.md explains the fallbacks for small cells.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from types import SimpleNamespace
from typing import Any

import numpy as np
from cvaudit.audit.errors import ConfigError
from cvaudit.audit.types import Country, Group

#: paper's cohorts as inclusive (low, high) ages; None = open end
AGE_COHORTS: tuple[tuple[int | None, int | None], ...] = ((None, 35), (36, 55), (56, None))
#: the split used instead when the requested one is one of the target's own attributes
SPLIT_ORDER = ("age", "sex", "education", "religion", "ethnicity", "income", "marital", "settlement", "employment")
WHOLE_MODES = ("persona", "wvs")
DEFAULT_WHOLE = "wvs"  # the paper's all-ages member; DiscaMethod's whole_persona default
ALL_AGES = "all ages"  # a merged cohort spanning every age


def check_panel_size(size: int) -> None:
    """Refuse sizes that cannot hold two split cells besides the whole target (1 = whole target alone)."""
    if size < 1:
        raise ConfigError(f"method param panel_size must be at least 1, got {size}")
    if size == 2:
        raise ConfigError("method param panel_size=2 leaves one split cell, but a panel needs two to disagree; "
                          "use panel_size=1 (whole target only) or >= 3")  # fmt: skip


@dataclass(frozen=True)
class DimensionScore:
    key: str
    label: str
    score: float  # in [0, 1], 1 = high on the dimension as named
    quartile: int  # 0 for score >= .75 ... 3 for < .25
    descriptor: str
    sentence: str


@dataclass(frozen=True)
class PanelMember:
    label: str  # "under 36", "Female", or the target's own label for the whole target
    kind: str  # "split" or "whole"
    text: str | None  # the system prompt
    n: int
    n_eff: float
    profile: tuple[DimensionScore, ...]
    index: tuple[int, ...] = field(default=(), repr=False, compare=False)  # rows of survey.frame


@dataclass(frozen=True)
class Panel:
    target: str  # Group.id
    split: str | None  # attribute actually used for the split cells (None: whole target only)
    members: tuple[PanelMember, ...]
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- texts
def _read(name: str) -> str:
    return resources.files("cvaudit.personas").joinpath("texts", name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def dimensions() -> dict[str, Any]:
    """The ten value dimensions with their items, descriptors and sentences."""
    return json.loads(_read("disca_dimensions.json"))


def dimension_question_ids() -> tuple[str, ...]:
    """The WVS question ids the value dimensions are computed from (in file order, once each)."""
    return tuple(dict.fromkeys(spec["column"] for dim in dimensions()["dimensions"] for spec in dim["items"]))


@lru_cache(maxsize=1)
def frame_template() -> str:
    lines = [ln.strip() for ln in _read("disca_persona.txt").splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return " ".join(lines)


def quartile(score: float) -> int:
    """Quartile cut of a normalised score: >= .75 -> 0, >= .5 -> 1, >= .25 -> 2, else 3."""
    if score >= 0.75:
        return 0
    if score >= 0.5:
        return 1
    if score >= 0.25:
        return 2
    return 3


# ----------------------------------------------------------------------------- value profiles
def item_score(values: np.ndarray, weights: np.ndarray, spec: dict[str, Any]) -> float | None:
    """Weighted mean of one item, min-max normalised on its scale and direction-corrected; None if no answer."""
    x = np.asarray(values, dtype=np.float64)
    recode = spec.get("recode")
    if recode:
        table = {float(k): float(v) for k, v in recode.items()}
        x = np.array([table.get(v, np.nan) for v in x], dtype=np.float64)
    lo, hi = float(spec["min"]), float(spec["max"])
    ok = ~np.isnan(x) & (x >= lo) & (x <= hi)
    w = np.asarray(weights, dtype=np.float64)[ok]
    if not ok.any() or w.sum() <= 0:
        return None
    score = (float(np.sum(w * x[ok]) / w.sum()) - lo) / (hi - lo)
    return 1.0 - score if spec.get("reverse") else score


def value_profile(frame: Any, weights: np.ndarray, rows: Sequence[int]) -> tuple[DimensionScore, ...]:
    """The dimensions that can be computed for these respondents (absent/empty columns leave a dimension out)."""
    rows = np.asarray(rows, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)[rows]
    out: list[DimensionScore] = []
    for dim in dimensions()["dimensions"]:
        scores = []
        for spec in dim["items"]:
            if spec["column"] not in frame.columns:
                continue
            s = item_score(frame[spec["column"]].to_numpy(dtype=np.float64)[rows], w, spec)
            if s is not None:
                scores.append(s)
        if not scores:
            continue
        score = float(np.mean(scores))
        q = quartile(score)
        out.append(DimensionScore(dim["key"], dim["label"], score, q, dim["descriptors"][q], dim["sentences"][q]))
    return tuple(out)


# ----------------------------------------------------------------------------- persona text
def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _age_phrase(lo: int | None, hi: int | None) -> str:
    if lo is None and hi is None:
        return ""
    if lo is None:
        return f" aged under {hi + 1}" if (hi + 1) in (36, 56) else f" aged {hi} or under"
    if hi is None:
        return f" aged over {lo - 1}" if lo == 56 else f" aged {lo} or over"
    return f" aged {lo}-{hi}"


def _age_label_phrase(label: str) -> str:
    """A target's own age band ('25-34', '65+') as the frame's {age_range}."""
    from cvaudit.personas.persona import clean_label

    s = clean_label(label)
    if s.endswith("+"):
        return f" aged {s[:-1]} or over"
    return f" aged {s}"


def disca_text(values: dict[str, str], country: Country, age_range: str, profile: Sequence[DimensionScore]) -> str:
    """The paper's persona frame for one panel member (identity from ``values``, one sentence per dimension)."""
    from cvaudit.personas.persona import DETAILS, clean_label, lookup_phrase

    role_words: list[str] = []
    if "ethnicity" in values:
        eth = lookup_phrase("ethnicity", values["ethnicity"])
        if eth is not None:
            role_words.append(eth.format(label=clean_label(values["ethnicity"])))
    noun = (lookup_phrase("sex", values["sex"]) if "sex" in values else None) or "person"
    role = " ".join([*role_words, noun])
    details = ""
    for attr in DETAILS:
        if attr in values:
            details += (lookup_phrase(attr, values[attr]) or "").format(label=clean_label(values[attr]), country=country.name)
    vals = "".join(f" {d.sentence}" for d in profile)
    return frame_template().format(
        article=_article(role), role=role, country=country.name, age_range=age_range, details=details,
        values=vals, closing=dimensions()["closing"],
    ).strip()  # fmt: skip


# ----------------------------------------------------------------------------- splitting
def respondent_ages(frame: Any) -> np.ndarray:
    """Age per respondent: survey year A_YEAR minus birth year Q261 where both exist, else Q262."""
    n = len(frame)
    age = np.full(n, np.nan)
    if "Q262" in frame.columns:
        age = frame["Q262"].to_numpy(dtype=np.float64).copy()
    if "Q261" in frame.columns and "A_YEAR" in frame.columns:
        by = frame["Q261"].to_numpy(dtype=np.float64)
        yr = frame["A_YEAR"].to_numpy(dtype=np.float64)
        ok = ~np.isnan(by) & ~np.isnan(yr) & (by > 1000)
        age[ok] = yr[ok] - by[ok]
    return age


def choose_split(requested: str, group: Group) -> tuple[str, str | None]:
    """The split attribute for this target and a note when the request had to be changed."""
    own = set(group.attribute.split(":"))
    if requested not in own:
        return requested, None
    for alt in SPLIT_ORDER:
        if alt not in own:
            return alt, f"target is split by {requested} already; panel split by {alt} instead"
    raise ConfigError(f"no attribute left to split {group.id} by; use --method-param panel_size=1")


@dataclass
class _Cell:
    label: str
    rows: np.ndarray
    span: tuple[int | None, int | None] | None = None  # age cohorts only


def _span_label(lo: int | None, hi: int | None) -> str:
    """A cohort's label ("under 36", "36 or over"); never empty, so notes always name the cell."""
    return _age_phrase(lo, hi).replace(" aged ", "", 1) or ALL_AGES


def _age_cells(frame: Any, rows: np.ndarray) -> list[_Cell]:
    age = respondent_ages(frame)[rows]
    cells = []
    for lo, hi in AGE_COHORTS:
        ok = ~np.isnan(age) & (age >= (lo if lo is not None else -np.inf)) & (age <= (hi if hi is not None else np.inf))
        cells.append(_Cell(_span_label(lo, hi), rows[ok], (lo, hi)))
    return cells


def _merge(a: _Cell, b: _Cell) -> _Cell:
    first, second = (a, b) if (a.span[0] is None or (b.span[0] is not None and a.span[0] < b.span[0])) else (b, a)
    span = (first.span[0], second.span[1])
    return _Cell(_span_label(*span), np.sort(np.concatenate([a.rows, b.rows])), span)


def _fit_ordinal(cells: list[_Cell], min_size: int, max_cells: int, notes: list[str]) -> list[_Cell]:
    """Merge the smallest too-small (or surplus) cohort into its smaller neighbour until all fit."""
    cells = list(cells)
    while len(cells) > 1:
        small = [i for i, c in enumerate(cells) if len(c.rows) < min_size]
        if small:
            i = min(small, key=lambda j: (len(cells[j].rows), j))
        elif len(cells) > max_cells:
            i = min(range(len(cells)), key=lambda j: (len(cells[j].rows), j))
        else:
            break
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < len(cells)]
        j = min(nbrs, key=lambda k: (len(cells[k].rows), k))
        merged = _merge(cells[i], cells[j])
        reason = f"n={len(cells[i].rows)} < {min_size}" if len(cells[i].rows) < min_size else "panel_size"
        notes.append(f"age cohort '{cells[i].label}' ({reason}) merged with '{cells[j].label}' into '{merged.label}'")
        lo, hi = sorted((i, j))
        cells[lo:hi + 1] = [merged]
    return cells


def _nominal_cells(survey: Any, rows: np.ndarray, split: str) -> list[_Cell]:
    from cvaudit.audit.subgroups import build_groups

    sub = SimpleNamespace(
        frame=survey.frame.iloc[rows].reset_index(drop=True),
        weights=np.asarray(survey.weights, dtype=np.float64)[rows],
        country=survey.country,
    )
    gs = build_groups(sub, [split], min_size=1)
    if split in gs.unavailable:
        return []
    return [_Cell(g.label, rows[np.asarray(g.index, dtype=np.int64)]) for g in gs.groups]


def build_panel(survey: Any, group: Group, country: Country, size: int = 4, split: str = "age",
                min_size: int = 30, whole: str = DEFAULT_WHOLE) -> Panel:
    """Up to ``size - 1`` split cells of the target's respondents plus the whole target.

    Cells below ``min_size`` respondents: age cohorts are merged into their smaller
    neighbour, other cells are dropped; with fewer than two cells left the panel
    is the whole target alone. Every change is written to ``Panel.notes``.
    ``size`` is 1 (whole target alone) or at least 3 (see :func:`check_panel_size`).
    """
    from cvaudit.personas.persona import persona_text

    check_panel_size(size)
    if whole not in WHOLE_MODES:
        raise ConfigError(f"method param whole_persona must be one of {', '.join(WHOLE_MODES)}, got {whole!r}")
    frame, weights = survey.frame, np.asarray(survey.weights, dtype=np.float64)
    rows = np.asarray(group.index, dtype=np.int64)
    values = {k: v for k, v in group.values if k != "all"}
    notes: list[str] = []
    used, note = choose_split(split, group) if size > 1 else (None, None)
    if note:
        notes.append(note)

    cells: list[_Cell] = []
    if used == "age":
        cells = [c for c in _age_cells(frame, rows) if len(c.rows)]
        cells = _fit_ordinal(cells, min_size, size - 1, notes)
    elif used is not None:
        for c in _nominal_cells(survey, rows, used):
            if len(c.rows) < min_size:
                notes.append(f"{used} cell '{c.label}' dropped (n={len(c.rows)} < {min_size})")
            else:
                cells.append(c)
        if len(cells) > size - 1:
            keep = sorted(cells, key=lambda c: -len(c.rows))[: size - 1]
            for c in cells:
                if c not in keep:
                    notes.append(f"{used} cell '{c.label}' left out (panel_size={size} keeps the largest cells)")
            cells = [c for c in cells if c in keep]
    cells = [c for c in cells if len(c.rows) >= min_size]
    if used is not None and len(cells) < 2:
        notes.append(f"split by {used} gives fewer than two cells of >= {min_size}; panel is the whole target only")
        cells, used = [], None

    def kish(r: np.ndarray) -> float:
        w = weights[r]
        return float(w.sum() ** 2 / np.sum(w**2)) if w.size and np.sum(w**2) > 0 else 0.0

    members: list[PanelMember] = []
    for c in cells:
        prof = value_profile(frame, weights, c.rows)
        if used == "age":
            mvals, age_range = values, _age_phrase(*c.span)
        else:
            mvals = {**values, used: c.label}
            age_range = _age_label_phrase(values["age"]) if "age" in values else ""
        members.append(PanelMember(c.label, "split", disca_text(mvals, country, age_range, prof), int(len(c.rows)),
                                   kish(c.rows), prof, tuple(int(i) for i in c.rows)))
    prof = value_profile(frame, weights, rows)
    if whole == "persona":
        text = persona_text(group, country)
    else:
        text = disca_text(values, country, _age_label_phrase(values["age"]) if "age" in values else "", prof)
    members.append(PanelMember(group.label, "whole", text, int(rows.size), kish(rows), prof, tuple(int(i) for i in rows)))
    return Panel(group.id, used, tuple(members), tuple(notes))
