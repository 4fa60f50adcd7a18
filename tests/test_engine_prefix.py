"""Key/value prefix reuse gives the same scores as scoring every prompt alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cvaudit.audit.engine import Engine, _length_buckets, pass_cost_tokens
from cvaudit.audit.methods.base import PromptSpec
from cvaudit.audit.models import ModelSpec, load_model
from cvaudit.audit.prompts import render_prompts
from cvaudit.audit.types import Question


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.set_num_threads(1)
    return load_model(ModelSpec(id=str(tiny_llama_dir)))


def plain(model, prompts, options):
    out = []
    with torch.no_grad():
        for ids, opts in zip(prompts, options):
            logits = model(input_ids=torch.tensor([list(ids)])).logits[0, -1].float()
            out.append(torch.log_softmax(logits[list(opts)], -1).numpy())
    return out


def tree_workload(seed=0):
    """Random token prompts with the audit's structure: persona | stem | options, of varied lengths."""
    rng = np.random.default_rng(seed)
    personas = [rng.integers(100, 5000, size=n).tolist() for n in (5, 17, 9)]
    stems = [rng.integers(100, 5000, size=n).tolist() for n in (3, 11, 6, 1)]
    prompts, options, cuts = [], [], []
    for p in personas:
        for s in stems:
            for _ in range(2):  # two option orders: different tails after the same stem
                tail = rng.integers(100, 5000, size=int(rng.integers(1, 9))).tolist()
                prompts.append(p + s + tail)
                options.append(rng.choice(np.arange(30, 60), size=int(rng.integers(2, 6)), replace=False).tolist())
                cuts.append((len(p), len(p) + len(s)))
    return prompts, options, cuts


@pytest.mark.parametrize("pass_tokens", [None, 0.0])  # the tiny model's own pass cost (few buckets) and one bucket per length
@pytest.mark.parametrize("batch_size", [1, 5, 100])
def test_tree_matches_plain_on_random_tokens(tiny, batch_size, pass_tokens):
    prompts, options, cuts = tree_workload()
    ref = plain(tiny.model, prompts, options)
    e = Engine(tiny, batch_size=batch_size, progress=False, prefix_reuse=True, pass_tokens=pass_tokens)
    got = e.score_tokens(prompts, options, cuts)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4)
    if batch_size == 100:  # one batch: every persona once, every stem once, then the tails
        unique = sum(len(x) for x in {tuple(p[: c1]) for p, (c1, _) in zip(prompts, cuts)})
        unique += sum(c2 - c1 for (c1, c2) in cuts_with_prefix(prompts, cuts))
        unique += sum(len(p) - c2 for p, (_, c2) in zip(prompts, cuts))
        assert e.stats["prompt_tokens"] == sum(len(p) for p in prompts)
        assert unique <= e.stats["forward_tokens"] < e.stats["prompt_tokens"]


def cuts_with_prefix(prompts, cuts):
    """(c1, c2) of each distinct stem (identified by its whole prefix)."""
    return {tuple(p[:c2]): (c1, c2) for p, (c1, c2) in zip(prompts, cuts)}.values()


def test_degenerate_cuts(tiny):
    """Empty stems (c1 == c2), cuts at the last token, a one-token prompt, cuts out of range."""
    rng = np.random.default_rng(1)
    prompts = [rng.integers(100, 5000, size=n).tolist() for n in (12, 12, 7, 1, 30)]
    prompts[1][:6] = prompts[0][:6]
    options = [[40, 41, 42]] * len(prompts)
    cuts = [(6, 6), (6, 11), (6, 6), (0, 0), (-3, 99)]
    ref = plain(tiny.model, prompts, options)
    got = Engine(tiny, batch_size=8, progress=False, prefix_reuse=True).score_tokens(prompts, options, cuts)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4)


def _audit_specs():
    qs = [Question(id=f"Q{i}", text=f"Statement {i}: " + "people should be free to decide " * (i % 3 + 1),
                   options=tuple(f"Level {j}" for j in range(2 + i % 4)), codes=tuple((j,) for j in range(2 + i % 4)),
                   ordinal=True, category="T") for i in range(5)]  # fmt: skip
    groups = [None, "You are a woman.", "You are a 45 year old Indian man living in Singapore, married, with a university degree."]
    return [PromptSpec(q, g) for g in groups for q in qs]


def test_distributions_equal_exact_path_and_fewer_tokens(tiny):
    specs = _audit_specs()
    exact = Engine(tiny, batch_size=64, progress=False, prefix_reuse=False)
    reuse = Engine(tiny, batch_size=64, progress=False, prefix_reuse=True, pass_tokens=0)  # padding never pays
    a, b = exact.distributions(specs), reuse.distributions(specs)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-4)
    # the shared persona and stem tokens are computed once
    rendered = render_prompts(tiny.tokenizer, [PromptSpec(s.question, s.system, r) for s in specs for r in (False, True)])
    personas = {r.input_ids[: r.persona_len] for r in rendered}
    stems = {r.input_ids[: r.prefix_len] for r in rendered}
    unique_tokens = sum(len(p) for p in personas)
    unique_tokens += sum(r.prefix_len - r.persona_len for r in rendered[::2])  # one stem per (group, question)
    unique_tokens += sum(len(r.input_ids) - r.prefix_len for r in rendered)
    assert len(stems) == len(specs)
    # with free passes every length gets its own bucket: no padding at all
    assert reuse.stats["forward_tokens"] == unique_tokens
    assert reuse.stats["forward_tokens"] < 0.75 * exact.stats["prompt_tokens"]


@pytest.mark.slow
def test_real_smollm2_prefix_reuse(smollm2_dir):
    torch.set_num_threads(1)
    lm = load_model(ModelSpec(id=str(smollm2_dir)))
    specs = _audit_specs()[5:9] + _audit_specs()[10:12]
    both = [PromptSpec(s.question, s.system, r) for s in specs for r in (False, True)]
    rendered = render_prompts(lm.tokenizer, both)
    ref = plain(lm.model, [r.input_ids for r in rendered], [r.option_token_ids for r in rendered])
    got = Engine(lm, batch_size=16, progress=False, prefix_reuse=True).distributions(specs)
    for i, d in enumerate(got):
        lp = 0.5 * (rendered[2 * i].to_canonical(ref[2 * i]) + rendered[2 * i + 1].to_canonical(ref[2 * i + 1]))
        np.testing.assert_allclose(d, np.exp(lp) / np.exp(lp).sum(), atol=1e-4)


def _partitions(n):
    """Every way to cut range(n) into contiguous non-empty runs."""
    for mask in range(2 ** (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        yield [(a, b) for a, b in zip(cuts, cuts[1:])]


@pytest.mark.parametrize("pass_tokens", [0.0, 3.0, 20.0, 1e6])
def test_length_buckets_minimise_padding_plus_pass_cost(pass_tokens):
    """Brute force over all groupings of the length-sorted segments gives the same minimum cost."""
    rng = np.random.default_rng(int(pass_tokens))
    for _ in range(30):
        lengths = rng.integers(1, 40, size=int(rng.integers(1, 9)))
        buckets = _length_buckets(lengths, pass_tokens)
        assert sorted(np.concatenate(buckets).tolist()) == list(range(len(lengths)))  # each node exactly once
        got = sum(len(b) * lengths[b].max() + pass_tokens for b in buckets)
        s = np.sort(lengths)[::-1]
        best = min(sum((b - a) * s[a] + pass_tokens for a, b in part) for part in _partitions(len(s)))
        assert got == pytest.approx(best)
        assert [lengths[b].max() for b in buckets] == sorted((lengths[b].max() for b in buckets), reverse=True)
    assert len(_length_buckets(np.array([5, 3, 9, 1]), 0.0)) == 4  # free passes: one bucket per length
    assert len(_length_buckets(np.array([5, 3, 9, 1]), 1e6)) == 1  # costly passes: pad everything


def test_pass_cost_tokens_by_shape(tiny):
    """Per-layer overhead / (2 x per-layer parameters): hand-computed for the tiny Llama and a Llama-3.1-8B shape."""
    from transformers import LlamaConfig

    cfg = tiny.model.config
    h, i, nh, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads
    d = h // nh
    per_layer = 2 * h * nh * d + 2 * h * kv * d + 3 * h * i
    assert pass_cost_tokens(tiny.model, "cpu") == pytest.approx(4e7 / (2 * per_layer))

    class Big:
        config = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                             num_attention_heads=32, num_key_value_heads=8)  # fmt: skip

    # 8B on a GPU: the shared H100 anchor (shared/bench/README.md) timed 2,048 prompts (387,236 tokens) in
    # batches of 16, 64, 128 (128, 32, 16 passes): 22.3, 13.6, 12.4 s. seconds = passes x c + tokens / rate
    passes, seconds = np.array([128.0, 32.0, 16.0]), np.array([22.3, 13.6, 12.4])
    (c, t_tokens), *_ = np.linalg.lstsq(np.vstack([passes, np.ones(3)]).T, seconds, rcond=None)
    assert pass_cost_tokens(Big, "cuda") == pytest.approx(c * 387_236 / t_tokens, rel=0.05)  # ~3,200 tokens
    assert pass_cost_tokens(Big, "cuda") == pytest.approx(1.4e12 / (2 * 218_103_808))  # 218.1M parameters per layer


def test_prefix_reuse_uses_the_models_cache_argument(tiny):
    """The KV cache goes in under the name this transformers' forward takes: no deprecated name, no fallback."""
    import warnings

    from cvaudit.audit.engine import cache_kwarg

    prompts, options, cuts = tree_workload(seed=3)
    e = Engine(tiny, batch_size=100, progress=False, prefix_reuse=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e.score_tokens(prompts, options, cuts)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "past_key_values" in m or "prefix reuse is not supported" in m], messages
    assert e.prefix_reuse and e.stats["forward_tokens"] < e.stats["prompt_tokens"]
    import inspect

    assert e._cache_kw in inspect.signature(tiny.model.forward).parameters

    class Old(torch.nn.Module):  # transformers before the rename
        def forward(self, input_ids=None, past_key_values=None, **kwargs):
            return None

    class Wrapper(torch.nn.Module):  # PEFT: forward(**kwargs); the wrapped model decides
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def get_base_model(self):
            return self.inner

        def forward(self, *args, **kwargs):
            return self.inner(*args, **kwargs)

    assert cache_kwarg(Old()) == "past_key_values"
    assert cache_kwarg(Wrapper(Old())) == "past_key_values"
    assert cache_kwarg(Wrapper(tiny.model)) == e._cache_kw


def test_prefix_reuse_with_persona_in_the_user_turn(tiny_llama_dir, tmp_path):
    """A template without a system role: the persona preamble is still a shared prefix, scores equal one by one."""
    import shutil

    from cvaudit.audit.prompts import render_prompt
    from test_prompts import GEMMA2_STYLE

    d = shutil.copytree(tiny_llama_dir, tmp_path / "gemma-style")
    lm0 = load_model(ModelSpec(id=str(d)))
    lm0.tokenizer.chat_template = GEMMA2_STYLE
    lm0.tokenizer.save_pretrained(d)
    lm = load_model(ModelSpec(id=str(d)))
    assert lm.info["persona_role"] == "user-preamble" and lm0.info["persona_role"] == "system"
    specs = _audit_specs()
    got = Engine(lm, batch_size=64, progress=False, prefix_reuse=True, pass_tokens=0).distributions(specs)
    for s, d_got in zip(specs, got):
        fwd, rev = (render_prompt(lm.tokenizer, PromptSpec(s.question, s.system, r)) for r in (False, True))
        assert s.system is None or fwd.text.split("<start_of_turn>user\n", 1)[1].startswith(s.system + "\n\n")
        (a,), (b,) = (plain(lm.model, [r.input_ids], [r.option_token_ids]) for r in (fwd, rev))
        lp = 0.5 * (fwd.to_canonical(a) + rev.to_canonical(b))
        np.testing.assert_allclose(d_got, np.exp(lp) / np.exp(lp).sum(), atol=1e-4)
    rendered = render_prompts(lm.tokenizer, specs)
    for g in {s.system for s in specs} - {None}:
        heads = {r.input_ids[: r.persona_len] for s, r in zip(specs, rendered) if s.system == g}
        assert len(heads) == 1 and g in lm.tokenizer.decode(next(iter(heads)))
