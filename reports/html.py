"""The audit report as one self-contained HTML page, from results.json alone.

``build_context`` turns a validated record into plain values for the template
(numbers pre-formatted, charts as inline SVG); ``render_html`` fills
``templates/report.html.j2`` with autoescape on and StrictUndefined, so a label
holding markup is shown as text and a field the template expects but the context
lacks is an error, never an empty cell in a signed report.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from typing import Any

from .charts import ForestRow, forest_plot, heatmap, line_plot
from .load import finite_number, higher_is_better, metric_info, metric_names, read_figure

METRIC_TITLES = {"accuracy": "Accuracy", "nmae": "NMAE", "representativeness": "Representativeness",
                 "similarity": "Similarity"}  # fmt: skip
METRIC_MEANING = {
    "accuracy": "Share of questions on which the model's most likely answer is one of the group's most common "
    "(modal) survey answers. 1 = always matches, higher is better.",
    "nmae": "Normalised mean absolute error: how many scale steps the model's most likely answer lies from the "
    "group's nearest modal answer, divided by the scale length (0 = same answer, 1 = opposite end). Ordinal "
    "questions only; lower is better.",
    "representativeness": "1 minus the Wasserstein (earth-mover) distance between the model's answer "
    "distribution and the group's, divided by the scale length (OpinionQA). Ordinal questions only; 1 = "
    "identical distributions, higher is better.",
    "similarity": "1 minus the Jensen-Shannon distance (base 2) between the model's and the group's answer "
    "distributions (GlobalOpinionQA). Works for every question; 1 = identical, higher is better.",
}
FIGURE_TITLES = {"gap": "Gap (max - min)", "ratio": "Ratio (min / max)", "normalised_range": "Normalised range",
                 "cv": "Coefficient of variation", "max_abs_to_overall": "Max |group - overall|"}  # fmt: skip
SYNTHETIC_TEXT = "SYNTHETIC DATA — not World Values Survey respondents; figures illustrate the tool only"
DIVISIVE_TOP = 10
# appendix rows beyond this make the PDF slow (WeasyPrint lays out every cell); items.csv has them all
APPENDIX_MAX_ITEMS = 2500
BASELINE_KEYS = ("uniform", "population")  # results.json "baselines", in the report's column order
BASELINE_TITLES = {"uniform": "Uniform answer", "population": "Country's answers for every group"}
NEAR_TIE = 0.01  # top-two model probabilities closer than this: the model's "choice" is a near coin flip
INSIDE_BAND_MAX = 20  # rows of the verdict's "significant but not flagged" table; section 3 has them all


# ------------------------------------------------------------------ formatting
num = finite_number  # the report's short name for the shared reader of numbers


def fmt(x: Any, digits: int = 3) -> str:
    v = num(x)
    if v is None:
        return "—"
    if abs(v) < 0.5 * 10 ** (-digits):
        v = 0.0  # no "-0.000": a sign the reader would take as a direction
    return f"{v:.{digits}f}"


def fmt_fig(fig: Any, digits: int = 3) -> str:
    """'0.412 [0.330, 0.490]' or 'not defined'."""
    if not isinstance(fig, dict) or num(fig.get("value")) is None:
        return "not defined"
    ci = fig.get("ci")
    if isinstance(ci, list) and len(ci) == 2 and num(ci[0]) is not None and num(ci[1]) is not None:
        return f"{fmt(fig['value'], digits)} [{fmt(ci[0], digits)},\u00a0{fmt(ci[1], digits)}]"  # breaks only before "["
    return fmt(fig["value"], digits)


fig_parts = read_figure  # the report's name for the shared reader


def title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric.replace("_", " ").capitalize())


def results_digest(record: dict[str, Any]) -> str:
    """sha256 of the record without its timing fields: equal runs give equal digests."""
    timing = set(record.get("timing_fields") or ("created_at", "timings", "device"))
    core = {k: v for k, v in record.items() if k not in timing}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _scalar(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "—"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    return str(v)


# ------------------------------------------------------------------ sections
CELLS_SHOWN = 12  # excluded cells listed by name in the report; the rest are counted


def _cells_excluded(record: dict[str, Any]) -> dict[str, Any] | None:
    """results.json "excluded_cells" for the report: how many, why, and the first few by name."""
    section = record.get("excluded_cells")
    cells = (section or {}).get("cells") if isinstance(section, dict) else None
    if not cells:
        return None
    named = [f"{c.get('attribute')}={c.get('group')} × {c.get('question')}" for c in cells if isinstance(c, dict)]
    return {"n": len(cells), "reason": str(section.get("reason") or "left out by the method"),
            "shown": named[:CELLS_SHOWN], "more": max(0, len(named) - CELLS_SHOWN)}  # fmt: skip


def _meta(record: dict[str, Any], signer: str | None) -> dict[str, Any]:
    model = record.get("model") or {}
    method = record.get("method") or {}
    data = record.get("data") or {}
    country = data.get("country") or {}
    qsec = record.get("questions") or {}
    boot = record.get("bootstrap") or {}
    cfg = record.get("config") or {}
    name, role = "", ""
    if signer:
        name, _, role = (s.strip() for s in signer.partition(","))
    model_id = str(model.get("id") or cfg.get("model") or "unknown model")
    return {
        "model_id": model_id,
        "model_rows": [(k, _scalar(model.get(k))) for k in ("id", "revision", "fingerprint", "dtype", "n_parameters",
                                                             "embedded", "persona_role") if k in model],  # fmt: skip
        "method_name": str(method.get("name") or cfg.get("method") or "unknown"),
        "method_params": [(str(k), _scalar(v)) for k, v in sorted((method.get("params") or {}).items())],
        "method_fingerprint": _scalar(method.get("fingerprint")),
        "country": str(country.get("name") or cfg.get("country") or "unknown country"),
        "country_code": str(country.get("alpha2") or cfg.get("country") or ""),
        "data_rows": [(k, _scalar(data.get(k))) for k in ("path", "format", "sha256", "n_respondents",
                                                          "weight_column") if k in data],  # fmt: skip
        "data_notes": [str(n) for n in data.get("notes") or []],
        "question_set": str(qsec.get("set") or cfg.get("questions") or ""),
        "n_questions": len(qsec.get("ids") or []),
        "question_limit": _scalar(qsec.get("limit")),
        "questions_excluded": [str(q) for q in qsec.get("excluded") or []],
        "cells_excluded": _cells_excluded(record),
        "created_at": str(record.get("created_at") or ""),
        "tool_version": str((record.get("tool") or {}).get("version") or ""),
        "schema_version": str(record.get("schema_version")),
        "digest": results_digest(record),
        "seed": _scalar(record.get("seed")),
        "bootstrap": {"unit": str(boot.get("unit") or "question"), "replicates": _scalar(boot.get("replicates")),
                      "level": num(boot.get("level")) or 0.95, "respondents": bool(boot.get("respondents"))},
        "signer_name": name,
        "signer_role": role,
        "note": str(record.get("note") or ""),
        "min_size": _scalar((record.get("subgroups") or {}).get("min_size", cfg.get("min_size"))),
    }


def _attributes(record: dict[str, Any], metrics: list[str]) -> list[dict[str, Any]]:
    by_attr: dict[str, list[dict]] = defaultdict(list)
    for g in record.get("groups") or []:
        by_attr[str(g["attribute"])].append(g)
    refs = (record.get("flags") or {}).get("reference") or {}
    out = []
    for attr, groups in by_attr.items():
        ref_label = refs.get(attr)
        ref_vals: dict[str, float | None] = {}
        rows, table = [], []
        for g in groups:
            cells = {}
            for m in metrics:
                v, lo, hi = fig_parts((g.get("metrics") or {}).get(m))
                status = str(((g.get("flags") or {}).get(m) or {}).get("status") or "neutral")
                cells[m] = (v, lo, hi, status)
                if g["group"] == ref_label:
                    ref_vals[m] = v
            rows.append(ForestRow(str(g["group"]), cells))
            flags: dict[str, list[str]] = {}
            for m in metrics:
                status = ((g.get("flags") or {}).get(m) or {}).get("status")
                if status in ("favoured", "disfavoured"):
                    flags.setdefault(str(status), []).append(title(m))
            table.append({
                "group": str(g["group"]), "n": _scalar(g.get("n")), "n_eff": fmt(g.get("n_eff"), 1),
                "reference": g["group"] == ref_label,
                "cells": [{"fig": fmt_fig((g.get("metrics") or {}).get(m)),
                           "test": _test_line((g.get("flags") or {}).get(m), g["group"] == ref_label)}
                          for m in metrics],
                "flags": [{"status": k, "metrics": ", ".join(v)} for k, v in flags.items()],
            })  # fmt: skip
        svg = forest_plot(rows, metrics, ref_vals, {m: title(m) for m in metrics},
                          caption=f"Forest plot of group metrics for {attr}")  # fmt: skip
        out.append({"name": attr, "reference": str(ref_label or "—"), "svg": svg, "groups": table})
    return out


def _ratio_text(flag: dict[str, Any]) -> str:
    """The measured ratio, and the ratio net of the size shift when that differs (what the flag rule used)."""
    raw, net = num(flag.get("ratio")), num(flag.get("ratio_net"))
    if net is None or raw is None or fmt(net) == fmt(raw):
        return fmt(raw)
    return f"{fmt(raw)} (net\u00a0{fmt(net)})"


def _test_line(flag: Any, reference: bool) -> list[str]:
    """The ratio to the reference and the Holm p under a group's figure: a significant gap that is not
    flagged (inside the tau band, or an interval that touches the reference) stays visible, and so does
    the part of the gap its sample size explains. Parts, joined by " · " in the template."""
    if reference:
        return ["reference"]
    if not isinstance(flag, dict) or num(flag.get("ratio")) is None:
        return []
    p = num(flag.get("p_holm"))
    removed = num(flag.get("noise_removed"))
    parts = [f"ratio\u00a0{_ratio_text(flag)}"]  # no-break spaces: a line may end between parts, never in a figure
    if p is not None:
        parts.append(f"Holm\u00a0p\u00a0{fmt(p, 3)}")
    if removed is not None and abs(removed) >= 5e-4:
        parts.append(f"{removed:+.3f}\u00a0from sample size")
    return parts


def _spread(record: dict[str, Any]) -> list[dict[str, str]]:
    """How far apart the groups' answers are, model next to survey (results.json "spread")."""
    rows = []
    for s in record.get("spread") if isinstance(record.get("spread"), list) else []:
        if isinstance(s, dict):
            rows.append({"attribute": str(s.get("attribute")), "model": fmt_fig(s.get("model")),
                         "survey": fmt_fig(s.get("survey")), "noise": fmt(s.get("survey_noise")),
                         "ratio": fmt_fig(s.get("ratio"), 2), "n_questions": _scalar(s.get("n_questions"))})  # fmt: skip
    return rows


def _recorded_description(record: dict[str, Any], metric: str) -> str:
    """A plug-in metric's own description as results.json recorded it (``metric_info``)."""
    text = metric_info(record, metric).get("description")
    return (str(text) + " (a plug-in metric)") if text else "A metric registered by a plug-in; see its documentation."


def _position(record: dict[str, Any]) -> dict[str, str] | None:
    """How often the model's top option sits at an end of the list, next to the survey's modes and chance."""
    n = ends = modes_at_end = 0
    chance = 0.0
    n_all = ties = 0
    for it in record.get("items") or []:
        dist = it.get("model_dist") if isinstance(it, dict) else None
        if not isinstance(dist, list) or len(dist) < 2 or any(num(v) is None for v in dist):
            continue
        probs = sorted((float(v) for v in dist), reverse=True)
        n_all += 1
        ties += probs[0] - probs[1] < NEAR_TIE
        k = len(dist)
        mode = it.get("human_mode")
        if k < 3 or not isinstance(mode, list) or not mode:
            continue
        n += 1
        top = max(range(k), key=lambda j: float(dist[j]))
        ends += top in (0, k - 1)
        modes_at_end += any(m in (0, k - 1) for m in mode if isinstance(m, int))
        chance += 2.0 / k
    if not n_all:
        return None
    pct = lambda a, b: f"{a / b:.0%}" if b else "—"  # noqa: E731
    return {"n": str(n), "model_ends": pct(ends, n), "survey_ends": pct(modes_at_end, n), "chance_ends": pct(chance, n),
            "near_ties": f"{ties} ({pct(ties, n_all)})", "n_all": str(n_all), "tie_gap": f"{NEAR_TIE:g}"}  # fmt: skip


def _disparity(record: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for d in record.get("disparity") or []:
        rows.append({
            "attribute": str(d.get("attribute")), "metric": title(str(d.get("metric"))),
            "figures": [fmt_fig(d.get(f)) for f in FIGURE_TITLES],
            "best": str(d.get("best_group") or "—"), "worst": str(d.get("worst_group") or "—"),
            "reference": str(d.get("reference_group") or "—"), "note": str(d.get("note") or ""),
        })  # fmt: skip
    return rows


def _untested(record: dict[str, Any]) -> list[str]:
    """Per attribute, the metrics on which groups were not tested against the reference (p-value null):
    the absence of flags there says nothing. One line per attribute."""
    seen: dict[str, dict[str, list[bool]]] = {}
    for g in record.get("groups") or []:
        for m, f in (g.get("flags") or {}).items():
            if isinstance(f, dict) and f.get("status") in ("neutral", "favoured", "disfavoured"):
                seen.setdefault(str(g.get("attribute")), {}).setdefault(m, []).append(num(f.get("p_value")) is not None)
    out = []
    for attr, by_metric in seen.items():
        none = [m for m, tested in by_metric.items() if not any(tested)]
        some = [f"{m} ({tested.count(False)} of {len(tested)} groups)" for m, tested in by_metric.items()
                if any(tested) and not all(tested)]  # fmt: skip
        parts = ([f"no group was tested on {', '.join(none)}"] if none else []) + (
            [f"some groups were not tested on {', '.join(some)}"] if some else [])
        if parts:
            out.append(f"{attr}: {'; '.join(parts)} (one question, or the metric defined on one question only, "
                       "without --respondent-bootstrap): no flag there is no finding")  # fmt: skip
    return out


def _verdict(record: dict[str, Any], metrics: list[str]) -> dict[str, Any]:
    overall = record.get("overall") or {}
    base = record.get("baselines") if isinstance(record.get("baselines"), dict) else {}
    orows = []
    behind: dict[str, list[str]] = {}  # baseline title -> metrics on which the model is significantly worse
    for m in metrics:
        row = {"metric": title(m), "value": fmt_fig(overall.get(m)),
               "direction": "higher is better" if higher_is_better(m, record) else "lower is better"}  # fmt: skip
        for key in BASELINE_KEYS:
            entry = base.get(key) if isinstance(base.get(key), dict) else {}
            fig = (entry.get("overall") or {}).get(m) if isinstance(entry.get("overall"), dict) else None
            diff = (entry.get("model_minus_baseline") or {}).get(m) if isinstance(entry.get("model_minus_baseline"), dict) else None
            row[key] = fmt_fig(fig) if entry else None
            row[f"{key}_diff"] = fmt_fig(diff) if entry else None
            _v, lo, hi = fig_parts(diff)
            worse = (hi is not None and hi < 0) if higher_is_better(m, record) else (lo is not None and lo > 0)
            if entry and worse:
                behind.setdefault(BASELINE_TITLES[key].lower(), []).append(title(m))
        orows.append(row)
    shown = [k for k in BASELINE_KEYS if isinstance(base.get(k), dict)]
    flags = record.get("flags") or {}
    alpha = num(flags.get("alpha"))
    flagged: dict[str, list[dict[str, str]]] = {"favoured": [], "disfavoured": [], "inside": []}
    for g in record.get("groups") or []:
        for m in metrics:
            fl = (g.get("flags") or {}).get(m) or {}
            status, p = fl.get("status"), num(fl.get("p_holm"))
            # significant after Holm, yet not flagged: the ratio stays inside the band (or the interval
            # touches the reference's value); a reader must see these, not only the flags
            inside = status == "neutral" and p is not None and alpha is not None and p < alpha
            if status in flagged or inside:
                ratio = num(fl.get("ratio_net")) if num(fl.get("ratio_net")) is not None else num(fl.get("ratio"))
                flagged["inside" if inside else str(status)].append({
                    "attribute": str(g["attribute"]), "group": str(g["group"]), "metric": title(m),
                    "value": fmt_fig((g.get("metrics") or {}).get(m)), "ratio": _ratio_text(fl),
                    "p_holm": fmt(fl.get("p_holm"), 4),
                    "side": "—" if ratio is None else ("worse" if ratio < 1 else "better"),
                })  # fmt: skip
    # the widest disparity per metric (largest gap), to name the attribute that divides most
    widest = []
    for m in metrics:
        cands = [d for d in record.get("disparity") or [] if d.get("metric") == m
                 and num((d.get("gap") or {}).get("value")) is not None]  # fmt: skip
        if cands:
            d = max(cands, key=lambda d: num(d["gap"]["value"]) or 0.0)
            size = num(d.get("gap_from_size"))
            widest.append({"metric": title(m), "attribute": str(d["attribute"]), "gap": fmt_fig(d.get("gap")),
                           "size": "—" if size is None else fmt(size),
                           "best": str(d.get("best_group") or "—"), "worst": str(d.get("worst_group") or "—")})  # fmt: skip
    inside = sorted(flagged["inside"], key=lambda f: (f["side"] != "worse", f["attribute"], f["group"]))
    # results.json from before the baselines followed the respondent bootstrap have no "respondents" here
    resampled = bool(shown) and all(base[k].get("respondents") is True for k in shown)
    return {"overall": orows, "baselines": [{"key": k, "title": BASELINE_TITLES[k]} for k in shown],
            "baselines_respondents": resampled, "behind": [f"than a {b} on {', '.join(ms)}" if b.startswith("uniform") else f"than the {b} on {', '.join(ms)}"
                                   for b, ms in behind.items()],
            "favoured": flagged["favoured"], "disfavoured": flagged["disfavoured"],
            "inside": inside[:INSIDE_BAND_MAX], "inside_more": max(0, len(inside) - INSIDE_BAND_MAX),
            "widest": widest, "tau": fmt(flags.get("tau"), 2), "alpha": fmt(flags.get("alpha"), 2),
            "noise_corrected": flags.get("noise_corrected") is True, "noise_draws": flags.get("noise_draws")}  # fmt: skip


def _heatmaps(record: dict[str, Any], metrics: list[str]) -> list[dict[str, Any]]:
    cats = record.get("categories") or []
    out = []
    for m in [x for x in ("representativeness", "accuracy") if x in metrics] or metrics[:1]:
        cells = {(c["attribute"], c["group"], c["category"]): c.get("value") for c in cats if c.get("metric") == m}
        if not cells or all(num(v) is None for v in cells.values()):
            continue
        cols = list(dict.fromkeys(c for (_a, _g, c) in cells))
        keys = list(dict.fromkeys((a, g) for (a, g, _c) in cells))
        values = [[cells.get((a, g, c)) for c in cols] for (a, g) in keys]
        counts: dict[str, int] = {}  # questions behind a column: a 1.00 that rests on one question says so
        for c in cats:
            if c.get("metric") == m and isinstance(c.get("n_questions"), int):
                counts[c["category"]] = max(counts.get(c["category"], 0), c["n_questions"])
        heads = [f"{c} ({counts[c]}\u00a0q)" if c in counts else c for c in cols]  # "(2 q)" never splits
        svg = heatmap([f"{a}: {g}" for a, g in keys], heads, values, higher_is_better(m, record),
                      caption=f"{title(m)} by group and question category")  # fmt: skip
        # the same figures as a table: screen readers and copy-paste get what the colours show
        rows = [(f"{a}: {g}", [fmt(v, 2) if num(v) is not None else "–" for v in vals])
                for (a, g), vals in zip(keys, values)]  # fmt: skip
        out.append({"metric": title(m), "svg": svg, "columns": heads, "rows": rows})
    return out


def _divisive(record: dict[str, Any], details: dict[str, dict]) -> dict[str, Any]:
    """Questions whose human modal answers differ most across groups, and where the model's fit varies most."""
    by_q: dict[str, list[dict]] = defaultdict(list)
    for it in record.get("items") or []:
        if it.get("attribute") != "all":
            by_q[str(it["question"])].append(it)
    metric = "representativeness"
    rows = []
    for q, its in by_q.items():
        opts = details.get(q, {}).get("options") or (its[0].get("options") or [])
        modes: dict[str, list[str]] = defaultdict(list)
        for it in its:
            hm = it.get("human_mode") or []
            label = " / ".join(str(opts[i]) if i < len(opts) else str(i) for i in hm) or "—"
            modes[label].append(f"{it['attribute']}: {it['group']}")
        vals = [(num((it.get("metrics") or {}).get(metric)), it) for it in its]
        if all(v is None for v, _ in vals):
            vals = [(num((it.get("metrics") or {}).get("similarity")), it) for it in its]
        defined = [(v, it) for v, it in vals if v is not None]
        spread = (max(v for v, _ in defined) - min(v for v, _ in defined)) if len(defined) > 1 else None
        best = max(defined, key=lambda t: t[0])[1] if defined else None
        worst = min(defined, key=lambda t: t[0])[1] if defined else None
        rows.append({
            "id": q, "short": str(details.get(q, {}).get("short") or details.get(q, {}).get("text") or q),
            "n_modes": len(modes),
            "modes": [{"answer": a, "groups": ", ".join(gs[:4]) + (f" +{len(gs) - 4}" if len(gs) > 4 else "")}
                      for a, gs in sorted(modes.items(), key=lambda kv: -len(kv[1]))],
            "spread": spread, "spread_text": fmt(spread),
            "best": f"{best['attribute']}: {best['group']}" if best is not None else "—",
            "worst": f"{worst['attribute']}: {worst['group']}" if worst is not None else "—",
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["n_modes"], -(r["spread"] or 0.0), r["id"]))
    by_modes = rows[:DIVISIVE_TOP]
    by_fit = sorted(rows, key=lambda r: (-(r["spread"] or -1.0), r["id"]))[:DIVISIVE_TOP]
    return {"by_modes": by_modes, "by_fit": by_fit}


def _plots(report: dict[str, Any], spec: Any) -> list[Any]:
    """SVG line plots from a method_report "plot" entry: {title, table|x-values, x, y, y2}."""
    specs = spec if isinstance(spec, list) else [spec]
    out = []
    for p in specs:
        if not isinstance(p, dict):
            continue
        table = report.get(p.get("table")) if isinstance(p.get("table"), str) else None
        x_name = p.get("x")
        y, y2 = p.get("y") or {}, p.get("y2") or {}
        if isinstance(table, list) and isinstance(x_name, str):
            rows = [r for r in table if isinstance(r, dict)]
            xs = [num(r.get(x_name)) for r in rows]
            series = {str(c): [num(r.get(c)) for r in rows] for c in (y if isinstance(y, list) else [])}
            series2 = {str(c): [num(r.get(c)) for r in rows] for c in (y2 if isinstance(y2, list) else [])}
        elif isinstance(x_name, list):
            xs = [num(v) for v in x_name]
            series = {str(k): [num(v) for v in vs] for k, vs in (y.items() if isinstance(y, dict) else [])}
            series2 = {str(k): [num(v) for v in vs] for k, vs in (y2.items() if isinstance(y2, dict) else [])}
        else:
            continue
        if not series and not series2:
            continue
        if not series:
            series, series2 = series2, {}
        x_label = str(p.get("x_label") or (x_name if isinstance(x_name, str) else ""))
        out.append(line_plot(xs, series, series2, str(p.get("title") or ""), x_label))  # type: ignore[arg-type]
    return out


def _method_report(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Generic rendering: lists of flat dicts as tables, dicts as key/value tables, plots as SVG."""
    report = record.get("method_report")
    if not isinstance(report, dict):
        return []
    sections = []
    for name, value in report.items():
        if name in ("plot", "plots"):
            continue
        if isinstance(value, list) and all(isinstance(r, dict) for r in value):
            cols = list(dict.fromkeys(k for r in value for k in r))
            sections.append({"title": str(name), "columns": [str(c) for c in cols],
                             "rows": [[_scalar(r.get(c)) for c in cols] for r in value], "text": ""})  # fmt: skip
        elif isinstance(value, dict):
            sections.append({"title": str(name), "columns": ["field", "value"],
                             "rows": [[str(k), _scalar(v)] for k, v in value.items()], "text": ""})  # fmt: skip
        elif isinstance(value, list):
            sections.append({"title": str(name), "columns": ["value"], "rows": [[_scalar(v)] for v in value],
                             "text": ""})  # fmt: skip
        else:
            sections.append({"title": str(name), "columns": [], "rows": [], "text": _scalar(value)})
    for key in ("plot", "plots"):
        specs = report.get(key)
        for spec in (specs if isinstance(specs, list) else [specs]) if key in report else []:
            for svg in _plots(report, spec):
                # a plot drawn from a table sits right after that table
                home = next((s for s in sections if isinstance(spec, dict) and s["title"] == spec.get("table")
                             and "svg" not in s), None)  # fmt: skip
                if home is not None:
                    home["svg"] = svg
                else:
                    sections.append({"title": "", "columns": [], "rows": [], "text": "", "svg": svg})
    for s in sections:
        s.setdefault("svg", "")
    return sections


def _pct(dist: Any, k: int) -> list[str]:
    vals = [num(x) for x in (dist or [])]
    return [("—" if v is None else f"{100 * v:.0f}") for v in vals] + ["—"] * max(0, k - len(vals))


def _appendix(record: dict[str, Any], details: dict[str, dict], metrics: list[str],
              first: list[str] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Per-question tables; past APPENDIX_MAX_ITEMS rows only the ``first`` (most divisive) questions.

    Returns the tables and how many questions were left out (0 when all fit).
    """
    by_q: dict[str, list[dict]] = defaultdict(list)
    for it in record.get("items") or []:
        by_q[str(it["question"])].append(it)
    order = list(details) + [q for q in by_q if q not in details]
    if sum(len(v) for v in by_q.values()) > APPENDIX_MAX_ITEMS:
        keep, used = [], 0
        for q in list(dict.fromkeys((first or []) + order)):
            if used + len(by_q.get(q, [])) > APPENDIX_MAX_ITEMS:
                continue
            keep.append(q)
            used += len(by_q.get(q, []))
        kept = set(keep)
        order = [q for q in order if q in kept]
    left_out = len(set(details) | set(by_q)) - len(order)
    out = []
    for q in order:
        d = details.get(q, {})
        its = by_q.get(q, [])
        opts = [str(o) for o in (d.get("options") or (its[0].get("options") if its else []) or [])]
        k = len(opts)
        rows = []
        for it in its:
            modes = set(int(i) for i in it.get("human_mode") or [])
            choice = it.get("model_choice")
            rows.append({
                "group": f"{it['attribute']}: {it['group']}", "n": _scalar(it.get("n")),
                "human": [{"v": v, "mark": i in modes} for i, v in enumerate(_pct(it.get("human_dist"), k))],
                "model": [{"v": v, "mark": i == choice} for i, v in enumerate(_pct(it.get("model_dist"), k))],
                "metrics": [fmt((it.get("metrics") or {}).get(m), 2) for m in metrics],
            })  # fmt: skip
        out.append({
            "id": q, "text": str(d.get("text") or ""), "category": str(d.get("category") or ""),
            "options": opts, "ordinal": bool(d.get("ordinal", True)), "rows": rows,
        })  # fmt: skip
    return out, left_out


def build_context(
    record: dict[str, Any], gate: Any = None, signer: str | None = None
) -> dict[str, Any]:
    """Every value report.html.j2 uses; missing sections of an incomplete run become empty lists."""
    metrics = metric_names(record)
    details = {str(d["id"]): d for d in (record.get("questions") or {}).get("details") or [] if "id" in d}
    data = record.get("data") or {}
    meta = _meta(record, signer)
    untested = _untested(record)
    suppressed = (record.get("subgroups") or {}).get("suppressed") or []
    policy = None
    if gate is not None:
        policy = {
            "passed": bool(gate.passed), "name": str(gate.policy_name),
            "n_checks": len(gate.checks), "breaches": [c.message for c in gate.checks if c.status == "fail"],
            "sha256": str(getattr(gate, "policy_sha256", "") or ""),
            "require_non_synthetic": bool(getattr(gate, "require_non_synthetic", False)),
            "checks": [{"status": c.status, "message": c.message} for c in gate.checks],
        }  # fmt: skip
    divisive = _divisive(record, details)
    first = [r["id"] for r in divisive["by_modes"] + divisive["by_fit"]]
    appendix, left_out = _appendix(record, details, metrics, first)
    return {
        "meta": meta,
        "synthetic": bool(data.get("synthetic", False)),
        "synthetic_text": SYNTHETIC_TEXT,
        "incomplete": record.get("complete") is not True,
        "metrics": [{"name": m, "title": title(m), "meaning": METRIC_MEANING.get(m, _recorded_description(record, m)),
                     "direction": "higher is better" if higher_is_better(m, record) else "lower is better"}
                    for m in metrics],  # fmt: skip
        "metric_titles": [title(m) for m in metrics],
        "figure_titles": list(FIGURE_TITLES.values()),
        "verdict": _verdict(record, metrics),
        "policy": policy,
        "attributes": _attributes(record, metrics),
        "disparity": _disparity(record),
        "spread": _spread(record),
        "position": _position(record),
        "heatmaps": _heatmaps(record, metrics),
        "divisive": divisive,
        "method_report": _method_report(record),
        "appendix": appendix,
        "appendix_left_out": left_out,
        "suppressed": [{"attribute": str(s.get("attribute")), "group": str(s.get("group")), "n": _scalar(s.get("n"))}
                       for s in suppressed],  # fmt: skip
        "notes": [str(n) for n in record.get("metric_notes") or []],
        "flag_limits": [str(n) for n in record.get("metric_notes") or [] if "no group can be flagged" in str(n)]
        + untested,
        "any_untested": bool(untested),
        "persona_method": meta["method_name"] == "persona",
        "uses_personas": meta["method_name"] != "none",
        "respondents": bool((record.get("bootstrap") or {}).get("respondents")),
        "css": "",
    }


def environment() -> Any:
    """The jinja2 environment over the cvaudit.templates package (autoescape, StrictUndefined)."""
    from importlib import resources

    import jinja2

    root = resources.files("cvaudit.templates")

    def load(name: str) -> str | None:
        res = root.joinpath(name)
        return res.read_text(encoding="utf-8") if res.is_file() else None

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def stylesheet(name: str = "report.css") -> str:
    from importlib import resources

    return resources.files("cvaudit.templates").joinpath(name).read_text(encoding="utf-8")


def render_template(name: str, context: dict[str, Any]) -> str:
    """Render a template; a missing context field raises (StrictUndefined) instead of printing blank."""
    ctx = dict(context)
    ctx["css"] = stylesheet()
    return environment().get_template(name).render(**ctx)


def render_html(record: dict[str, Any], gate: Any = None, signer: str | None = None) -> str:
    return render_template("report.html.j2", build_context(record, gate=gate, signer=signer))


# ------------------------------------------------------------------ compare
def _change_row(entry: dict[str, Any]) -> dict[str, str]:
    return {"base": fmt_fig(entry.get("base")), "other": fmt_fig(entry.get("other")),
            "change": fmt_fig(entry.get("change")), "reduction": fmt_fig(entry.get("reduction"))}  # fmt: skip


def compare_context(result: dict[str, Any]) -> dict[str, Any]:
    """Values for compare.html.j2 from a compare.json record."""
    def side(s: dict[str, Any]) -> dict[str, str]:
        return {"model": str(s.get("model") or "—"), "method": str(s.get("method") or "—"),
                "fingerprint": str(s.get("fingerprint") or "—"), "path": str(s.get("path") or ""),
                "created_at": str(s.get("created_at") or ""), "params": _scalar(s.get("params")),
                "method_fingerprint": str(s.get("method_fingerprint") or "—"),
                "digest": str(s.get("results_digest") or "—"), "data_sha256": str(s.get("data_sha256") or "—")}  # fmt: skip

    disp = []
    called = (result.get("bootstrap") or {}).get("changes_called", True) is not False  # older compare.json: called
    for d in result.get("disparity") or []:
        verdict = "widened" if d.get("widened") else ("narrowed" if d.get("narrowed") else "no clear change")
        if not called:
            verdict = "not called (see the notes)"
        disp.append({"attribute": str(d["attribute"]), "metric": title(str(d["metric"])),
                     "figure": FIGURE_TITLES.get(str(d["figure"]), str(d["figure"])), "verdict": verdict,
                     **_change_row(d)})  # fmt: skip
    groups = [{"attribute": str(g["attribute"]), "group": str(g["group"]), "metric": title(str(g["metric"])),
               **_change_row(g)} for g in result.get("groups") or []]  # fmt: skip
    overall = [{"metric": title(str(o["metric"])), **_change_row(o)} for o in result.get("overall") or []]
    country = result.get("country") or {}
    boot = result.get("bootstrap") or {}
    b, o = result.get("base") or {}, result.get("other") or {}
    return {
        "base": side(b), "other": side(o),
        "country": str(country.get("name") or ""),
        "n_questions": _scalar(result.get("n_questions")),
        "replicates": _scalar(boot.get("replicates")), "level": num(boot.get("level")) or 0.95,
        "overall": overall, "groups": groups, "disparity": disp,
        "n_widened": len(result.get("widened") or []),
        "min_change": fmt((result.get("bootstrap") or {}).get("min_change"), 4),
        "notes": [str(n) for n in result.get("notes") or []],
        "synthetic": bool(b.get("synthetic") or o.get("synthetic")),
        "synthetic_text": SYNTHETIC_TEXT, "incomplete": False,
    }  # fmt: skip


def render_compare_html(result: dict[str, Any]) -> str:
    return render_template("compare.html.j2", compare_context(result))
