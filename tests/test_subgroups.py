"""Subgroup construction on small hand-made frames and on the synthetic demo sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.countries import resolve_country
from cvaudit.audit.errors import ConfigError
from cvaudit.audit.subgroups import ATTRIBUTES, build_groups
from cvaudit.audit.survey import SurveyData
from cvaudit.audit.types import DataSource


def survey(frame: dict, weights=None, country="SG") -> SurveyData:
    df = pd.DataFrame(frame, dtype=float)
    w = np.ones(len(df)) if weights is None else np.asarray(weights, dtype=float)
    c = resolve_country(country)
    src = DataSource("mem", "0", False, "csv", c, len(df), "W_WEIGHT")
    return SurveyData(df, w, src, c)


def labels(gs, attribute):
    return [(g.label, g.n) for g in gs.groups if g.attribute == attribute]


def test_labels_and_sizes_for_every_attribute():
    s = survey({
        "Q260": [1, 2, 2, np.nan],
        "Q262": [16, 24, 25, 70],
        "Q290": [702004, 702006, 702003, 702004],
        "Q289": [7, 5, 6, 0],
        "Q275": [2, 3, 6, 8],
        "Q288": [3, 4, 8, 10],
        "Q273": [1, 6, 6, 5],
        "H_URBRURAL": [1, 1, 2, 1],
        "Q279": [1, 6, 4, 1],
    })
    gs = build_groups(s, min_size=1)
    assert labels(gs, "sex") == [("Male", 1), ("Female", 2)]
    assert labels(gs, "age") == [("16-24", 2), ("25-34", 1), ("65+", 1)]
    assert labels(gs, "ethnicity") == [("Indian", 1), ("Chinese", 2), ("Malay", 1)]
    assert labels(gs, "religion") == [("No religion", 1), ("Muslim", 1), ("Hindu", 1), ("Buddhist", 1)]
    assert labels(gs, "education") == [("Lower education", 1), ("Middle education", 1), ("Higher education", 2)]
    assert labels(gs, "income") == [("Low income", 1), ("Medium income", 1), ("High income", 2)]
    assert labels(gs, "marital") == [("Married", 1), ("Widowed", 1), ("Single", 2)]
    assert labels(gs, "settlement") == [("Urban", 3), ("Rural", 1)]
    assert labels(gs, "employment") == [("Full time", 2), ("Retired", 1), ("Student", 1)]
    female = next(g for g in gs.groups if g.label == "Female")
    assert female.index == (1, 2) and female.value_dict() == {"sex": "Female"}


def test_recoded_columns_win_over_raw():
    s = survey({"Q262": [30, 30, 30], "X003R": [1, np.nan, 6], "Q275": [0, 0, 0], "Q275R": [3, np.nan, 2],
                "Q288": [1, 1, 1], "Q288R": [3, 2, np.nan]})
    gs = build_groups(s, ["age", "education", "income"], min_size=1)
    assert labels(gs, "age") == [("16-24", 1), ("25-34", 1), ("65+", 1)]
    assert labels(gs, "education") == [("Lower education", 1), ("Middle education", 1), ("Higher education", 1)]
    assert labels(gs, "income") == [("Low income", 1), ("Medium income", 1), ("High income", 1)]


def test_min_size_suppresses_and_lists():
    s = survey({"Q260": [1] * 5 + [2] * 2})
    gs = build_groups(s, ["sex"], min_size=3)
    assert [(g.label, g.n) for g in gs.groups] == [("Male", 5)]
    assert [(g.label, g.n) for g in gs.suppressed] == [("Female", 2)]


def test_absent_or_empty_attribute_reported_not_crash():
    s = survey({"Q260": [1, 2], "Q289": [np.nan, np.nan]})
    gs = build_groups(s, min_size=1)
    assert {"religion", "ethnicity", "age"} <= set(gs.unavailable)
    assert "Q289" in gs.unavailable["religion"]
    assert labels(gs, "sex") == [("Male", 1), ("Female", 1)]


def test_intersections_and_none():
    s = survey({"Q260": [1, 2, 2, 2], "X003R": [2, 2, 2, 6]}, weights=[1, 1, 3, 1])
    gs = build_groups(s, ["sex"], intersections=["sex:age"], min_size=1)
    inter = [(g.label, g.n, g.values) for g in gs.groups if g.attribute == "sex:age"]
    assert inter == [("Male, 25-34", 1, (("sex", "Male"), ("age", "25-34"))),
                     ("Female, 25-34", 2, (("sex", "Female"), ("age", "25-34"))),
                     ("Female, 65+", 1, (("sex", "Female"), ("age", "65+")))]
    fem = next(g for g in gs.groups if g.label == "Female, 25-34")
    assert fem.n_eff == pytest.approx((1 + 3) ** 2 / (1 + 9))  # Kish by hand
    small = build_groups(s, ["sex"], intersections=["sex:age"], min_size=3)
    assert not any(g.attribute == "sex:age" for g in small.groups)
    assert small.unavailable == {"sex:age": "every cell has fewer than 3 respondents"}
    one = build_groups(s, ["none"], min_size=1)
    assert [(g.attribute, g.label, g.n) for g in one.groups] == [("all", "All respondents", 4)]
    assert one.groups[0].n_eff == pytest.approx(36 / 12)


@pytest.mark.parametrize("attrs,inters", [(["height"], []), (["sex"], ["sex:height"]), (["sex"], ["sex"]),
                                          (["sex"], ["sex:sex"])])
def test_bad_attributes(attrs, inters):
    with pytest.raises(ConfigError):
        build_groups(survey({"Q260": [1]}), attrs, inters)


def test_demo_sample_has_enough_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("CVAUDIT_CACHE", str(tmp_path))
    from cvaudit.audit.synthetic import demo_survey

    gs = build_groups(demo_survey("SG"))
    assert len(gs.groups) >= 20
    assert len({g.attribute for g in gs.groups}) >= 6
    assert set(gs.attributes) == set(ATTRIBUTES)
    assert all(g.n >= 30 for g in gs.groups) and all(g.n < 30 for g in gs.suppressed)
    assert gs.frame().columns.tolist() == ["attribute", "group", "n", "n_eff"]


def test_none_with_intersections_gives_only_the_intersections():
    from cvaudit.audit.subgroups import build_groups
    from cvaudit.audit.survey import demo_survey

    survey = demo_survey("SG")
    gs = build_groups(survey, ["none"], ["age:religion"], min_size=30)
    assert gs.groups, "expected age x religion groups of >= 30 respondents"
    assert {g.attribute for g in gs.groups} == {"age:religion"}
    alone = build_groups(survey, ["none"], (), min_size=30)
    assert [g.label for g in alone.groups] == ["All respondents"]
