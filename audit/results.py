"""Assemble and write results.json (docs/results-schema.md) and the item tables.

results.json is the single source for the report, gate, compare and exports, so
this module is the only place that decides its shape. It is written twice: a
``complete: false`` record as soon as the run's inputs are validated, then the
full record with ``complete: true`` once every figure exists. Both writes are
atomic, so a killed run never leaves a file that looks finished.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvaudit import __version__

from .io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    remove_leftover_temps,
    remove_outputs,
)
from .types import DataSource, Group, ItemPrediction, Question

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .methods.base import HeldOutCells

SCHEMA_VERSION = "1"
TIMING_FIELDS = ("created_at", "timings", "device")
ITEM_COLUMNS = (
    "attribute", "group", "question", "category", "options", "positions", "model_dist", "human_dist",
    "human_mode", "model_choice", "n", "n_eff", "missing", "extra",
)  # fmt: skip
LIST_COLUMNS = ("options", "positions", "model_dist", "human_dist", "human_mode", "extra")
METRIC_NAMES = ("accuracy", "nmae", "representativeness", "similarity")


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def header(config: Any, created_at: str | None = None) -> dict[str, Any]:
    """The fields every results.json has, complete or not."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "cvaudit", "version": __version__, "python": platform.python_version()},
        "complete": False,
        "timing_fields": list(TIMING_FIELDS),
        "created_at": created_at or now_utc(),
        "config": config.to_dict(),
        "seed": config.seed,
    }


#: what a complete run (and ``cvaudit export`` into its folder) writes beside results.json; a new run
#: removes them once its pending record is down
STALE_OUTPUTS = ("items.csv", "items.parquet", "report.html", "report.pdf", "model_card_metrics.json",
                 "model-index.yaml")  # fmt: skip


def write_pending(out: Path, config: Any, note: str = "run in progress or interrupted") -> Path:
    """Mark OUT/results.json as not complete before any slow work starts."""
    from .errors import ConfigError

    record = header(config)
    record["note"] = note + "; re-run the same command to resume from the score cache"
    try:
        path = atomic_write_json(out / "results.json", record)
    except ConfigError as exc:  # atomic_write_* turns every OSError into one
        raise ConfigError(f"cannot write to the output directory {str(out)!r} ({exc}); pass a writable --out") from None
    # an earlier run's tables and report now belong to no complete results.json: none may look current
    remove_outputs(out, STALE_OUTPUTS)
    remove_leftover_temps(out, ("results.json",))  # from a run killed mid-write
    return path


def device_info(loaded: Any = None) -> dict[str, Any]:
    """Where the model ran (a timing field: it may differ between identical runs)."""
    import torch

    dev = getattr(loaded, "device", None)
    dtype = str(dev) if dev is not None else "cpu"
    kind = dtype.split(":")[0]
    from .distributed import world_size

    info: dict[str, Any] = {"type": kind, "name": "cpu", "count": 1, "torch": torch.__version__,
                            "processes": world_size()}  # > 1 under accelerate launch / torchrun
    if kind == "cuda" and torch.cuda.is_available():
        info["name"] = torch.cuda.get_device_name()
        info["count"] = torch.cuda.device_count()
    else:
        info["name"] = platform.processor() or platform.machine() or "cpu"
        info["threads"] = torch.get_num_threads()
    return info


def data_section(source: DataSource) -> dict[str, Any]:
    c = source.country
    notes = list(source.notes)
    if source.synthetic and not any("SYNTHETIC" in n.upper() for n in notes):
        notes.insert(0, "SYNTHETIC DATA: not World Values Survey respondents; figures illustrate the tool only")
    return {
        "path": source.path,
        "sha256": source.sha256,
        "synthetic": bool(source.synthetic),
        "format": source.format,
        "country": {"alpha2": c.alpha2, "alpha3": c.alpha3, "numeric": c.numeric, "name": c.name},
        "n_respondents": int(source.n_respondents),
        "weight_column": source.weight_column,
        "notes": notes,
    }


def question_section(
    spec: str, questions: Sequence[Question], limit: int | None, notes: Sequence[str] = (),
    excluded: Sequence[str] = (),
) -> dict[str, Any]:  # fmt: skip
    """The audited questions; ``excluded``/``notes``: selected ids the method refused (e.g. steering calibration)."""
    return {
        "set": spec,
        "limit": limit,
        "ids": [q.id for q in questions],
        "excluded": list(excluded),
        "notes": list(notes),
        "details": [
            {
                "id": q.id, "text": q.text, "short": q.short, "category": q.category,
                "options": list(q.options), "ordinal": bool(q.ordinal),
                "positions": None if q.positions is None else [float(p) for p in q.positions],
            }  # fmt: skip
            for q in questions
        ],
    }


def subgroup_section(config: Any, suppressed: Sequence[Group], unavailable: dict[str, str] | None = None) -> dict[str, Any]:
    """``unavailable``: requested attributes/intersections the survey could not build (name -> reason)."""
    return {
        "min_size": config.min_size,
        "attributes": list(config.effective_attributes()),
        "intersections": list(config.intersections),
        "suppressed": [{"attribute": g.attribute, "group": g.label, "n": int(g.n)} for g in suppressed],
        "unavailable": dict(unavailable or {}),
    }


def unavailable_notes(unavailable: dict[str, str] | None) -> list[str]:
    """One plain-language line per attribute or intersection that could not be audited."""
    return [f"subgroups {name!r} not audited: {why}" for name, why in (unavailable or {}).items()]


def _normalised(dist: Sequence[float], where: str) -> list[float]:
    """Renormalise a model distribution in float64; refuse NaN/negative mass (a silent NaN is a wrong number)."""
    import numpy as np

    from .errors import ModelError

    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 1 or not np.all(np.isfinite(d)) or np.any(d < 0) or d.sum() <= 0:
        raise ModelError(f"the method returned an invalid distribution for {where}: {d.tolist()}")
    return (d / d.sum()).tolist()


def scored(t: Any) -> bool:
    """Whether a ground-truth row gives a figure: not suppressed (enough valid answers) and with a distribution."""
    return not bool(t.suppressed) and t.human_dist is not None


def build_items(
    groups: Sequence[Group],
    questions: Sequence[Question],
    truth: pd.DataFrame,
    predictions: dict[tuple[str, str], ItemPrediction],
    exclude: Collection[tuple[str, str]] = (),
) -> pd.DataFrame:
    """One row per non-suppressed (group, question), in group then question order.

    Cells whose ground truth is suppressed (fewer valid answers than min_size) are
    left out entirely, so no figure is ever shown for them. So are the
    ``exclude`` cells, (group.id, question.id) the method was trained on
    (:meth:`~cvaudit.audit.methods.base.Method.training_cells`): in-sample
    answers would flatter every figure.
    """
    import numpy as np
    import pandas as pd

    from .errors import ModelError

    by_cell = {(r.attribute, r.group, r.question): r for r in truth.itertuples(index=False)}
    skip = set(exclude)
    rows = []
    for g in groups:
        for q in questions:
            if (g.id, q.id) in skip:
                continue
            t = by_cell.get((g.attribute, g.label, q.id))
            if t is None or not scored(t):
                continue
            pred = predictions.get((g.id, q.id))
            if pred is None:
                raise ModelError(f"the method gave no prediction for group {g.id!r}, question {q.id}")
            if len(pred.dist) != q.k:
                raise ModelError(f"the method gave {len(pred.dist)} probabilities for {q.id}, which has {q.k} options")
            dist = _normalised(pred.dist, f"{g.id}, {q.id}")
            rows.append(
                {
                    "attribute": g.attribute,
                    "group": g.label,
                    "question": q.id,
                    "category": q.category,
                    "options": list(q.options),
                    "positions": None if q.positions is None else [float(p) for p in q.positions],
                    "model_dist": dist,
                    "human_dist": [float(x) for x in t.human_dist],
                    "human_mode": [int(x) for x in t.human_mode],
                    "model_choice": int(np.argmax(dist)),
                    "n": int(t.n),
                    "n_eff": float(t.n_eff),
                    "missing": int(t.missing),
                    "extra": dict(pred.extra or {}),
                }
            )
    return pd.DataFrame(rows, columns=list(ITEM_COLUMNS))


def excluded_cells_section(groups: Sequence[Group], questions: Sequence[Question],
                           held: HeldOutCells) -> dict[str, Any] | None:  # fmt: skip
    """results.json "excluded_cells": the method's training cells left out of every figure, or None (absent).

    Listed by attribute, group label and question id (group then question order), the
    keys of ``items``, so compare can tell a cell a run held out from a damaged file.
    """
    cells = set(held.cells)
    if not cells:
        return None
    listed = [{"attribute": g.attribute, "group": g.label, "question": q.id}
              for g in groups for q in questions if (g.id, q.id) in cells]  # fmt: skip
    return {"reason": str(held.reason or "the method was fitted on these cells"), "cells": listed}


def groups_frame(groups: Sequence[Group]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        [{"attribute": g.attribute, "group": g.label, "n": int(g.n), "n_eff": float(g.n_eff)} for g in groups],
        columns=["attribute", "group", "n", "n_eff"],
    )


def item_records(items: pd.DataFrame, item_metrics: pd.DataFrame | None) -> list[dict[str, Any]]:
    """results.json "items": each row plus its per-item metrics (None where undefined)."""
    import math

    records = items.to_dict(orient="records")
    if item_metrics is None:
        return records
    cols = _metric_order(item_metrics)
    values = item_metrics[cols].to_numpy(dtype=float)
    for rec, row in zip(records, values):
        rec["metrics"] = {c: (None if math.isnan(v) else float(v)) for c, v in zip(cols, row)}
    return records


def assemble(
    *,
    config: Any,
    model_info: dict[str, Any],
    method: Any,
    source: DataSource,
    questions: Sequence[Question],
    suppressed: Sequence[Group],
    items: pd.DataFrame,
    evaluation: dict[str, Any],
    timings: dict[str, float],
    device: dict[str, Any],
    method_report: dict[str, Any] | None = None,
    engine_stats: dict[str, Any] | None = None,
    unavailable: dict[str, str] | None = None,
    question_notes: Sequence[str] = (),
    excluded: Sequence[str] = (),
    cell_notes: Sequence[str] = (),
    excluded_cells: dict[str, Any] | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """The complete results.json record (docs/results-schema.md).

    ``created_at``: give the same time to every rewrite of one run's record (default: now).

    ``engine_stats`` (prompts scored, taken from the cache, tokens) go under "timings":
    they differ between a fresh and a resumed run whose figures are identical.
    Question and subgroup notes are recorded in their sections and also appended to
    "metric_notes", which the report prints as "Notes from this run"; so are
    ``cell_notes`` (the method's training cells). ``excluded_cells`` (see
    :func:`excluded_cells_section`) is recorded only when the method left cells out.
    """
    record = header(config, created_at)
    timing_block: dict[str, Any] = {k: round(float(v), 3) for k, v in timings.items()}
    if engine_stats:
        timing_block["engine"] = dict(engine_stats)
    record.update(
        {
            "complete": True,
            "timings": timing_block,
            "device": device,
            "model": model_info,
            "method": {"name": method.name, "params": method.params(), "fingerprint": method.fingerprint()},
            "data": data_section(source),
            "questions": question_section(config.questions, questions, config.limit, question_notes, excluded),
            "subgroups": subgroup_section(config, suppressed, unavailable),
            "items": item_records(items, evaluation.get("item_metrics")),
        }
    )
    for key in ("groups", "overall", "categories", "disparity", "flags", "bootstrap"):
        record[key] = evaluation.get(key)
    for key, value in evaluation.items():  # notes or sections metrics adds later travel along
        if key not in record and key != "item_metrics":
            record[key] = value
    if excluded_cells:
        record["excluded_cells"] = excluded_cells
    run_notes = [*question_notes, *cell_notes, *unavailable_notes(unavailable)]
    if run_notes:
        record["metric_notes"] = list(dict.fromkeys([*(record.get("metric_notes") or []), *run_notes]))
    if method_report:
        record["method_report"] = method_report
    return record


def _metric_order(item_metrics: pd.DataFrame) -> list[str]:
    """The built-in metrics in their fixed order, then any plug-in metric."""
    return [c for c in METRIC_NAMES if c in item_metrics.columns] + [
        c for c in item_metrics.columns if c not in METRIC_NAMES
    ]


def metric_columns(item_metrics: pd.DataFrame | None) -> dict[str, list[float]]:
    """Per-item metric columns for the item tables, in results.json's order; a name that would
    shadow an item column (a plug-in metric called ``n``) gets a ``metric_`` prefix."""
    if item_metrics is None:
        return {}
    return {(f"metric_{c}" if c in ITEM_COLUMNS else str(c)): item_metrics[c].astype(float).tolist()
            for c in _metric_order(item_metrics)}  # fmt: skip


def write_items(items: pd.DataFrame, out: Path, item_metrics: pd.DataFrame | None = None) -> list[Path]:
    """items.csv (list/dict cells as JSON strings) and items.parquet (lists native, extra as JSON).

    With ``item_metrics`` (aligned with ``items``) each metric is a column too, empty
    (NaN / null) where it is not defined, so the tables slice without recomputing.
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    metrics = metric_columns(item_metrics)
    flat = items.copy()
    for col in LIST_COLUMNS:
        flat[col] = [json.dumps(v, sort_keys=True) if v is not None else "" for v in items[col]]
    for col, values in metrics.items():
        flat[col] = values
    csv_path = atomic_write_text(out / "items.csv", flat.to_csv(index=False, lineterminator="\n"))

    table_cols = {c: list(items[c]) for c in ITEM_COLUMNS if c != "extra"}
    table_cols["extra"] = [json.dumps(v, sort_keys=True) for v in items["extra"]]
    schema = pa.schema(
        [
            ("attribute", pa.string()), ("group", pa.string()), ("question", pa.string()),
            ("category", pa.string()), ("options", pa.list_(pa.string())),
            ("positions", pa.list_(pa.float64())), ("model_dist", pa.list_(pa.float64())),
            ("human_dist", pa.list_(pa.float64())), ("human_mode", pa.list_(pa.int64())),
            ("model_choice", pa.int64()), ("n", pa.int64()), ("n_eff", pa.float64()),
            ("missing", pa.int64()), ("extra", pa.string()),
            *((col, pa.float64()) for col in metrics),
        ]  # fmt: skip
    )
    for col, values in metrics.items():
        table_cols[col] = [None if math.isnan(v) else v for v in values]
    table = pa.Table.from_pydict(table_cols, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    pq_path = atomic_write_bytes(out / "items.parquet", buf.getvalue())
    return [csv_path, pq_path]


def write_results(record: dict[str, Any], out: Path) -> Path:
    return atomic_write_json(out / "results.json", record)


def strip_timing(record: dict[str, Any]) -> dict[str, Any]:
    """The record minus its timing fields: what must be identical between equal runs."""
    return {k: v for k, v in record.items() if k not in record.get("timing_fields", TIMING_FIELDS)}
