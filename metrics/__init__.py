"""Metrics, disparity, paired-bootstrap intervals and flags (docs/metrics.md).

Public API::

    evaluate(items, groups, config=MetricsConfig(), human_replicates=None, population=None) -> dict
    MetricsConfig(n_boot=1000, level=0.95, seed=0, tau=0.8, alpha=0.05, reference=(), respondents=False)
    register_metric(name, higher_is_better=True, needs_ordinal=False)
    item_metrics(items) -> DataFrame
    seed003_table(results) -> DataFrame
    group_frame(results), disparity_frame(results), item_frame(results) -> DataFrame
    baseline_frame(results), spread_frame(results) -> DataFrame
"""

from __future__ import annotations

from .disparity import disparity_figures, seed003_table
from .evaluate import MetricsConfig, evaluate
from .flags import holm
from .frames import baseline_frame, category_frame, disparity_frame, group_frame, item_frame, spread_frame
from .item import ItemBatch, compute_metrics, item_metrics
from .registry import MetricSpec, get_metric, metric_specs, register_metric

__all__ = [
    "ItemBatch",
    "MetricSpec",
    "MetricsConfig",
    "baseline_frame",
    "category_frame",
    "compute_metrics",
    "disparity_figures",
    "disparity_frame",
    "evaluate",
    "get_metric",
    "group_frame",
    "holm",
    "item_frame",
    "item_metrics",
    "metric_specs",
    "register_metric",
    "seed003_table",
    "spread_frame",
]
