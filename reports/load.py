"""Read and validate results.json before anything is rendered, gated or exported.

Reports are signed by compliance teams, so a truncated, foreign or unfinished file
must be refused with one clear line rather than rendered with silent blanks.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from cvaudit.audit.errors import DataError

SCHEMA_VERSION = "1"
# sections a complete run always has (docs/results-schema.md)
REQUIRED_COMPLETE = ("model", "method", "data", "questions", "groups", "items", "overall", "disparity",
                     "flags", "bootstrap")  # fmt: skip


def read_results(source: dict | str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The parsed record and a short name for messages (the path, or "results" for a dict)."""
    if isinstance(source, dict):
        return source, "results"
    path = Path(source)
    if not path.is_file():
        raise DataError(f"results file {os.fspath(path)!r} not found; give the results.json written by `cvaudit run`")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise DataError(f"{os.fspath(path)} nests too deeply to be a cvaudit results file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{os.fspath(path)} is not valid JSON ({exc}); re-run `cvaudit run` to rewrite it") from None
    if not isinstance(record, dict):
        raise DataError(f"{os.fspath(path)} is not a cvaudit results object; give the results.json of `cvaudit run`")
    return record, os.fspath(path)


def load_results(source: dict | str | os.PathLike, allow_incomplete: bool = False) -> dict[str, Any]:
    """Validated results record: right schema_version, complete (unless allowed), required sections present.

    Raises DataError (exit code 2 in the CLI) with a one-line reason otherwise.
    """
    record, name = read_results(source)
    version = record.get("schema_version")
    if version is None:
        raise DataError(f"{name} has no schema_version: not a cvaudit results.json")
    if str(version) != SCHEMA_VERSION:
        raise DataError(
            f"{name} has schema_version {version!r}; this cvaudit reads {SCHEMA_VERSION!r} "
            "(re-run the audit with this version or use the matching cvaudit)"
        )
    complete = record.get("complete")
    if complete is not True and not allow_incomplete:
        raise DataError(
            f"{name} is from an incomplete run (complete={json.dumps(complete)}); finish the run by re-running "
            "the same command (only `cvaudit report --allow-incomplete`, under an INCOMPLETE RUN banner, and "
            "`cvaudit gate --allow-incomplete`, as a breach, read it)"
        )
    if complete is True:
        missing = [k for k in REQUIRED_COMPLETE if k not in record]
        if missing:
            raise DataError(f"{name} is marked complete but lacks {', '.join(missing)}; the file is damaged, re-run")
        for key in ("groups", "items", "disparity"):
            if not isinstance(record[key], list):
                raise DataError(f"{name}: {key!r} must be a list; the file is damaged, re-run the audit")
        for key in ("model", "method", "data", "questions", "overall", "flags", "bootstrap"):
            if not isinstance(record[key], dict):
                raise DataError(f"{name}: {key!r} must be an object; the file is damaged, re-run the audit")
        for i, g in enumerate(record["groups"]):
            if not isinstance(g, dict) or not {"attribute", "group", "metrics"} <= set(g):
                raise DataError(f"{name}: groups[{i}] lacks attribute/group/metrics; the file is damaged, re-run")
        _check_entries(record, name)
    return record


def _check_entries(record: dict[str, Any], name: str) -> None:
    """Every list entry a renderer, the gate, export or compare reads has the shape they assume.

    One line naming the first damaged entry, instead of an AttributeError deep in a template,
    or a figure that is missing or not a number being read as "not defined" (null).
    """

    def damaged(where: str, what: str) -> DataError:
        return DataError(f"{name}: {where} {what}; the file is damaged, re-run the audit")

    for i, g in enumerate(record["groups"]):
        if not isinstance(g["metrics"], dict) or not all(isinstance(f, dict) for f in g["metrics"].values()):
            raise damaged(f"groups[{i}].metrics", "must map each metric to {value, ci}")
        if not isinstance(g.get("flags", {}), dict) or not all(isinstance(f, dict) for f in (g.get("flags") or {}).values()):
            raise damaged(f"groups[{i}].flags", "must map each metric to its flag")
        for m, f in (g.get("flags") or {}).items():
            if f.get("status") not in FLAG_STATUSES:  # the gate fails on "disfavoured": any other word would pass
                raise damaged(f"groups[{i}].flags.{m}.status", f"is {f.get('status')!r}, not one of "
                              f"{', '.join(FLAG_STATUSES)}")  # fmt: skip
            for key in ("p_value", "p_holm"):
                p = f.get(key)
                if p is not None and (_not_number(p) or not 0.0 <= float(p) <= 1.0):
                    raise damaged(f"groups[{i}].flags.{m}.{key}", f"is {p!r}, not a probability or null")
        for key in ("n", "n_eff"):
            v = g.get(key)
            if v is not None and (_not_number(v) or float(v) < 0):
                raise damaged(f"groups[{i}].{key}", f"is {v!r}, not a non-negative number or null")
    for i, it in enumerate(record["items"]):
        if not isinstance(it, dict) or not {"attribute", "group", "question"} <= set(it):
            raise damaged(f"items[{i}]", "lacks attribute/group/question")
        if not isinstance(it.get("metrics", {}), dict):
            raise damaged(f"items[{i}].metrics", "must be an object")
        for key in ("model_dist", "human_dist"):
            dist = it.get(key)
            if dist is None or dist == []:
                continue  # a missing distribution: its metrics are null
            ok = isinstance(dist, list) and not any(_not_number(x) or x is None for x in dist)
            if not ok or any(not math.isfinite(float(x)) or float(x) < 0 for x in dist) or \
                    abs(math.fsum(float(x) for x in dist) - 1.0) > 1e-6:
                raise damaged(f"items[{i}].{key}", "is not a distribution (non-negative shares summing to 1)")
    for i, d in enumerate(record["disparity"]):
        if not isinstance(d, dict) or not {"attribute", "metric"} <= set(d):
            raise damaged(f"disparity[{i}]", "lacks attribute/metric")
    if not all(isinstance(f, dict) for f in record["overall"].values()):
        raise damaged("overall", "must map each metric to {value, ci}")
    excluded = record.get("excluded_cells")  # optional: only a method that left cells out writes it
    if excluded is not None:
        cells = excluded.get("cells") if isinstance(excluded, dict) else None
        if not isinstance(cells, list) or not all(
            isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("attribute", "group", "question"))
            for c in cells
        ):
            raise damaged("excluded_cells", "must be {reason, cells: [{attribute, group, question}, ...]}")
        if not isinstance(excluded.get("reason", ""), (str, type(None))):
            raise damaged("excluded_cells.reason", "must be a string")
    _check_metric_info(record, damaged)
    _check_figures(record, damaged)
    _check_items(record, damaged)


FLAG_STATUSES = ("favoured", "disfavoured", "neutral", "reference", "undefined")
SLACK = 1e-9  # floating-point rounding at the ends of a range


def metric_bounds(metric: str, record: dict[str, Any] | None = None) -> tuple[float, float] | None:
    """The values one item of ``metric`` can take: as the file records it (``metric_info.bounds``, checked
    on load), else as the metric registry declares it; None where unknown (a plug-in without bounds)."""
    info = metric_info(record, metric)
    if "bounds" in info:
        b = info["bounds"]
        return None if b is None else (float(b[0]), float(b[1]))
    from cvaudit.metrics import metric_specs

    spec = metric_specs().get(metric)
    return None if spec is None else spec.bounds


def figure_bounds(bounds: tuple[float, float] | None, figure: str) -> tuple[float, float] | None:
    """Where a figure of a metric in ``bounds`` lies: a mean ("value", "overall") in the metric's own range,
    a gap or distance within its width, a model-minus-baseline within +- the width; for a metric that is
    never negative the ratio and normalised range lie in [0, 1] and the CV is non-negative. None: unbounded."""
    if bounds is None:
        return None
    lo, hi = bounds
    width = hi - lo
    if figure in ("value", "overall"):
        return bounds
    if figure in ("gap", "max_abs_to_overall"):
        return (0.0, width)
    if figure == "difference":
        return (-width, width)
    if lo >= 0.0 and figure in ("ratio", "normalised_range"):
        return (0.0, 1.0)
    if lo >= 0.0 and figure == "cv":
        return (0.0, math.inf)
    return None


def _check_metric_info(record: dict[str, Any], damaged: Any) -> None:
    """``metric_info`` (optional) maps metrics to how to read them; a recorded range is [lo, hi] or null."""
    info = record.get("metric_info")
    if info is None:
        return
    if not isinstance(info, dict) or not all(isinstance(v, dict) for v in info.values()):
        raise damaged("metric_info", "must map each metric to {higher_is_better, needs_ordinal, description, bounds}")
    for m, entry in info.items():
        if "higher_is_better" in entry and not isinstance(entry["higher_is_better"], bool):
            raise damaged(f"metric_info.{m}.higher_is_better", f"is {entry['higher_is_better']!r}, not true or false")
        b = entry.get("bounds")
        if b is None:
            continue
        ok = isinstance(b, list) and len(b) == 2 and not any(_not_number(x) or x is None for x in b)
        if not ok or not (math.isfinite(float(b[0])) and math.isfinite(float(b[1])) and float(b[0]) < float(b[1])):
            raise damaged(f"metric_info.{m}.bounds", f"is {b!r}, not [lower, upper] with lower < upper, or null")


def _in_range(fig: dict[str, Any], where: str, bounds: tuple[float, float], damaged: Any) -> None:
    """A figure of a bounded metric outside its range was edited or corrupted, not measured."""
    lo, hi = bounds
    ci = fig.get("ci")
    for x in (fig.get("value"), *(ci if isinstance(ci, list) else ())):
        v = finite_number(x)
        if v is not None and not lo - SLACK <= v <= hi + SLACK:
            raise damaged(where, f"is {v!r}, outside [{lo:g}, {hi:g}] where this figure lies")


def _not_number(x: Any) -> bool:
    """True for what is neither a JSON number nor null (a string, a bool, a list...): damage, not "undefined"."""
    return x is not None and (isinstance(x, bool) or not isinstance(x, (int, float)))


def _check_figure(fig: dict[str, Any], where: str, damaged: Any, bounds: tuple[float, float] | None = None) -> None:
    """``value`` a number or null, ``ci`` null or a list of numbers/nulls (NaN and Infinity read as not defined);
    with ``bounds`` (a built-in metric's figure), every finite number within them."""
    if "value" not in fig:
        raise damaged(where, "has no value (a figure that is not defined is written value: null)")
    if _not_number(fig["value"]):
        raise damaged(f"{where}.value", f"is {fig['value']!r}, not a number or null")
    ci = fig.get("ci")
    if ci is not None and (not isinstance(ci, list) or len(ci) != 2 or any(_not_number(x) for x in ci)):
        raise damaged(f"{where}.ci", f"is {ci!r}, not [lower, upper] or null")
    lo, hi = (finite_number(ci[0]), finite_number(ci[1])) if ci is not None else (None, None)
    if lo is not None and hi is not None and lo > hi + SLACK * max(1.0, abs(lo)):
        raise damaged(f"{where}.ci", f"is {ci!r}: its lower end is above its upper end")
    if bounds is not None:
        _in_range(fig, where, bounds, damaged)


def _check_figures(record: dict[str, Any], damaged: Any) -> None:
    """Every figure the gate, report and export read exists and is a number or null.

    Each metric of the record has an overall figure, a figure in every group and a
    disparity entry (every figure in it) for every attribute with groups: a missing
    one is a damaged file, never a null the gate may skip.
    """
    from cvaudit.metrics.disparity import FIGURES

    metrics = metric_names(record)
    bounds = {m: metric_bounds(m, record) for m in metrics}
    for m in metrics:
        if m not in record["overall"]:
            raise damaged("overall", f"has no {m} (the groups have it)")
        _check_figure(record["overall"][m], f"overall.{m}", damaged, bounds[m])
    attributes: dict[str, None] = {}
    for i, g in enumerate(record["groups"]):
        attributes[str(g["attribute"])] = None
        for m in metrics:
            if m not in g["metrics"]:
                raise damaged(f"groups[{i}].metrics", f"has no {m} ({g['attribute']}={g['group']})")
            _check_figure(g["metrics"][m], f"groups[{i}].metrics.{m}", damaged, bounds[m])
    seen: dict[tuple[str, str], int] = {}
    for i, d in enumerate(record["disparity"]):
        key = (str(d["attribute"]), str(d["metric"]))
        if key in seen:
            raise damaged(f"disparity[{i}]", f"repeats {key[1]} across {key[0]} (also disparity[{seen[key]}])")
        seen[key] = i
        for f in (*FIGURES, "overall"):
            if f in d:
                if not isinstance(d[f], dict):
                    raise damaged(f"disparity[{i}].{f}", "must be a {value, ci} figure")
                _check_figure(d[f], f"disparity[{i}].{f}", damaged, figure_bounds(bounds.get(key[1]), f))
            elif f != "overall":
                raise damaged(f"disparity[{i}]", f"has no {f} ({key[1]} across {key[0]})")
    for a in attributes:
        for m in metrics:
            if (a, m) not in seen:
                raise damaged("disparity", f"has no entry for {m} across {a}")
    baselines = record.get("baselines")  # optional (older files have none); when present, whole
    if baselines is not None:
        if not isinstance(baselines, dict):
            raise damaged("baselines", "must map each baseline to its figures")
        for key, entry in baselines.items():
            for part in ("overall", "model_minus_baseline"):
                figs = entry.get(part) if isinstance(entry, dict) else None
                if not isinstance(figs, dict):
                    raise damaged(f"baselines.{key}", f"has no {part} figures")
                for m in metrics:
                    if not isinstance(figs.get(m), dict):
                        raise damaged(f"baselines.{key}.{part}", f"has no {m} figure")
                    fig = "overall" if part == "overall" else "difference"
                    _check_figure(figs[m], f"baselines.{key}.{part}.{m}", damaged, figure_bounds(bounds[m], fig))


def _check_items(record: dict[str, Any], damaged: Any) -> None:
    """Compare recomputes every figure from the items: each needs all metrics, as numbers or null, once."""
    if not record["items"]:
        raise damaged("items", "is empty (a complete audit has its (group, question) items)")
    metrics = metric_names(record)
    bounds = {m: metric_bounds(m, record) for m in metrics}
    seen: dict[tuple[str, str, str], int] = {}
    for i, it in enumerate(record["items"]):
        key = (str(it["attribute"]), str(it["group"]), str(it["question"]))
        label = f"({key[0]}={key[1]}, {key[2]})"
        if key in seen:
            raise damaged(f"items[{i}]", f"repeats the item {label} of items[{seen[key]}]")
        seen[key] = i
        values = it.get("metrics")
        if not isinstance(values, dict):
            raise damaged(f"items[{i}]", f"{label} has no metrics")
        for m in metrics:
            if m not in values:
                raise damaged(f"items[{i}].metrics", f"{label} has no {m}")
            v = values[m]
            if v is not None and finite_number(v) is None:
                raise damaged(f"items[{i}].metrics.{m}", f"{label} is {v!r}, not a finite number or null")
            if v is not None and bounds[m] is not None:
                _in_range({"value": v}, f"items[{i}].metrics.{m} {label}", bounds[m], damaged)
    _check_grid(record, damaged)


def _check_grid(record: dict[str, Any], damaged: Any) -> None:
    """Each group's figure is the mean of its items' values: items dropped or edited after the run show here.

    Compare and the exports read the items; the report and gate read the group figures.
    A file whose two disagree would give different answers depending on who reads it.
    """
    known = {(str(g["attribute"]), str(g["group"])) for g in record["groups"]}
    sums: dict[tuple[str, str, str], list[float]] = {}
    for i, it in enumerate(record["items"]):
        if (str(it["attribute"]), str(it["group"])) not in known:
            raise damaged(f"items[{i}]", f"is for group {it['attribute']}={it['group']}, which its groups do not list")
        for m, v in it["metrics"].items():
            if v is not None:
                sums.setdefault((str(it["attribute"]), str(it["group"]), m), []).append(float(v))
    for i, g in enumerate(record["groups"]):
        for m, fig in g["metrics"].items():
            value = finite_number(fig.get("value"))
            vals = sums.get((str(g["attribute"]), str(g["group"]), m))
            label = f"{g['attribute']}={g['group']}"
            if value is None:
                if vals:  # a run writes null only for a group none of whose items has the metric
                    raise damaged(f"groups[{i}].metrics.{m}", f"({label}) is null but {len(vals)} of its items have {m}")
                continue
            if not vals:
                raise damaged(f"groups[{i}].metrics.{m}", f"({label}) is {value:g} but the group has no item with {m}")
            mean = math.fsum(vals) / len(vals)
            scale = max(1.0, math.fsum(abs(v) for v in vals) / len(vals))  # rounding grows with the values summed
            if abs(mean - value) > 1e-9 * scale:
                raise damaged(f"groups[{i}].metrics.{m}",
                              f"({label}) is {value:.6g} but its {len(vals)} item(s) average {mean:.6g} "
                              "(items missing or edited)")  # fmt: skip


def finite_number(x: Any) -> float | None:
    """``x`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(float(x)) else None


def read_figure(fig: Any) -> tuple[float | None, float | None, float | None]:
    """(value, ci_lower, ci_upper) of a ``{"value", "ci"}`` figure, the one reader of HTML, export and gate.

    A number that is not finite (Python's json reads NaN and Infinity) is None, so it is
    "not defined" everywhere instead of passing a gate or reaching a model card. An interval
    is both ends or neither: ``[0.1, null]`` or ``[0.1]`` is no interval.
    """
    if not isinstance(fig, dict):
        return None, None, None
    ci = fig.get("ci")
    lo, hi = (finite_number(ci[0]), finite_number(ci[1])) if isinstance(ci, list) and len(ci) == 2 else (None, None)
    if lo is None or hi is None:
        lo = hi = None
    return finite_number(fig.get("value")), lo, hi


def metric_names(record: dict[str, Any]) -> list[str]:
    """Metrics present in this record, in the order results.json lists them."""
    names: dict[str, None] = {}
    for m in (record.get("overall") or {}):
        names[m] = None
    for g in record.get("groups") or []:
        for m in g.get("metrics") or {}:
            names[m] = None
    return list(names)


def metric_info(record: dict[str, Any] | None, metric: str) -> dict[str, Any]:
    """How the results file says to read ``metric`` (``metric_info``: direction, description); {} when absent."""
    info = (record or {}).get("metric_info")
    entry = info.get(metric) if isinstance(info, dict) else None
    return entry if isinstance(entry, dict) else {}


def higher_is_better(metric: str, record: dict[str, Any] | None = None) -> bool:
    """Direction of ``metric``: as the results file records it (``metric_info``), else from the metric
    registry; an unknown plug-in metric defaults to higher-is-better."""
    recorded = metric_info(record, metric).get("higher_is_better")
    if isinstance(recorded, bool):
        return recorded
    from cvaudit.metrics import metric_specs

    spec = metric_specs().get(metric)
    return True if spec is None else bool(spec.higher_is_better)
