"""DISCA persona panels against tiny hand-made respondent frames."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.errors import ConfigError
from cvaudit.audit.methods.base import get_method_class
from cvaudit.audit.types import Country, Group
from cvaudit.personas.panel import build_panel, dimensions, quartile, respondent_ages, value_profile
from cvaudit.personas.persona import persona_text

SG = Country("SG", "SGP", 702, "Singapore")


def survey(frame: pd.DataFrame, weights=None) -> SimpleNamespace:
    w = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
    return SimpleNamespace(frame=frame.reset_index(drop=True), weights=w, country=SG)


def group(attribute: str, label: str, rows, values=None) -> Group:
    rows = tuple(int(i) for i in rows)
    vals = values or tuple(zip(attribute.split(":"), label.split(", ")))
    return Group(attribute, label, vals, len(rows), float(len(rows)), rows)


def by_key(profile):
    return {d.key: d for d in profile}


def test_quartile_cut_points():
    assert [quartile(x) for x in (1.0, 0.75, 0.7499, 0.5, 0.4999, 0.25, 0.2499, 0.0)] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_weighted_means_normalised_and_direction_corrected():
    frame = pd.DataFrame({
        # religiosity Q6 (1 = very important, so reversed): weighted mean (3*1 + 1 + 4 + 4) / 6 = 2
        # -> (2 - 1) / 3 = 1/3 -> reversed 2/3 -> quartile 1 "moderately religious"
        "Q6": [1, 1, 4, 4],
        # moral acceptability, not reversed: Q177 mean (3*10 + 10 + 1 + 1) / 6 = 7 -> 6/9; Q178 all 1 -> 0
        # -> dimension (6/9 + 0) / 2 = 1/3 -> quartile 2 "fairly strict"
        "Q177": [10, 10, 1, 1],
        "Q178": [1, 1, 1, 1],
        # national pride Q254: code 5 ("I am not ...") is outside 1..4 and ignored: mean of (1, 1, 2) weighted
        # (3*1 + 1 + 2) / 5 = 1.2 -> 0.2 / 3 -> reversed 0.9333 -> quartile 0
        "Q254": [1, 1, 2, 5],
        # materialism: codes 1, 2 materialist (1), 3, 4 post-materialist (0): (3*1 + 0 + 1 + 0) / 6 = 2/3
        "Q152": [1, 3, 2, 4],
        # trust: all missing -> dimension left out
        "Q57": [np.nan] * 4,
    })  # fmt: skip
    prof = by_key(value_profile(frame, np.array([3.0, 1.0, 1.0, 1.0]), range(4)))
    assert set(prof) == {"religiosity", "moral_acceptability", "national_pride", "materialism"}
    assert prof["religiosity"].score == pytest.approx(2 / 3)
    assert prof["religiosity"].descriptor == "moderately religious"
    assert prof["moral_acceptability"].score == pytest.approx(1 / 3)
    assert prof["moral_acceptability"].descriptor == "fairly strict"
    assert prof["national_pride"].score == pytest.approx(1 - 0.2 / 3)
    assert prof["national_pride"].quartile == 0
    assert prof["materialism"].score == pytest.approx(2 / 3)
    assert prof["materialism"].descriptor == "leaning materialist"


def test_every_dimension_has_four_descriptors_and_sentences():
    dims = dimensions()["dimensions"]
    assert [d["key"] for d in dims] == [
        "religiosity", "child_rearing", "moral_acceptability", "trust", "political_participation",
        "national_pride", "happiness", "gender_equality", "materialism", "tolerance",
    ]  # fmt: skip
    for d in dims:
        assert len(d["descriptors"]) == 4 and len(d["sentences"]) == 4


def test_ages_from_birth_year_then_reported_age():
    frame = pd.DataFrame({"Q261": [1990, np.nan, 1950], "A_YEAR": [2020, 2020, 2020], "Q262": [99, 40, 99]})
    assert respondent_ages(frame).tolist() == [30, 40, 70]
    assert respondent_ages(pd.DataFrame({"Q262": [20, np.nan]}))[0] == 20


def _age_frame(young: int, middle: int, older: int) -> pd.DataFrame:
    ages = [25] * young + [45] * middle + [70] * older
    n = len(ages)
    # the young are deeply religious (Q6 = 1), the older secular (Q6 = 4), the middle in between (2)
    q6 = [1] * young + [2] * middle + [4] * older
    return pd.DataFrame({"Q262": ages, "Q260": [1, 2] * (n // 2) + [1] * (n % 2), "Q6": q6})


def test_age_cohorts_grounded_in_their_own_members():
    frame = _age_frame(40, 40, 40)
    s = survey(frame)
    target = group("all", "All respondents", range(120), (("all", "All respondents"),))
    panel = build_panel(s, target, SG)
    assert panel.split == "age" and panel.notes == ()
    assert [m.label for m in panel.members] == ["under 36", "36-55", "over 55", "All respondents"]
    assert [m.n for m in panel.members] == [40, 40, 40, 120]
    descr = [by_key(m.profile)["religiosity"].descriptor for m in panel.members]
    # scores: 1, 2/3, 0, and the whole target (1 + 2/3 + 0) / 3 = 5/9
    assert descr == ["deeply religious", "moderately religious", "highly secular", "moderately religious"]
    assert panel.members[0].text.startswith("You are a person from Singapore aged under 36. ")
    assert "you are deeply religious." in panel.members[0].text
    assert "highly secular" in panel.members[2].text and " aged over 55." in panel.members[2].text
    # by default the whole target is the paper's value-grounded all-ages member, as DiscaMethod's default
    assert panel.members[-1].text.startswith("You are a person from Singapore. Your worldview is shaped")
    # whole="persona": the persona method's exact text (score-cache reuse)
    assert build_panel(s, target, SG, whole="persona").members[-1].text == persona_text(target, SG)
    # a dimension without columns gets no sentence
    assert "trust" not in panel.members[0].text and "neighbours" not in panel.members[0].text


def test_small_cohort_is_merged_into_its_smaller_neighbour():
    frame = _age_frame(50, 35, 10)  # the older cohort (10) is too small; its only neighbour is 36-55
    s = survey(frame)
    target = group("sex", "Female", range(len(frame)), (("sex", "Female"),))
    panel = build_panel(s, target, SG, min_size=30)
    assert [m.label for m in panel.members] == ["under 36", "36 or over", "Female"]
    assert [m.n for m in panel.members] == [50, 45, 95]
    assert panel.notes == ("age cohort 'over 55' (n=10 < 30) merged with '36-55' into '36 or over'",)
    assert panel.members[1].text.startswith("You are a woman from Singapore aged 36 or over. ")
    # merged cohort's religiosity: (35 * 2 + 10 * 4) / 45 = 22/9 -> (22/9 - 1) / 3 = 13/27 -> reversed 14/27
    assert by_key(panel.members[1].profile)["religiosity"].score == pytest.approx(14 / 27)


def test_panel_falls_back_to_the_whole_target():
    frame = _age_frame(20, 20, 20)  # merging ends with one cell covering everyone
    s = survey(frame)
    target = group("sex", "Male", range(60), (("sex", "Male"),))
    panel = build_panel(s, target, SG, min_size=30)
    assert panel.split is None
    assert [m.kind for m in panel.members] == ["whole"]
    assert any("whole target only" in n for n in panel.notes)


def test_age_target_is_split_by_sex_instead():
    frame = _age_frame(0, 80, 0)
    s = survey(frame)
    target = group("age", "35-44", range(80))
    panel = build_panel(s, target, SG)
    assert panel.split == "sex"
    assert panel.notes[0] == "target is split by age already; panel split by sex instead"
    assert [m.label for m in panel.members] == ["Male", "Female", "35-44"]
    assert panel.members[0].text.startswith("You are a man from Singapore aged 35-44. ")
    assert panel.members[1].text.startswith("You are a woman from Singapore aged 35-44. ")


def test_nominal_split_drops_small_cells_and_keeps_the_largest():
    n = 100
    frame = pd.DataFrame({"Q262": [30] * n, "Q289": [0] * 50 + [5] * 35 + [7] * 10 + [1] * 5, "Q6": [2] * n})
    s = survey(frame)
    target = group("all", "All respondents", range(n), (("all", "All respondents"),))
    panel = build_panel(s, target, SG, split="religion", size=4, min_size=30)
    assert panel.split == "religion"
    assert [m.label for m in panel.members] == ["No religion", "Muslim", "All respondents"]
    assert any("Buddhist" in note and "dropped" in note for note in panel.notes)
    assert "You are Muslim." in panel.members[1].text
    three = build_panel(s, target, SG, split="religion", size=3, min_size=5)
    assert [m.label for m in three.members] == ["No religion", "Muslim", "All respondents"]
    assert any("left out" in note for note in three.notes)


def test_panel_size_one_and_bad_settings():
    frame = _age_frame(40, 40, 40)
    s = survey(frame)
    target = group("sex", "Male", range(120), (("sex", "Male"),))
    assert [m.kind for m in build_panel(s, target, SG, size=1).members] == ["whole"]
    with pytest.raises(ConfigError):
        build_panel(s, target, SG, size=0)
    with pytest.raises(ConfigError):
        build_panel(s, target, SG, whole="bogus")


def test_whole_member_with_values_text():
    frame = _age_frame(40, 40, 40)
    target = group("sex", "Female", range(120), (("sex", "Female"),))
    panel = build_panel(survey(frame), target, SG, whole="wvs")
    text = panel.members[-1].text
    assert text.startswith("You are a woman from Singapore. Your worldview is shaped")
    assert text != persona_text(target, SG)


def test_panel_size_two_is_refused_not_silently_whole_only():
    """panel_size=2 could hold one split cell only, which the two-cell rule always discarded."""
    frame = _age_frame(40, 40, 40)
    target = group("sex", "Male", range(120), (("sex", "Male"),))
    with pytest.raises(ConfigError, match="panel_size=2 leaves one split cell"):
        build_panel(survey(frame), target, SG, size=2)
    with pytest.raises(ConfigError, match="panel_size=2 leaves one split cell"):
        get_method_class("disca")(panel_size=2)
    assert get_method_class("disca")(panel_size="3").params()["panel_size"] == 3


def test_merge_notes_never_name_an_empty_cohort():
    """Merging every cohort into one gives the cell a real label ('all ages'), not ''."""
    panel = build_panel(survey(_age_frame(20, 20, 20)), group("sex", "Male", range(60), (("sex", "Male"),)), SG,
                        min_size=30)  # fmt: skip
    assert panel.split is None and len(panel.notes) == 3
    assert not any("''" in n for n in panel.notes)
    assert "into 'all ages'" in panel.notes[1]


def test_whole_default_matches_the_disca_method():
    import inspect

    lib = inspect.signature(build_panel).parameters["whole"].default
    method = inspect.signature(get_method_class("disca")).parameters["whole_persona"].default
    assert lib == method == "wvs"
