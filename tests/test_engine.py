"""Engine scores against plain transformers forward passes of each prompt alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cvaudit.audit.engine import Engine, combine_orders
from cvaudit.audit.errors import ModelError
from cvaudit.audit.methods.base import PromptSpec
from cvaudit.audit.models import ModelSpec, load_model
from cvaudit.audit.prompts import render_prompts
from cvaudit.audit.types import Question

PERSONAS = [None, "You are a 30 year old woman.", "You are a 70 year old Malay man living in Singapore, retired."]


def questions() -> list[Question]:
    texts = [
        ("Q1", "How important is family in your life?", ("Very important", "Rather important", "Not very important", "Not at all important")),
        ("Q2", "Do you agree?", ("Agree", "Disagree")),
        ("Q3", "On a scale, how justifiable is cheating on taxes?", tuple(f"{i}" + (" Never" if i == 1 else "") for i in range(1, 11))),
        ("Q4", "Which of these is most important for a child to learn at home, in your view?", ("Independence", "Hard work", "Tolerance")),
    ]  # fmt: skip
    return [Question(id=i, text=t, options=o, codes=tuple((j,) for j in range(len(o))), ordinal=True, category="T") for i, t, o in texts]


def all_specs() -> list[PromptSpec]:
    return [PromptSpec(q, s, r) for s in PERSONAS for q in questions() for r in (False, True)]


def plain_logprobs(model, tokenizer, specs):
    """Reference: each prompt alone, no padding, full logits, float32 log-softmax over the option tokens."""
    out = []
    with torch.no_grad():
        for r in render_prompts(tokenizer, specs):
            logits = model(input_ids=torch.tensor([r.input_ids])).logits[0, -1].float()
            lp = torch.log_softmax(logits[list(r.option_token_ids)], -1).numpy()
            canon = np.empty_like(lp)
            canon[list(r.order)] = lp
            out.append(canon)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.set_num_threads(1)
    return load_model(ModelSpec(id=str(tiny_llama_dir)))


@pytest.mark.parametrize("prefix_reuse", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_logprobs_match_single_forward(tiny, prefix_reuse, batch_size):
    specs = all_specs()
    ref = plain_logprobs(tiny.model, tiny.tokenizer, specs)
    got = Engine(tiny, batch_size=batch_size, progress=False, prefix_reuse=prefix_reuse).logprobs(specs)
    assert len(got) == len(specs)
    for g, r, s in zip(got, ref, specs):
        assert g.shape == (s.question.k,)
        np.testing.assert_allclose(g, r, atol=1e-4)
        assert abs(np.exp(g).sum() - 1) < 1e-5
    # the random model must not be flat, or the comparison would be vacuous
    assert max(float(np.ptp(r)) for r in ref) > 0.5


def test_batch_composition_invariance(tiny):
    """A prompt's scores do not depend on what it is batched with (padding, neighbours)."""
    specs = all_specs()
    target = specs[5]
    alone = Engine(tiny, batch_size=1, progress=False, prefix_reuse=False).logprobs([target])[0]
    for bs in (2, 7, 24):
        for pr in (False, True):
            e = Engine(tiny, batch_size=bs, progress=False, prefix_reuse=pr)
            mixed = e.logprobs(specs[::-1])[len(specs) - 1 - 5]
            np.testing.assert_allclose(mixed, alone, atol=1e-4)


def test_combine_orders_hand_computed():
    fwd = np.log([0.5, 0.3, 0.2])
    rev = np.log([0.2, 0.3, 0.5])
    g = np.sqrt([0.5 * 0.2, 0.3 * 0.3, 0.2 * 0.5])
    np.testing.assert_allclose(combine_orders(fwd, rev), g / g.sum(), rtol=1e-12)
    # a pure position bias (factor b on display slot 0) cancels: true p = [.6, .4]
    p, b = np.array([0.6, 0.4]), np.array([3.0, 1.0])
    f = p * b / (p * b).sum()  # forward: option 0 shown first
    r = p * b[::-1] / (p * b[::-1]).sum()  # reverse: option 1 shown first
    np.testing.assert_allclose(combine_orders(np.log(f), np.log(r)), p, rtol=1e-12)


def test_distributions_combine_both_orders(tiny):
    qs = questions()
    specs = [PromptSpec(q, PERSONAS[1]) for q in qs]
    ref = plain_logprobs(tiny.model, tiny.tokenizer, [PromptSpec(q, PERSONAS[1], r) for q in qs for r in (False, True)])
    got = Engine(tiny, progress=False).distributions(specs)
    for i, d in enumerate(got):
        lp = 0.5 * (ref[2 * i] + ref[2 * i + 1])
        expected = np.exp(lp) / np.exp(lp).sum()
        np.testing.assert_allclose(d, expected, atol=1e-4)
        assert d.sum() == pytest.approx(1.0, abs=1e-9)


def test_duplicates_scored_once(tiny):
    specs = all_specs()[:6]
    e = Engine(tiny, progress=False, prefix_reuse=False)
    calls = []
    original = e._forward
    e._forward = lambda **kw: (calls.append(kw["input_ids"].shape[0]), original(**kw))[1]
    got = e.logprobs(specs + specs + specs[:2])
    assert sum(calls) == 6 and e.stats["computed"] == 6 and e.stats["prompts"] == 14
    for a, b in zip(got[:6], got[6:12]):
        np.testing.assert_array_equal(a, b)
    # a second call is answered from memory
    e.logprobs(specs)
    assert sum(calls) == 6


def test_nan_logits_raise(tiny):
    e = Engine(tiny, progress=False)
    handle = tiny.model.lm_head.register_forward_hook(lambda m, i, o: torch.full_like(o, float("nan")))
    try:
        with pytest.raises(ModelError, match="NaN"):
            e.logprobs(all_specs()[:2])
    finally:
        handle.remove()


def test_oom_halves_batch(tiny):
    specs = all_specs()[:16]
    ref = Engine(tiny, batch_size=1, progress=False, prefix_reuse=False).logprobs(specs)
    # costly passes: the planner puts all 16 prompts in one batch, so the halving alone sets the sizes
    e = Engine(tiny, batch_size=16, progress=False, prefix_reuse=False, pass_tokens=1e9)
    original = e._run_chunk
    sizes = []

    def fake(chunk):
        sizes.append(len(chunk))
        if len(chunk) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(chunk)

    e._run_chunk = fake
    got = e.logprobs(specs)
    assert sizes == [16, 8, 4] + [2] * 8  # 16 -> 8 -> 4 -> 2 fits; the rest is planned at 2
    assert e.stats["batch_size"] == 2
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4)


def test_progress_bar_on_stderr(tiny, capsys):
    Engine(tiny, progress=True).logprobs(all_specs()[:4])
    captured = capsys.readouterr()
    assert "scoring" in captured.err and "4/4" in captured.err and captured.out == ""


@pytest.mark.slow
def test_real_smollm2_matches_single_forward():
    torch.set_num_threads(1)
    lm = load_model(ModelSpec())  # the embedded default
    assert lm.info["embedded"] and lm.info["n_parameters"] == 134515008
    specs = [PromptSpec(q, s, r) for s in PERSONAS[1:] for q in questions()[:2] for r in (False, True)]
    ref = plain_logprobs(lm.model, lm.tokenizer, specs)
    for pr in (False, True):
        got = Engine(lm, batch_size=8, progress=False, prefix_reuse=pr).logprobs(specs)
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g, r, atol=1e-4)


def test_fingerprint_is_the_models_and_ignores_the_modifier_tag(tiny):
    e = Engine(tiny, progress=False)
    assert e.fingerprint == tiny.fingerprint and e.fingerprint.startswith("sha256:")
    assert e.loaded is tiny  # the old name keeps working
    assert e.modifier is None
    with e.modified("steer:a"):
        with e.modified("adapter:b"):
            assert e.fingerprint == tiny.fingerprint
            assert e.modifier == "steer:a+adapter:b"
        assert e.modifier == "steer:a"
    assert e.modifier is None


@pytest.mark.parametrize("head_hook", [True, False])
def test_exact_path_right_padding_and_masked_fallback(tiny, head_hook, monkeypatch):
    """Right padding (answer rows picked before the head) and the left-padded fallback both equal single passes."""
    specs = all_specs()
    ref = plain_logprobs(tiny.model, tiny.tokenizer, specs)
    if not head_hook:  # a model without a hookable output head
        monkeypatch.setattr(tiny.model, "get_output_embeddings", lambda: None)
    e = Engine(tiny, batch_size=7, progress=False, prefix_reuse=False)
    got = e.logprobs(specs)
    assert e._right_pad is head_hook
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4)
