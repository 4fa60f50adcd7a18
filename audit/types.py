"""Core value types shared by every stage of the audit.

Data flow: survey file -> :class:`SurveyData` -> :class:`Group` s and ground truth
-> prompts for each :class:`Question` -> model distributions -> metrics -> results.
All are frozen: a run's inputs cannot change under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Country:
    alpha2: str  # "SG"
    alpha3: str  # "SGP"
    numeric: int  # 702
    name: str  # "Singapore"


@dataclass(frozen=True)
class Question:
    """One WVS value question, ready to be put to a model.

    ``options`` are in scale order after the recodings of answer_adjustment.json;
    ``codes[i]`` are the raw WVS answer codes that count as option ``i``.
    ``positions`` are the ordinal positions (0..K-1) or ``None`` for a nominal item,
    which then gets no distance metric.
    """

    id: str
    text: str
    options: tuple[str, ...]
    codes: tuple[tuple[int, ...], ...]
    ordinal: bool
    category: str
    short: str = ""
    positions: tuple[float, ...] | None = None

    @property
    def k(self) -> int:
        return len(self.options)


@dataclass(frozen=True)
class DataSource:
    """Where the survey side came from; recorded verbatim in results.json."""

    path: str
    sha256: str
    synthetic: bool
    format: str  # "csv", "dta", "sav", "parquet"
    country: Country
    n_respondents: int
    weight_column: str | None  # "W_WEIGHT", "S018" or None (unweighted)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """A demographic subgroup of one country's respondents.

    ``attribute`` is ``"sex"`` for a single attribute, ``"sex:age"`` for an
    intersection and ``"all"`` for the whole country. ``values`` maps each
    attribute to the readable label of this group's value (used for persona
    texts); ``label`` is what reports print.
    """

    attribute: str
    label: str
    values: tuple[tuple[str, str], ...]
    n: int
    n_eff: float
    index: tuple[int, ...] = field(repr=False, compare=False, default=())  # row positions in SurveyData.frame

    @property
    def id(self) -> str:
        return f"{self.attribute}={self.label}"

    def value_dict(self) -> dict[str, str]:
        return dict(self.values)


@dataclass(frozen=True)
class ItemPrediction:
    """A method's answer distribution for one (group, question), aligned with ``Question.options``."""

    dist: tuple[float, ...]
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
