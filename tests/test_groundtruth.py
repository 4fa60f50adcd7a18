"""Ground truth against hand-computed distributions, ties, Kish n_eff, recodes and suppression."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.countries import resolve_country
from cvaudit.audit.groundtruth import ground_truth
from cvaudit.audit.questions import load_bank, select_questions
from cvaudit.audit.subgroups import build_groups
from cvaudit.audit.survey import SurveyData
from cvaudit.audit.types import DataSource, Group, Question


def survey(frame: dict, weights) -> SurveyData:
    c = resolve_country("SG")
    df = pd.DataFrame(frame, dtype=float)
    return SurveyData(df, np.asarray(weights, float), DataSource("mem", "0", False, "csv", c, len(df), "W_WEIGHT"), c)


def group(label, idx):
    return Group("sex", label, (("sex", label),), len(idx), 0.0, tuple(idx))


Q1 = load_bank()["Q1"]  # 4 options, codes 1..4


def test_weighted_distribution_by_hand():
    # respondents 0..5; NaN = missing/negative code
    s = survey({"Q1": [1, 1, 2, np.nan, 4, 2]}, weights=[1.0, 2.0, 1.0, 5.0, 2.0, 3.0])
    gt = ground_truth(s, [group("A", [0, 1, 2, 3]), group("B", [2, 4, 5])], [Q1], min_size=1)
    a, b = gt.iloc[0], gt.iloc[1]
    # A: valid answers 0,1,2 with weights 1,2,1 -> option 0: 3/4, option 1: 1/4
    assert a.human_dist == pytest.approx([0.75, 0.25, 0.0, 0.0])
    assert a.human_mode == [0] and a.n == 3 and a.missing == 1
    assert a.n_eff == pytest.approx(4**2 / (1 + 4 + 1))
    # B: codes 2,4,2 with weights 1,2,3 -> option1: 4/6, option3: 2/6
    assert b.human_dist == pytest.approx([0.0, 4 / 6, 0.0, 2 / 6])
    assert b.n == 3 and b.missing == 0 and b.n_eff == pytest.approx(36 / 14)
    assert list(gt.columns) == ["attribute", "group", "question", "human_dist", "human_mode", "n", "n_eff",
                                "missing", "suppressed"]


def test_ties_are_kept():
    s = survey({"Q1": [1, 2, 3, 3]}, weights=[2.0, 2.0, 1.0, 1.0])
    gt = ground_truth(s, [group("A", [0, 1, 2, 3])], [Q1], min_size=1)
    assert gt.iloc[0].human_mode == [0, 1, 2]
    assert gt.iloc[0].human_dist == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])


def test_recodes_and_dropped_codes():
    bank = load_bank()
    # Q119: raw 0 ('hard to say') is option 2; Q254: raw 5 is dropped; Q241 raw 0 merges into option 0
    s = survey({"Q119": [0, 0, 4, 1], "Q254": [1, 5, 5, 2], "Q241": [0, 1, 10, 10]}, weights=[1, 1, 1, 1])
    gt = ground_truth(s, [group("A", [0, 1, 2, 3])], [bank["Q119"], bank["Q254"], bank["Q241"]], min_size=1)
    q119, q254, q241 = gt.iloc[0], gt.iloc[1], gt.iloc[2]
    assert q119.human_dist == pytest.approx([0.25, 0, 0.5, 0, 0.25]) and q119.human_mode == [2]
    assert q254.human_dist == pytest.approx([0.5, 0.5, 0, 0]) and q254.n == 2 and q254.missing == 2
    assert q241.human_dist[0] == pytest.approx(0.5) and q241.human_dist[9] == pytest.approx(0.5)


def test_suppression_and_missing_question():
    s = survey({"Q1": [1, 2, np.nan, np.nan]}, weights=[1, 1, 1, 1])
    q164 = load_bank()["Q164"]  # not in the frame: every cell missing
    gt = ground_truth(s, [group("A", [0, 1, 2, 3])], [Q1, q164], min_size=3)
    assert gt.iloc[0].suppressed and gt.iloc[0].human_dist is None and gt.iloc[0].human_mode is None
    assert gt.iloc[0].n == 2 and gt.iloc[0].missing == 2
    assert gt.iloc[1].suppressed and gt.iloc[1].n == 0 and gt.iloc[1].missing == 4


def test_nominal_question_distribution():
    q = Question("QX", "?", ("a", "b", "c"), ((3,), (1,), (2,)), False, "c")
    s = survey({"QX": [1, 1, 3]}, weights=[1, 1, 2])
    gt = ground_truth(s, [group("A", [0, 1, 2])], [q], min_size=1)
    assert gt.iloc[0].human_dist == pytest.approx([0.5, 0.5, 0.0]) and gt.iloc[0].human_mode == [0, 1]


def test_matches_pandas_groupby_on_demo(tmp_path, monkeypatch):
    """Independent check: weighted value_counts per group with pandas, and the speed target."""
    monkeypatch.setenv("CVAUDIT_CACHE", str(tmp_path))
    from cvaudit.audit.synthetic import demo_survey

    s = demo_survey("SG")
    gs = build_groups(s, intersections=["sex:age", "age:religion", "ethnicity:religion", "sex:religion"])
    questions = select_questions("all")
    assert len(gs.groups) >= 90
    t0 = time.perf_counter()
    gt = ground_truth(s, gs, questions)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, elapsed  # ~100 groups x 255 questions; about 0.5 s on one core
    assert len(gt) == len(gs.groups) * len(questions)
    bank = load_bank()
    for g in gs.groups[::17]:
        for qid in ("Q164", "Q119", "Q241"):
            q = bank[qid]
            sub = s.frame.iloc[list(g.index)]
            w = pd.Series(s.weights[list(g.index)], index=sub.index)
            code_to_opt = {c: i for i, cs in enumerate(q.codes) for c in cs}
            opt = sub[qid].map(code_to_opt)
            ok = opt.notna()
            expected = (w[ok].groupby(opt[ok]).sum() / w[ok].sum()).reindex(range(q.k), fill_value=0.0)
            row = gt[(gt.group == g.label) & (gt.attribute == g.attribute) & (gt.question == qid)].iloc[0]
            assert row.human_dist == pytest.approx(expected.tolist(), abs=1e-12)
            assert row.n == int(ok.sum())
