"""The shipped question bank: coverage, recodings, labels and named sets."""

from __future__ import annotations

import json

import pytest
from cvaudit.audit.errors import ConfigError
from cvaudit.audit.questions import load_bank, question_sets, select_questions
from shared_ref import WVS7

REF = WVS7


def test_size_and_basic_shape():
    bank = load_bank()
    assert len(bank) >= 200
    for q in bank.values():
        assert q.text.endswith("?") and q.text[0].isupper(), q.id
        assert not q.text.lower().startswith("on a scale"), q.id
        assert len(q.options) == len(q.codes) >= 2, q.id
        flat = [c for cs in q.codes for c in cs]
        assert len(flat) == len(set(flat)) and min(flat) >= 0, q.id
        if q.ordinal:
            assert q.positions == tuple(float(i) for i in range(q.k)), q.id
        else:
            assert q.positions is None, q.id


@pytest.mark.skipif(not REF.exists(), reason="reference files not available")
def test_every_metadata_value_item_is_in_the_bank():
    meta = json.loads((REF / "question_metadata.json").read_text())
    values = [k for k, v in meta.items() if v["use_case"] == "value"]
    assert len(values) == 239
    assert set(values) <= set(load_bank())


def test_wording_examples():
    bank = load_bank()
    assert bank["Q1"].text == "How important is family in your life?"
    assert bank["Q1"].options == ("Very important", "Rather important", "Not very important", "Not at all important")
    assert bank["Q1"].short == "Important in life: Family"


def test_ten_point_scale_labels_every_point():
    q = load_bank()["Q177"]
    assert q.options[0] == "1 - Never justifiable"
    assert q.options[1:9] == tuple(str(i) for i in range(2, 10))
    assert q.options[9] == "10 - Always justifiable"


def test_answer_adjustments():
    bank = load_bank()
    # Q119: 0 'Hard to say' becomes the middle (3), 3 -> 4, 4 -> 5
    assert bank["Q119"].codes == ((1,), (2,), (0,), (3,), (4,))
    assert bank["Q119"].options[2] == "Hard to say"
    # Q56: 2 'worse off' and 3 'about the same' swap places
    assert bank["Q56"].codes == ((1,), (3,), (2,))
    # Q241-Q249: spontaneous 0 merges into 1
    for i in range(241, 250):
        assert bank[f"Q{i}"].codes[0] == (0, 1)
    # dropped codes: Q111 3, Q221/Q222 4, Q254 5
    for qid, dropped in (("Q111", 3), ("Q221", 4), ("Q222", 4), ("Q254", 5)):
        assert dropped not in {c for cs in bank[qid].codes for c in cs}, qid


@pytest.mark.skipif(not REF.exists(), reason="reference files not available")
def test_labels_follow_the_questionnaire_where_the_codebook_errs():
    """Q121's code 1 is "Very bad" on the questionnaire's scale; the codebook's "Rather bad" would put a
    wrong word in every prompt of this core question."""
    text = " ".join((REF / "master_questionnaire.txt").read_text(encoding="utf-8").split())
    q = load_bank()["Q121"]
    assert q.options[0] == "Very bad" and q.options[-1] == "Very good" and q.codes[0] == (1,)
    assert "Very good Quite good Neither good, nor bad Quite bad Very bad 5 4 3 2 1" in text
    assert json.loads((REF / "codebook.json").read_text())["Q121"]["choices"]["1"] == "Rather bad"  # the erratum


def test_nominal_items():
    bank = load_bank()
    for qid in ("Q42", "Q152", "Q153", "Q154", "Q155", "Q156", "Q157"):
        assert bank[qid].ordinal is False and bank[qid].positions is None


def test_sets():
    sets = question_sets()
    bank = load_bank()
    assert sets["all"] == list(bank)
    core = select_questions("core")
    assert 25 <= len(core) <= 40
    assert all(q.k <= 10 for q in core)
    assert len({q.category for q in core}) >= 8
    ethical = select_questions("ethical-values")
    assert ethical and all(q.category == "Ethical Values" for q in ethical)
    cats = {q.category for q in bank.values()}
    assert len(sets) == 2 + len(cats)


def test_select_by_ids_and_errors():
    assert [q.id for q in select_questions("q1, Q57,Q1")] == ["Q1", "Q57"]
    assert select_questions(None) == select_questions("core")
    with pytest.raises(ConfigError, match="core"):
        select_questions("nonsense")
    with pytest.raises(ConfigError, match="Q999"):
        select_questions("Q1,Q999")


def test_sets_and_ids_combine():
    core = [q.id for q in select_questions("core")]
    both = [q.id for q in select_questions("core, Q2,q1")]
    assert both[: len(core)] == core and both[len(core):] == ["Q2"]  # Q1 is in core already: once
    eth = [q.id for q in select_questions("ethical-values")]
    assert [q.id for q in select_questions("Q1,ethical-values")] == ["Q1", *eth]
    with pytest.raises(ConfigError, match="sets and ids combine: core,Q2"):
        select_questions("core,Q999")
