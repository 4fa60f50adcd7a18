"""DISCA correction math against values worked out by hand from the paper's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from cvaudit.audit.disca_math import (
    DiscaParams,
    binary_gap,
    binary_pass,
    centred,
    centred_basis,
    correct_binary,
    correct_item,
    correct_vector,
    correction_size,
    gap_norm,
    pt_value,
    vector_perturbations,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def test_prospect_value_by_hand():
    v = pt_value(np.array([4.0, 0.0, -4.0]), alpha=0.5, beta=0.5, kappa=2.25)
    assert v.tolist() == pytest.approx([2.0, 0.0, -4.5])  # 4^.5, 0, -2.25 * 4^.5
    assert pt_value(np.array([2.0]), 0.88, 0.88, 2.25)[0] == pytest.approx(2.0**0.88)
    assert pt_value(np.array([-2.0]), 0.88, 0.88, 2.25)[0] == pytest.approx(-2.25 * 2.0**0.88)


def test_binary_gap_is_the_mean_of_both_orders():
    fwd = np.log([0.2, 0.8])  # canonical order: options (0, 1) shown as (A, B)
    rev = np.log([0.4, 0.6])  # canonical order of the reversed prompt (B shown first)
    delta_ab = (math.log(0.8) - math.log(0.2)) / 1.5  # z_B - z_A, A = option 0
    delta_ba = (math.log(0.4) - math.log(0.6)) / 1.5  # z_B - z_A, A = option 1 now
    assert binary_gap(fwd, rev, 1.5) == pytest.approx((delta_ab - delta_ba) / 2)


# The hand-worked case: alpha = beta = 1, kappa = 2 (so v is piecewise linear), lam = .5, eta = 1,
# two samples per pass, base gap 0, persona gaps 1, 2, 3 (mean 2, sample std exactly 1).
HAND = DiscaParams(samples=2, alpha=1.0, beta=1.0, kappa=2.0, lam=0.5, eta=1.0, sigma_floor=0.3,
                   ess_min=0.1, agreement_scale=0.04, output_temperature=0.5, anchor="paper")  # fmt: skip
GAPS = np.array([1.0, 2.0, 3.0])


def test_first_pass_by_hand():
    # eps = (1, -1): candidates 3 and 1.
    # d=3: g_i = |0-d_i| - |3-d_i| = (1-2, 2-1, 3-0) = (-1, 1, 3) -> v = (-2, 1, 3), mean 2/3;
    #      g_cons = |0-2| - |3-2| = 1 -> v = 1;  U = .5*2/3 + .5*1 = 5/6
    # d=1: g_i = (1-0, 2-1, 3-2) = (1, 1, 1) -> mean v 1; g_cons = 2 - 1 = 1;  U = 1
    res = binary_pass(0.0, GAPS, 1.0, np.array([1.0, -1.0]), HAND)
    w1 = 1.0 / (1.0 + math.exp(1.0 / 6.0))
    assert res.weights.tolist() == pytest.approx([w1, 1.0 - w1])
    assert res.delta_star == pytest.approx(w1 - (1.0 - w1))
    assert res.ess == pytest.approx(1.0 / (w1**2 + (1.0 - w1) ** 2))
    assert not res.gated


def test_full_binary_correction_by_hand():
    out = correct_binary(0.0, GAPS, np.array([1.0, -1.0]), np.array([0.5, 0.0]), HAND)
    assert out.sigma == pytest.approx(1.0) and out.disagreement == pytest.approx(1.0)
    assert out.consensus == pytest.approx(2.0)
    # pass 1 as above
    w1 = 1.0 / (1.0 + math.exp(1.0 / 6.0))
    d1 = 2 * w1 - 1
    ess1 = 1.0 / (w1**2 + (1 - w1) ** 2)
    # pass 2, eps = (.5, 0): d=2.5: g_i = (-.5, 1.5, 2.5), v = (-1, 1.5, 2.5), mean 1; g_cons = 1.5 -> U = 1.25
    #                        d=2:   g_i = (0, 2, 2), mean 4/3; g_cons = 2 -> U = 2/3 + 1 = 5/3
    u1 = 1.0 / (1.0 + math.exp(5.0 / 3.0 - 1.25))
    d2 = 0.5 * u1
    ess2 = 1.0 / (u1**2 + (1 - u1) ** 2)
    r = math.exp(-((d1 - d2) ** 2) / 0.04)
    star = r * (d1 + d2) / 2
    a = min(ess1, ess2) / 2  # within [0.1, 1]
    final = a * 2.0 + (1 - a) * 0.0 + star
    assert out.ess1 == pytest.approx(ess1 / 2) and out.ess2 == pytest.approx(ess2 / 2)
    assert out.agreement == pytest.approx(r)
    assert out.delta_star == pytest.approx(star)
    assert out.anchor_weight == pytest.approx(a)
    assert out.final == pytest.approx(final)
    assert out.dist[1] == pytest.approx(1.0 / (1.0 + math.exp(-final / 0.5)))
    # the decimals, for the record: a ~ 0.9595, r ~ 0.1373, p(B) ~ 0.9792
    assert (a, r, out.dist[1]) == pytest.approx((0.959531, 0.137337, 0.979244), abs=1e-5)


def test_code_anchor_uses_the_consensus_only():
    out = correct_binary(0.0, GAPS, np.array([1.0, -1.0]), np.array([0.5, 0.0]), DiscaParams(
        samples=2, alpha=1.0, beta=1.0, kappa=2.0, lam=0.5, eta=1.0, anchor="code"))  # fmt: skip
    assert out.anchor_weight == 1.0
    assert out.final == pytest.approx(2.0 + out.delta_star)


def test_sigma_floor_and_single_persona():
    out = correct_binary(0.4, np.array([1.0]), np.zeros(64), np.zeros(64), DiscaParams())
    assert out.disagreement == 0.0 and out.sigma == pytest.approx(0.3)
    # all eps = 0: every candidate is the consensus, weights uniform, delta* = 0, ESS = K
    assert out.delta_star == pytest.approx(0.0) and out.ess1 == pytest.approx(1.0)
    assert out.final == pytest.approx(1.0 * 1.0 + 0.0 * 0.4)  # a = clip(64/64) = 1


def test_ess_gate_switches_the_correction_off():
    # eta tiny: the softmax puts all weight on one sample, ESS -> 1, ESS/K = 1/64 < 0.1
    p = DiscaParams(eta=1e-4)
    rng = np.random.default_rng(3)
    out = correct_binary(-1.0, np.array([0.5, 2.0, 3.5, -0.5]), rng.standard_normal(64), rng.standard_normal(64), p)
    assert out.gated
    assert out.ess1 == pytest.approx(1 / 64, rel=1e-3) and out.ess2 == pytest.approx(1 / 64, rel=1e-3)
    assert out.delta_star == 0.0
    a = 0.1  # clip(min ESS / K = 1/64, 0.1, 1)
    assert out.anchor_weight == pytest.approx(a)
    assert out.final == pytest.approx(a * 1.375 + (1 - a) * -1.0)


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(-8, 8),
    gaps=st.lists(st.floats(-8, 8), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    eta=st.floats(0.01, 5),
)
def test_correction_is_bounded_by_the_largest_perturbation(base, gaps, seed, eta):
    p = DiscaParams(samples=16, eta=eta)
    rng = np.random.default_rng(seed)
    n1, n2 = rng.standard_normal(16), rng.standard_normal(16)
    out = correct_binary(base, np.array(gaps), n1, n2, p)
    bound = out.sigma * max(np.abs(n1).max(), np.abs(n2).max())
    assert abs(out.delta_star) <= bound + 1e-12
    assert 0.0 <= out.dist[1] <= 1.0


# ----------------------------------------------------------------------------- vector form
def test_centred_vector_at_two_options_is_the_gap():
    fwd, rev = np.log([0.3, 0.7]), np.log([0.55, 0.45])
    d = binary_gap(fwd, rev, 1.5)
    assert centred(fwd, rev, 1.5).tolist() == pytest.approx([-d / 2, d / 2])
    assert gap_norm(np.array([-d / 2, d / 2])) == pytest.approx(abs(d))


def test_basis_is_orthonormal_and_sums_to_zero():
    for k in (2, 3, 5, 11):
        b = centred_basis(k)
        assert b.T @ b == pytest.approx(np.eye(k - 1))
        assert np.abs(b.sum(axis=0)).max() < 1e-12
    assert centred_basis(2)[:, 0].tolist() == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])


def test_vector_perturbations_have_the_binary_scale():
    rng = np.random.default_rng(0)
    eps = vector_perturbations(rng.standard_normal((200_000, 4)), 0.7, 5)
    assert np.abs(eps.sum(axis=1)).max() < 1e-12  # stay in the sum-zero subspace
    assert np.mean(gap_norm(eps) ** 2) == pytest.approx(0.7**2, rel=0.01)  # E||eps||^2 = sigma^2 in gap units


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 5), anchor=st.sampled_from(["paper", "code"]))
def test_vector_path_equals_binary_path_at_two_options(seed, n, anchor):
    rng = np.random.default_rng(seed)

    def lp():
        z = rng.normal(0, 3, 2)
        return z - np.log(np.exp(z).sum())

    base = (lp(), lp())
    members = [(lp(), lp()) for _ in range(n)]
    p = DiscaParams(anchor=anchor)
    ss = np.random.SeedSequence(seed)
    b = correct_item(base, members, ss, p, vector=False)
    v = correct_item(base, members, np.random.SeedSequence(seed), p, vector=True)
    assert v.dist == pytest.approx(b.dist, abs=1e-12)
    assert v.final.tolist() == pytest.approx([-b.final / 2, b.final / 2], abs=1e-12)
    for name in ("disagreement", "sigma", "ess1", "ess2", "agreement", "anchor_weight"):
        assert getattr(v, name) == pytest.approx(getattr(b, name), abs=1e-12), name
    assert correction_size(v) == pytest.approx(correction_size(b), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(3, 11), n=st.integers(1, 5), eta=st.floats(0.01, 5))
def test_vector_correction_is_bounded(seed, k, n, eta):
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 2, k)
    members = rng.normal(0, 2, (n, k))
    base, members = base - base.mean(), members - members.mean(axis=1, keepdims=True)
    p = DiscaParams(samples=16, eta=eta)
    n1, n2 = rng.standard_normal((16, k - 1)), rng.standard_normal((16, k - 1))
    out = correct_vector(base, members, n1, n2, p)
    eps = np.vstack([vector_perturbations(n1, out.sigma, k), vector_perturbations(n2, out.sigma, k)])
    assert gap_norm(out.delta_star) <= gap_norm(eps).max() + 1e-12
    assert abs(out.delta_star.sum()) < 1e-9 and out.dist.sum() == pytest.approx(1.0)


def test_vector_output_when_gated_is_the_blended_anchor():
    rng = np.random.default_rng(1)
    k = 4
    base = np.array([1.0, -0.5, 0.0, -0.5])
    members = np.array([[2.0, -2.0, 0.0, 0.0], [-1.0, 1.0, 1.0, -1.0], [0.0, 0.0, -3.0, 3.0]])
    out = correct_vector(base, members, rng.standard_normal((64, k - 1)), rng.standard_normal((64, k - 1)),
                         DiscaParams(eta=1e-4))  # fmt: skip
    assert out.gated and np.all(out.delta_star == 0)
    z = (0.1 * members.mean(axis=0) + 0.9 * base) / 0.5
    expected = np.exp(z) / np.exp(z).sum()
    assert out.dist == pytest.approx(expected)


def test_a_constant_shift_of_the_logprobs_changes_nothing():
    rng = np.random.default_rng(5)
    k = 5
    base = (rng.normal(size=k), rng.normal(size=k))
    members = [(rng.normal(size=k), rng.normal(size=k)) for _ in range(4)]
    shifted = [(f + 3.0, r - 2.0) for f, r in members]
    p = DiscaParams()
    a = correct_item(base, members, np.random.SeedSequence(9), p)
    b = correct_item((base[0] + 1.0, base[1]), shifted, np.random.SeedSequence(9), p)
    assert a.dist == pytest.approx(b.dist, abs=1e-12)
