"""The ``checkpoint`` method: validation before loading, model overrides, CLI exit codes, and an audit of an adapter."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cvaudit.audit.adapters import SPLIT_FILE, checkpoint_fingerprint
from cvaudit.audit.errors import ConfigError, ModelError
from cvaudit.audit.methods.base import get_method_class
from cvaudit.audit.methods.checkpoint import spread

HELDOUT = "age:religion"


def _lora(base: Path, out: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    pm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                          init_lora_weights=False))
    pm.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_llama_dir) -> Path:
    """An adapter with a split record, as `cvaudit finetune` writes it (sex groups trained, age:religion held out)."""
    out = _lora(tiny_llama_dir, tmp_path_factory.mktemp("ckpt") / "adapter")
    record = {"split": {"train_specs": ["sex"], "heldout_specs": [HELDOUT],
                        "train": [{"attribute": "sex", "group": "Male", "values": [["sex", "Male"]]},
                                  {"attribute": "sex", "group": "Female", "values": [["sex", "Female"]]}],
                        "heldout": [], "excluded": []}}
    (out / SPLIT_FILE).write_text(json.dumps(record))
    return out


def method(**params):
    return get_method_class("checkpoint")(**params)


def test_validation_happens_before_loading(tmp_path, adapter):
    with pytest.raises(ConfigError, match="--checkpoint PATH"):
        method()
    with pytest.raises(ModelError, match="does not exist"):
        method(checkpoint=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="unknown checkpoint parameter"):
        method(checkpoint=str(adapter), alpha="1")
    pickled = shutil.copytree(adapter, tmp_path / "pickled")
    from safetensors.torch import load_file

    torch.save(load_file(str(pickled / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match="--allow-pickle"):
        method(checkpoint=str(pickled))
    assert method(checkpoint=str(pickled), allow_pickle="true").model_overrides()["allow_pickle"] is True
    with pytest.raises(ConfigError, match="true or false"):
        method(checkpoint=str(adapter), compare_base="maybe")


def test_model_overrides_and_params(tmp_path, adapter, tiny_llama_dir):
    m = method(checkpoint=str(adapter))
    # the adapter's recorded base (a local dir) loads offline: it becomes the model
    assert m.model_overrides() == {"adapter": str(adapter.resolve()), "allow_pickle": False, "id": str(tiny_llama_dir)}
    p = m.params()
    assert p["fingerprint"] == checkpoint_fingerprint(adapter) and p["kind"] == "adapter"
    assert m.model_modifier() == f"adapter:{p['fingerprint'][:16]}"
    # a recorded base that is not available offline is never silently replaced by the default model:
    # without --model or --checkpoint-base it is an error; with one of them that one is the base
    moved = shutil.copytree(adapter, tmp_path / "moved")
    cfg = json.loads((moved / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "some-org/not-downloaded-model"
    (moved / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="trained on some-org/not-downloaded-model, which is not available here"):
        method(checkpoint=str(moved)).model_overrides()
    assert method(checkpoint=str(moved)).model_overrides(str(tiny_llama_dir))["id"] == str(tiny_llama_dir)
    assert method(checkpoint=str(moved), base="smollm2-135m").model_overrides()["id"] == "smollm2-135m"
    # a full model directory replaces --model
    full = method(checkpoint=str(tiny_llama_dir), compare_base="false")
    assert full.model_overrides() == {"id": str(tiny_llama_dir.resolve()), "allow_pickle": False}
    assert full.model_modifier() is None
    with pytest.raises(ConfigError, match="needs a LoRA adapter"):
        method(checkpoint=str(tiny_llama_dir), compare_base="true")


def test_spread_matches_hand_computation():
    got = spread([0.5, 0.25, 0.75, None])
    assert got["mean"] == pytest.approx(0.5)
    assert got["normalised_range"] == pytest.approx((0.75 - 0.25) / 0.75)
    assert got["cv"] == pytest.approx(np.std([0.5, 0.25, 0.75]) / 0.5)


def _run(args: list[str]) -> int:
    from cvaudit.audit.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_bad_checkpoints_exit_2(tmp_path, adapter, capsys):
    pytest.importorskip("cvaudit.audit.cli_run")
    common = ["run", "--method", "checkpoint", "--questions", "Q1", "--no-report", "--no-cache", "--quiet"]
    truncated = shutil.copytree(adapter, tmp_path / "truncated")
    data = (truncated / "adapter_model.safetensors").read_bytes()
    (truncated / "adapter_model.safetensors").write_bytes(data[:-64])
    no_config = shutil.copytree(adapter, tmp_path / "noconfig")
    (no_config / "adapter_config.json").unlink()
    pickled = shutil.copytree(adapter, tmp_path / "pickle")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    cases = {tmp_path / "missing": "does not exist", truncated: "truncated or corrupt",
             no_config: "neither adapter_config.json", pickled: "--allow-pickle"}
    for path, words in cases.items():
        capsys.readouterr()
        code = _run([*common, "--checkpoint", str(path), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2, err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def audited(tmp_path_factory, adapter, tiny_llama_dir):
    pytest.importorskip("cvaudit.audit.cli_run")
    out = tmp_path_factory.mktemp("audit")
    cache = out / "scores.sqlite"
    # on_overlap=keep: the report's per-group figures are checked against every item, training cells included
    args = ["run", "--method", "checkpoint", "--checkpoint", str(adapter), "--attributes", "sex",
            "--intersections", HELDOUT, "--questions", "Q1,Q46", "--n-boot", "20", "--no-report",
            "--method-param", "on_overlap=keep", "--cache", str(cache), "--quiet", "--out", str(out / "ckpt")]
    assert _run(args) == 0
    base = ["run", "--method", "persona", "--model", str(tiny_llama_dir), "--attributes", "sex",
            "--intersections", HELDOUT, "--questions", "Q1,Q46", "--n-boot", "20", "--no-report",
            "--cache", str(cache), "--quiet", "--out", str(out / "base")]
    assert _run(base) == 0
    load = lambda d: json.loads((out / d / "results.json").read_text())  # noqa: E731
    return load("ckpt"), load("base")


def test_audit_of_adapter_against_base_persona_run(audited, adapter):
    ckpt, base = audited
    assert ckpt["method"]["params"]["fingerprint"] == checkpoint_fingerprint(adapter)
    assert ckpt["model"]["adapter"]["fingerprint"] == checkpoint_fingerprint(adapter)
    base_items = {(i["attribute"], i["group"], i["question"]): i for i in base["items"]}
    diffs = []
    for item in ckpt["items"]:
        ref = base_items[(item["attribute"], item["group"], item["question"])]
        # the adapter-disabled scores equal a separate persona run on the base model: like for like
        np.testing.assert_allclose(item["extra"]["base_dist"], ref["model_dist"], atol=1e-5)
        diffs.append(np.abs(np.subtract(item["model_dist"], ref["model_dist"])).max())
    assert max(diffs) > 1e-3  # and the adapter changed the answers


def test_method_report_figures(audited):
    ckpt, _ = audited
    report = ckpt["method_report"]
    per_group = report["Checkpoint: groups by fine-tune split role"]
    roles = {(r["attribute"], r["group"]): r["role"] for r in per_group}
    assert roles[("sex", "Male")] == "train" and roles[("sex", "Female")] == "train"
    assert {r for (a, _), r in roles.items() if a == HELDOUT} == {"unseen"}  # not in the saved split's held-out list
    # per-group accuracy recomputed by hand from the items: argmax of the distribution among the modes
    for row in per_group:
        items = [i for i in ckpt["items"] if i["attribute"] == row["attribute"] and i["group"] == row["group"]]
        acc = np.mean([float(np.argmax(i["model_dist"]) in i["human_mode"]) for i in items])
        acc_base = np.mean([float(np.argmax(i["extra"]["base_dist"]) in i["human_mode"]) for i in items])
        assert row["accuracy"] == pytest.approx(acc) and row["accuracy_base"] == pytest.approx(acc_base)
        assert row["accuracy"] == pytest.approx(np.mean([i["metrics"]["accuracy"] for i in items]))
    summary = report["Checkpoint vs base: seed 003 findings"]
    train_acc = [r for r in per_group if r["role"] == "train"]
    row = next(r for r in summary if r["groups"] == "trained on" and r["figure"] == "accuracy mean")
    assert row["checkpoint"] == pytest.approx(np.mean([r["accuracy"] for r in train_acc]))
    assert row["change"] == pytest.approx(row["checkpoint"] - row["base"])
    nmae = [r["nmae"] for r in per_group]
    row = next(r for r in summary if r["groups"] == "all audited groups" and r["figure"] == "nmae normalised range")
    assert row["checkpoint"] == pytest.approx((max(nmae) - min(nmae)) / max(nmae))


@pytest.fixture(scope="module")
def other_base(tmp_path_factory, smollm2_dir) -> Path:
    """A second tiny Llama with the adapter's shapes but other weights: an explicit --model to load it on."""
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("other-base"), smollm2_dir, seed=7)


def test_explicit_model_beats_the_adapters_recorded_base(tmp_path, adapter, tiny_llama_dir, other_base):
    """--model given: the adapter goes on it; --model not given: on the adapter's recorded base."""
    from cvaudit.audit.models import ModelSpec, weights_fingerprint

    common = ["run", "--method", "checkpoint", "--checkpoint", str(adapter), "--attributes", "sex",
              "--questions", "Q1", "--n-boot", "5", "--no-report", "--quiet", "--cache", str(tmp_path / "s.sqlite"),
              "--method-param", "on_overlap=keep"]  # sex x Q1 are all training cells
    assert _run([*common, "--model", str(other_base), "--out", str(tmp_path / "explicit")]) == 0
    assert _run([*common, "--out", str(tmp_path / "recorded")]) == 0
    explicit = json.loads((tmp_path / "explicit" / "results.json").read_text())
    recorded = json.loads((tmp_path / "recorded" / "results.json").read_text())
    fp = lambda d: weights_fingerprint(Path(d))  # noqa: E731
    assert explicit["model"]["id"] == str(other_base) and explicit["method"]["params"]["base"] == str(other_base)
    assert explicit["model"]["fingerprint"].startswith(fp(other_base) + "+adapter:")
    assert recorded["model"]["id"] == str(tiny_llama_dir) and recorded["config"]["model"] is None
    assert recorded["model"]["fingerprint"].startswith(fp(tiny_llama_dir) + "+adapter:")
    assert fp(other_base) != fp(tiny_llama_dir)
    # the base distributions really come from the two different bases
    a = [i["extra"]["base_dist"] for i in explicit["items"]]
    b = [i["extra"]["base_dist"] for i in recorded["items"]]
    assert np.abs(np.subtract(a, b)).max() > 1e-3
    assert ModelSpec().id == "smollm2-135m"


def test_model_clashes_are_config_errors(adapter, tiny_llama_dir, other_base):
    m = method(checkpoint=str(adapter), base=str(tiny_llama_dir))
    with pytest.raises(ConfigError, match="disagree"):
        m.model_overrides(model=str(other_base))
    assert m.model_overrides(model=str(tiny_llama_dir))["id"] == str(tiny_llama_dir)
    full = method(checkpoint=str(tiny_llama_dir), compare_base="false")
    with pytest.raises(ConfigError, match="replaces --model"):
        full.model_overrides(model=str(other_base))
    assert full.model_overrides(model=str(tiny_llama_dir))["id"] == str(tiny_llama_dir.resolve())


def test_allow_pickle_is_one_run_option_for_model_and_checkpoint(tmp_path, tiny_llama_dir, adapter, capsys):
    """A pickle-only --model (any method) and a pickle-only --checkpoint: refused (exit 2) unless --allow-pickle."""
    from cvaudit.audit.cli_run import _METHOD_OPTIONS
    from safetensors.torch import load_file

    assert "allow_pickle" not in _METHOD_OPTIONS  # no method declares its own --allow-pickle any more
    pickled = shutil.copytree(tiny_llama_dir, tmp_path / "pickle_model")
    torch.save(load_file(str(pickled / "model.safetensors")), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    pickled_adapter = shutil.copytree(adapter, tmp_path / "pickle_adapter")
    torch.save(load_file(str(pickled_adapter / "adapter_model.safetensors")), pickled_adapter / "adapter_model.bin")
    (pickled_adapter / "adapter_model.safetensors").unlink()
    common = ["run", "--attributes", "sex", "--questions", "Q1", "--n-boot", "5", "--no-report", "--no-cache",
              "--quiet"]
    runs = {"model": [*common, "--method", "none", "--model", str(pickled)],
            "adapter": [*common, "--method", "checkpoint", "--checkpoint", str(pickled_adapter),
                        "--method-param", "on_overlap=keep", "--model", str(tiny_llama_dir)]}  # fmt: skip
    for name, args in runs.items():
        capsys.readouterr()
        assert _run([*args, "--out", str(tmp_path / f"{name}-refused")]) == 2
        err = capsys.readouterr().err
        assert "--allow-pickle" in err and len(err.strip().splitlines()) == 1, err
        assert _run([*args, "--allow-pickle", "--out", str(tmp_path / name)]) == 0
        r = json.loads((tmp_path / name / "results.json").read_text())
        assert r["complete"] and r["config"]["allow_pickle"] is True and r["items"]
    r = json.loads((tmp_path / "adapter" / "results.json").read_text())
    assert r["method"]["params"]["allow_pickle"] is True
    # the pickle model scores exactly like its safetensors original
    assert _run([*runs["model"][:-2], "--model", str(tiny_llama_dir), "--out", str(tmp_path / "st")]) == 0
    st = json.loads((tmp_path / "st" / "results.json").read_text())
    np.testing.assert_allclose([i["model_dist"] for i in st["items"]],
                               [i["model_dist"] for i in json.loads((tmp_path / "model" / "results.json")
                                                                     .read_text())["items"]], atol=1e-6)  # fmt: skip


# ----------------------------------------------------------------- training cells (on_overlap)
TRAINED_Q = "Q1"  # the trained adapter's only training question; Q46 is not one


def _group(attribute: str, label: str):
    from cvaudit.audit.types import Group

    values = tuple(zip(attribute.split(":"), label.split(", ")))
    return Group(attribute=attribute, label=label, values=values, n=100, n_eff=100.0)


def _question(qid: str):
    from cvaudit.audit.questions import select_questions

    return select_questions(qid)[0]


@pytest.fixture(scope="module")
def trained_adapter(tmp_path_factory, adapter) -> Path:
    """The adapter with a split record as `cvaudit finetune` writes it: country, question ids, train groups."""
    out = shutil.copytree(adapter, tmp_path_factory.mktemp("trained") / "adapter")
    record = json.loads((out / SPLIT_FILE).read_text())
    record["country"] = {"alpha2": "SG", "alpha3": "SGP", "numeric": 702, "name": "Singapore"}
    record["questions"] = {"set": TRAINED_Q, "ids": [TRAINED_Q]}
    (out / SPLIT_FILE).write_text(json.dumps(record))
    return out


def _cells(adapter_dir: Path, **params):
    from cvaudit.audit.countries import resolve_country

    groups = [_group("sex", "Male"), _group("sex", "Female"), _group(HELDOUT, "25-34, Buddhist")]
    questions = [_question("Q1"), _question("Q46")]
    return method(checkpoint=str(adapter_dir), **params).training_cells(groups, questions, resolve_country("SG"))


def test_training_cells_are_train_groups_x_trained_questions(trained_adapter):
    held = _cells(trained_adapter)
    assert held.cells == {("sex=Male", "Q1"), ("sex=Female", "Q1")}  # not Q46, not the held-out combination
    assert "2 of the audited (group, question) cells are training examples" in held.notes[0]
    assert "2 groups it was trained on x 1 of its training questions" in held.notes[0]
    assert "on_overlap=keep" in held.advice and "age:religion" in held.advice
    kept = _cells(trained_adapter, on_overlap="keep")
    assert not kept.cells and "kept" in kept.notes[0] and "in-sample" in kept.notes[0]
    with pytest.raises(ConfigError, match="2 of the audited .* on_overlap=exclude"):
        _cells(trained_adapter, on_overlap="error")
    with pytest.raises(ConfigError, match="on_overlap must be one of exclude, keep, error"):
        method(checkpoint=str(trained_adapter), on_overlap="sometimes")
    assert method(checkpoint=str(trained_adapter)).params()["on_overlap"] == "exclude"


def test_no_split_record_or_another_country_leaves_nothing_out(tmp_path, trained_adapter, adapter):
    bare = shutil.copytree(trained_adapter, tmp_path / "bare")
    (bare / SPLIT_FILE).unlink()
    held = _cells(bare)
    assert not held.cells and "cannot tell which (group, question) cells it was trained on" in held.notes[0]
    elsewhere = shutil.copytree(trained_adapter, tmp_path / "elsewhere")
    record = json.loads((elsewhere / SPLIT_FILE).read_text())
    record["country"] = {"alpha2": "DE"}
    (elsewhere / SPLIT_FILE).write_text(json.dumps(record))
    held = _cells(elsewhere)
    assert not held.cells and "trained on DE respondents" in held.notes[0]
    # the hand-made record lists no questions: both audited questions count as trained on
    held = _cells(adapter)
    assert len(held.cells) == 4 and any("lists no training questions" in n for n in held.notes)


@pytest.fixture(scope="module")
def excluding(tmp_path_factory, trained_adapter, audited):
    """A default (on_overlap=exclude) run of the trained adapter on the same cells as ``audited``'s base run."""
    out = tmp_path_factory.mktemp("excluding")
    args = ["run", "--method", "checkpoint", "--checkpoint", str(trained_adapter), "--attributes", "sex",
            "--intersections", HELDOUT, "--questions", "Q1,Q46", "--n-boot", "20", "--no-report",
            "--no-cache", "--quiet", "--out", str(out)]
    assert _run(args) == 0
    return json.loads((out / "results.json").read_text())


def test_exclude_leaves_the_training_cells_out_of_every_figure(excluding, audited):
    _, base = audited
    cells = {(i["attribute"], i["group"], i["question"]) for i in excluding["items"]}
    trained = {("sex", g, TRAINED_Q) for g in ("Male", "Female")}
    assert cells == {(i["attribute"], i["group"], i["question"]) for i in base["items"]} - trained
    listed = {(c["attribute"], c["group"], c["question"]) for c in excluding["excluded_cells"]["cells"]}
    assert listed == trained and "training examples" in excluding["excluded_cells"]["reason"]
    assert any("left out of every figure" in n for n in excluding["metric_notes"])
    assert excluding["method"]["params"]["on_overlap"] == "exclude"
    # sex's figures are over Q46 only
    male = next(g for g in excluding["groups"] if g["group"] == "Male")
    item = next(i for i in excluding["items"] if i["group"] == "Male")
    assert male["metrics"]["accuracy"]["value"] == pytest.approx(item["metrics"]["accuracy"])
    # method_report still scores the training cells, by role
    roles = {r["group"]: r["role"] for r in excluding["method_report"]["Checkpoint: groups by fine-tune split role"]}
    assert roles["Male"] == "train" and roles["Female"] == "train"
    assert "excluded_cells" not in audited[0] and "excluded_cells" not in base  # keep and persona: absent
    assert any("kept (on_overlap=keep)" in n for n in audited[0]["metric_notes"])


def test_compare_pairs_on_the_cells_both_runs_audited(excluding, audited):
    from cvaudit.reports import compare_results

    _, base = audited
    res = compare_results(base, excluding, n_boot=20)
    assert any("2 cell(s) in one run only" in n and "excluded by OTHER" in n for n in res["notes"])
    shared = {(i["attribute"], i["group"], i["question"]) for i in excluding["items"]}
    kept = [i for i in base["items"] if (i["attribute"], i["group"], i["question"]) in shared]
    for entry in res["groups"]:
        if entry["metric"] != "accuracy":
            continue
        want = np.mean([i["metrics"]["accuracy"] for i in kept if i["group"] == entry["group"]])
        assert entry["base"]["value"] == pytest.approx(want)
    # the same as comparing BASE trimmed by hand to the shared cells
    trimmed = {**copy.deepcopy(base), "items": kept, "excluded_cells": excluding["excluded_cells"]}
    for g in trimmed["groups"]:  # its group figures as a run over those cells writes them: the items' means
        for metric, fig in g["metrics"].items():
            vals = [i["metrics"][metric] for i in kept if (i["attribute"], i["group"]) == (g["attribute"], g["group"])
                    and i["metrics"][metric] is not None]  # fmt: skip
            fig["value"] = float(np.mean(vals)) if vals else None
    by_hand = compare_results(trimmed, excluding, n_boot=20)
    for kind in ("overall", "groups", "disparity"):
        assert [e["change"] for e in res[kind]] == [e["change"] for e in by_hand[kind]]


def test_all_training_cells_fail_before_the_model_loads(tmp_path, trained_adapter, monkeypatch, capsys):
    import cvaudit.audit.models as models

    def no_load(*_a, **_k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(models, "load_model", no_load)
    out = tmp_path / "out"
    capsys.readouterr()
    code = _run(["run", "--method", "checkpoint", "--checkpoint", str(trained_adapter), "--attributes", "sex",
                 "--questions", TRAINED_Q, "--no-report", "--no-cache", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "every audited cell is a training example" in err and "--intersections age:religion" in err
    assert len(err.strip().splitlines()) == 1 and not (out / "results.json").exists()
