"""Metric registry: a new per-item metric is one decorated function.

Like lm-evaluation-harness's ``register_metric``, each metric declares its direction
(so disparity and flags know what "worse" means) and whether it needs an ordinal
scale (so nominal items get NaN instead of a meaningless distance). A metric
function receives an :class:`~cvaudit.metrics.item.ItemBatch` holding *all* items
as padded arrays and returns one float per item: vectorised, no per-row Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from .item import ItemBatch

MetricFn = Callable[["ItemBatch"], "np.ndarray"]


@dataclass(frozen=True)
class MetricSpec:
    """One registered metric: its function and how to read it."""

    name: str
    fn: MetricFn
    higher_is_better: bool = True
    needs_ordinal: bool = False
    description: str = ""
    #: False for a metric of the whole distribution that never reads the model's top option
    #: (similarity, representativeness): a uniform baseline then needs no tie-breaks for it
    reads_choice: bool = True
    #: the values one item can take, (lo, hi), or None where unknown: figures outside it mark a damaged
    #: results file and policy thresholds outside it a policy mistake
    bounds: tuple[float, float] | None = None


_REGISTRY: dict[str, MetricSpec] = {}


def register_metric(
    name: str, *, higher_is_better: bool = True, needs_ordinal: bool = False, description: str = "",
    reads_choice: bool = True, bounds: tuple[float, float] | None = None,
) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register ``fn(batch) -> np.ndarray[n_items]`` under ``name`` (re-registering replaces)."""
    if bounds is not None:
        lo, hi = (float(b) for b in bounds)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds of metric {name!r} must be finite with lo < hi, got {bounds!r}")
        bounds = (lo, hi)

    def deco(fn: MetricFn) -> MetricFn:
        lines = (fn.__doc__ or "").strip().splitlines()
        doc = description or (lines[0] if lines else "")
        _REGISTRY[name] = MetricSpec(name, fn, higher_is_better, needs_ordinal, doc, reads_choice, bounds)
        return fn

    return deco


def _load_builtins() -> None:
    from . import item  # noqa: F401  (registers accuracy, nmae, representativeness, similarity)


def metric_specs() -> dict[str, MetricSpec]:
    """All registered metrics in registration order (built-ins first)."""
    _load_builtins()
    return dict(_REGISTRY)


def get_metric(name: str) -> MetricSpec:
    from cvaudit.audit.errors import ConfigError

    specs = metric_specs()
    if name not in specs:
        raise ConfigError(f"unknown metric {name!r}; registered metrics: {', '.join(specs)}")
    return specs[name]


def unregister_metric(name: str) -> None:
    """Remove a metric (tests and plug-ins that register temporary metrics)."""
    _REGISTRY.pop(name, None)
