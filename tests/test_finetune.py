"""LoRA SFT on subgroup modal answers: examples, answer-token loss, training effect, saved adapter and split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from cvaudit.audit.finetune import (
    FinetuneConfig,
    answer_loss,
    build_examples,
    collate,
    encode_examples,
    modal_targets,
    train_lora,
)
from cvaudit.audit.splits import group_key, seed003_groups
from cvaudit.audit.types import Country, DataSource, Question

SG = Country("SG", "SGP", 702, "Singapore")
QUESTIONS = [
    Question("Q1", "How important is family in your life?", ("Very important", "Rather important",
             "Not very important", "Not at all important"), ((1,), (2,), (3,), (4,)), True, "Values",
             positions=(0.0, 1.0, 2.0, 3.0)),
    Question("Q2", "Do you trust your neighbours?", ("Yes", "No", "Not sure"), ((1,), (2,), (3,)), False, "Trust"),
]


def _survey(n: int = 500, seed: int = 5):
    from cvaudit.audit.survey import SurveyData

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "Q260": rng.choice([1.0, 2.0], n),
        "Q262": rng.choice([20.0, 30.0, 50.0], n, p=[0.5, 0.3, 0.2]),
        "Q290": rng.choice([702004.0, 702006.0], n, p=[0.7, 0.3]),
        "Q289": rng.choice([0.0, 7.0], n, p=[0.5, 0.5]),
        "Q1": rng.choice([1.0, 2.0, 3.0, 4.0, np.nan], n, p=[0.35, 0.3, 0.2, 0.1, 0.05]),
        "Q2": rng.choice([1.0, 2.0, 3.0], n, p=[0.3, 0.4, 0.3]),
    })
    weights = rng.uniform(0.2, 3.0, n)  # unequal weights: the mode is a weighted one
    src = DataSource("test", "0", True, "csv", SG, n, "W_WEIGHT")
    return SurveyData(frame=frame, weights=weights, source=src, country=SG)


def test_modal_targets_skip_ties_and_suppressed():
    truth = pd.DataFrame({
        "attribute": ["sex"] * 3, "group": ["Male"] * 3, "question": ["Q1", "Q2", "Q3"],
        "human_dist": [[0.1, 0.6, 0.3], [0.5, 0.5], None], "human_mode": [[1], [0, 1], None],
        "suppressed": [False, False, True],
    })
    rows, counts = modal_targets(truth)
    assert rows["question"].tolist() == ["Q1"] and rows["target"].tolist() == [1]
    assert counts == {"cells": 3, "suppressed": 1, "ties": 1}


def test_examples_are_train_groups_with_weighted_modes():
    survey = _survey()
    split, _ = seed003_groups(survey, min_size=30)
    ex = build_examples(survey, split.train, QUESTIONS, SG, min_size=30, both_orders=True)
    held = {g.id for g in split.heldout}
    assert ex.groups and not held & set(ex.groups)
    by_id = {g.id: g for g in split.train}
    expected = {}
    for g in split.train:
        rows = survey.frame.iloc[list(g.index)]
        w = survey.weights[list(g.index)]
        for q in QUESTIONS:
            ok = rows[q.id].notna().to_numpy()
            if ok.sum() < 30:
                continue
            share = pd.Series(w[ok]).groupby(rows[q.id].to_numpy()[ok]).sum()
            expected[(g.id, q.id)] = int(share.idxmax()) - 1  # codes 1..K are options 0..K-1
    got = {}
    for spec, target, gid in zip(ex.specs, ex.targets, ex.groups):
        got.setdefault((gid, spec.question.id), set()).add((target, spec.reverse))
        assert spec.system and by_id[gid]  # a persona prompt, as in the audit
    assert set(got) == set(expected)
    for key, pairs in got.items():
        assert pairs == {(expected[key], False), (expected[key], True)}  # both option orders, same answer
    assert ex.counts["examples"] == len(ex) == 2 * len(expected)


def test_target_token_is_the_modal_option_marker(smollm2_dir):
    from cvaudit.audit.methods.base import PromptSpec
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    specs = [PromptSpec(QUESTIONS[0], "You are a person.", rev) for rev in (False, True)]
    (ids_f, t_f), (ids_r, t_r) = encode_examples(tok, specs, [0, 0])
    # option 0 is listed first in the canonical order and last (marker "4") in the reversed one
    assert tok.decode([t_f]).strip() == "1" and tok.decode([t_r]).strip() == "4"
    assert "Very important" in tok.decode(list(ids_f)) and "Answer with the number" in tok.decode(list(ids_r))


def test_answer_loss_is_cross_entropy_of_the_answer_token_only(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    examples = [((5, 60, 700, 81), 16), ((9, 33, 21, 40, 41, 42, 43), 17), ((7, 8), 18)]  # unequal lengths
    batch = collate(examples, pad_id=0, device="cpu")
    with torch.no_grad():
        got = answer_loss(model, batch).item()
        manual = [-torch.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)[t].item() for ids, t in examples]
    assert got == pytest.approx(float(np.mean(manual)), rel=1e-5, abs=1e-5)


def test_training_a_few_steps_raises_the_target_probability(tiny_llama_dir, smollm2_dir):
    from cvaudit.audit.methods.base import PromptSpec
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    specs = [PromptSpec(q, f"You are person {i}.", rev) for i in range(3) for q in QUESTIONS for rev in (False, True)]
    examples = encode_examples(tok, specs, [1] * len(specs))
    batch = collate(examples, tok.pad_token_id, "cpu")
    with torch.no_grad():
        before = answer_loss(model, batch).item()
    cfg = FinetuneConfig(out="unused", lr=2e-2, rank=4, batch_size=12, max_steps=6, progress=False)
    peft_model, stats = train_lora(model, tok, examples, cfg)
    with torch.no_grad():
        after = answer_loss(peft_model, batch).item()
        with peft_model.disable_adapter():
            assert answer_loss(peft_model, batch).item() == pytest.approx(before, rel=1e-5)
    assert stats["steps"] == 6 and len(stats["losses"]) == 6
    assert after < 0.5 * before
    # --layers 1: only the last decoder layer gets LoRA weights
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    cfg = FinetuneConfig(out="unused", lr=1e-3, rank=4, batch_size=4, max_steps=1, progress=False, layers=1)
    peft_model, _ = train_lora(model, tok, examples, cfg)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)


def test_finetune_cli_writes_adapter_and_split(tmp_path, tiny_llama_dir):
    from click.testing import CliRunner
    from cvaudit.audit.adapters import apply_adapter, checkpoint_fingerprint
    from cvaudit.audit.cli import cli
    from cvaudit.audit.survey import demo_survey

    out = tmp_path / "adapter"
    res = CliRunner().invoke(cli, ["finetune", "--model", str(tiny_llama_dir), "--questions", "Q1,Q46",
                                   "--max-steps", "2", "--batch-size", "4", "--lr", "0.01", "--quiet",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert {"adapter_config.json", "adapter_model.safetensors", "cvaudit_finetune.json"} <= {p.name for p in out.iterdir()}
    # the suggested audit names the adapter's own country, questions and minimum size
    hint = next(line for line in res.output.splitlines() if "cvaudit run --method checkpoint" in line)
    assert f"--checkpoint {out} --country SG --questions Q1,Q46 --min-size 30" in hint and "--wvs-file" not in hint
    assert "on_overlap=exclude" in res.output
    record = json.loads((out / "cvaudit_finetune.json").read_text())
    split, _ = seed003_groups(demo_survey("SG"), min_size=30)
    assert {(r["attribute"], r["group"]) for r in record["split"]["train"]} == {(g.attribute, g.label) for g in split.train}
    assert {(r["attribute"], r["group"]) for r in record["split"]["heldout"]} == {(g.attribute, g.label) for g in split.heldout}
    assert not {group_key(r) for r in record["split"]["train"]} & {group_key(r) for r in record["split"]["heldout"]}
    assert record["questions"]["ids"] == ["Q1", "Q46"] and record["training"]["steps"] == 2
    assert record["hyperparameters"]["lr"] == 0.01 and record["data"]["synthetic"] is True
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_llama_dir)
    # the adapter loads on its base and changes it
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        want = base(ids).logits
        model, info = apply_adapter(base, out)
        assert (model(ids).logits - want).abs().max().item() > 1e-4
    assert info["fingerprint"] == checkpoint_fingerprint(out)
    # a second run replaces the adapter; an unrelated non-empty --out is refused with exit code 2
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["finetune", "--model", str(tiny_llama_dir), "--max-steps", "1", "--out", str(other)])
    assert exc.value.code == 2 and (other / "keep.txt").exists()


def test_config_validation():
    from cvaudit.audit.errors import ConfigError

    for bad in ({"lr": 0}, {"rank": 0}, {"max_steps": 0}, {"layers": -1}, {"target_modules": ()}):
        with pytest.raises(ConfigError):
            FinetuneConfig(out="x", **bad)


def test_a_diverged_run_publishes_no_adapter(tmp_path, tiny_llama_dir):
    """A NaN loss (lr 0.9 in float16 overflows) stops training with exit 2; no NaN adapter is written."""
    from cvaudit.audit.cli import main

    out = tmp_path / "adapter"
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "--model", str(tiny_llama_dir), "--questions", "Q1,Q46", "--max-steps", "8",
              "--batch-size", "2", "--lr", "0.9", "--dtype", "float16", "--quiet", "--out", str(out)])  # fmt: skip
    assert exc.value.code == 2
    assert not (out / "adapter_model.safetensors").exists()


def test_suggested_audit_keeps_the_training_survey_and_questions():
    """The printed audit line reuses the fine-tune's survey file (shell-quoted), questions and minimum size."""
    from types import SimpleNamespace

    from cvaudit.audit.cli_finetune import audit_command

    cfg = SimpleNamespace(country="DE", wvs_file="/data/WVS wave 7.csv", questions="Q1,Q2", min_size=50,
                          dtype="auto", device="auto", allow_pickle=False, revision=None)  # fmt: skip
    line = audit_command(cfg, "/tmp/adapter")
    assert line.startswith("cvaudit run --method checkpoint --checkpoint /tmp/adapter --country DE ")
    assert "--wvs-file '/data/WVS wave 7.csv' --questions Q1,Q2 --min-size 50 --intersections " in line
    assert "--dtype" not in line and "--device" not in line and "--allow-pickle" not in line
    trusted = audit_command(SimpleNamespace(**{**vars(cfg), "dtype": "bfloat16", "device": "cuda:1",
                                               "allow_pickle": True, "revision": "v1.2"}), "/tmp/adapter")  # fmt: skip
    assert "--revision v1.2 --dtype bfloat16 --device cuda:1 --allow-pickle --out <dir>" in trusted
