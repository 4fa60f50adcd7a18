"""Model-card exports from results.json: Model Card Toolkit performance metrics and a HF model-index snippet.

Both carry the slice (group) and, where the format allows, the interval, so a model
card states per-group alignment rather than one flattering overall number. Synthetic
runs are labelled as such in the dataset name, so they cannot pass as WVS figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .load import load_results, metric_names, read_figure

TASK_TYPE = "text-generation"
TASK_NAME = "Cultural value alignment (World Values Survey Wave 7, persona-conditioned)"


def _value(fig: Any) -> tuple[float | None, list | None]:
    v, lo, hi = read_figure(fig)
    return v, None if lo is None else [lo, hi]


def _metric(mtype: str, value: float, slice_: str, ci: list | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": mtype, "value": round(value, 6), "slice": slice_}
    if ci is not None:
        out["confidence_interval"] = {"lower_bound": round(float(ci[0]), 6), "upper_bound": round(float(ci[1]), 6)}
    return out


def performance_metrics(record: dict[str, Any]) -> list[dict[str, Any]]:
    """MCT-style {type, value, slice, confidence_interval} for overall, every group and every disparity gap."""
    metrics = metric_names(record)
    out = []
    for m in metrics:
        v, ci = _value((record.get("overall") or {}).get(m))
        if v is not None:
            out.append(_metric(m, v, "overall", ci))
    for g in record.get("groups") or []:
        for m in metrics:
            v, ci = _value((g.get("metrics") or {}).get(m))
            if v is not None:
                out.append(_metric(m, v, f"{g['attribute']}={g['group']}", ci))
    for d in record.get("disparity") or []:
        for fig in ("gap", "ratio"):
            v, ci = _value(d.get(fig))
            if v is not None:
                out.append(_metric(f"{d['metric']}_{fig}", v, f"{d['attribute']}", ci))
    return out


def dataset_name(record: dict[str, Any]) -> str:
    data = record.get("data") or {}
    country = (data.get("country") or {}).get("name") or "unknown country"
    synthetic = " (SYNTHETIC sample, not WVS respondents)" if data.get("synthetic") else ""
    qset = (record.get("questions") or {}).get("set") or ""
    return f"World Values Survey Wave 7, {country}, questions {qset}{synthetic}"


def model_index(record: dict[str, Any]) -> dict[str, Any]:
    """The Hugging Face model-index structure (metrics: overall and per group)."""
    model = record.get("model") or {}
    method = (record.get("method") or {}).get("name") or "none"
    metrics = []
    for m in metric_names(record):
        v, _ci = _value((record.get("overall") or {}).get(m))
        if v is not None:
            metrics.append({"type": m, "value": round(v, 4), "name": f"{m} (overall, method {method})"})
        for g in record.get("groups") or []:
            gv, _ = _value((g.get("metrics") or {}).get(m))
            if gv is not None and g.get("attribute") != "all":
                metrics.append({"type": m, "value": round(gv, 4), "name": f"{m} ({g['attribute']}={g['group']})"})
    country = ((record.get("data") or {}).get("country") or {}).get("alpha3") or ""
    return {
        "model-index": [{
            "name": str(model.get("id") or "model"),
            "results": [{
                "task": {"type": TASK_TYPE, "name": TASK_NAME},
                "dataset": {"type": f"wvs-wave7-{country.lower()}" if country else "wvs-wave7",
                            "name": dataset_name(record)},
                "metrics": metrics,
            }],
        }]
    }  # fmt: skip


def export(results: dict | str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write OUT/model_card_metrics.json and OUT/model-index.yaml; returns both paths."""
    import yaml
    from cvaudit.audit.io import atomic_write_json, atomic_write_text

    record = load_results(results)
    out = Path(out_dir)
    data = record.get("data") or {}
    card = {
        "model": {"id": (record.get("model") or {}).get("id"), "revision": (record.get("model") or {}).get("revision"),
                  "fingerprint": (record.get("model") or {}).get("fingerprint")},
        "method": (record.get("method") or {}).get("name"),
        "dataset": dataset_name(record),
        "synthetic_data": bool(data.get("synthetic", False)),
        "confidence_level": (record.get("bootstrap") or {}).get("level"),
        "quantitative_analysis": {"performance_metrics": performance_metrics(record)},
    }  # fmt: skip
    left_out = (record.get("excluded_cells") or {}).get("cells") or []
    if left_out:  # figures on part of the grid: the card says which part is missing and why
        card["excluded_cells"] = {"n": len(left_out), "reason": record["excluded_cells"].get("reason"),
                                  "cells": left_out}  # fmt: skip
    paths = [atomic_write_json(out / "model_card_metrics.json", card)]
    header = "# cvaudit export: paste into the YAML front matter of the model card (README.md)\n"
    if data.get("synthetic"):
        header += "# WARNING: synthetic survey data; these figures illustrate the tool only, do not publish them\n"
    if left_out:
        header += (f"# NOTE: {len(left_out)} (group, question) cell(s) are in no figure "
                   f"({record['excluded_cells'].get('reason') or 'left out by the method'})\n")
    text = header + yaml.safe_dump(model_index(record), sort_keys=False, allow_unicode=True, width=120)
    paths.append(atomic_write_text(out / "model-index.yaml", text))
    return paths
