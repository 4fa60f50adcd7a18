"""``evaluate``: items -> every results.json metric section (docs/results-schema.md, docs/metrics.md).

Pipeline: item metrics (vectorised) -> (groups x questions) matrices -> point
sums/counts and, with the same code, all paired-bootstrap replicates -> group,
overall, per-attribute means -> disparity figures per replicate -> flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from . import aggregate as agg
from .baselines import RespondentPairs, baselines, group_spread
from .bootstrap import percentile_ci, question_indices, replicate_counts
from .disparity import FIGURES, best_worst, disparity_figures
from .flags import choose_reference, flag_attribute, holm_floor, replicates_to_flag
from .item import batch_from_items, compute_metrics
from .noise import DRAWS, item_sizes, size_shift
from .registry import MetricSpec, metric_specs

if TYPE_CHECKING:
    import pandas as pd

COUNTRY_ATTRIBUTE = "all"  # the whole-country group (attributes=["none"])
NOMINAL_NOTE = ("NMAE and representativeness need answers on an ordered scale: questions whose options have no "
                "order (nominal; positions null in results.json) get no value for them and are left out of those "
                "averages")  # fmt: skip


MIN_RELIABLE_BOOT = 200  # below this a 95% percentile interval rests on a handful of tail replicates


@dataclass(frozen=True)
class MetricsConfig:
    """How figures are computed; recorded in results.json "bootstrap" and "flags"."""

    n_boot: int = 1000
    level: float = 0.95
    seed: int = 0
    tau: float = 0.8
    alpha: float = 0.05
    reference: tuple[tuple[str, str], ...] = ()
    respondents: bool = False
    chunk: int = 50  # replicates per block in the respondent bootstrap (bounds memory)
    # flags compare groups net of the shift survey sampling noise alone gives each (metrics/noise.py)
    noise_correction: bool = True
    noise_draws: int = DRAWS


_num, _fig = agg.finite, agg.figure  # short local names


def _check(items: pd.DataFrame, groups: pd.DataFrame, config: MetricsConfig) -> None:
    from cvaudit.audit.errors import ConfigError, DataError

    need = ["attribute", "group", "question", "model_dist", "human_dist"]
    missing = [c for c in need if c not in items.columns]
    if missing:
        raise DataError(f"items frame lacks column(s) {', '.join(missing)}; see docs/metrics.md for the input")
    gmissing = [c for c in ("attribute", "group") if c not in groups.columns]
    if gmissing:
        raise DataError(f"groups frame lacks column(s) {', '.join(gmissing)}; give attribute, group, n, n_eff")
    if config.n_boot < 0:
        raise ConfigError(f"n_boot must be >= 0, got {config.n_boot}")
    if not 0.0 < config.level < 1.0:
        raise ConfigError(f"level must be between 0 and 1 (e.g. 0.95), got {config.level}")
    if not 0.0 < config.tau <= 1.0:
        raise ConfigError(f"tau must be in (0, 1] (e.g. 0.8), got {config.tau}")
    if not 0.0 < config.alpha < 1.0:
        raise ConfigError(f"alpha must be between 0 and 1 (e.g. 0.05), got {config.alpha}")


def _stack_replicates(batch: Any, human_replicates: Any, n_boot: int) -> np.ndarray:
    """The items' respondent-bootstrap survey replicates as one (n_items, n_boot, K) array (zero padded)."""
    kmax = batch.model.shape[1]
    reps = np.zeros((len(batch.k), n_boot, kmax))
    for i, r in enumerate(human_replicates):
        r = np.asarray(r, dtype=float)
        if r.ndim != 2 or r.shape[0] != n_boot or r.shape[1] != int(batch.k[i]):
            from cvaudit.audit.errors import DataError

            raise DataError(
                f"human replicate {i} has shape {r.shape}, expected ({n_boot}, {int(batch.k[i])}); "
                "make them with metrics.bootstrap.respondent_replicates using the same n_boot"
            )
        reps[i, :, : r.shape[1]] = r
    return reps


def _replicate_batches(batch: Any, reps: np.ndarray, chunk: int) -> Iterator[tuple[int, int, Any]]:
    """Blocks of respondent replicates: (b0, b1, the items tiled b1 - b0 times against replicates b0..b1)."""
    n_items, n_boot, kmax = reps.shape
    step = max(chunk, 1)
    for b0 in range(0, n_boot, step):
        b1 = min(n_boot, b0 + step)
        human = reps[:, b0:b1, :].transpose(1, 0, 2).reshape((b1 - b0) * n_items, kmax)
        yield b0, b1, batch.repeat(b1 - b0).with_human(human)


def _replicate_sumcounts(
    batch: Any, layout: agg.Layout, specs: dict[str, MetricSpec], weights: np.ndarray,
    blocks: Callable[[], Iterator[tuple[int, int, Any]]], on_block: Callable[..., None] | None = None,
) -> dict[str, agg.SumCounts]:  # fmt: skip
    """Replicate sums/counts per metric when D_H is resampled too: replicate b uses human replicate b.

    ``on_block(b0, b1, rep_batch, values)`` sees each block with the model's metrics on it (the baselines
    score themselves against the same resampled survey without building or scoring it again).
    """
    n_items, n_boot = len(batch.k), weights.shape[0]
    sums = {n: np.zeros((n_boot, len(layout.groups))) for n in specs}
    counts = {n: np.zeros((n_boot, len(layout.groups))) for n in specs}
    for b0, b1, rep_batch in blocks():
        values = compute_metrics(rep_batch, list(specs))
        if on_block is not None:
            on_block(b0, b1, rep_batch, values)
        for name, v in values.items():
            mat = agg.to_matrix(v.reshape(b1 - b0, n_items), layout)
            sc = agg.sum_counts(mat, weights[b0:b1])
            sums[name][b0:b1], counts[name][b0:b1] = sc.sums, sc.counts
    return {n: agg.SumCounts(sums[n], counts[n]) for n in specs}


def evaluate(
    items: pd.DataFrame,
    groups: pd.DataFrame,
    config: MetricsConfig | None = None,
    human_replicates: Sequence[np.ndarray] | np.ndarray | None = None,
    population: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """Every metric section of results.json for ``items`` (one row per (group, question)).

    ``items``: attribute, group, question, category, positions (list|None), model_dist,
    human_dist, human_mode (extra columns are ignored). ``groups``: attribute, group,
    n, n_eff (order kept in the output). ``human_replicates`` (one (n_boot, K) array per
    item row, see :func:`~cvaudit.metrics.bootstrap.item_respondent_replicates`) is used
    when ``config.respondents`` is True. ``population`` (question id -> the whole
    country's answer distribution, options in the items' order) adds the population
    baseline. Returns "item_metrics" (DataFrame aligned with ``items``), "groups",
    "overall", "categories", "disparity", "flags", "baselines", "spread", "bootstrap"
    and "metric_notes".
    """
    import pandas as pd
    from cvaudit.audit.errors import ConfigError

    config = config or MetricsConfig()
    _check(items, groups, config)
    if config.respondents and human_replicates is None:
        raise ConfigError("respondent bootstrap requested but no human replicates given; "
                          "pass human_replicates=item_respondent_replicates(...) or set respondents=False")  # fmt: skip
    original_index = items.index
    items = items.reset_index(drop=True)
    specs = metric_specs()
    notes: list[str] = []

    # 1. item metrics
    batch = batch_from_items(items)
    values = compute_metrics(batch, list(specs))
    item_frame = pd.DataFrame(values, index=original_index, columns=list(specs))  # aligned with the caller's rows
    if len(items) and (~batch.ordinal & batch.valid).any():
        notes.append(NOMINAL_NOTE)
    if (~batch.valid).any():
        notes.append(f"{int((~batch.valid).sum())} item(s) had a missing or empty distribution: all metrics null")

    # 2. grid, point estimates and replicates
    gkeys = [(str(a), str(g)) for a, g in zip(groups["attribute"], groups["group"])]
    layout = agg.make_layout(items, gkeys)
    n_q = len(layout.questions)
    n_boot = int(config.n_boot) if n_q > 0 else 0
    idx = question_indices(n_q, n_boot, config.seed)
    weights = replicate_counts(idx, n_q) if n_boot else np.zeros((0, n_q))
    matrices = {n: agg.to_matrix(v, layout) for n, v in values.items()}
    point = {n: agg.sum_counts(m, agg.point_weights(n_q)) for n, m in matrices.items()}
    use_resp = bool(config.respondents) and n_boot > 0
    resampled = None  # the baselines' paired replicates against the resampled survey, filled in the same pass
    if use_resp:
        blocks = partial(_replicate_batches, batch, _stack_replicates(batch, human_replicates, n_boot), config.chunk)
        resampled = RespondentPairs(batch, items, list(specs), layout, weights, population, COUNTRY_ATTRIBUTE)
        reps = _replicate_sumcounts(batch, layout, specs, weights, blocks, on_block=resampled.add)
    else:
        reps = {n: agg.sum_counts(m, weights) for n, m in matrices.items()}
    # a group whose metric is defined on one question only (every group, with one question in the audit)
    # has replicates that all equal its point unless respondents are resampled: a paired test would call
    # any nonzero gap certain, so such a group (or a reference like it) gets no p-value and no flag
    n_defined = {n: np.isfinite(m).sum(axis=1) for n, m in matrices.items()}  # (G,) questions with a value
    if n_q == 1 and not use_resp:
        notes.append("only one question: the question bootstrap cannot vary, so intervals have zero width and no "
                     "group is tested or flagged; audit more questions or add --respondent-bootstrap")  # fmt: skip
    if 0 < n_boot < MIN_RELIABLE_BOOT:
        notes.append(f"only {n_boot} bootstrap replicates: the {config.level:.0%} intervals are rough and may not even "
                     f"contain the point value; use --n-boot 1000 for figures you report")  # fmt: skip

    gmeans = {n: point[n].group_means()[0] for n in specs}
    rmeans = {n: reps[n].group_means() for n in specs}  # (B, G)
    gci = {n: percentile_ci(rmeans[n], config.level) for n in specs}
    correct = bool(config.noise_correction) and n_boot > 0 and config.noise_draws > 0
    sizes = item_sizes(items, groups)  # each item's effective sample size: the size shift and the spread's noise floor
    item_n = sizes if correct else None

    # 3. overall
    overall = {}
    for n in specs:
        lo, hi = percentile_ci(reps[n].pooled()[:, None], config.level)
        overall[n] = _fig(point[n].pooled()[0], lo[0], hi[0])

    # baselines on the same cells and the same question draws (paired), and how far apart the groups' answers are
    base = baselines(batch, items, layout, values, weights, config.level, population, COUNTRY_ATTRIBUTE, resampled)
    spread = group_spread(batch, layout, weights, config.level, sizes, config.seed)

    # 4. disparity and flags per attribute
    meta = _group_meta(groups, layout)
    given = dict(config.reference)
    attr_rows = layout.attribute_rows()
    unknown = [a for a in given if a not in attr_rows]
    if unknown:
        raise ConfigError(f"reference given for unknown attribute(s) {', '.join(unknown)}; "
                          f"attributes in this audit: {', '.join(attr_rows)}")  # fmt: skip
    country = [i for i, (a, _g) in enumerate(layout.groups) if a == COUNTRY_ATTRIBUTE]
    flag_out: dict[int, dict[str, dict]] = {i: {} for i in range(len(layout.groups))}
    ref_out: dict[str, str] = {}
    disparity = []
    first = next(iter(specs))
    for attr, rows in attr_rows.items():
        labels = [layout.groups[i][1] for i in rows]
        sizes = [meta[i]["n"] if point[first].counts[0, i] > 0 else None for i in rows]  # evaluated groups only
        ref_local = choose_reference(labels, sizes, attr, given)
        ref_out[attr] = labels[ref_local]
        if len(rows) < 2:
            notes.append(f"attribute {attr!r} has a single group: no disparity figures")
        elif n_boot and (n_q > 1 or use_resp) and (floor := holm_floor(len(rows) - 1, n_boot)) >= config.alpha:
            notes.append(
                f"attribute {attr!r}: {len(rows) - 1} groups are tested against the reference, so with {n_boot} "
                f"replicates the smallest Holm-adjusted p-value is {floor:.3f} >= alpha "
                f"{config.alpha:g} and no group can be flagged; re-run with --n-boot "
                f"{replicates_to_flag(len(rows) - 1, config.alpha)} or more"
            )
        shifts: dict[str, np.ndarray] = {}
        if item_n is not None and len(rows) > 1:
            ref_meta = meta[int(rows[ref_local])]
            ref_size = ref_meta["n_eff"] if ref_meta["n_eff"] is not None else ref_meta["n"]
            shifts = size_shift(batch, item_n, layout, rows, ref_local, list(specs), config.seed, config.noise_draws,
                                config.chunk, ref_size=ref_size)  # fmt: skip
            unknown = [labels[k] for k in range(len(rows)) if k != ref_local
                       and point[first].counts[0, rows[k]] > 0 and not np.isfinite(shifts[first][k])]  # fmt: skip
            if unknown:
                notes.append(f"attribute {attr!r}: no sample size for {', '.join(unknown[:5])}"
                             f"{' and others' if len(unknown) > 5 else ''}; their flags are on the raw figures "
                             "(give groups n or n_eff)")  # fmt: skip
        for n, spec in specs.items():
            if country and attr != COUNTRY_ATTRIBUTE:
                o_point, o_reps = gmeans[n][country[0]][None], rmeans[n][:, country[0]]
            else:
                o_point, o_reps = point[n].pooled(rows), reps[n].pooled(rows)
            d_point = disparity_figures(gmeans[n][rows], o_point[0])
            d_reps = disparity_figures(rmeans[n][:, rows], o_reps)
            best, worst = best_worst(gmeans[n][rows], spec.higher_is_better)
            entry: dict[str, Any] = {"attribute": attr, "metric": n}
            for fig in FIGURES:
                lo, hi = percentile_ci(d_reps[fig][:, None], config.level)
                entry[fig] = _fig(d_point[fig], lo[0], hi[0])
            ol, oh = percentile_ci(o_reps[:, None], config.level)
            entry["overall"] = _fig(o_point[0], ol[0], oh[0])
            ranked = best is not None and len(rows) > 1 and bool(d_point["gap"] > 0)  # all equal: no best/worst
            entry["best_group"] = labels[best] if ranked else None
            entry["worst_group"] = labels[worst] if ranked else None
            entry["reference_group"] = labels[ref_local]
            # how much of the gap the two extreme groups' sample sizes alone would give (docs/metrics.md)
            entry["gap_from_size"] = None
            if ranked and n in shifts:
                top, bottom = (best, worst) if spec.higher_is_better else (worst, best)  # max and min value
                entry["gap_from_size"] = _num(shifts[n][top] - shifts[n][bottom])
            if len(rows) < 2:
                entry["note"] = "single group: disparity not defined"
            elif np.isfinite(gmeans[n][rows]).sum() < 2:
                entry["note"] = "fewer than two groups with a defined value: disparity not defined"
            disparity.append(entry)
            # flags compare groups net of their sampling-noise shift (a constant per group: the
            # interval and the paired replicates move with the point)
            shift = shifts[n] if n in shifts else np.full(len(rows), np.nan)
            pts = gmeans[n][rows]
            gap = np.nan_to_num(pts - pts[ref_local])
            # only the part of a gap that sample size explains is taken off: the shift never adds a gap
            removed = np.clip(np.nan_to_num(shift), np.minimum(gap, 0.0), np.maximum(gap, 0.0))
            ci_rows = (gci[n][0][rows], gci[n][1][rows])
            args = (ref_local, spec.higher_is_better, config.tau, config.alpha)
            group_reps = rmeans[n][:, rows]
            if not use_resp:
                one = n_defined[n][rows] < 2
                if one[ref_local]:
                    one[:] = True  # against a reference fixed by one question nothing is tested
                if one.any():
                    group_reps = np.where(one[None, :], np.nan, group_reps)
                    if n_q > 1 and np.isfinite(pts[one]).any():
                        notes.append(f"attribute {attr!r}, {n}: groups with a value on one question only are not "
                                     "tested or flagged (their replicates cannot vary)")  # fmt: skip
            raw = flag_attribute(pts, group_reps if n_boot else None, ci_rows if n_boot else None, *args)
            net = flag_attribute(pts - removed, group_reps - removed if n_boot else None,
                                 (ci_rows[0] - removed, ci_rows[1] - removed) if n_boot else None,
                                 *args) if correct else raw  # fmt: skip
            for i, r, t, sh, rm in zip(rows, raw, net, shift, removed):
                # by construction the correction can only remove a flag or raise a p-value (with resampled
                # respondents a constant shift of the replicates is not monotone on its own); reference and
                # undefined depend on the points' finiteness only, so they never differ between the two
                shown = correct and t.status != "undefined" and _num(sh) is not None
                flag_out[int(i)][n] = {"status": t.status if t.status == r.status else "neutral",
                                       "ratio": _num(r.ratio), "ratio_net": _num(t.ratio) if correct else None,
                                       "p_value": _num(np.fmax(t.p_value, r.p_value)),
                                       "p_holm": _num(np.fmax(t.p_holm, r.p_holm)),
                                       "noise_shift": _num(sh) if shown else None,
                                       "noise_removed": _num(rm) if shown else None}  # fmt: skip

    groups_out = []
    for i, (attr, label) in enumerate(layout.groups):
        groups_out.append({
            "attribute": attr, "group": label, "n": meta[i]["n"], "n_eff": meta[i]["n_eff"],
            "metrics": {n: _fig(gmeans[n][i], gci[n][0][i], gci[n][1][i]) for n in specs},
            "flags": flag_out[i],
        })  # fmt: skip
        if not np.isfinite([gmeans[n][i] for n in specs]).any():
            notes.append(f"group {attr}={label} has no evaluated item: all its metrics are null")

    return {
        "item_metrics": item_frame,
        "groups": groups_out,
        "overall": overall,
        "categories": agg.category_table(items, values, layout),
        "disparity": disparity,
        "baselines": base,
        "spread": spread,
        # how to read each metric, recorded so the report, gate and compare never depend on which plug-ins
        # the reading process happens to have registered
        "metric_info": {n: {"higher_is_better": bool(sp.higher_is_better), "needs_ordinal": bool(sp.needs_ordinal),
                            "description": str(sp.description),
                            "bounds": None if sp.bounds is None else list(sp.bounds)} for n, sp in specs.items()},  # fmt: skip
        "flags": {"tau": float(config.tau), "alpha": float(config.alpha), "correction": "holm",
                  "reference": ref_out, "noise_corrected": correct,
                  "noise_draws": int(config.noise_draws) if correct else 0},  # fmt: skip
        "bootstrap": {"unit": "question", "replicates": int(n_boot), "level": float(config.level),
                      "seed": int(config.seed), "respondents": use_resp},  # fmt: skip
        "metric_notes": list(dict.fromkeys(notes)),
    }


def _group_meta(groups: pd.DataFrame, layout: agg.Layout) -> list[dict[str, Any]]:
    """n and n_eff per layout group (None for a group seen only in items)."""
    info = {}
    for rec in groups.to_dict(orient="records"):
        n = rec.get("n")
        n_eff = rec.get("n_eff")
        info[(str(rec["attribute"]), str(rec["group"]))] = {
            "n": int(n) if _num(n) is not None else None,
            "n_eff": _num(n_eff),
        }
    return [info.get(k, {"n": None, "n_eff": None}) for k in layout.groups]
