"""Compare two audits (OTHER - BASE) with paired bootstrap intervals over questions.

Both files must audit the same country, questions and groups, so each question is
a pair: one replicate draws question indices once and recomputes, from the stored
item metrics (items[].metrics), every group mean and disparity figure of *both*
runs on that draw. The change's interval therefore reflects the shared question
sample, as in the metrics engine (cvaudit.metrics.bootstrap.question_indices).

A run whose method left training cells out (results.json ``excluded_cells``, e.g. a
checkpoint's train groups x training questions) lacks items the other run has;
those cells are dropped from both sides, so every figure pairs the same cells.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cvaudit.audit.errors import ConfigError, DataError
from cvaudit.metrics.aggregate import point_weights, sum_counts
from cvaudit.metrics.bootstrap import percentile_ci, question_indices, replicate_counts
from cvaudit.metrics.disparity import FIGURES, disparity_figures
from cvaudit.metrics.evaluate import COUNTRY_ATTRIBUTE, MIN_RELIABLE_BOOT

from .load import higher_is_better, load_results, metric_names


def _fig(value: Any, reps: np.ndarray | None, level: float) -> dict[str, Any]:
    v = float(value) if value is not None and np.isfinite(value) else None
    if v is None or reps is None:
        return {"value": v, "ci": None}
    lo, hi = percentile_ci(reps, level)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return {"value": v, "ci": None}
    return {"value": v, "ci": [float(lo), float(hi)]}


def _key_sets(record: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]], set[tuple[str, str, str]]]:
    qids = [str(q) for q in (record.get("questions") or {}).get("ids") or []]
    groups = [(str(g["attribute"]), str(g["group"])) for g in record.get("groups") or []]
    cells = {(str(i["attribute"]), str(i["group"]), str(i["question"])) for i in record.get("items") or []}
    return qids, groups, cells


def _excluded(record: dict[str, Any]) -> set[str]:
    """Question ids the run's method held out (steering calibration, DISCA panel items): recorded, not failed."""
    return {str(q) for q in (record.get("questions") or {}).get("excluded") or []}


def _cells_excluded(record: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(attribute, group, question) cells the run's method left out of its figures (results.json excluded_cells)."""
    listed = (record.get("excluded_cells") or {}).get("cells") or []
    return {(str(c["attribute"]), str(c["group"]), str(c["question"])) for c in listed}


def common_questions(base: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """The question ids both runs audited, in BASE's order, when the sets differ only by held-out questions.

    A method that holds questions out (``questions.excluded``) audits a subset of the
    selection; pairing on the shared questions is then the fair comparison. Any other
    difference in the question sets is refused (DataError).
    """
    qb, qo = _key_sets(base)[0], _key_sets(other)[0]
    only_b, only_o = sorted(set(qb) - set(qo)), sorted(set(qo) - set(qb))
    if (set(only_b) <= _excluded(other) and set(only_o) <= _excluded(base)) and set(qb) & set(qo):
        return [q for q in qb if q in set(qo)]
    raise DataError(f"cannot compare: question ids differ (only in BASE: {', '.join(only_b[:5]) or '-'}; "
                    f"only in OTHER: {', '.join(only_o[:5]) or '-'}); run both with the same --questions")  # fmt: skip


Cell = tuple[str, str, str]  # (attribute, group label, question id), the key of results.json items


@dataclass(frozen=True)
class Pairing:
    """What two runs are compared on: the paired questions and the cells both runs audited.

    ``left_out``: cells on the paired questions that one run has and the other's method
    left out (its ``excluded_cells``). Both matrices drop them, so BASE and OTHER are
    averaged over the same cells: a checkpoint run without its training cells against a
    base run with them would otherwise compare different samples.
    """

    qids: tuple[str, ...]
    cells: frozenset[Cell]
    left_out: frozenset[Cell]


def check_pair(base: dict[str, Any], other: dict[str, Any]) -> Pairing:
    """Refuse files that cannot be paired: different country, question set or groups (one line each).

    Returns the questions (:func:`common_questions`) and cells to pair on.
    """
    cb = ((base.get("data") or {}).get("country") or {}).get("alpha2")
    co = ((other.get("data") or {}).get("country") or {}).get("alpha2")
    if cb != co:
        raise DataError(f"cannot compare: BASE audits country {cb} and OTHER {co}; compare audits of one country")
    _qb, gb, cellb = _key_sets(base)
    _qo, go, cello = _key_sets(other)
    qids = common_questions(base, other)
    if set(gb) != set(go):
        def listed(keys: set[tuple[str, str]]) -> str:
            names = [f"{a}={g}" for a, g in sorted(keys)]
            return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "") if names else "-"

        raise DataError(f"cannot compare: the groups differ (only in BASE: {listed(set(gb) - set(go))}; only in "
                        f"OTHER: {listed(set(go) - set(gb))}); run both with the same --attributes, --min-size and "
                        "survey file")  # fmt: skip
    shared = set(qids)
    cellb, cello = {c for c in cellb if c[2] in shared}, {c for c in cello if c[2] in shared}
    # a cell may be missing from one file only because that file's method left it out (excluded_cells)
    unexplained = (cellb - cello - _cells_excluded(other)) | (cello - cellb - _cells_excluded(base))
    if unexplained:
        a, g, q = sorted(unexplained)[0]
        raise DataError(f"cannot compare: item {a}={g}, {q} is in one file only (different suppression or "
                        "survey file); run both on the same data")  # fmt: skip
    if not cellb & cello:
        raise DataError("cannot compare: the runs share no (group, question) cell (one run's method left out every "
                        "cell the other audited); audit groups or questions that both runs keep")  # fmt: skip
    # same country, groups and questions but another survey file is allowed: compare() notes it
    return Pairing(tuple(qids), frozenset(cellb & cello), frozenset(cellb ^ cello))


def _matrix(record: dict[str, Any], metric: str, groups: list[tuple[str, str]], pairing: Pairing) -> np.ndarray:
    """Groups x paired questions of one metric, from the paired cells only (:class:`Pairing`)."""
    gi = {g: i for i, g in enumerate(groups)}
    qi = {q: j for j, q in enumerate(pairing.qids)}
    mat = np.full((len(groups), len(pairing.qids)), np.nan)
    for it in record.get("items") or []:
        a, g, q = str(it["attribute"]), str(it["group"]), str(it["question"])
        if (a, g, q) not in pairing.cells:
            continue  # a held-out question, or a cell the other run's method left out: not paired
        v = (it.get("metrics") or {}).get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            mat[gi[(a, g)], qi[q]] = float(v)
    return mat


def misalignment(value: np.ndarray, higher: bool) -> np.ndarray:
    """Distance from perfect alignment: 1 - v for higher-is-better metrics in [0, 1], v for errors."""
    return 1.0 - value if higher else value


def reduction(base: np.ndarray, other: np.ndarray, higher: bool) -> np.ndarray:
    """Relative reduction in misalignment, 1 - mis(other) / mis(base) (NaN when base is perfect)."""
    mb, mo = misalignment(base, higher), misalignment(other, higher)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mb > 0, 1.0 - mo / np.where(mb > 0, mb, 1.0), np.nan)


def _summary(record: dict[str, Any], path: str) -> dict[str, Any]:
    model, method, data = record.get("model") or {}, record.get("method") or {}, record.get("data") or {}
    return {"path": path, "model": model.get("id"), "revision": model.get("revision"),
            "fingerprint": model.get("fingerprint"), "method": method.get("name"), "params": method.get("params"),
            "method_fingerprint": method.get("fingerprint"), "created_at": record.get("created_at"),
            "synthetic": bool(data.get("synthetic", False)), "data_sha256": data.get("sha256"),
            "results_digest": _digest(record)}  # fmt: skip


def _digest(record: dict[str, Any]) -> str:
    from .html import results_digest  # the digest the run's own report prints: one identity per results file

    return "sha256:" + results_digest(record)


MIN_CHANGE = 1e-3  # a change whose whole interval is below this is not called widened/narrowed
MIN_BOOT = 2  # one replicate is one point, not an interval: refused (0 = no intervals at all)


def _replicates(n_boot: int | None, boot: dict[str, Any]) -> int:
    """The replicate count: ``n_boot``, else BASE's; one replicate (or a negative count) is refused."""
    if n_boot is not None:
        n, where = int(n_boot), f"--n-boot {int(n_boot)}"
    else:
        n, where = int(boot.get("replicates") or 1000), f"BASE's bootstrap.replicates ({boot.get('replicates')})"
    if n < 0 or 0 < n < MIN_BOOT:
        raise ConfigError(f"{where}: a paired interval needs at least {MIN_BOOT} replicates (use --n-boot 1000 "
                          f"for figures you report, at least {MIN_RELIABLE_BOOT} to call a change widened or "
                          "narrowed; --n-boot 0 gives point changes only)")  # fmt: skip
    return n


def compare(
    base: dict | str | os.PathLike, other: dict | str | os.PathLike, n_boot: int | None = None,
    seed: int | None = None, min_change: float = MIN_CHANGE,
) -> dict[str, Any]:
    """The compare.json record: overall, per group and per disparity figure changes with paired intervals.

    A disparity figure "widened" when the interval of its change lies wholly beyond
    ``min_change`` on the side of more disparity (below -min_change for the ratio).
    Only intervals that can carry that are used: with fewer than MIN_RELIABLE_BOOT
    replicates or a single paired question nothing is called widened or narrowed (a
    note says so); one replicate is refused (ConfigError).
    """  # fmt: skip
    rb, ro = load_results(base), load_results(other)
    pairing = check_pair(rb, ro)
    qids = pairing.qids
    boot = rb.get("bootstrap") or {}
    if not (isinstance(min_change, (int, float)) and 0.0 <= float(min_change) <= 1.0):
        raise ConfigError(f"min_change must lie in [0, 1] (no figure changes by more), got {min_change!r}")
    n_boot = _replicates(n_boot, boot)
    seed = int(seed if seed is not None else boot.get("seed") or 0)
    level = float(boot.get("level") or 0.95)
    all_b, groups, _cells = _key_sets(rb)
    held_out = [q for q in all_b if q not in set(qids)] + [q for q in _key_sets(ro)[0] if q not in set(all_b)]
    metrics = [m for m in metric_names(rb) if m in metric_names(ro)]
    idx = question_indices(len(qids), n_boot, seed) if n_boot > 0 and qids else np.zeros((0, len(qids)), dtype=np.int64)
    w = replicate_counts(idx, len(qids)) if len(idx) else None
    w0 = point_weights(len(qids))
    attrs: dict[str, list[int]] = {}
    for i, (a, _g) in enumerate(groups):
        attrs.setdefault(a, []).append(i)
    country = [i for i, (a, _g) in enumerate(groups) if a == COUNTRY_ATTRIBUTE]
    # widened/narrowed need intervals that can carry them: enough replicates, and questions that can vary
    calls = n_boot >= MIN_RELIABLE_BOOT and len(qids) > 1

    out_overall, out_groups, out_disp = [], [], []
    for m in metrics:
        higher = higher_is_better(m, rb)
        mb, mo = _matrix(rb, m, groups, pairing), _matrix(ro, m, groups, pairing)
        pb, po = sum_counts(mb, w0), sum_counts(mo, w0)
        rb_sc = None if w is None else sum_counts(mb, w)
        ro_sc = None if w is None else sum_counts(mo, w)
        gb, go = pb.group_means(), po.group_means()
        gb_r = None if rb_sc is None else rb_sc.group_means()
        go_r = None if ro_sc is None else ro_sc.group_means()
        ob, oo = pb.pooled()[0], po.pooled()[0]
        ob_r = None if rb_sc is None else rb_sc.pooled()
        oo_r = None if ro_sc is None else ro_sc.pooled()
        out_overall.append({
            "metric": m, "higher_is_better": higher,
            "base": _fig(ob, ob_r, level), "other": _fig(oo, oo_r, level),
            "change": _fig(oo - ob, None if ob_r is None else oo_r - ob_r, level),
            "reduction": _fig(reduction(np.float64(ob), np.float64(oo), higher),
                              None if ob_r is None else reduction(ob_r, oo_r, higher), level),
        })  # fmt: skip
        for i, (a, g) in enumerate(groups):
            rep_b = None if gb_r is None else gb_r[:, i]
            rep_o = None if go_r is None else go_r[:, i]
            out_groups.append({
                "attribute": a, "group": g, "metric": m,
                "base": _fig(gb[0, i], rep_b, level), "other": _fig(go[0, i], rep_o, level),
                "change": _fig(go[0, i] - gb[0, i], None if rep_b is None else rep_o - rep_b, level),
                "reduction": _fig(reduction(gb[0, i], go[0, i], higher),
                                  None if rep_b is None else reduction(rep_b, rep_o, higher), level),
            })  # fmt: skip
        for a, rows_l in attrs.items():
            rows = np.asarray(rows_l)
            if country and a != COUNTRY_ATTRIBUTE:
                ref_b, ref_o = gb[:, country[0]], go[:, country[0]]
                refr_b = None if gb_r is None else gb_r[:, country[0]]
                refr_o = None if go_r is None else go_r[:, country[0]]
            else:
                ref_b, ref_o = pb.pooled(rows), po.pooled(rows)
                refr_b = None if rb_sc is None else rb_sc.pooled(rows)
                refr_o = None if ro_sc is None else ro_sc.pooled(rows)
            db, do = disparity_figures(gb[:, rows], ref_b), disparity_figures(go[:, rows], ref_o)
            dbr = disparity_figures(gb_r[:, rows], refr_b) if gb_r is not None else None
            dor = disparity_figures(go_r[:, rows], refr_o) if go_r is not None else None
            for f in FIGURES:
                change = _fig(do[f][0] - db[f][0], None if dbr is None else dor[f] - dbr[f], level)
                ci = change["ci"]
                # a ratio falling (min/max further below 1) is a widening; every other figure widens upward
                widen_up = f != "ratio"
                eps = float(min_change)
                widened = calls and ci is not None and bool((ci[0] > eps) if widen_up else (ci[1] < -eps))
                narrowed = calls and ci is not None and bool((ci[1] < -eps) if widen_up else (ci[0] > eps))
                out_disp.append({
                    "attribute": a, "metric": m, "figure": f,
                    "base": _fig(db[f][0], None if dbr is None else dbr[f], level),
                    "other": _fig(do[f][0], None if dor is None else dor[f], level),
                    "change": change, "widened": widened, "narrowed": narrowed,
                })  # fmt: skip
    notes = []
    digest = _digest(rb)
    same = digest == _digest(ro)  # the digest each run's own report prints: a copy of a file is the same results
    if same:
        notes.append(f"BASE and OTHER are the same results (same digest {digest}): every change is zero by "
                     "construction; pass the results of the run you mean to compare")  # fmt: skip
    if n_boot == 0:
        notes.append("no bootstrap (--n-boot 0): changes have no interval and none is called widened or narrowed")
    elif n_boot < MIN_RELIABLE_BOOT:
        notes.append(f"only {n_boot} bootstrap replicates: the {level:.0%} intervals are rough, so no change is "
                     f"called widened or narrowed (that needs {MIN_RELIABLE_BOOT}); use --n-boot 1000")  # fmt: skip
    if len(qids) == 1:
        notes.append("only one paired question: the question bootstrap cannot vary, so intervals have zero width "
                     "and no change is called widened or narrowed")  # fmt: skip
    if held_out:
        notes.append(f"paired on the {len(qids)} questions both runs audited; {len(held_out)} held out by a run's "
                     f"method ({', '.join(held_out)}) are left out of BASE and OTHER alike, so these figures "
                     "differ from the runs' own reports")  # fmt: skip
    left_out = left_out_section(rb, ro, pairing.left_out)
    if pairing.left_out:
        notes.append(left_out_note(left_out, len(pairing.left_out)))
    if (rb.get("data") or {}).get("sha256") != (ro.get("data") or {}).get("sha256"):
        notes.append("the two runs used survey files with different hashes (same groups and questions)")
    resampled = [side for side, r in (("BASE", rb), ("OTHER", ro)) if (r.get("bootstrap") or {}).get("respondents")]
    if resampled:
        notes.append(f"{' and '.join(resampled)} resampled respondents too; these paired intervals resample questions "
                     "only, so they can be narrower than that run's own report")  # fmt: skip
    if (rb.get("data") or {}).get("synthetic") or (ro.get("data") or {}).get("synthetic"):
        notes.append("SYNTHETIC DATA in at least one run: not World Values Survey respondents")
    bname = "results" if isinstance(base, dict) else os.fspath(base)
    oname = "results" if isinstance(other, dict) else os.fspath(other)
    return {
        "schema_version": "1",
        "kind": "compare",
        "base": _summary(rb, bname),
        "other": _summary(ro, oname),
        "country": (rb.get("data") or {}).get("country"),
        "n_questions": len(qids),
        "questions": {"paired": list(qids), "held_out": held_out},
        "left_out_cells": left_out,
        "bootstrap": {"unit": "question", "paired": True, "replicates": int(len(idx)), "level": level, "seed": seed,
                      "min_change": float(min_change), "changes_called": calls},  # fmt: skip
        "same_results": same,
        "overall": out_overall,
        "groups": out_groups,
        "disparity": out_disp,
        "widened": [d for d in out_disp if d["widened"]],
        "notes": notes,
    }


def left_out_section(base: dict[str, Any], other: dict[str, Any], skip: frozenset[Cell]) -> list[dict]:
    """The cells left out of both sides, each with the run that excluded it and that run's reason (sorted)."""
    rows = []
    for side, record in (("BASE", base), ("OTHER", other)):
        reason = (record.get("excluded_cells") or {}).get("reason") or "left out by its method"
        for a, g, q in sorted(_cells_excluded(record) & skip):
            rows.append({"attribute": a, "group": g, "question": q, "excluded_by": side, "reason": reason})
    return rows


def left_out_note(rows: list[dict], n_skipped: int) -> str:
    """Why the paired figures leave cells out (the rows of :func:`left_out_section`): which run, and its reason."""
    why = []
    for side in ("BASE", "OTHER"):
        own = [r for r in rows if r["excluded_by"] == side]
        if own:
            why.append(f"{len(own)} excluded by {side} ({own[0]['reason']})")
    return (f"paired on the (group, question) cells both runs audited: {n_skipped} cell(s) in one run only are left "
            f"out of BASE and OTHER alike ({'; '.join(why)}), so these figures differ from the runs' own "
            "reports")  # fmt: skip


COMPARE_OUTPUTS = ("compare.json", "compare.html", "compare.pdf")


def write_compare(result: dict[str, Any], out_dir: str | os.PathLike, formats: Sequence[str]) -> list[Path]:
    """compare.json always; compare.html / compare.pdf as asked.

    Everything is rendered first (a failure leaves the folder as it was); then every
    earlier compare output goes, so a format not asked for this time cannot sit beside
    this run's compare.json as if it belonged to it.
    """
    from cvaudit.audit.io import atomic_write_bytes, dumps_json, remove_outputs

    out = Path(out_dir)
    files = {"compare.json": dumps_json(result).encode("utf-8")}
    if formats:
        from .html import render_compare_html

        html = render_compare_html(result)
        if "html" in formats:
            files["compare.html"] = html.encode("utf-8")
        if "pdf" in formats:
            from .pdf import html_to_pdf_bytes

            files["compare.pdf"] = html_to_pdf_bytes(html)
    remove_outputs(out, COMPARE_OUTPUTS)
    return [atomic_write_bytes(out / name, data) for name, data in files.items()]

