"""The seed 003 group split: train and held-out groups never overlap (same group = same attribute=value pairs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.errors import ConfigError
from cvaudit.audit.splits import (
    HELDOUT_INTERSECTIONS,
    SEED003_HELDOUT,
    SEED003_TRAIN,
    group_key,
    role_of,
    seed003_groups,
    split_groups,
)
from cvaudit.audit.types import Country, DataSource, Group
from hypothesis import given, settings
from hypothesis import strategies as st

ATTRS = ("sex", "age", "ethnicity", "religion", "education")
LABELS = ("a", "b", "c")


def make_group(attrs: tuple[str, ...], labels: tuple[str, ...], n: int) -> Group:
    return Group(":".join(attrs), ", ".join(labels), tuple(zip(attrs, labels)), n, float(n))


group_st = st.builds(
    lambda attrs, labels, n: make_group(tuple(attrs), tuple(labels[: len(attrs)]), n),
    st.lists(st.sampled_from(ATTRS), min_size=1, max_size=3, unique=True),
    st.lists(st.sampled_from(LABELS), min_size=3, max_size=3),
    st.integers(0, 100),
)
spec_st = st.lists(st.sampled_from(ATTRS), min_size=1, max_size=3, unique=True).map(
    lambda a: ":".join(a)
)


@settings(max_examples=100, deadline=None)
@given(st.lists(group_st, max_size=40), st.integers(1, 60))
def test_seed003_split_never_overlaps(groups, min_size):
    split = split_groups(groups, min_size=min_size)
    train = {group_key(g) for g in split.train}
    held = {group_key(g) for g in split.heldout}
    assert not train & held
    train_combos = {frozenset(s.split(":")) for s in SEED003_TRAIN}
    for g in split.heldout:
        combo = frozenset(g.attribute.split(":"))
        # held-out groups are intersections whose combination is never trained on
        assert len(combo) >= 2 and combo not in train_combos
        assert combo in {frozenset(s.split(":")) for s in HELDOUT_INTERSECTIONS}
        assert g.n >= min_size
    for g in split.train:
        assert frozenset(g.attribute.split(":")) in train_combos and g.n >= min_size
    # every distinct group lands in exactly one bucket
    distinct = {group_key(g) for g in groups}
    buckets = [group_key(g) for g in (*split.train, *split.heldout, *split.excluded)]
    assert len(buckets) == len(set(buckets)) == len(distinct)


@settings(max_examples=100, deadline=None)
@given(st.lists(group_st, max_size=30), st.lists(spec_st, min_size=1, max_size=4),
       st.lists(spec_st, min_size=1, max_size=4))
def test_any_valid_specs_never_overlap(groups, train_specs, held_specs):
    overlap = {frozenset(s.split(":")) for s in train_specs} & {frozenset(s.split(":")) for s in held_specs}
    if overlap:
        with pytest.raises(ConfigError, match="both trained on and held out"):
            split_groups(groups, train_specs, held_specs)
        return
    split = split_groups(groups, train_specs, held_specs)
    assert not {group_key(g) for g in split.train} & {group_key(g) for g in split.heldout}


def test_spelling_order_of_an_intersection_does_not_matter():
    g = make_group(("religion", "sex"), ("Buddhist", "Female"), 50)
    assert split_groups([g]).train == (g,)  # "religion:sex" is seed 003's sex:religion
    with pytest.raises(ConfigError):
        split_groups([g], ["sex:religion"], ["religion:sex"])


def test_held_out_are_unseen_combinations_of_seen_values():
    """Values are shared with train groups; only the combination is new."""
    young = make_group(("age",), ("25-34",), 80)
    buddhist = make_group(("religion",), ("Buddhist",), 90)
    combo = make_group(("age", "religion"), ("25-34", "Buddhist"), 40)
    split = split_groups([young, buddhist, combo])
    assert split.train == (young, buddhist) and split.heldout == (combo,)
    record = split.to_dict()
    assert [role_of(g, record) for g in (young, buddhist, combo)] == ["train", "train", "heldout"]
    assert role_of(make_group(("education",), ("a",), 50), record) == "unseen"
    # rows read back from JSON (values lists) identify the same groups
    assert role_of({"attribute": "age:religion", "group": "25-34, Buddhist"}, record) == "heldout"


def _survey(n: int = 600, seed: int = 3):
    from cvaudit.audit.survey import SurveyData

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "Q260": rng.choice([1.0, 2.0], n),
        "Q262": rng.choice([20.0, 30.0, 40.0, 70.0], n, p=[0.4, 0.3, 0.2, 0.1]),
        "Q290": rng.choice([702004.0, 702006.0, 702003.0, np.nan], n, p=[0.6, 0.2, 0.15, 0.05]),
        "Q289": rng.choice([0.0, 7.0, 5.0, 8.0], n, p=[0.3, 0.4, 0.2, 0.1]),
    })
    country = Country("SG", "SGP", 702, "Singapore")
    src = DataSource("test", "0", True, "csv", country, n, None)
    return SurveyData(frame=frame, weights=np.ones(n), source=src, country=country), frame


def test_seed003_groups_match_pandas_counts():
    survey, frame = _survey()
    split, _ = seed003_groups(survey, min_size=30)
    labels = pd.DataFrame({
        "sex": frame["Q260"].map({1.0: "Male", 2.0: "Female"}),
        "age": frame["Q262"].map({20.0: "16-24", 30.0: "25-34", 40.0: "35-44", 70.0: "65+"}),
        "ethnicity": frame["Q290"].map({702004.0: "Chinese", 702006.0: "Malay", 702003.0: "Indian"}),
        "religion": frame["Q289"].map({0.0: "No religion", 7.0: "Buddhist", 5.0: "Muslim", 8.0: "Other Christian"}),
    })

    def expected(specs):
        out = {}
        for spec in specs:
            cols = spec.split(":")
            for key, n in labels.groupby(cols).size().items():
                key = key if isinstance(key, tuple) else (key,)
                if n >= 30:
                    out[frozenset(zip(cols, key))] = n
        return out

    got_train = {group_key(g): g.n for g in split.train}
    got_held = {group_key(g): g.n for g in split.heldout}
    assert got_train == expected(SEED003_TRAIN)
    assert got_held == expected(SEED003_HELDOUT)
    assert not set(got_train) & set(got_held)
    assert all(g.n < 30 for g in split.excluded)
