"""Persona texts (seed 003 wording) and the `none` / `persona` methods against a recording fake scorer."""

from __future__ import annotations

import zlib
from contextlib import nullcontext

import numpy as np
import pytest
from cvaudit.audit.errors import ConfigError
from cvaudit.audit.methods.base import MethodContext, get_method_class
from cvaudit.audit.types import Country, Group, Question
from cvaudit.personas.persona import persona_text

SG = Country("SG", "SGP", 702, "Singapore")


def group(attribute: str, *values: tuple[str, str]) -> Group:
    label = ", ".join(v for _, v in values) or "All respondents"
    return Group(attribute=attribute, label=label, values=tuple(values), n=100, n_eff=90.0)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((("sex", "Female"), ("age", "25-34")), "You are a 25-34 year old woman living in Singapore."),
        (
            (("age", "25-34"), ("ethnicity", "Malay"), ("sex", "Female")),
            "You are a 25-34 year old Malay woman living in Singapore.",
        ),
        ((("sex", "Male"),), "You are a man living in Singapore."),
        ((("age", "18-24"),), "You are an 18-24 year old person living in Singapore."),
        ((("age", "16-24 years"),), "You are a 16-24 year old person living in Singapore."),
        ((("age", "65+"),), "You are a person aged 65 or over living in Singapore."),
        ((("age", "65 and over"), ("sex", "Female")), "You are a woman aged 65 or over living in Singapore."),
        ((("ethnicity", "Indian"),), "You are an Indian person living in Singapore."),
        ((("ethnicity", "Eurasian"),), "You are a Eurasian person living in Singapore."),
        ((("ethnicity", "SG: Chinese"),), "You are a Chinese person living in Singapore."),
        (
            (("ethnicity", "Others"),),
            "You are a person living in Singapore. You belong to an ethnic group other than the main ones in Singapore.",
        ),
        ((("religion", "Buddhist"),), "You are a person living in Singapore. You are Buddhist."),
        ((("religion", "None"),), "You are a person living in Singapore. You do not belong to any religion."),
        ((("religion", "Taoist"),), "You are a person living in Singapore. Your religion is Taoist."),
        (
            (("education", "Higher education"),),
            "You are a person living in Singapore. You have a higher (university-level) education.",
        ),
        (
            (("income", "Low income"),),
            "You are a person living in Singapore. Your household income is low compared with others in Singapore.",
        ),
        ((("marital", "Widowed"),), "You are a person living in Singapore. You are widowed."),
        ((("settlement", "Urban"),), "You are a person living in Singapore. You live in an urban area."),
        (
            (("employment", "Full time (30 hours a week or more)"),),
            "You are a person living in Singapore. You work full time.",
        ),
        (
            (("sex", "Male"), ("religion", "Muslim"), ("marital", "Married")),
            "You are a man living in Singapore. You are Muslim. You are married.",
        ),
    ],
)
def test_persona_text_wording(values, expected):
    attribute = ":".join(a for a, _ in values)
    assert persona_text(group(attribute, *values), SG) == expected


def test_whole_country_group_is_a_person_living_there():
    assert persona_text(group("all"), SG) == "You are a person living in Singapore."
    assert persona_text(group("all", ("all", "All respondents")), SG) == "You are a person living in Singapore."
    jp = Country("JP", "JPN", 392, "Japan")
    assert persona_text(group("sex", ("sex", "Female")), jp) == "You are a woman living in Japan."


def test_persona_uses_only_the_groups_attributes():
    text = persona_text(group("religion", ("religion", "Hindu")), SG)
    for word in ("woman", "man ", "year old", "income", "married", "Malay", "Chinese"):
        assert word not in text


def test_custom_template(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# comment\nImagine you are {identity} from {country}.{details}\n")
    g = group("sex:religion", ("sex", "Female"), ("religion", "Hindu"))
    assert persona_text(g, SG, str(path)) == "Imagine you are a woman from Singapore. You are Hindu."
    bad = tmp_path / "bad.txt"
    bad.write_text("Answer as someone from {country}.")
    with pytest.raises(ConfigError, match="identity"):
        persona_text(g, SG, str(bad))
    with pytest.raises(ConfigError, match="not found"):
        persona_text(g, SG, str(tmp_path / "missing.txt"))


# ---------------------------------------------------------------- methods with a fake scorer


class RecordingScorer:
    """Returns a distinct, known distribution per (system, question) and records every call."""

    model = tokenizer = None

    def __init__(self):
        self.calls: list[list] = []

    def _dist(self, spec):
        key = f"{spec.system}|{spec.question.id}"
        rng = np.random.default_rng(zlib.crc32(key.encode()))
        d = rng.random(spec.question.k) + 0.1
        return d / d.sum()

    def distributions(self, specs):
        self.calls.append(list(specs))
        return [self._dist(s) for s in specs]

    def logprobs(self, specs):
        return [np.log(self._dist(s)) for s in specs]

    def modified(self, tag):
        return nullcontext()


QUESTIONS = [
    Question(id="Q1", text="How important is family?", options=("Very", "Rather", "Not very", "Not at all"),
             codes=((1,), (2,), (3,), (4,)), ordinal=True, category="Social", positions=(0, 1, 2, 3)),
    Question(id="Q8", text="Independence?", options=("Mentioned", "Not mentioned"), codes=((1,), (2,)),
             ordinal=False, category="Social"),
]  # fmt: skip
GROUPS = [group("sex", ("sex", "Female")), group("sex", ("sex", "Male")), group("age", ("age", "25-34"))]


def test_persona_method_prompts_each_group_with_its_persona():
    scorer = RecordingScorer()
    ctx = MethodContext(scorer=scorer, groups=GROUPS, questions=QUESTIONS, country=SG)
    preds = get_method_class("persona")().predict(ctx)
    assert len(scorer.calls) == 1  # one engine call: it can batch and reuse prefixes
    systems = {(s.system, s.question.id) for s in scorer.calls[0]}
    assert systems == {(persona_text(g, SG), q.id) for g in GROUPS for q in QUESTIONS}
    for g in GROUPS:
        for q in QUESTIONS:
            spec = next(s for s in scorer.calls[0] if s.system == persona_text(g, SG) and s.question.id == q.id)
            np.testing.assert_allclose(preds[(g.id, q.id)].dist, scorer._dist(spec))
    table = ctx.extra["method_report"]["Persona texts"]
    assert [r["persona"] for r in table] == [persona_text(g, SG) for g in GROUPS]


def test_persona_method_rejects_unknown_parameter():
    with pytest.raises(ConfigError, match="unknown persona parameter"):
        get_method_class("persona")(colour="red")


def test_none_method_scores_each_question_once_and_shares_it():
    scorer = RecordingScorer()
    ctx = MethodContext(scorer=scorer, groups=GROUPS, questions=QUESTIONS, country=SG)
    preds = get_method_class("none")().predict(ctx)
    assert [(s.system, s.question.id) for s in scorer.calls[0]] == [(None, "Q1"), (None, "Q8")]
    for q in QUESTIONS:
        first = preds[(GROUPS[0].id, q.id)].dist
        assert all(preds[(g.id, q.id)].dist == first for g in GROUPS)
        assert abs(sum(first) - 1) < 1e-12
    with pytest.raises(ConfigError, match="takes no parameters"):
        get_method_class("none")(alpha=1)


@pytest.mark.parametrize(
    ("text", "message"),
    [("You are {identity} in {country}, aged {age}.", "field {age} is unknown"),
     ("You are {identity} in {country} {", "malformed"),
     ("You are {identity}.", "must contain {country}")],
)  # fmt: skip
def test_bad_template_is_a_config_error(tmp_path, text, message):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        persona_text(group("sex", ("sex", "Male")), SG, str(path))


def test_template_that_is_not_utf8_is_a_config_error(tmp_path):
    from cvaudit.audit.errors import ConfigError
    from cvaudit.personas.persona import load_template

    bad = tmp_path / "t.txt"
    bad.write_bytes(b"\xff\xfe {identity} {country}")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_template(str(bad))
