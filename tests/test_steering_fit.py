"""Steering vectors: calibration split, contrastive fitting against plain forward passes, files."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from cvaudit.audit.errors import ConfigError  # noqa: E402
from cvaudit.audit.steering import (  # noqa: E402
    AXES,
    AxisItem,
    SteeringVectors,
    axis_item_score,
    calibration_split,
    description_path,
    fit_axis_vectors,
    fit_subgroup_vectors,
    load_vectors,
    render_ids,
    save_vectors,
)
from cvaudit.audit.types import Group, Question  # noqa: E402

QUESTIONS = [
    Question(id="Q57", text="Can most people be trusted?", options=("Most people can be trusted", "Need to be very careful"),
             codes=((1,), (2,)), ordinal=True, category="Trust", positions=(0.0, 1.0)),
    Question(id="Q46", text="How happy are you?", options=("Very happy", "Rather happy", "Not very happy", "Not at all happy"),
             codes=((1,), (2,), (3,), (4,)), ordinal=True, category="Happiness", positions=(0.0, 1.0, 2.0, 3.0)),
    Question(id="Q45", text="Would greater respect for authority be good or bad?", options=("Good", "Don't mind", "Bad"),
             codes=((1,), (2,), (3,)), ordinal=True, category="Norms", positions=(0.0, 1.0, 2.0)),
]
GROUPS = [
    Group(attribute="sex", label="Female", values=(("sex", "Female"),), n=60, n_eff=55.0),
    Group(attribute="sex", label="Male", values=(("sex", "Male"),), n=50, n_eff=47.0),
]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), AutoTokenizer.from_pretrained(tiny_llama_dir)


# ---------------------------------------------------------------------------- split
IDS = [f"Q{i}" for i in range(1, 201)]


def test_split_is_deterministic_disjoint_and_sized():
    cal, ev = calibration_split(IDS, 0.3, seed=0)
    assert len(cal) == 60 and len(ev) == 140
    assert set(cal).isdisjoint(ev) and set(cal) | set(ev) == set(IDS)
    assert cal == [q for q in IDS if q in set(cal)]  # bank order kept
    assert calibration_split(IDS, 0.3, seed=0) == (cal, ev)
    assert calibration_split(list(reversed(IDS)), 0.3, seed=0)[0] == list(reversed(cal))  # order-independent sides
    assert calibration_split(IDS, 0.3, seed=1)[0] != cal


def test_split_respects_holdout():
    holdout = IDS[:50]
    cal, ev = calibration_split(IDS, 0.2, seed=0, holdout=holdout)
    assert set(cal).isdisjoint(holdout) and set(holdout) <= set(ev)
    assert len(cal) == 30  # 20% of the 150 eligible ids


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ConfigError, match="fraction"):
        calibration_split(IDS, fraction)


# ------------------------------------------------------------------------ fitting
def _last_hidden(model, ids, layer):
    """Output of decoder layer ``layer`` at the last token, from a plain transformers forward pass."""
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    return hs[layer + 1][0, -1].double()


def test_subgroup_vectors_equal_mean_persona_minus_neutral(tiny):
    model, tok = tiny
    persona = {"sex=Female": "You are a woman living in Singapore.", "sex=Male": "You are a man living in Singapore."}
    vecs = fit_subgroup_vectors(model, tok, QUESTIONS, GROUPS, lambda g: persona[g.id], layers=[0], batch_size=2)
    assert set(vecs) == {"sex=Female", "sex=Male"}
    neutral = torch.stack([_last_hidden(model, render_ids(tok, q, None), 0) for q in QUESTIONS]).mean(0)
    for gid, text in persona.items():
        acts = torch.stack([_last_hidden(model, render_ids(tok, q, text), 0) for q in QUESTIONS]).mean(0)
        assert torch.allclose(vecs[gid][0].double(), acts - neutral, atol=1e-4)
        assert vecs[gid][0].norm() > 0


def test_axis_vectors_equal_mean_positive_minus_negative_pole(tiny):
    model, tok = tiny
    vecs = fit_axis_vectors(model, tok, QUESTIONS[:2], layers=[0], batch_size=3)
    assert set(vecs) == set(AXES)
    axis = AXES["traditional_secular"]
    pos = torch.stack([_last_hidden(model, render_ids(tok, q, axis.positive_persona), 0) for q in QUESTIONS[:2]]).mean(0)
    neg = torch.stack([_last_hidden(model, render_ids(tok, q, axis.negative_persona), 0) for q in QUESTIONS[:2]]).mean(0)
    assert torch.allclose(vecs["traditional_secular"][0].double(), pos - neg, atol=1e-4)


def test_missing_persona_is_a_config_error(tiny):
    model, tok = tiny
    with pytest.raises(ConfigError, match="persona"):
        fit_subgroup_vectors(model, tok, QUESTIONS[:1], GROUPS[:1], lambda g: None, layers=[0])


# --------------------------------------------------------------------- axis scores
def test_axis_item_score_by_hand():
    q = QUESTIONS[1]  # codes 1..4
    # expected code = 0.5*1 + 0.5*3 = 2 -> (2-1)/3 = 1/3; sign -1 (1 = very happy is the positive pole) -> 2/3
    assert axis_item_score(q, [0.5, 0.0, 0.5, 0.0], AxisItem("Q46", -1)) == pytest.approx(2 / 3)
    assert axis_item_score(q, [0.0, 0.0, 0.0, 1.0], AxisItem("Q46", 1)) == pytest.approx(1.0)
    # codes of options merged by the bank count by their mean
    merged = Question(id="Qx", text="t", options=("a", "b"), codes=((1, 2), (4,)), ordinal=True, category="c")
    assert axis_item_score(merged, [1.0, 0.0], AxisItem("Qx")) == pytest.approx(0.0)
    assert axis_item_score(merged, [0.5, 0.5], AxisItem("Qx")) == pytest.approx(0.5)
    # nominal item: share of the positive pole's answers (codes 2 and 4)
    nominal = Question(id="Q154", text="t", options=("order", "say", "prices", "speech"),
                       codes=((1,), (2,), (3,), (4,)), ordinal=False, category="c")
    assert axis_item_score(nominal, [0.1, 0.2, 0.3, 0.4], AxisItem("Q154", positive_codes=(2, 4))) == pytest.approx(0.6)


def test_axes_only_name_items_with_a_direction():
    for axis in AXES.values():
        assert axis.items and all(item.sign in (-1, 1) for item in axis.items)
    assert set(AXES["traditional_secular"].item_ids).isdisjoint(AXES["survival_self_expression"].item_ids)


def test_axis_items_exist_in_the_bank_with_the_documented_poles():
    bank = pytest.importorskip("cvaudit.audit.questions").load_bank()
    for axis in AXES.values():
        for item in axis.items:
            q = bank[item.id]
            if item.positive_codes is None:
                assert q.ordinal and len(q.options) >= 2
    # spot-check directions against the option wording
    assert bank["Q164"].options[-1].endswith("Very important")  # high code = traditional, sign -1
    assert bank["Q184"].options[-1].endswith("Always justifiable")  # high code = secular, sign +1
    assert bank["Q57"].options[0] == "Most people can be trusted"  # low code = self-expression, sign -1


# -------------------------------------------------------------------------- files
def _sv(fp="fp-1"):
    g = torch.Generator().manual_seed(0)
    vectors = {"sex=Female": {3: torch.randn(8, generator=g), 5: torch.randn(8, generator=g)},
               "sex=Male": {3: torch.randn(8, generator=g), 5: torch.randn(8, generator=g)}}
    meta = {"model": {"id": "tiny", "fingerprint": fp}, "split": {"calibration": ["Q1", "Q9"], "seed": 0}}
    return SteeringVectors(kind="subgroup", layers=(3, 5), vectors=vectors, meta=meta)


def test_save_load_round_trip(tmp_path):
    sv = _sv()
    path, desc = save_vectors(sv, tmp_path / "v.safetensors")
    assert desc == description_path(path) and desc.name == "v.json"
    meta = json.loads(desc.read_text())
    assert meta["kind"] == "subgroup" and meta["layers"] == [3, 5] and meta["names"] == ["sex=Female", "sex=Male"]
    assert meta["norms"]["sex=Male"]["5"] == pytest.approx(float(sv.vectors["sex=Male"][5].double().norm()))
    assert meta["tool"]["name"] == "cvaudit" and meta["split"]["calibration"] == ["Q1", "Q9"]
    back = load_vectors(path, fingerprint="fp-1")
    assert back.kind == "subgroup" and back.layers == (3, 5) and back.calibration == ["Q1", "Q9"]
    for name in sv.names:
        for layer in (3, 5):
            assert torch.equal(back.vectors[name][layer], sv.vectors[name][layer])
    assert set(back.additions("sex=Male", [5])) == {5}
    with pytest.raises(ConfigError, match="layers"):
        back.additions("sex=Male", [4])
    with pytest.raises(ConfigError, match="no steering vector"):
        back.additions("sex=Other")


def test_fingerprint_mismatch_needs_force(tmp_path):
    path, _ = save_vectors(_sv("fp-1"), tmp_path / "v.safetensors")
    with pytest.raises(ConfigError, match="fingerprint"):
        load_vectors(path, fingerprint="fp-2")
    assert load_vectors(path, fingerprint="fp-2", force=True).kind == "subgroup"


def test_tampered_or_missing_files_are_config_errors(tmp_path):
    path, desc = save_vectors(_sv(), tmp_path / "v.safetensors")
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ConfigError, match="sha256"):
        load_vectors(path)
    desc.unlink()
    with pytest.raises(ConfigError, match="missing"):
        load_vectors(path)
    with pytest.raises(ConfigError, match="not found"):
        load_vectors(tmp_path / "none.safetensors")
    with pytest.raises(ConfigError, match="safetensors"):
        save_vectors(_sv(), tmp_path / "v.pt")


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: [1, 2], "a JSON object"),
    (lambda m: {**m, "layers": [99]}, "does not describe"),
    (lambda m: {**m, "names": [*m["names"], "sex=Other"]}, "does not describe"),
    (lambda m: {k: v for k, v in m.items() if k != "names"}, "does not describe"),
    (lambda m: {**m, "kind": "axes"}, "not a value axis"),
    (lambda m: {**m, "kind": "magic"}, "unknown kind"),
    (lambda m: {**m, "names": m["names"][:1]}, "does not name"),
])  # fmt: skip
def test_an_edited_description_is_a_config_error(tmp_path, edit, fragment):
    """The .json beside the vectors is read as carefully as the vectors: no KeyError from a hand edit."""
    path, desc = save_vectors(_sv(), tmp_path / "v.safetensors")
    new = edit(json.loads(desc.read_text()))
    desc.write_text(new if isinstance(new, str) else json.dumps(new))
    with pytest.raises(ConfigError, match=fragment):
        load_vectors(path)


@pytest.mark.slow
def test_steer_fit_cli_on_the_embedded_model(tmp_path, smollm2_dir):
    """`cvaudit steer fit` end to end on SmolLM2 (2 calibration questions, 1 layer: ~10 forward passes)."""
    from click.testing import CliRunner
    from cvaudit.audit.cli import cli

    out = tmp_path / "sg-sex.safetensors"
    res = CliRunner().invoke(cli, ["steer", "fit", "--country", "SG", "--attributes", "sex", "--layers", "15",
                                   "--max-calibration", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["kind"] == "subgroup" and meta["layers"] == [15] and sorted(meta["names"]) == ["sex=Female", "sex=Male"]
    core = pytest.importorskip("cvaudit.audit.questions").question_sets()["core"]
    assert set(meta["split"]["calibration"]).isdisjoint(core) and len(meta["split"]["fitted_on"]) == 2
    assert meta["model"]["fingerprint"] and all(n["15"] > 0 for n in meta["norms"].values())
    sv = load_vectors(out, fingerprint=meta["model"]["fingerprint"])
    with pytest.raises(ConfigError, match="fingerprint"):
        load_vectors(out, fingerprint="sha256:another-model")
    assert sv.vectors["sex=Female"][15].shape == (576,)


def test_steer_fit_bad_out_is_exit_code_2(capsys):
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["steer", "fit", "--out", "vectors.pt"])
    assert exc.value.code == 2 and ".safetensors" in capsys.readouterr().err


def test_steer_fit_axes_refuses_subgroup_options(tmp_path, capsys):
    """--kind axes fits pole personas: survey-group options would be silently ignored, so they are refused."""
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["steer", "fit", "--kind", "axes", "--attributes", "sex", "--out", str(tmp_path / "v.safetensors")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--attributes applies to --kind subgroup only" in err
    assert not (tmp_path / "v.safetensors").exists()
