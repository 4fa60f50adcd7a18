"""DISCA's correction for one (target, question) item, in pure numpy.

The paper (seed 000/001) works on a binary A/B logit gap ``delta``; WVS items
have 2 to 11 options, so this module has both the paper's binary form and a
vector form on centred option log-probabilities that reduces to it exactly at
K = 2 (derivation in docs/methods-disca.md). Random draws come in as arrays of
standard normals so every step can be checked by hand and so the caller owns
the seeding (one SeedSequence per item: results do not depend on item order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ANCHORS = ("paper", "code")


@dataclass(frozen=True)
class DiscaParams:
    """Every constant of the correction; defaults from METHODS.md section 6 "disca"."""

    samples: int = 64  # K perturbations per pass (two passes)
    alpha: float = 0.88  # prospect-theory exponent for gains
    beta: float = 0.88  # prospect-theory exponent for losses
    kappa: float = 2.25  # loss aversion
    lam: float = 0.7  # weight of the consensus term in the utility
    eta: float = 0.5  # softmax temperature of the importance weights
    temperature: float = 1.5  # logit temperature applied to the option log-probabilities
    output_temperature: float = 0.5  # decision temperature of the final sigmoid / softmax
    sigma_floor: float = 0.3  # lower bound of the proposal scale
    ess_min: float = 0.1  # ESS/K below this switches a pass's correction off
    agreement_scale: float = 0.04  # r = exp(-(d1 - d2)^2 / agreement_scale)
    anchor: str = "paper"  # "paper": ESS-adaptive blend of consensus and base; "code": consensus only


@dataclass(frozen=True)
class PassResult:
    delta_star: Any  # float (binary) or vector (centred subspace, option coordinates)
    ess: float  # 1 / sum w^2, in samples
    weights: np.ndarray
    gated: bool  # ESS/K < ess_min: correction forced to 0


@dataclass(frozen=True)
class Correction:
    """The outcome for one item; ``dist`` is aligned with the question's options."""

    dist: np.ndarray
    final: Any  # delta_final (binary) or the final centred vector
    consensus: Any
    base: Any
    delta_star: Any
    disagreement: float  # spread of the panel (std of gaps / its vector analogue), before the floor
    sigma: float  # proposal scale actually used (>= sigma_floor)
    ess1: float  # ESS / K of pass 1
    ess2: float
    agreement: float  # r
    anchor_weight: float  # a of the blend (1.0 for anchor="code")
    gated: bool  # both passes gated: no correction at all


# ----------------------------------------------------------------------------- shared pieces
def pt_value(x: np.ndarray, alpha: float, beta: float, kappa: float) -> np.ndarray:
    """Kahneman-Tversky value: x^alpha for gains, -kappa (-x)^beta for losses."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, np.abs(x) ** alpha, -kappa * np.abs(x) ** beta)


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def ess_of(weights: np.ndarray) -> float:
    """Effective sample size of normalised importance weights."""
    return float(1.0 / np.sum(np.square(weights)))


def agreement(d1: float, d2: float, scale: float) -> float:
    """Dual-pass agreement r = exp(-(d1 - d2)^2 / scale); d1, d2 are gap-unit magnitudes or a distance."""
    return float(np.exp(-((d1 - d2) ** 2) / scale))


def anchor_weight(ess1: float, ess2: float, samples: int, anchor: str) -> float:
    """a of delta_final = a consensus + (1 - a) base + delta*; 1 for the code's consensus anchor."""
    if anchor == "code":
        return 1.0
    return float(np.clip(min(ess1, ess2) / samples, 0.1, 1.0))


def _utility(g_members: np.ndarray, g_cons: np.ndarray, sigma: float, p: DiscaParams) -> np.ndarray:
    """U_k = (1 - lam) mean_i v(g_ik / sigma) + lam v(g_cons,k / sigma); v per persona before the mean."""
    v_i = pt_value(g_members / sigma, p.alpha, p.beta, p.kappa).mean(axis=1)
    v_c = pt_value(g_cons / sigma, p.alpha, p.beta, p.kappa)
    return (1.0 - p.lam) * v_i + p.lam * v_c


# ----------------------------------------------------------------------------- binary form (the paper)
def binary_gap(lp_forward: np.ndarray, lp_reverse: np.ndarray, temperature: float) -> float:
    """Order-debiased gap (delta_AB - delta_BA) / 2 from canonical-order log-probs of both orders.

    delta = z_B - z_A with z = logprob / temperature; in the reversed prompt the
    displayed A is option 1, so delta_BA = z_0 - z_1 and the debiased gap is the
    mean over the two orders of z_1 - z_0.
    """
    f = np.asarray(lp_forward, dtype=np.float64) / temperature
    r = np.asarray(lp_reverse, dtype=np.float64) / temperature
    return float(((f[1] - f[0]) - (r[0] - r[1])) / 2.0)


def binary_pass(base: float, gaps: np.ndarray, sigma: float, eps: np.ndarray, p: DiscaParams) -> PassResult:
    """One importance-sampling pass over the perturbations ``eps`` (already scaled by sigma)."""
    gaps = np.asarray(gaps, dtype=np.float64)
    eps = np.asarray(eps, dtype=np.float64).reshape(-1)
    cons = float(gaps.mean())
    cand = cons + eps  # d_k
    g_members = np.abs(base - gaps)[None, :] - np.abs(cand[:, None] - gaps[None, :])
    g_cons = abs(base - cons) - np.abs(cand - cons)
    w = softmax(_utility(g_members, g_cons, sigma, p) / p.eta)
    ess = ess_of(w)
    gated = ess / eps.size < p.ess_min
    return PassResult(0.0 if gated else float(np.sum(w * eps)), ess, w, bool(gated))


def panel_sigma(gaps: np.ndarray) -> float:
    """Sample standard deviation (ddof=1, the unbiased estimator of Proposition 1); 0 for one persona."""
    gaps = np.asarray(gaps, dtype=np.float64)
    return float(gaps.std(ddof=1)) if gaps.size >= 2 else 0.0


def correct_binary(base: float, gaps: np.ndarray, normals1: np.ndarray, normals2: np.ndarray,
                   p: DiscaParams) -> Correction:
    """The paper's algorithm for one A/B item; ``normals*`` are standard normals, shape (samples,) or (samples, 1)."""
    gaps = np.asarray(gaps, dtype=np.float64)
    cons = float(gaps.mean())
    spread = panel_sigma(gaps)
    sigma = max(spread, p.sigma_floor)
    r1 = binary_pass(base, gaps, sigma, sigma * np.asarray(normals1, dtype=np.float64).reshape(-1), p)
    r2 = binary_pass(base, gaps, sigma, sigma * np.asarray(normals2, dtype=np.float64).reshape(-1), p)
    r = agreement(r1.delta_star, r2.delta_star, p.agreement_scale)
    star = r * (r1.delta_star + r2.delta_star) / 2.0
    a = anchor_weight(r1.ess, r2.ess, p.samples, p.anchor)
    final = a * cons + (1.0 - a) * base + star
    p1 = sigmoid(final / p.output_temperature)
    return Correction(
        dist=np.array([1.0 - p1, p1]), final=final, consensus=cons, base=base, delta_star=star,
        disagreement=spread, sigma=sigma, ess1=r1.ess / p.samples, ess2=r2.ess / p.samples, agreement=r,
        anchor_weight=a, gated=r1.gated and r2.gated,
    )  # fmt: skip


# ----------------------------------------------------------------------------- vector form (K options)
def centred(lp_forward: np.ndarray, lp_reverse: np.ndarray, temperature: float) -> np.ndarray:
    """Order-averaged option log-probs / temperature, centred (sum 0). At K = 2 it is delta * (-1/2, 1/2)."""
    z = (np.asarray(lp_forward, dtype=np.float64) + np.asarray(lp_reverse, dtype=np.float64)) / (2.0 * temperature)
    return z - z.mean()


def gap_norm(x: np.ndarray) -> np.ndarray:
    """sqrt(2) * L2 norm over the last axis: the distance in binary gap units (|delta| for delta*(-1/2, 1/2))."""
    return np.sqrt(2.0) * np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1)


def centred_basis(k: int) -> np.ndarray:
    """Orthonormal basis (k, k-1) of the sum-zero subspace (negated Helmert); column 1 at k = 2 is (-1, 1)/sqrt(2)."""
    basis = np.zeros((k, k - 1))
    for j in range(1, k):
        basis[:j, j - 1] = -1.0
        basis[j, j - 1] = float(j)
        basis[:, j - 1] /= np.sqrt(j * (j + 1))
    return basis


def vector_spread(vectors: np.ndarray) -> float:
    """sqrt(sum_i ||c_i - c_bar||^2 / (N - 1)) in gap units; the panel std of the gaps at K = 2."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.shape[0] < 2:
        return 0.0
    dev = gap_norm(vectors - vectors.mean(axis=0))
    return float(np.sqrt(np.sum(dev**2) / (vectors.shape[0] - 1)))


def vector_perturbations(normals: np.ndarray, sigma: float, k: int) -> np.ndarray:
    """(samples, k) isotropic perturbations in the sum-zero subspace with E||eps||^2 (gap units) = sigma^2.

    ``normals`` has shape (samples, k-1). At k = 2 this is eps_k * (-1/2, 1/2), eps_k = sigma * normal.
    """
    normals = np.asarray(normals, dtype=np.float64).reshape(-1, k - 1)
    scale = sigma / np.sqrt(2.0 * (k - 1))
    return scale * normals @ centred_basis(k).T


def vector_pass(base: np.ndarray, members: np.ndarray, sigma: float, eps: np.ndarray, p: DiscaParams) -> PassResult:
    """The binary pass with |x - y| replaced by the gap-unit distance between centred option vectors."""
    members = np.asarray(members, dtype=np.float64)
    eps = np.asarray(eps, dtype=np.float64)
    cons = members.mean(axis=0)
    cand = cons[None, :] + eps  # (S, k)
    g_members = gap_norm(base[None, :] - members)[None, :] - gap_norm(cand[:, None, :] - members[None, :, :])
    g_cons = gap_norm(base - cons) - gap_norm(cand - cons[None, :])
    w = softmax(_utility(g_members, g_cons, sigma, p) / p.eta)
    ess = ess_of(w)
    gated = ess / eps.shape[0] < p.ess_min
    star = np.zeros(members.shape[1]) if gated else w @ eps
    return PassResult(star, ess, w, bool(gated))


def correct_vector(base: np.ndarray, members: np.ndarray, normals1: np.ndarray, normals2: np.ndarray,
                   p: DiscaParams) -> Correction:
    """Vector DISCA for a K-option item; ``base`` (k,), ``members`` (N, k) centred vectors; normals (samples, k-1)."""
    base = np.asarray(base, dtype=np.float64)
    members = np.asarray(members, dtype=np.float64)
    k = base.size
    cons = members.mean(axis=0)
    spread = vector_spread(members)
    sigma = max(spread, p.sigma_floor)
    r1 = vector_pass(base, members, sigma, vector_perturbations(normals1, sigma, k), p)
    r2 = vector_pass(base, members, sigma, vector_perturbations(normals2, sigma, k), p)
    r = float(np.exp(-(gap_norm(r1.delta_star - r2.delta_star) ** 2) / p.agreement_scale))
    star = r * (r1.delta_star + r2.delta_star) / 2.0
    a = anchor_weight(r1.ess, r2.ess, p.samples, p.anchor)
    final = a * cons + (1.0 - a) * base + star
    return Correction(
        dist=softmax(final / p.output_temperature), final=final, consensus=cons, base=base, delta_star=star,
        disagreement=spread, sigma=sigma, ess1=r1.ess / p.samples, ess2=r2.ess / p.samples, agreement=r,
        anchor_weight=a, gated=r1.gated and r2.gated,
    )  # fmt: skip


# ----------------------------------------------------------------------------- one item from log-probs
def draw_normals(seed_seq: np.random.SeedSequence, samples: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent (samples, k-1) blocks of standard normals, one per pass, from the item's own seed."""
    s1, s2 = seed_seq.spawn(2)
    return (np.random.default_rng(s1).standard_normal((samples, k - 1)),
            np.random.default_rng(s2).standard_normal((samples, k - 1)))


def correct_item(base_lp: tuple[np.ndarray, np.ndarray], member_lps: list[tuple[np.ndarray, np.ndarray]],
                 seed_seq: np.random.SeedSequence, p: DiscaParams, vector: bool | None = None) -> Correction:
    """DISCA for one item from (forward, reverse) canonical log-probs of the base prompt and each persona.

    Binary items take the paper's scalar path unless ``vector=True`` (the two agree; tested).
    """
    k = len(base_lp[0])
    n1, n2 = draw_normals(seed_seq, p.samples, k)
    if k == 2 and not vector:
        base = binary_gap(*base_lp, p.temperature)
        gaps = np.array([binary_gap(f, r, p.temperature) for f, r in member_lps])
        return correct_binary(base, gaps, n1, n2, p)
    base_c = centred(*base_lp, p.temperature)
    members = np.stack([centred(f, r, p.temperature) for f, r in member_lps])
    return correct_vector(base_c, members, n1, n2, p)


def correction_size(c: Correction) -> float:
    """|delta*| in gap units (scalar or vector)."""
    return float(abs(c.delta_star)) if np.isscalar(c.delta_star) else float(gap_norm(c.delta_star))


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)).sum())


def anchor_dist(c: Correction, p: DiscaParams) -> np.ndarray:
    """The distribution DISCA would output with delta* = 0 (same anchor blend): isolates the correction's effect."""
    pre = c.final - c.delta_star
    if np.isscalar(pre):
        p1 = sigmoid(float(pre) / p.output_temperature)
        return np.array([1.0 - p1, p1])
    return softmax(np.asarray(pre) / p.output_temperature)
