"""Favoured / disfavoured flags against a reference group (Aequitas-style, with significance).

A group is flagged only when three things agree: its confidence interval lies
wholly on one side of the reference's value, its ratio to the reference is outside
the tau band, and the Holm-adjusted paired-bootstrap p-value is below alpha. Any
one alone is too easy to trip with ~100 groups and noisy per-question metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bootstrap import paired_p_value


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are skipped and stay NaN.

    Sorted ascending, p_(i) -> max_{j <= i} min(1, (m - j + 1) * p_(j)), m = number of finite p.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def choose_reference(labels: Sequence[str], n: Sequence[float | None], attribute: str,
                     given: dict[str, str]) -> int:  # fmt: skip
    """Index of the reference group: the user's choice, else the largest n (first on ties)."""
    from cvaudit.audit.errors import ConfigError

    labels = list(labels)
    if attribute in given:
        want = given[attribute]
        if want not in labels:
            raise ConfigError(
                f"reference group {want!r} is not a group of {attribute!r}; valid groups: {', '.join(labels)}"
            )
        return labels.index(want)
    sizes = np.array([(-np.inf if v is None or not np.isfinite(float(v)) else float(v)) for v in n])
    return int(np.argmax(sizes)) if len(sizes) else 0


@dataclass(frozen=True)
class Flag:
    status: str  # favoured | disfavoured | neutral | reference | undefined
    ratio: float
    p_value: float
    p_holm: float


def ratio_to_reference(value: np.ndarray, ref: float, higher_is_better: bool) -> np.ndarray:
    """metric(group) / metric(reference), inverted for lower-is-better metrics so < 1 always means worse.

    0/0 -> 1 (equal); x/0 -> inf (reported as null in JSON).
    """
    num, den = (np.asarray(value, dtype=float), ref) if higher_is_better else (ref, np.asarray(value, dtype=float))
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r = np.where((num == 0) & (den == 0), 1.0, r)
    return np.where(np.isfinite(num) & np.isfinite(den), r, np.nan)


def holm_floor(n_compared: int, n_boot: int) -> float:
    """The smallest Holm-adjusted p-value ``n_compared`` groups can reach with ``n_boot`` replicates.

    A bootstrap p-value is at least 2 / (B + 1) (:func:`~cvaudit.metrics.bootstrap.paired_p_value`)
    and Holm multiplies the smallest by the family size, so with many groups and few
    replicates no group can be flagged however large its gap.
    """
    return min(1.0, n_compared * 2.0 / (n_boot + 1.0)) if n_boot > 0 else 1.0


def replicates_to_flag(n_compared: int, alpha: float) -> int:
    """The fewest replicates for which :func:`holm_floor` is below ``alpha``.

    The closed form floor(2m / alpha) can land one short when 2m / alpha rounds
    (m=7, alpha=0.07 gives 199, where the floor is exactly 0.07), so the candidate
    is stepped until :func:`holm_floor` itself agrees: the advice then always works.
    """
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha}")
    n_boot = max(0, int(math.floor(2.0 * n_compared / alpha)) - 1)
    while holm_floor(n_compared, n_boot) >= alpha:
        n_boot += 1
    while n_boot > 0 and holm_floor(n_compared, n_boot - 1) < alpha:
        n_boot -= 1
    return n_boot


def flag_attribute(
    point: np.ndarray,
    replicates: np.ndarray | None,
    ci: tuple[np.ndarray, np.ndarray] | None,
    ref: int,
    higher_is_better: bool,
    tau: float,
    alpha: float,
) -> list[Flag]:
    """Flags for the groups of one attribute and one metric.

    ``point`` (G,), ``replicates`` (B, G) paired replicate group means, ``ci`` the
    (lo, hi) arrays. Without replicates there is no significance and nothing is flagged.
    A group with an undefined value (or an undefined reference) gets "undefined".
    """
    point = np.asarray(point, dtype=float)
    g = point.shape[0]
    ref_val = point[ref]
    ratio = ratio_to_reference(point, ref_val, higher_is_better)
    if replicates is not None and replicates.shape[0] > 0:
        diff = replicates - replicates[:, [ref]]
        p = paired_p_value(diff)
    else:
        p = np.full(g, np.nan)
    p = p.astype(float)
    p[ref] = np.nan
    p[~np.isfinite(point)] = np.nan
    p_holm = holm(p)
    flags: list[Flag] = []
    for i in range(g):
        if i == ref:
            flags.append(Flag("reference", 1.0 if np.isfinite(point[i]) else np.nan, np.nan, np.nan))
            continue
        if not (np.isfinite(point[i]) and np.isfinite(ref_val)):
            flags.append(Flag("undefined", np.nan, np.nan, np.nan))
            continue
        status = "neutral"
        if ci is not None and np.isfinite(p_holm[i]) and p_holm[i] < alpha:
            lo, hi = ci[0][i], ci[1][i]
            above, below = lo > ref_val, hi < ref_val
            better = above if higher_is_better else below
            worse = below if higher_is_better else above
            if better and ratio[i] > 1.0 / tau:
                status = "favoured"
            elif worse and ratio[i] < tau:
                status = "disfavoured"
        flags.append(Flag(status, float(ratio[i]), float(p[i]), float(p_holm[i])))
    return flags
