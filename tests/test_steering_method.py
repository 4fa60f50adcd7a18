"""The ``steering`` method end to end on the tiny random Llama, plus fluency and the sweep metrics.

Until the engine lands these tests score with a plain-transformers scorer that
implements the Scorer protocol (option-token softmax at the last prompt token)
and records the cache tags it is asked to use.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cvaudit.audit.errors import ConfigError  # noqa: E402
from cvaudit.audit.methods.base import MethodContext, PromptSpec, get_method_class  # noqa: E402
from cvaudit.audit.steering import (  # noqa: E402
    AXES,
    axis_item_score,
    fit_steering,
    render_ids,
    save_vectors,
    steering_hooks,
)
from cvaudit.audit.types import Country, Group  # noqa: E402

SG = Country("SG", "SGP", 702, "Singapore")
GROUPS = [
    Group(attribute="sex", label="Female", values=(("sex", "Female"),), n=60, n_eff=55.0),
    Group(attribute="sex", label="Male", values=(("sex", "Male"),), n=50, n_eff=47.0),
]
LETTERS = "ABCDEFGHIJ"


class PlainScorer:
    """Scorer protocol on plain transformers forward passes; logs (tag, n_specs) per call."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.tag = None
        self.calls: list[tuple[str | None, int]] = []
        self.fingerprint = "tiny-fp"

    @contextmanager
    def modified(self, tag):
        old, self.tag = self.tag, tag
        try:
            yield
        finally:
            self.tag = old

    def logprobs(self, specs):
        out = []
        for spec in specs:
            ids = render_ids(self.tokenizer, spec.question, spec.system)
            with torch.no_grad():
                logits = self.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
            opts = [self.tokenizer(LETTERS[i], add_special_tokens=False)["input_ids"][0] for i in range(spec.question.k)]
            out.append(torch.log_softmax(logits[opts], -1).numpy())
        return out

    def distributions(self, specs):
        self.calls.append((self.tag, len(specs)))
        return [np.exp(lp) for lp in self.logprobs(specs)]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="module")
def bank():
    return pytest.importorskip("cvaudit.audit.questions").load_bank()


def _persona(g):
    return f"You are a {g.label.lower()} person living in Singapore."


def _ctx(tiny, questions, **extra):
    return MethodContext(scorer=PlainScorer(*tiny), groups=GROUPS, questions=questions, country=SG, extra=dict(extra))


def _vectors_file(tiny, bank, tmp_path, kind="subgroup", holdout=("Q1", "Q46", "Q57")):
    model, tok = tiny
    sv = fit_steering(model, tok, kind=kind, bank=bank, layers=[0], groups=GROUPS, persona=_persona,
                      fraction=0.3, seed=0, holdout=holdout, max_calibration=2, model_meta={"fingerprint": "tiny-fp"})
    path, _ = save_vectors(sv, tmp_path / f"{kind}.safetensors")
    return path, sv


def _method(**params):
    return get_method_class("steering")(**params)


def test_each_group_is_steered_with_its_own_vector(tiny, bank, tmp_path):
    path, sv = _vectors_file(tiny, bank, tmp_path)
    qs = [bank["Q1"], bank["Q46"], bank["Q57"]]
    ctx = _ctx(tiny, qs)
    preds = _method(vectors=str(path), alpha="3", fluency="false", entanglement="false").predict(ctx)
    assert set(preds) == {(g.id, q.id) for g in GROUPS for q in qs}
    scorer = PlainScorer(*tiny)
    plain = scorer.distributions([PromptSpec(question=q) for q in qs])
    for g in GROUPS:
        with steering_hooks(tiny[0], sv.additions(g.id, [0]), alpha=3.0):
            want = scorer.distributions([PromptSpec(question=q) for q in qs])
        for q, w, p in zip(qs, want, plain):
            got = np.array(preds[(g.id, q.id)].dist)
            assert np.allclose(got, w, atol=1e-6)
            assert np.max(np.abs(np.log(got) - np.log(p))) > 1e-3  # steering moved the answer
            assert preds[(g.id, q.id)].extra == {"alpha": 3.0, "steer_vector": g.id}
    # scores under steering were cached apart, one namespace per group vector
    tags = [t for t, _ in ctx.scorer.calls]
    assert len(set(tags)) == 2 and all(t and t.startswith("steering:") and t.endswith(":L0:a3") for t in tags)


def test_alpha_zero_equals_unsteered(tiny, bank, tmp_path):
    path, _ = _vectors_file(tiny, bank, tmp_path)
    qs = [bank["Q46"], bank["Q57"]]
    preds = _method(vectors=str(path), alpha="0", fluency="false", entanglement="false").predict(_ctx(tiny, qs))
    plain = PlainScorer(*tiny).distributions([PromptSpec(question=q) for q in qs])
    for g in GROUPS:
        for q, p in zip(qs, plain):
            assert np.max(np.abs(np.array(preds[(g.id, q.id)].dist) - p)) < 1e-6


def test_calibration_questions_are_never_audited(tiny, bank, tmp_path):
    path, sv = _vectors_file(tiny, bank, tmp_path)
    cal = set(sv.calibration)
    assert cal.isdisjoint({"Q1", "Q46", "Q57"})  # the holdout
    leaked = bank[sorted(cal)[0]]
    method = _method(vectors=str(path), alpha="2", fluency="false", entanglement="false")
    kept, notes = method.filter_questions([bank["Q46"], leaked])
    assert [q.id for q in kept] == ["Q46"] and leaked.id in notes[0]
    with pytest.raises(ConfigError, match="calibration"):  # a run that did not filter is refused
        method.predict(_ctx(tiny, [bank["Q46"], leaked]))
    strict = _method(vectors=str(path), on_overlap="error")
    with pytest.raises(ConfigError, match=leaked.id):
        strict.filter_questions([bank["Q46"], leaked])
    assert method.params()["calibration"] == sv.calibration


def test_on_the_fly_fit_holds_out_the_audited_questions(tiny, bank):
    qs = [bank["Q8"], bank["Q45"]]
    method = _method(alpha="1", layers="1", max_calibration="2", fluency="false", entanglement="false")
    preds = method.predict(_ctx(tiny, qs))
    params = method.params()
    assert params["fitted_on_the_fly"] is True and params["fit_layers"] == [1] and params["layers_used"] == [1]
    assert set(params["calibration"]).isdisjoint({"Q8", "Q45"})
    assert len(params["calibration"]) == round(0.3 * (len(bank) - 2)) and len(params["fitted_on"]) == 2
    assert len(preds) == 4
    report = method.method_report()
    (split,) = report["Calibration split"]
    assert split["calibration"].split(", ") == params["calibration"] and split["n_fitted_on"] == 2


def test_sweep_reports_alignment_and_perplexity(tiny, bank, tmp_path):
    import pandas as pd
    from cvaudit.audit.fluency import perplexity

    path, sv = _vectors_file(tiny, bank, tmp_path)
    qs = [bank["Q46"], bank["Q57"]]
    truth = pd.DataFrame([
        {"attribute": "sex", "group": g.label, "question": q.id, "human_dist": list(h), "human_mode": [int(np.argmax(h))],
         "n": 50, "n_eff": 45.0, "missing": 0, "suppressed": False}
        for g, hs in zip(GROUPS, [([0.5, 0.3, 0.1, 0.1], [0.3, 0.7]), ([0.2, 0.5, 0.2, 0.1], [0.6, 0.4])])
        for q, h in zip(qs, hs)
    ])
    ctx = _ctx(tiny, qs, ground_truth=truth)
    method = _method(vectors=str(path), alpha="0,4", entanglement="false")
    preds = method.predict(ctx)
    sweep = ctx.extra["method_report"]["Alpha sweep"]
    assert [r["alpha"] for r in sweep] == [0.0, 4.0] and sweep[1]["main"] and not sweep[0]["main"]
    # independent check of the main alpha's similarity: 1 - JS distance (scipy), averaged over the 4 cells
    from scipy.spatial.distance import jensenshannon

    sims = [1 - jensenshannon(np.array(preds[(f"sex={r.group}", r.question)].dist), np.array(r.human_dist), base=2)
            for r in truth.itertuples()]
    assert sweep[1]["similarity"] == pytest.approx(float(np.mean(sims)), abs=1e-9)
    accs = [float(np.argmax(preds[(f"sex={r.group}", r.question)].dist) == r.human_mode[0]) for r in truth.itertuples()]
    assert sweep[1]["accuracy"] == pytest.approx(float(np.mean(accs)))
    assert sweep[1]["n_items"] == 4
    # fluency: alpha 0 is the unsteered perplexity; alpha 4 is the mean over the two group vectors
    base = perplexity(*tiny)
    assert sweep[0]["perplexity"] == pytest.approx(base) and sweep[0]["perplexity_ratio"] == pytest.approx(1.0)
    steered = []
    for g in GROUPS:
        with steering_hooks(tiny[0], sv.additions(g.id), alpha=4.0):
            steered.append(perplexity(*tiny))
    assert sweep[1]["perplexity"] == pytest.approx(np.mean(steered))
    plot = ctx.extra["method_report"]["plot"]
    assert plot["table"] == "Alpha sweep" and plot["x"] == "alpha" and "similarity" in plot["y"]


def test_perplexity_matches_transformers_loss(tiny):
    from cvaudit.audit.fluency import NEUTRAL_TEXT, perplexity

    model, tok = tiny
    ids = torch.tensor([tok(NEUTRAL_TEXT, add_special_tokens=False)["input_ids"][:100]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert perplexity(model, tok, max_tokens=100) == pytest.approx(math.exp(float(loss)), rel=1e-5)


def test_axes_entanglement_shifts_by_hand(tiny, bank, tmp_path):
    path, sv = _vectors_file(tiny, bank, tmp_path, kind="axes", holdout=[i.id for a in AXES.values() for i in a.items])
    qs = [bank["Q1"]]
    ctx = _ctx(tiny, qs)
    method = _method(vectors=str(path), alpha="5", axis="survival_self_expression", fluency="false", n_boot="200")
    preds = method.predict(ctx)
    # axes + neutral prompt: every group gets the same answer, scored once
    assert preds[(GROUPS[0].id, "Q1")].dist == preds[(GROUPS[1].id, "Q1")].dist
    rows = ctx.extra["method_report"]["Entanglement"]
    assert {(r["steered"], r["measured_axis"]) for r in rows} == {(a, b) for a in AXES for b in AXES}
    row = next(r for r in rows if r["steered"] == "traditional_secular" and r["measured_axis"] == "survival_self_expression")
    scorer = PlainScorer(*tiny)
    axis = AXES["survival_self_expression"]
    specs = [PromptSpec(question=bank[it.id]) for it in axis.items]
    base = scorer.distributions(specs)
    with steering_hooks(tiny[0], sv.additions("traditional_secular"), alpha=5.0):
        steered = scorer.distributions(specs)
    shifts = [axis_item_score(bank[it.id], s, it) - axis_item_score(bank[it.id], b, it)
              for it, s, b in zip(axis.items, steered, base)]
    assert row["shift"] == pytest.approx(float(np.mean(shifts)), abs=1e-9)
    assert row["ci_low"] <= row["shift"] <= row["ci_high"] and row["n_items"] == len(axis.items)
    assert row["in_sample"] is False and row["on_axis"] is False
    summary = ctx.extra["method_report"]["Entanglement summary"]
    assert len(summary) == 2 and all("entanglement_ratio" in r and "on_axis_shift_clear" in r for r in summary)


def test_bad_parameters_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown steering parameter"):
        _method(strength=3)
    with pytest.raises(ConfigError, match="alpha"):
        _method(alpha="two")
    with pytest.raises(ConfigError, match="not found"):
        _method(vectors=str(tmp_path / "missing.safetensors"))
    with pytest.raises(ConfigError, match="axis"):
        _method(axis="left_right")
    assert _method(alpha="0,2,8").params()["main_alpha"] == 8.0


def test_fallback_item_metrics_by_hand_and_against_metrics_package():
    from cvaudit.audit.methods.steering import item_metrics

    got = item_metrics([0.2, 0.8], [0.6, 0.4], [0], (0.0, 1.0))
    m, h = np.array([0.2, 0.8]), np.array([0.6, 0.4])
    mid = (m + h) / 2
    js = math.sqrt(0.5 * sum(m * np.log2(m / mid)) + 0.5 * sum(h * np.log2(h / mid)))
    assert got == pytest.approx({"accuracy": 0.0, "nmae": 1.0, "representativeness": 0.6, "similarity": 1 - js})
    assert item_metrics([0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [2], None)["nmae"] is None
    item = pytest.importorskip("cvaudit.metrics.item")
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for _ in range(20):
        k = int(rng.integers(2, 6))
        md, hd = rng.dirichlet(np.ones(k)), rng.dirichlet(np.ones(k))
        rows.append({"model_dist": list(md), "human_dist": list(hd), "human_mode": [int(np.argmax(hd))],
                     "positions": [float(i) for i in range(k)]})
    theirs = item.item_metrics(pd.DataFrame(rows))
    for i, r in enumerate(rows):
        mine = item_metrics(r["model_dist"], r["human_dist"], r["human_mode"], r["positions"])
        for name, value in mine.items():
            assert value == pytest.approx(float(theirs[name].iloc[i]), abs=1e-9)


# ------------------------------------------------------------------ with the engine
@pytest.fixture(scope="module")
def engine_loaded(tiny_llama_dir):
    models = pytest.importorskip("cvaudit.audit.models")
    pytest.importorskip("cvaudit.audit.engine")
    return models.load_model(models.ModelSpec(id=str(tiny_llama_dir), device="cpu", dtype="float32"))


def _engine(loaded, **kw):
    from cvaudit.audit.engine import Engine

    return Engine(loaded, cache=None, batch_size=kw.pop("batch_size", 4), progress=False, **kw)


def test_engine_alpha_zero_and_steered_paths_agree(engine_loaded, bank, tmp_path):
    """Through the real engine: alpha 0 = unsteered (1e-6); prefix-reuse and exact paths agree under steering."""
    model, tok = engine_loaded.model, engine_loaded.tokenizer
    sv = fit_steering(model, tok, kind="subgroup", bank=bank, layers=[1], groups=GROUPS, persona=_persona,
                      fraction=0.3, seed=0, holdout=["Q46", "Q57", "Q8"], max_calibration=2,
                      model_meta={"fingerprint": engine_loaded.fingerprint})
    path, _ = save_vectors(sv, tmp_path / "e.safetensors")
    qs = [bank["Q46"], bank["Q57"], bank["Q8"]]
    plain = _engine(engine_loaded).distributions([PromptSpec(question=q) for q in qs])

    def run(alpha, **kw):
        ctx = MethodContext(scorer=_engine(engine_loaded, **kw), groups=GROUPS, questions=qs, country=SG)
        return _method(vectors=str(path), alpha=alpha, fluency="false", entanglement="false").predict(ctx)

    zero = run("0")
    for g in GROUPS:
        for q, p in zip(qs, plain):
            assert np.max(np.abs(np.array(zero[(g.id, q.id)].dist) - p)) < 1e-6
    tree, exact = run("6"), run("6", prefix_reuse=False, batch_size=1)
    moved = 0.0
    for key in tree:
        assert np.max(np.abs(np.array(tree[key].dist) - np.array(exact[key].dist))) < 1e-4
        moved = max(moved, float(np.max(np.abs(np.array(tree[key].dist) - plain[qs.index(bank[key[1]])]))))
    assert moved > 1e-4
    # after the method the model is unsteered again: a fresh engine gives the plain numbers exactly
    again = _engine(engine_loaded).distributions([PromptSpec(question=q) for q in qs])
    assert all(np.array_equal(a, b) for a, b in zip(again, plain))
