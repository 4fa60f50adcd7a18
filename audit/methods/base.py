"""Alignment-method registry: a new method is one module that calls :func:`register_method`.

A method turns (groups, questions) into model answer distributions. It asks the
engine for option log-probabilities through ``ctx.scorer`` and may change the
model (steering hooks, adapters) through :meth:`Method.model_modifier`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import ConfigError
from ..types import Group, ItemPrediction, Question

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


@dataclass(frozen=True)
class PromptSpec:
    """One prompt to score: optional persona (system) text, a question, an option order."""

    question: Question
    system: str | None = None
    reverse: bool = False  # options listed last-to-first


class Scorer(Protocol):
    """What the engine offers methods."""

    model: Any
    tokenizer: Any

    def logprobs(self, specs: Sequence[PromptSpec]) -> list[np.ndarray]:
        """Log-softmax over each question's option tokens, in canonical option order."""
        ...

    def distributions(self, specs: Sequence[PromptSpec]) -> list[np.ndarray]:
        """Position-debiased distributions: both option orders of each spec, combined."""
        ...

    def modified(self, tag: str | None) -> AbstractContextManager[None]:
        """Context in which scores are cached under ``tag`` (the method changed the model: hooks, adapters)."""
        ...


@dataclass(frozen=True)
class HeldOutCells:
    """(group, question) cells a method was fitted on, left out of every figure of the run.

    Question-level hold-outs (:meth:`Method.filter_questions`) cannot express a test on
    unseen group *combinations* over the same questions (seed 003): there a held-out
    group's cell on a trained question is a test cell, a trained group's is not.
    """

    cells: frozenset[tuple[str, str]] = frozenset()  # (group.id, question.id)
    notes: tuple[str, ...] = ()  # plain-language lines for the log and results.json metric_notes
    reason: str = ""  # one line recorded as results.json excluded_cells.reason
    advice: str = ""  # what to audit instead when no cell would be left


@dataclass
class MethodContext:
    scorer: Scorer
    groups: Sequence[Group]
    questions: Sequence[Question]
    country: Any  # audit.types.Country
    survey: Any = None  # audit.survey.SurveyData, for methods grounded in respondents (DISCA)
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class. Subclasses set ``name`` and implement :meth:`predict`."""

    name: ClassVar[str] = ""
    #: True when the method needs one prompt per group (persona-like); False when
    #: every group shares the model's single answer (``none``).
    per_group: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self._params = dict(params)

    def params(self) -> dict[str, Any]:
        """Every parameter that changes the output; recorded in results.json."""
        return dict(self._params)

    def fingerprint(self) -> str:
        blob = json.dumps({"name": self.name, "params": self.params()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def model_modifier(self) -> str | None:
        """Identifier of any change the method makes to the model itself (adapter, steering).

        Part of the score-cache key: prompts scored on a modified model are cached apart.
        """
        return None

    def model_overrides(self, model: str | None = None) -> dict[str, Any]:
        """Changes to model loading applied before the model loads, e.g. ``{"adapter": PATH}``.

        ``model`` is the ``--model`` the user gave (None when left at the default), so an
        explicit choice can beat, say, an adapter's recorded base model.
        """
        return {}

    def filter_questions(self, questions: Sequence[Question]) -> tuple[list[Question], list[str]]:
        """(kept questions, notes): a method may refuse questions it was fitted on (steering calibration)."""
        return list(questions), []

    def training_cells(self, groups: Sequence[Group], questions: Sequence[Question], country: Any) -> HeldOutCells:
        """Cells of the audited ``groups`` x ``questions`` this method was trained on (default: none).

        Asked after the groups are built and before the model loads, so a run with
        nothing left to test fails at once. Predictions are still made for these cells
        (a method report may use them); only the run's figures leave them out.
        """
        return HeldOutCells()

    def check(self, ctx: MethodContext) -> None:
        """Refuse input that only the loaded model can judge (layers, vector shapes, fingerprints).

        Called once the model is loaded and before OUT is marked superseded, so a
        mistake found here leaves an earlier finished audit in OUT intact. Must be
        cheap: no scoring. The default accepts everything.
        """

    def predict(self, ctx: MethodContext) -> dict[tuple[str, str], ItemPrediction]:
        """Return ``{(group.id, question.id): ItemPrediction}`` for every group and question."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


# name -> module that registers it; imported on demand so `cvaudit --help` stays instant
_BUILTIN = {
    "none": "cvaudit.audit.methods.none",
    "persona": "cvaudit.audit.methods.persona",
    "disca": "cvaudit.audit.methods.disca",
    "steering": "cvaudit.audit.methods.steering",
    "checkpoint": "cvaudit.audit.methods.checkpoint",
}


def available_methods() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get_method_class(name: str) -> type[Method]:
    if name not in _REGISTRY and name in _BUILTIN:
        import importlib

        importlib.import_module(_BUILTIN[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; available: {', '.join(available_methods())}") from None
