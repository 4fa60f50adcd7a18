"""End-to-end `run_audit` on the tiny random Llama and the synthetic Singapore sample.

Model distributions are checked against plain transformers forward passes, survey
distributions against a hand computation from the respondent frame.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.config import RunConfig
from cvaudit.audit.io import dumps_json
from cvaudit.audit.results import strip_timing

ATTRS = ("sex", "religion")
MIN_SIZE = 40  # suppresses the synthetic sample's "Other Christian" group (36 respondents)


def config(tmp, model_dir, **kw) -> RunConfig:
    base = dict(model=str(model_dir), attributes=ATTRS, min_size=MIN_SIZE, limit=4, n_boot=50,
                out=str(tmp / "out"), cache=str(tmp / "scores.sqlite"), formats=(), progress=False)  # fmt: skip
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def persona_run(tmp_path_factory, tiny_llama_dir):
    import torch
    from cvaudit.audit.run import run_audit

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("run")
    cfg = config(tmp, tiny_llama_dir)
    path = run_audit(cfg)
    return cfg, path, json.loads(path.read_text())


def test_results_are_complete_and_follow_the_schema(persona_run):
    cfg, path, r = persona_run
    assert path.name == "results.json" and r["complete"] is True and r["schema_version"] == "1"
    for key in ("tool", "timing_fields", "created_at", "timings", "device", "config", "seed", "model", "method",
                "data", "questions", "subgroups", "groups", "items", "overall", "categories", "disparity",
                "flags", "bootstrap"):  # fmt: skip
        assert key in r, key
    assert r["config"] == json.loads(json.dumps(cfg.to_dict()))
    assert r["method"]["name"] == "persona" and r["model"]["id"] == cfg.model
    assert r["data"]["synthetic"] is True and r["data"]["country"]["alpha2"] == "SG"
    assert len(r["questions"]["ids"]) == 4 and r["bootstrap"]["replicates"] == 50
    assert {t["persona"] for t in r["method_report"]["Persona texts"]} >= {"You are a woman living in Singapore."}


def test_every_model_dist_sums_to_one_and_choice_is_argmax(persona_run):
    _, _, r = persona_run
    assert r["items"]
    for it in r["items"]:
        assert len(it["model_dist"]) == len(it["options"])
        assert abs(sum(it["model_dist"]) - 1.0) < 1e-9
        assert it["model_choice"] == int(np.argmax(it["model_dist"]))


def test_suppressed_groups_never_get_figures(persona_run):
    _, _, r = persona_run
    suppressed = {(s["attribute"], s["group"]) for s in r["subgroups"]["suppressed"]}
    assert ("religion", "Other Christian") in suppressed
    shown = {(g["attribute"], g["group"]) for g in r["groups"]} | {(i["attribute"], i["group"]) for i in r["items"]}
    assert not suppressed & shown
    assert all(s["n"] < MIN_SIZE for s in r["subgroups"]["suppressed"])
    assert all(i["n"] >= MIN_SIZE for i in r["items"])


def test_model_dist_matches_plain_forward_passes(persona_run, tiny_llama_dir):
    """Recompute two items from scratch: persona text, both option orders, plain forward pass, mean log-prob."""
    import torch
    from cvaudit.audit.methods.base import PromptSpec
    from cvaudit.audit.prompts import render_prompt
    from cvaudit.audit.questions import load_bank
    from cvaudit.audit.types import Country, Group
    from cvaudit.personas.persona import persona_text
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, r = persona_run
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    bank = load_bank()
    sg = Country("SG", "SGP", 702, "Singapore")
    for it in (r["items"][0], r["items"][-1]):
        group = Group(it["attribute"], it["group"], ((it["attribute"], it["group"]),), n=1, n_eff=1.0)
        system = persona_text(group, sg)
        lps = []
        for reverse in (False, True):
            rp = render_prompt(tok, PromptSpec(question=bank[it["question"]], system=system, reverse=reverse))
            with torch.no_grad():
                logits = model(torch.tensor([rp.input_ids])).logits[0, -1].double()
            lp_display = torch.log_softmax(logits[list(rp.option_token_ids)], dim=-1).numpy()
            lps.append(rp.to_canonical(lp_display))
        mean = 0.5 * (lps[0] + lps[1])
        expected = np.exp(mean - mean.max())
        expected /= expected.sum()
        np.testing.assert_allclose(it["model_dist"], expected, atol=1e-4)


def test_human_dist_matches_hand_computation(persona_run):
    """Weighted share of each option's raw codes among the group's valid answers."""
    from cvaudit.audit.questions import load_bank
    from cvaudit.audit.survey import demo_survey

    _, _, r = persona_run
    survey = demo_survey("SG")
    frame = survey.frame
    sex = {1.0: "Male", 2.0: "Female"}
    item = next(i for i in r["items"] if i["attribute"] == "sex")
    q = load_bank()[item["question"]]
    rows = frame["Q260"].map(sex) == item["group"]
    answers = frame.loc[rows, q.id]
    w = survey.weights[rows.to_numpy()]
    mass = np.array([w[answers.isin(codes).to_numpy()].sum() for codes in q.codes])
    np.testing.assert_allclose(item["human_dist"], mass / mass.sum(), atol=1e-6)
    assert item["n"] == int(answers.isin([c for cs in q.codes for c in cs]).sum())


def test_item_tables_match_results(persona_run):
    import pyarrow.parquet as pq

    cfg, _, r = persona_run
    out = pd.read_csv(f"{cfg.out}/items.csv")
    table = pq.read_table(f"{cfg.out}/items.parquet").to_pandas()
    assert len(out) == len(table) == len(r["items"])
    for k, it in enumerate(r["items"]):
        assert json.loads(out.model_dist[k]) == pytest.approx(it["model_dist"], abs=1e-12)
        assert list(table.model_dist[k]) == pytest.approx(it["model_dist"], abs=1e-12)
        assert (out.group[k], out.question[k]) == (it["group"], it["question"])
    # the per-item metrics are columns too, equal to results.json's and empty where undefined
    metrics = list(r["items"][0]["metrics"])
    assert metrics and list(out.columns[-len(metrics):]) == metrics == list(table.columns[-len(metrics):])
    for m in metrics:
        want = np.array([np.nan if it["metrics"][m] is None else it["metrics"][m] for it in r["items"]])
        np.testing.assert_allclose(out[m].to_numpy(float), want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(table[m].to_numpy(float), want, rtol=0, atol=0)


def test_none_method_gives_every_group_the_same_answer(tmp_path, tiny_llama_dir):
    from cvaudit.audit.run import run_audit

    r = json.loads(run_audit(config(tmp_path, tiny_llama_dir, method="none", limit=3)).read_text())
    by_q: dict[str, list] = {}
    for it in r["items"]:
        by_q.setdefault(it["question"], []).append(it["model_dist"])
    assert len(by_q) == 3
    for dists in by_q.values():
        assert len(dists) > 2 and all(d == dists[0] for d in dists)


def test_same_inputs_give_identical_results(tmp_path, tiny_llama_dir):
    """Two uncached runs into the same folder: identical bytes apart from the timing fields."""
    from cvaudit.audit.run import run_audit

    cfg = config(tmp_path, tiny_llama_dir, no_cache=True, limit=3, attributes=("sex", "age"))
    first = json.loads(run_audit(cfg).read_text())
    csv_first = (tmp_path / "out" / "items.csv").read_bytes()
    second = json.loads(run_audit(cfg).read_text())
    assert first["created_at"] is not None
    assert dumps_json(strip_timing(first)) == dumps_json(strip_timing(second))
    assert (tmp_path / "out" / "items.csv").read_bytes() == csv_first


def test_whole_country_group(tmp_path, tiny_llama_dir):
    from cvaudit.audit.run import run_audit

    r = json.loads(run_audit(config(tmp_path, tiny_llama_dir, attributes=("none",), limit=2)).read_text())
    assert {(g["attribute"], g["group"]) for g in r["groups"]} == {("all", "All respondents")}
    assert r["method_report"]["Persona texts"][0]["persona"] == "You are a person living in Singapore."


def test_unknown_reference_fails_before_scoring(tmp_path, tiny_llama_dir):
    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.run import run_audit

    with pytest.raises(ConfigError, match="valid: Male, Female|valid: Female, Male"):
        run_audit(config(tmp_path, tiny_llama_dir, reference=(("sex", "Nonbinary"),)))
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_real_smollm2_persona_run(tmp_path):
    """The embedded model end to end on a few questions (default model id)."""
    from cvaudit.audit.run import run_audit

    cfg = RunConfig(attributes=("sex",), limit=3, n_boot=100, out=str(tmp_path / "out"),
                    cache=str(tmp_path / "s.sqlite"), formats=(), progress=False)  # fmt: skip
    r = json.loads(run_audit(cfg).read_text())
    assert r["complete"] and r["model"]["embedded"] is True and len(r["items"]) == 6
    for it in r["items"]:
        assert abs(sum(it["model_dist"]) - 1) < 1e-9
    # a real instruction model answers with a peaked distribution on at least one item
    assert max(max(it["model_dist"]) for it in r["items"]) > 0.5


def _ci_widths(record: dict) -> np.ndarray:
    """Width of every group and overall interval, metric by metric (NaN where undefined)."""
    figs = [g["metrics"][m] for g in record["groups"] for m in sorted(g["metrics"])]
    figs += [record["overall"][m] for m in sorted(record["overall"])]
    return np.array([f["ci"][1] - f["ci"][0] if f["ci"] else np.nan for f in figs])


def test_respondent_bootstrap_widens_intervals_and_is_recorded(persona_run, tiny_llama_dir):
    """Resampling respondents as well as questions adds survey noise: same point figures, wider intervals."""
    from cvaudit.audit.run import run_audit

    cfg_off, path_off, off = persona_run
    cfg_on = config(path_off.parent.parent, tiny_llama_dir, respondents=True, out=str(path_off.parent.parent / "resp"))
    assert cfg_on.cache == cfg_off.cache  # scores come from the cache: only the bootstrap differs
    on = json.loads(run_audit(cfg_on).read_text())
    assert off["bootstrap"]["respondents"] is False and off["config"]["respondents"] is False
    assert on["bootstrap"]["respondents"] is True and on["config"]["respondents"] is True
    assert on["bootstrap"]["replicates"] == off["bootstrap"]["replicates"] == 50
    point = lambda r: [g["metrics"][m]["value"] for g in r["groups"] for m in sorted(g["metrics"])]  # noqa: E731
    assert point(on) == pytest.approx(point(off), nan_ok=True)
    w_on, w_off = _ci_widths(on), _ci_widths(off)
    ok = np.isfinite(w_on) & np.isfinite(w_off)
    assert ok.sum() > 10
    # wider on the whole (single figures can go either way with 50 replicates of 4 questions)
    assert w_on[ok].sum() > w_off[ok].sum()
    # one question: the question bootstrap cannot vary (zero width); respondents still can
    tmp = path_off.parent.parent
    one_off = json.loads(run_audit(config(tmp, tiny_llama_dir, limit=1, out=str(tmp / "one_off"))).read_text())
    one_on = json.loads(run_audit(config(tmp, tiny_llama_dir, limit=1, respondents=True,
                                         out=str(tmp / "one_on"))).read_text())  # fmt: skip
    w1_off, w1_on = _ci_widths(one_off), _ci_widths(one_on)
    assert np.nanmax(w1_off) == 0.0
    sim = [g["metrics"]["similarity"]["ci"] for g in one_on["groups"]]
    assert all(hi - lo > 0 for lo, hi in sim)
    assert np.all(w1_on[np.isfinite(w1_on)] >= 0) and np.nansum(w1_on) > 0


def test_method_filter_questions_drops_calibration_questions(tmp_path, tiny_llama_dir, monkeypatch):
    """A method fitted on some questions (steering calibration) has them dropped before scoring, with a note."""
    from cvaudit.audit.methods import base
    from cvaudit.audit.methods.none import NoneMethod
    from cvaudit.audit.run import run_audit

    seen: dict[str, list] = {}

    class Calibrated(NoneMethod):
        name = "calibrated"

        def filter_questions(self, questions):
            seen["offered"] = [q.id for q in questions]
            return [q for q in questions if q.id != "Q2"], ["fitted on Q2: excluded"]

        def predict(self, ctx):
            seen["scored"] = [q.id for q in ctx.questions]
            return super().predict(ctx)

    monkeypatch.setitem(base._REGISTRY, "calibrated", Calibrated)
    r = json.loads(run_audit(config(tmp_path, tiny_llama_dir, method="calibrated", questions="Q1,Q2,Q3",
                                    limit=None, n_boot=10)).read_text())  # fmt: skip
    assert seen == {"offered": ["Q1", "Q2", "Q3"], "scored": ["Q1", "Q3"]}
    assert r["questions"]["ids"] == ["Q1", "Q3"] and r["questions"]["excluded"] == ["Q2"]
    assert r["questions"]["notes"] == ["fitted on Q2: excluded"]
    assert "fitted on Q2: excluded" in r["metric_notes"]
    assert {it["question"] for it in r["items"]} == {"Q1", "Q3"}


def test_method_training_cells_are_left_out_of_every_figure(tmp_path, tiny_llama_dir, monkeypatch):
    """Method.training_cells: the cells leave items, groups and tables, and results.json lists them."""
    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.methods import base
    from cvaudit.audit.methods.none import NoneMethod
    from cvaudit.audit.run import run_audit

    class Trained(NoneMethod):
        name = "trained"
        everything = False

        def training_cells(self, groups, questions, country):
            picked = groups if self.everything else [g for g in groups if g.label == "Male"]
            cells = frozenset((g.id, q.id) for g in picked for q in questions if self.everything or q.id == "Q1")
            return base.HeldOutCells(cells=cells, notes=("trained on Male x Q1",), reason="fitted on them",
                                     advice="nothing left: audit other groups")  # fmt: skip

    monkeypatch.setitem(base._REGISTRY, "trained", Trained)
    cfg = config(tmp_path, tiny_llama_dir, method="trained", questions="Q1,Q2", limit=None, n_boot=10)
    r = json.loads(run_audit(cfg).read_text())
    cells = {(i["attribute"], i["group"], i["question"]) for i in r["items"]}
    assert ("sex", "Male", "Q1") not in cells and ("sex", "Male", "Q2") in cells and ("sex", "Female", "Q1") in cells
    assert r["excluded_cells"] == {"reason": "fitted on them",
                                   "cells": [{"attribute": "sex", "group": "Male", "question": "Q1"}]}
    assert "trained on Male x Q1" in r["metric_notes"]
    male = next(g for g in r["groups"] if g["group"] == "Male")
    q2 = next(i for i in r["items"] if i["group"] == "Male")
    assert male["metrics"]["accuracy"]["value"] == pytest.approx(q2["metrics"]["accuracy"])
    table = pd.read_csv(tmp_path / "out" / "items.csv")
    assert len(table) == len(r["items"])
    monkeypatch.setattr(Trained, "everything", True)
    cfg = config(tmp_path, tiny_llama_dir, method="trained", questions="Q1,Q2", limit=None, n_boot=10,
                 out=str(tmp_path / "all"))
    with pytest.raises(ConfigError, match="nothing left: audit other groups"):
        run_audit(cfg)
    assert not (tmp_path / "all" / "results.json").exists()


def test_real_steering_filter_excludes_vector_calibration(tmp_path):
    """The steering method's own filter: questions in a vectors file's calibration split are dropped, not an error."""
    from cvaudit.audit.methods.base import get_method_class
    from cvaudit.audit.questions import select_questions
    from cvaudit.audit.run import filter_questions

    vectors = tmp_path / "v.safetensors"
    vectors.write_bytes(b"")
    (tmp_path / "v.json").write_text(json.dumps({"kind": "subgroup", "split": {"calibration": ["Q2", "Q4"]}}))
    method = get_method_class("steering")(vectors=str(vectors))
    kept, notes, excluded = filter_questions(method, select_questions("Q1,Q2,Q3,Q4"))
    assert [q.id for q in kept] == ["Q1", "Q3"] and excluded == ["Q2", "Q4"]
    assert len(notes) == 1 and "Q2, Q4" in notes[0] and "calibration split" in notes[0] and "fitted on" not in notes[0]


def test_unavailable_attributes_are_recorded(tmp_path, tiny_llama_dir):
    """An attribute whose column is absent from the WVS file is listed, with its intersections, not an error."""
    from cvaudit.audit.run import run_audit
    from cvaudit.audit.synthetic import generate_frame, to_csv_bytes

    frame = generate_frame("SG", n=400, seed=1)
    frame["H_URBRURAL"] = -5  # missing code everywhere: settlement cannot be built
    wvs = tmp_path / "wvs.csv"
    wvs.write_bytes(to_csv_bytes(frame))
    cfg = config(tmp_path, tiny_llama_dir, wvs_file=str(wvs), attributes=("sex", "settlement"),
                 intersections=("sex:settlement",), limit=1, n_boot=5)  # fmt: skip
    r = json.loads(run_audit(cfg).read_text())
    unavailable = r["subgroups"]["unavailable"]
    assert set(unavailable) == {"settlement", "sex:settlement"}
    assert "H_URBRURAL" in unavailable["settlement"] and unavailable["sex:settlement"] == "needs settlement"
    assert {g["attribute"] for g in r["groups"]} == {"sex"}
    assert any("'settlement' not audited" in n for n in r["metric_notes"])


def test_rerun_refused_on_bad_input_keeps_the_finished_audit(tmp_path, tiny_llama_dir):
    """Bad input in a re-run (survey file, reference, model) is refused before OUT is touched."""
    from cvaudit.audit.errors import CVAuditError
    from cvaudit.audit.run import run_audit

    out = tmp_path / "out"
    run_audit(config(tmp_path, tiny_llama_dir, limit=1, formats=("html",)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"results.json", "items.csv", "items.parquet", "report.html"} == set(before)
    for bad in ({"wvs_file": str(tmp_path / "missing.csv")}, {"reference": (("sex", "Martian"),)},
                {"model": str(tmp_path / "no-such-model")}):  # fmt: skip
        with pytest.raises(CVAuditError):
            run_audit(config(tmp_path, tiny_llama_dir, limit=1, formats=("html",), **bad))
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before, bad


def test_steering_mistakes_found_after_the_model_loads_keep_the_finished_audit(tmp_path, tiny_llama_dir):
    """Layer and vector mistakes only the loaded model can judge are refused before OUT is marked superseded."""
    import torch
    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.questions import load_bank, select_questions
    from cvaudit.audit.run import run_audit
    from cvaudit.audit.steering import fit_steering, save_vectors
    from cvaudit.audit.types import Group
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    n_layers = model.config.num_hidden_layers
    martians = [Group(attribute="planet", label="Mars", values=(("planet", "Mars"),), n=50, n_eff=50.0)]
    vectors = {}
    for name, fp in (("other-model", "not-this-model"), ("other-groups", None)):
        sv = fit_steering(model, tok, kind="subgroup", bank=load_bank(),
                          layers=[0], groups=martians, persona=lambda g: "You live on Mars.", fraction=0.3,
                          holdout=("Q1",), max_calibration=1, model_meta={"fingerprint": fp})  # fmt: skip
        vectors[name], _ = save_vectors(sv, tmp_path / f"{name}.safetensors")
    # the run's own groups, but vectors of another width (fitted on a wider model)
    from cvaudit.audit.countries import resolve_country
    from cvaudit.audit.run import survey_side
    from cvaudit.audit.steering import SteeringVectors

    run_groups = survey_side(config(tmp_path, tiny_llama_dir), resolve_country("SG"), select_questions("Q1"))[1].groups
    wide = SteeringVectors(kind="subgroup", layers=(0,), meta={"model": {"fingerprint": None}, "split": {}},
                           vectors={g.id: {0: torch.zeros(model.config.hidden_size + 3)} for g in run_groups})
    vectors["wider"], _ = save_vectors(wide, tmp_path / "wider.safetensors")

    out = tmp_path / "out"
    run_audit(config(tmp_path, tiny_llama_dir, limit=1, formats=("html",)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    steer = dict(method="steering", questions="Q1", limit=None, formats=("html",))
    cases = {
        "fit layer out of range": ((("layers", str(n_layers + 5)),), "out of range"),
        "steer layer not fitted": ((("layers", "0"), ("layer", "1")), "not among the layers fitted on the fly"),
        "named as typed": ((("layers", "0"), ("layer", "-1")), r"--steer-layer -1 is not among the layers"),
        "calibration fraction": ((("calibration_fraction", "2"),), "strictly between 0 and 1, got 2"),
        "vectors of another model": ((("vectors", str(vectors["other-model"])),), "fitted on model fingerprint"),
        "vectors of other groups": ((("vectors", str(vectors["other-groups"])), ("force", "true")), "no vector for"),
        "vectors layer not fitted": ((("vectors", str(vectors["other-groups"])), ("force", "true"), ("layer", "1")),
                                     "fitted at layers"),
        "vectors of another width": ((("vectors", str(vectors["wider"])), ("force", "true")), "hidden size is"),
    }  # fmt: skip
    for case, (params, message) in cases.items():
        with pytest.raises(ConfigError, match=message):
            run_audit(config(tmp_path, tiny_llama_dir, method_params=params, **steer))
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before, case


def test_failed_rerun_leaves_no_stale_tables_or_report(tmp_path, tiny_llama_dir, monkeypatch):
    """A re-run that fails once scoring has begun leaves only its pending record, no old items or report."""
    from cvaudit.audit.engine import Engine
    from cvaudit.audit.errors import ModelError
    from cvaudit.audit.run import run_audit

    out = tmp_path / "out"
    run_audit(config(tmp_path, tiny_llama_dir, limit=1, formats=("html",)))
    (out / ".report.html.x1y2.tmp").write_text("<html>half")  # what a kill inside an atomic write leaves

    def fail(self, *a, **k):
        raise ModelError("the model produced NaN/inf logits (simulated)")

    monkeypatch.setattr(Engine, "distributions", fail)
    monkeypatch.setattr(Engine, "logprobs", fail)
    with pytest.raises(ModelError):
        run_audit(config(tmp_path, tiny_llama_dir, limit=2, formats=("html",)))
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert json.loads((out / "results.json").read_text())["complete"] is False


def test_questions_the_file_lacks_fail_before_the_model_loads(tmp_path):
    """A survey file without the asked question's column: refused with the reason, before any model is loaded."""
    from cvaudit.audit.errors import DataError
    from cvaudit.audit.run import run_audit
    from cvaudit.audit.synthetic import generate_frame, to_csv_bytes

    frame = generate_frame("SG", n=300).drop(columns=["Q1", "Q2"])
    frame["Q3"] = -1  # present, but nobody answered
    wvs = tmp_path / "wvs.csv"
    wvs.write_bytes(to_csv_bytes(frame))
    missing_model = tmp_path / "no-such-model"  # loading it would fail with a ModelError
    cfg = RunConfig(model=str(missing_model), wvs_file=str(wvs), questions="Q1,Q2", attributes=("sex",),
                    out=str(tmp_path / "out"), no_cache=True, formats=(), progress=False)  # fmt: skip
    with pytest.raises(DataError, match="no column for Q1, Q2: nothing to audit"):
        run_audit(cfg)
    with pytest.raises(DataError, match="every .group, question. cell is suppressed"):
        run_audit(RunConfig(**{**cfg.__dict__, "questions": "Q3"}))


def test_missing_attribute_column_is_named_not_blamed_on_min_size(tmp_path):
    from cvaudit.audit.errors import DataError
    from cvaudit.audit.run import run_audit
    from cvaudit.audit.synthetic import generate_frame, to_csv_bytes

    wvs = tmp_path / "wvs.csv"
    wvs.write_bytes(to_csv_bytes(generate_frame("SG", n=200).drop(columns=["Q260"])))
    cfg = RunConfig(wvs_file=str(wvs), questions="Q1", attributes=("sex",), out=str(tmp_path / "out"),
                    no_cache=True, formats=(), progress=False)  # fmt: skip
    with pytest.raises(DataError, match=r"no subgroup can be built \(sex: column Q260"):
        run_audit(cfg)


def test_report_shows_the_results_creation_time(tmp_path, tiny_llama_dir):
    """results.json is written twice (before and after the report): both and the report carry one created_at."""
    from cvaudit.audit.run import run_audit

    r = json.loads(run_audit(config(tmp_path, tiny_llama_dir, limit=1, formats=("html",))).read_text())
    html = (tmp_path / "out" / "report.html").read_text()
    assert r["created_at"] and f"<td>{r['created_at']}</td>" in html


def test_a_second_run_into_the_same_out_is_refused(tmp_path, tiny_llama_dir):
    """Two runs writing one OUT would mix their tables and report: the second is refused while the first holds it."""
    import fcntl

    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.io import LOCK_NAME, exclusive_output
    from cvaudit.audit.run import run_audit

    out = tmp_path / "out"
    with exclusive_output(out):  # what a run in another process holds
        held = os.open(out / LOCK_NAME, os.O_RDWR)
        with pytest.raises(OSError):  # the lock is real: a third party cannot take it either
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(held)
        with pytest.raises(ConfigError, match="another cvaudit run is writing to"):
            run_audit(config(tmp_path, tiny_llama_dir, limit=1))
        assert list(out.iterdir()) == [out / LOCK_NAME]  # the refused run wrote nothing
    assert not (out / LOCK_NAME).exists()
    run_audit(config(tmp_path, tiny_llama_dir, limit=1))  # free again once the first is done
    assert {p.name for p in out.iterdir()} == {"results.json", "items.csv", "items.parquet"}


def test_results_are_complete_before_the_item_tables_are_written(tmp_path, tiny_llama_dir, monkeypatch):
    """The tables come after the complete results.json, so they never sit beside a pending record."""
    from cvaudit.audit import results as res
    from cvaudit.audit.run import run_audit

    seen = []
    original = res.write_items

    def spy(items, out, *a, **k):
        seen.append(json.loads((out / "results.json").read_text())["complete"])
        return original(items, out, *a, **k)

    monkeypatch.setattr(res, "write_items", spy)
    run_audit(config(tmp_path, tiny_llama_dir, limit=1))
    assert seen == [True]


def test_a_rerun_removes_an_earlier_export(tmp_path, tiny_llama_dir):
    """`cvaudit export` into OUT, then a new run: the old model-card files describe no current results."""
    from cvaudit.audit.run import run_audit
    from cvaudit.reports.export import export

    out = tmp_path / "out"
    export(run_audit(config(tmp_path, tiny_llama_dir, limit=1)), out)
    assert (out / "model_card_metrics.json").exists() and (out / "model-index.yaml").exists()
    run_audit(config(tmp_path, tiny_llama_dir, limit=2))
    assert not (out / "model_card_metrics.json").exists() and not (out / "model-index.yaml").exists()


def test_a_resumed_run_says_how_many_scores_came_from_the_cache(tmp_path, tiny_llama_dir):
    from cvaudit.audit.run import run_audit

    first, second = [], []
    run_audit(config(tmp_path, tiny_llama_dir, limit=1), log=first.append)
    run_audit(config(tmp_path, tiny_llama_dir, limit=2), log=second.append)
    assert not any(m.startswith("scores:") for m in first)
    done = json.loads((tmp_path / "out" / "results.json").read_text())["timings"]["engine"]
    assert done["cached"] > 0 and done["computed"] > 0
    assert f"scores: {done['cached']} from the cache {tmp_path / 'scores.sqlite'}, {done['computed']} computed" in second


def test_noise_correction_reaches_the_results(tmp_path, tiny_llama_dir):
    from click.testing import CliRunner
    from cvaudit.audit.cli import cli

    args = ["run", "--model", str(tiny_llama_dir), "--attributes", "sex,age", "--limit", "2", "--n-boot", "50",
            "--cache", str(tmp_path / "s.sqlite"), "--format", "", "--quiet"]  # fmt: skip
    for extra, want in (([], True), (["--no-noise-correction"], False)):
        out = tmp_path / f"o{int(want)}"
        res = CliRunner().invoke(cli, [*args, "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        record = json.loads((out / "results.json").read_text())
        assert record["flags"]["noise_corrected"] is want and record["config"]["noise_correction"] is want
        shifts = [f["noise_shift"] for g in record["groups"] for f in g["flags"].values()]
        assert all((s is not None) == want for s in shifts)


def test_an_output_folder_without_locks_still_runs(tmp_path, tiny_llama_dir, monkeypatch):
    """A file system that cannot lock (some network mounts) is not mistaken for another run."""
    import errno
    import fcntl

    from cvaudit.audit.run import run_audit

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    run_audit(config(tmp_path, tiny_llama_dir, limit=1))
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"results.json", "items.csv", "items.parquet"}


def test_log_names_the_questions_actually_audited():
    """The progress line names a set by its name, and otherwise the ids kept (not the ids the user typed)."""
    from cvaudit.audit.questions import select_questions
    from cvaudit.audit.run import question_label

    assert question_label("core", select_questions("core")) == "core"
    kept = select_questions("core")[1:4]  # a method (or --limit) left the rest out: the ids say which remain
    assert question_label("core", kept) == "core: " + ",".join(q.id for q in kept)
    assert question_label("Q1,Q6,Q9", select_questions("Q1,Q9")) == "Q1,Q9"  # Q6 dropped by the method
    long = select_questions("core,Q2")
    assert question_label("core,Q2", long) == ",".join(q.id for q in long[:6]) + f",... (+{len(long) - 6})"
