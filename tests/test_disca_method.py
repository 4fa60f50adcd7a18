"""The registered ``disca`` method: prompts, determinism, order independence, extra/method_report, reuse."""

from __future__ import annotations

import hashlib
import json
import warnings
from contextlib import contextmanager

import numpy as np
import pytest
from cvaudit.audit.disca_math import DiscaParams, correct_item
from cvaudit.audit.errors import ConfigError, DataError
from cvaudit.audit.methods.base import MethodContext, get_method_class
from cvaudit.audit.types import Question

QIDS = "Q1,Q8,Q57,Q177,Q46,Q33"  # 4, 2, 2, 10, 4 and 5 options


class FakeScorer:
    """Deterministic option log-probs from a hash of (system, question, order); records its calls."""

    model = None
    tokenizer = None

    def __init__(self) -> None:
        self.calls: list[list] = []

    def logprobs(self, specs):
        self.calls.append(list(specs))
        out = []
        for s in specs:
            h = hashlib.sha256(f"{s.system}|{s.question.id}|{s.reverse}".encode()).digest()
            z = np.random.default_rng(list(h[:8])).normal(0.0, 2.0, s.question.k)
            out.append(z - np.log(np.exp(z).sum()))
        return out

    def distributions(self, specs):  # pragma: no cover - DISCA needs both orders' raw log-probs
        raise AssertionError("disca must score through logprobs")

    @contextmanager
    def modified(self, tag):
        yield


@pytest.fixture(scope="module")
def setting():
    from cvaudit.audit.questions import select_questions
    from cvaudit.audit.subgroups import build_groups
    from cvaudit.audit.survey import demo_survey

    survey = demo_survey("SG", seed=0)
    groups = build_groups(survey, ["sex"]).groups
    return survey, groups, select_questions(QIDS)


def run(setting, questions=None, seed=0, scorer=None, **params):
    survey, groups, qs = setting
    method = get_method_class("disca")(**params)
    ctx = MethodContext(scorer=scorer or FakeScorer(), groups=groups, questions=list(questions or qs),
                        country=survey.country, survey=survey, seed=seed)  # fmt: skip
    return method, ctx, method.predict(ctx)


def test_one_batched_call_with_base_and_panel_in_both_orders(setting):
    from cvaudit.personas.persona import persona_text

    survey, groups, qs = setting
    scorer = FakeScorer()
    method, ctx, out = run(setting, scorer=scorer)
    assert len(scorer.calls) == 1
    specs = scorer.calls[0]
    systems = {s.system for s in specs}
    assert None in systems  # the base prompt: the model's own answer
    for g in groups:
        # the whole-target member states the group's values too (the paper's all-ages persona) ...
        assert persona_text(g, survey.country) not in systems
        assert len(method.panels[g.id].members) == 4
        assert all("Your worldview is shaped" in m.text for m in method.panels[g.id].members)
    # ... unless whole_persona=persona, which reuses the persona method's text (and its cached scores)
    plain = FakeScorer()
    run(setting, scorer=plain, whole_persona="persona")
    assert all(persona_text(g, survey.country) in {s.system for s in plain.calls[0]} for g in groups)
    # every (system, question) is asked in both orders, and nothing twice
    keys = [(s.system, s.question.id, s.reverse) for s in specs]
    assert len(keys) == len(set(keys))
    assert {(a, b) for a, b, r in keys if r} == {(a, b) for a, b, r in keys if not r}
    n_systems = 1 + sum(len(method.panels[g.id].members) for g in groups)
    assert len(specs) == n_systems * len(qs) * 2
    assert set(out) == {(g.id, q.id) for g in groups for q in qs}


def test_each_item_is_the_documented_correction_of_its_scores(setting):
    from cvaudit.audit.methods.disca import item_seed

    survey, groups, qs = setting
    scorer = FakeScorer()
    method, _, out = run(setting, scorer=scorer, seed=7)
    g, q = groups[1], qs[3]
    panel = method.panels[g.id]

    def lp(system, reverse):
        from cvaudit.audit.methods.base import PromptSpec

        return scorer.logprobs([PromptSpec(q, system, reverse)])[0]

    expected = correct_item((lp(None, False), lp(None, True)),
                            [(lp(m.text, False), lp(m.text, True)) for m in panel.members],
                            item_seed(7, g.id, q.id), DiscaParams())  # fmt: skip
    assert out[(g.id, q.id)].dist == pytest.approx(tuple(expected.dist), abs=1e-15)
    assert out[(g.id, q.id)].extra["sigma"] == pytest.approx(expected.sigma, abs=1e-4)


def test_reordering_questions_changes_nothing(setting):
    _, _, qs = setting
    _, _, a = run(setting)
    _, _, b = run(setting, questions=list(reversed(qs)))
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dist == b[k].dist and a[k].extra == b[k].extra


def test_same_seed_same_results_other_seed_other_draws(setting):
    _, _, a = run(setting, seed=3)
    _, _, b = run(setting, seed=3)
    _, _, c = run(setting, seed=4)
    assert all(a[k].dist == b[k].dist and a[k].extra == b[k].extra for k in a)
    assert any(a[k].extra["ess1"] != c[k].extra["ess1"] for k in a)


def test_extra_and_method_report(setting):
    method, ctx, out = run(setting)
    for pred in out.values():
        e = pred.extra
        assert sum(pred.dist) == pytest.approx(1.0)
        assert {"disagreement", "sigma", "ess1", "ess2", "agreement", "correction", "tv_from_base",
                "tv_from_anchor", "anchor_weight", "gated", "panel_size"} <= set(e)  # fmt: skip
        assert e["sigma"] >= max(e["disagreement"], 0.3) - 1e-4 and 0 <= e["agreement"] <= 1
        assert 0 <= e["tv_from_base"] <= 1 and 0 <= e["ess1"] <= 1
        json.dumps(e)
    report = ctx.extra["method_report"]
    json.dumps(report)
    for title, rows in report.items():
        assert isinstance(rows, list) and rows, title
        assert all(not isinstance(v, (dict, list)) for row in rows for v in row.values()), title
    by_group = report["DISCA disagreement by group"]
    female = [r for r in by_group if r["group"] == "Female"][0]
    cells = [p.extra["disagreement"] for (gid, _), p in out.items() if gid == "sex=Female"]
    assert female["disagreement"] == pytest.approx(np.mean(cells), abs=1e-3)
    top = report["DISCA most divisive items (top 10)"]
    assert len(top) == 10
    values = [r["disagreement"] for r in top]
    assert values == sorted(values, reverse=True)
    assert values[0] == max(p.extra["disagreement"] for p in out.values())
    assert {r["member"] for r in report["DISCA panels"]} == {"under 36", "36-55", "over 55", "Male", "Female"}


def test_params_are_parsed_validated_and_recorded():
    cls = get_method_class("disca")
    m = cls(samples="32", alpha="0.9", anchor="code", panel_split="sex", country_prior="false", lam="0.5")
    p = m.params()
    for name in ("panel_size", "panel_split", "samples", "alpha", "beta", "kappa", "lam", "eta", "temperature",
                 "output_temperature", "sigma_floor", "ess_min", "agreement_scale", "anchor", "country_prior"):  # fmt: skip
        assert name in p, name
    assert (p["samples"], p["alpha"], p["anchor"], p["panel_split"], p["lam"]) == (32, 0.9, "code", "sex", 0.5)
    assert p["country_prior"] is False
    for bad in ({"bogus": 1}, {"samples": "many"}, {"samples": "2.5"}, {"anchor": "middle"},
                {"panel_split": "shoe size"}, {"eta": 0}, {"lam": 2}, {"country_prior": "maybe"}):  # fmt: skip
        with pytest.raises(ConfigError):
            cls(**bad)
    assert cls(samples=32).fingerprint() != cls(samples=64).fingerprint()


def test_needs_the_survey(setting):
    survey, groups, qs = setting
    m = get_method_class("disca")()
    ctx = MethodContext(scorer=FakeScorer(), groups=groups, questions=qs, country=survey.country, survey=None)
    with pytest.raises(ConfigError, match="survey"):
        m.predict(ctx)


def _binary_questions(n: int) -> list[Question]:
    return [Question(f"X{i:03d}", f"Statement {i}?", ("Yes", "No"), ((1,), (2,)), False, "Test") for i in range(n)]


def test_country_prior_is_opt_in_warned_and_order_dependent(setting):
    qs = _binary_questions(70)
    _, _, plain_a = run(setting, questions=qs)
    _, _, plain_b = run(setting, questions=list(reversed(qs)))
    assert all(plain_a[k].dist == plain_b[k].dist for k in plain_a)
    with pytest.warns(UserWarning, match="question order"):
        m, ctx, prior_a = run(setting, questions=qs, country_prior=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, prior_b = run(setting, questions=list(reversed(qs)), country_prior=True)
    # the first 50 items of a target see no prior (warm-up), later ones are blended
    first = ("sex=Male", "X000")
    assert prior_a[first].dist == pytest.approx(plain_a[first].dist)
    assert any(prior_a[k].dist != pytest.approx(prior_b[k].dist) for k in prior_a)
    assert m.params()["country_prior"] is True
    assert any("depend on question order" in r["note"] for r in ctx.extra["method_report"]["DISCA panel notes"])


# ----------------------------------------------------------------------------- real engine
@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama_dir):
    """none, persona, then disca on the tiny Llama, all sharing one score cache."""
    import torch
    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.run import run_audit

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("disca")
    out = {}
    for name, method, params in (("none", "none", ()), ("persona", "persona", ()), ("disca", "disca", ()),
                                 ("disca_plain", "disca", (("whole_persona", "persona"),))):  # fmt: skip
        cfg = RunConfig(model=str(tiny_llama_dir), method=method, method_params=params, attributes=("sex",),
                        questions="Q8,Q1,Q2,Q57", n_boot=50, out=str(tmp / name), cache=str(tmp / "scores.sqlite"),
                        formats=(), progress=False)  # fmt: skip
        out[name] = json.loads(run_audit(cfg).read_text())
    return out


def test_disca_reuses_the_none_and_persona_scores(runs):
    n_q, n_groups = 3, 2
    # the base prompts come from the none run; all 4 value-grounded members per group are new
    eng = runs["disca"]["timings"]["engine"]
    assert eng["cached"] == 2 * n_q and eng["computed"] == 2 * n_q * n_groups * 4
    # whole_persona=persona: its whole-target member is the persona run's prompt and its cohorts are the
    # disca run's, so everything comes from the cache
    plain = runs["disca_plain"]["timings"]["engine"]
    assert plain["cached"] == 2 * n_q * (1 + n_groups * 4) and plain["computed"] == 0
    assert runs["persona"]["timings"]["engine"]["cached"] == 0


def test_panel_value_items_are_held_out(runs):
    """Q57 is a panel value item (the personas state the group's answer): DISCA holds it out; compare pairs the rest."""
    from cvaudit.reports import compare_results

    d, p = runs["disca"], runs["persona"]
    assert d["questions"]["excluded"] == ["Q57"] and d["questions"]["ids"] == ["Q8", "Q1", "Q2"]
    assert any("held out" in n and "Q57" in n for n in d["metric_notes"])
    assert p["questions"]["excluded"] == [] and "Q57" in p["questions"]["ids"]
    assert {i["question"] for i in d["items"]} == {"Q8", "Q1", "Q2"}
    for base, other in ((p, d), (d, p)):
        cmp = compare_results(base, other, n_boot=20)
        assert cmp["questions"] == {"paired": ["Q8", "Q1", "Q2"], "held_out": ["Q57"]}
        assert cmp["n_questions"] == 3 and any("paired on the 3 questions" in n for n in cmp["notes"])
    # the persona run's figures on the paired questions only, by hand
    cmp = compare_results(p, d, n_boot=20)
    row = next(g for g in cmp["groups"] if g["group"] == "Female" and g["metric"] == "similarity")
    vals = [i["metrics"]["similarity"] for i in p["items"] if i["group"] == "Female" and i["question"] != "Q57"]
    assert row["base"]["value"] == pytest.approx(np.mean(vals), abs=1e-12)
    # a question set that differs by anything else is still refused
    other = json.loads(json.dumps(d))
    other["questions"]["excluded"] = []
    with pytest.raises(DataError, match="question ids differ"):
        compare_results(p, other)


@pytest.mark.parametrize("on_overlap", ["exclude", "keep", "error"])
def test_on_overlap(on_overlap):
    from cvaudit.audit.questions import select_questions

    qs = select_questions("Q8,Q57,Q254")
    method = get_method_class("disca")(on_overlap=on_overlap)
    assert method.params()["on_overlap"] == on_overlap
    if on_overlap == "error":
        with pytest.raises(ConfigError, match="Q57, Q254 are the DISCA panel's value items"):
            method.filter_questions(qs)
        return
    kept, notes = method.filter_questions(qs)
    assert [q.id for q in kept] == (["Q8"] if on_overlap == "exclude" else ["Q8", "Q57", "Q254"])
    assert len(notes) == 1 and "Q57, Q254" in notes[0] and ("optimistic" in notes[0]) == (on_overlap == "keep")
    alone = get_method_class("disca")(panel_size=1, whole_persona="persona", on_overlap=on_overlap)
    assert alone.filter_questions(qs) == (list(qs), [])  # the plain persona alone states no values
    with pytest.raises(ConfigError, match="on_overlap must be one of"):
        get_method_class("disca")(on_overlap="drop")


def test_disca_results_on_the_tiny_model(runs, tiny_llama_dir):
    r = runs["disca"]
    assert r["complete"] is True and r["method"]["name"] == "disca"
    assert r["method"]["params"]["anchor"] == "paper"
    assert "DISCA disagreement by group" in r["method_report"]
    persona = {(i["group"], i["question"]): i for i in runs["persona"]["items"]}
    for item in r["items"]:
        assert sum(item["model_dist"]) == pytest.approx(1.0)
        assert {"disagreement", "correction", "tv_from_base"} <= set(item["extra"])
        assert (item["group"], item["question"]) in persona


@pytest.mark.slow
def test_cli_disca_run_and_compare_on_the_embedded_model(tmp_path, smollm2_dir):
    """`cvaudit run --method disca` on SmolLM2 (sex, 1 core question), then `cvaudit compare` with the persona run."""
    from click.testing import CliRunner
    from cvaudit.audit.cli import cli

    common = ["--country", "SG", "--attributes", "sex", "--questions", "core", "--limit", "1", "--n-boot", "50",
              "--cache", str(tmp_path / "scores.sqlite"), "--no-report", "--quiet"]  # fmt: skip
    for method in ("persona", "disca"):
        res = CliRunner().invoke(cli, ["run", "--method", method, "--out", str(tmp_path / method), *common])
        assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "disca" / "results.json").read_text())
    eng = r["timings"]["engine"]
    # base + 4 value-grounded members per group, both orders: nothing is the persona run's prompt
    assert r["complete"] and r["method"]["name"] == "disca" and eng["cached"] == 0 and eng["computed"] == 2 * (1 + 2 * 4)
    assert all(i["extra"]["panel_size"] == 4 for i in r["items"])
    res = CliRunner().invoke(cli, ["compare", str(tmp_path / "persona" / "results.json"),
                                   str(tmp_path / "disca" / "results.json"), "--out", str(tmp_path / "cmp"),
                                   "--format", ""])  # fmt: skip
    assert res.exit_code == 0, res.output
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert cmp["kind"] == "compare" and "overall" in cmp
