"""Exact-path batch planning: least padded tokens plus pass cost, within the row and token limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cvaudit.audit.engine import NO_TOKEN_LIMIT, Engine, gpu_token_budget, pass_cost_tokens, plan_batches
from cvaudit.audit.models import ModelSpec, load_model


def _cost(widths, ends, pass_tokens):
    starts = [0, *ends[:-1]]
    return sum((b - a) * widths[a] + pass_tokens for a, b in zip(starts, ends))


def _feasible(widths, ends, max_rows, max_tokens):
    starts = [0, *ends[:-1]]
    return all(b - a == 1 or (b - a <= max_rows and (b - a) * widths[a] <= max_tokens) for a, b in zip(starts, ends))


def _partitions(n):
    for mask in range(2 ** (n - 1)):
        cuts = [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        yield cuts


@pytest.mark.parametrize("pass_tokens", [0.0, 4.0, 30.0, 1e6])
def test_plan_is_the_cheapest_feasible_split(pass_tokens):
    """Brute force over every split of the sorted prompts into runs agrees on the minimum cost."""
    rng = np.random.default_rng(int(pass_tokens) + 7)
    for _ in range(60):
        n = int(rng.integers(1, 10))
        widths = np.sort(rng.integers(1, 12, size=n))[::-1]  # ties on purpose: few distinct lengths
        max_rows = int(rng.integers(1, n + 2))
        max_tokens = int(rng.choice([NO_TOKEN_LIMIT, int(rng.integers(1, 40))]))
        ends = plan_batches(widths, max_rows, max_tokens, pass_tokens)
        assert ends[-1] == n and ends == sorted(set(ends))
        assert _feasible(widths, ends, max_rows, max_tokens)
        best = min(_cost(widths, c, pass_tokens) for c in _partitions(n) if _feasible(widths, c, max_rows, max_tokens))
        assert _cost(widths, ends, pass_tokens) == pytest.approx(best)


def test_plan_limits_and_extremes():
    widths = np.array([9, 9, 7, 5, 5, 5, 2, 1])
    assert plan_batches(widths, 8, NO_TOKEN_LIMIT, 1e9) == [8]  # costly passes: one batch
    assert plan_batches(widths, 3, NO_TOKEN_LIMIT, 1e9) == [3, 6, 8]  # fewest passes, then least padding (46 tokens)
    assert plan_batches(widths, 8, NO_TOKEN_LIMIT, 0.0) == [2, 3, 6, 7, 8]  # free passes: one per length
    assert plan_batches(np.array([50, 3]), 8, 10, 0.0) == [1, 2]  # a prompt over the token limit still runs alone
    assert plan_batches(np.array([], dtype=np.int64), 4, 10, 1.0) == []


def test_gpu_limits_pad_far_less_than_fixed_chunks():
    """2,048 prompts of 120-260 tokens (shared/bench) under Llama-3.1-8B limits on a large GPU."""
    from transformers import LlamaConfig

    class Big:
        config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=8)  # fmt: skip

    g = torch.Generator().manual_seed(1)
    widths = np.sort(np.array(torch.randint(120, 261, (2048,), generator=g).tolist()))[::-1]
    pass_tokens = pass_cost_tokens(Big, "cuda")
    budget = gpu_token_budget(Big.config, 2, 120 * 2**30, int(widths[0]))  # bf16, 120 GiB free (an H200 holding 8B)
    assert 250_000 < budget < 350_000  # 0.7 x 120 GiB / ~286 KB per token
    assert gpu_token_budget(Big.config, 2, 1, 260) == 260  # no memory: one prompt at a time still runs
    ends = plan_batches(widths, 1024, budget, pass_tokens)
    planned = _cost(widths, ends, 0.0)
    fixed = _cost(widths, [1024, 2048], 0.0)  # what chunks of the 1,024-row limit would run
    assert planned < 1.06 * widths.sum() and fixed > 1.15 * widths.sum()
    assert _cost(widths, ends, pass_tokens) < _cost(widths, [1024, 2048], pass_tokens)
    assert 2 < len(ends) < 20  # still large batches: a pass costs ~3,200 tokens there


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.set_num_threads(1)
    return load_model(ModelSpec(id=str(tiny_llama_dir)))


def test_engine_runs_the_plan_and_keeps_scores(tiny):
    """Mixed lengths: the exact path runs exactly the planned batches (forward tokens = planned padded tokens)."""
    rng = np.random.default_rng(5)
    prompts = [rng.integers(100, 5000, size=int(n)).tolist() for n in rng.choice([4, 5, 40, 41, 90], size=60)]
    options = [[31, 32, 33]] * len(prompts)
    ref = Engine(tiny, batch_size=1, progress=False, prefix_reuse=False).score_tokens(prompts, options)
    e = Engine(tiny, batch_size=32, progress=False, prefix_reuse=False, pass_tokens=20.0)
    got = e.score_tokens(prompts, options)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, atol=1e-4)
    widths = np.sort([len(p) for p in prompts])[::-1]
    ends = plan_batches(widths, 32, NO_TOKEN_LIMIT, 20.0)
    assert e.stats["forward_passes"] == len(ends) and e.stats["forward_tokens"] == _cost(widths, ends, 0.0)
    fixed = _cost(widths, [32, 60], 0.0)  # chunks of 32 rows
    assert e.stats["forward_tokens"] < 0.75 * fixed
