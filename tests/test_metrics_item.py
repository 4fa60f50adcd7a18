"""Per-item metrics against scipy on random inputs, and hand-computed ties."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from cvaudit.metrics import compute_metrics, item_metrics, metric_specs, register_metric
from cvaudit.metrics.item import batch_from_lists
from cvaudit.metrics.registry import unregister_metric
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance


@st.composite
def item(draw):
    """One item: K options, two distributions (zeros allowed), ordinal positions or None."""
    k = draw(st.integers(2, 10))
    mass = st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=k, max_size=k).filter(
        lambda v: sum(v) > 0
    )
    model, human = draw(mass), draw(mass)
    kind = draw(st.sampled_from(["range", "spaced", "nominal"]))
    if kind == "range":
        positions = list(range(k))
    elif kind == "spaced":  # increasing, unevenly spaced positions
        steps = draw(st.lists(st.floats(0.1, 3.0), min_size=k - 1, max_size=k - 1))
        positions = list(np.concatenate([[0.0], np.cumsum(steps)]))
    else:
        positions = None
    return model, human, positions


@settings(max_examples=60, deadline=None)
@given(st.lists(item(), min_size=1, max_size=12))
def test_distance_metrics_match_scipy(items):
    """A batch of items of mixed K gives scipy's W1 and JS distance item by item."""
    models, humans, positions = zip(*items)
    values = compute_metrics(batch_from_lists(models, humans, positions))
    for i, (m, h, p) in enumerate(items):
        pm, ph = np.asarray(m) / sum(m), np.asarray(h) / sum(h)
        assert values["similarity"][i] == pytest.approx(1 - jensenshannon(pm, ph, base=2), abs=1e-9)
        if p is None:
            assert np.isnan(values["representativeness"][i]) and np.isnan(values["nmae"][i])
            continue
        span = max(p) - min(p)
        expected = 1 - wasserstein_distance(p, p, u_weights=pm, v_weights=ph) / span
        assert values["representativeness"][i] == pytest.approx(expected, abs=1e-9)
        # NMAE and accuracy against a plain per-item computation with derived modes
        modes = np.flatnonzero(ph >= ph.max() - 1e-9)
        choice = int(np.argmax(pm))
        assert values["accuracy"][i] == float(choice in modes)
        assert values["nmae"][i] == pytest.approx(min(abs(p[choice] - p[j]) for j in modes) / span, abs=1e-12)


def test_accuracy_and_nmae_with_tied_modes_by_hand():
    # K=5 on positions 0..4; the survey ties options 1 and 4.
    human = [0.1, 0.3, 0.1, 0.2, 0.3]
    positions = [0, 1, 2, 3, 4]
    models = [
        [0.1, 0.1, 0.1, 0.6, 0.1],  # picks 3: not a mode; nearest mode 4 -> 1/4
        [0.0, 0.0, 0.0, 0.1, 0.9],  # picks 4: a tied mode -> correct, distance 0
        [0.7, 0.1, 0.1, 0.05, 0.05],  # picks 0: nearest mode 1 -> 1/4
        [0.1, 0.1, 0.6, 0.1, 0.1],  # picks 2: modes 1 and 4 -> nearest 1 at 1 -> 1/4
        [0.9, 0.05, 0.05, 0.0, 0.0],
    ]
    modes = [[1, 4]] * 4 + [[4]]  # last: an explicit single mode overrides derivation
    v = compute_metrics(batch_from_lists(models, [human] * 5, [positions] * 5, modes))
    assert list(v["accuracy"]) == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert v["nmae"] == pytest.approx([0.25, 0.0, 0.25, 0.25, 1.0])


def test_nmae_uses_k_minus_one_and_nominal_items_have_no_distance():
    v = compute_metrics(batch_from_lists([[0.9, 0.1, 0.0]], [[0.0, 0.1, 0.9]], [[0, 1, 2]]))
    assert v["nmae"][0] == pytest.approx(1.0)  # two steps of two
    # W1 = |0.9-0| + |1.0-0.1| = 1.8 over span 2
    assert v["representativeness"][0] == pytest.approx(1 - 1.8 / 2)
    nominal = compute_metrics(batch_from_lists([[0.2, 0.8]], [[0.5, 0.5]], [None], [[0, 1]]))
    assert np.isnan(nominal["nmae"][0]) and np.isnan(nominal["representativeness"][0])
    assert nominal["accuracy"][0] == 1.0  # argmax 1 is one of the tied modes
    assert np.isfinite(nominal["similarity"][0])


def test_identical_distributions_score_perfectly_and_missing_human_is_invalid():
    d = [0.1, 0.2, 0.3, 0.4]
    v = compute_metrics(batch_from_lists([d, d], [d, None], [[0, 1, 2, 3]] * 2))
    assert v["similarity"][0] == pytest.approx(1.0) and v["representativeness"][0] == pytest.approx(1.0)
    assert v["nmae"][0] == 0.0 and v["accuracy"][0] == 1.0
    assert all(np.isnan(v[name][1]) for name in v)


def test_item_metrics_frame_keeps_index_and_reads_json_strings():
    items = pd.DataFrame(
        {
            "model_dist": [json.dumps([0.6, 0.4]), [0.2, 0.3, 0.5]],  # items.csv stores lists as JSON text
            "human_dist": [json.dumps([0.3, 0.7]), [0.5, 0.3, 0.2]],
            "positions": [json.dumps([0, 1]), None],
            "human_mode": [json.dumps([1]), [0]],
        },
        index=[10, 20],
    )
    frame = item_metrics(items)
    assert list(frame.index) == [10, 20]
    assert list(frame.columns)[:4] == ["accuracy", "nmae", "representativeness", "similarity"]
    assert frame.loc[10, "nmae"] == 1.0 and frame.loc[10, "accuracy"] == 0.0
    assert np.isnan(frame.loc[20, "nmae"])
    assert frame.loc[20, "accuracy"] == 0.0


def test_registry_directions_and_a_new_metric_is_one_function():
    specs = metric_specs()
    assert not specs["nmae"].higher_is_better and specs["nmae"].needs_ordinal
    assert specs["accuracy"].higher_is_better and not specs["similarity"].needs_ordinal

    @register_metric("top_prob_test", needs_ordinal=True)
    def top_prob(b):
        """Model probability of its own top option."""
        return b.model.max(axis=1)

    try:
        v = compute_metrics(batch_from_lists([[0.3, 0.7], [0.6, 0.4]], [[0.5, 0.5]] * 2, [[0, 1], None]))
        assert v["top_prob_test"][0] == pytest.approx(0.7)
        assert np.isnan(v["top_prob_test"][1])  # needs_ordinal masks nominal items
        assert metric_specs()["top_prob_test"].description.startswith("Model probability")
    finally:
        unregister_metric("top_prob_test")
    assert "top_prob_test" not in metric_specs()


@pytest.mark.parametrize("model, human, what", [
    ([[0.5, 0.5], [-0.1, 1.1]], [[0.5, 0.5]] * 2, "model_dist of item row 1"),
    ([[0.5, 0.5]], [[float("nan"), 1.0]], "human_dist of item row 0"),
    ([[float("inf"), 0.0]], [[0.5, 0.5]], "model_dist of item row 0"),
    (['[0.2, -0.8]'], ['[0.5, 0.5]'], "model_dist of item row 0"),  # items.csv keeps lists as JSON strings
])  # fmt: skip
def test_negative_or_non_finite_shares_are_refused(model, human, what):
    """[-0.1, 1.1] used to score -inf similarity, written to results.json as a silent null."""
    from cvaudit.audit.errors import DataError

    with pytest.raises(DataError, match=what) as info:
        batch_from_lists(model, human)
    assert "\n" not in str(info.value) and "finite and >= 0" in str(info.value)


def test_unnormalised_non_negative_shares_are_still_normalised():
    b = batch_from_lists([[2.0, 6.0], [0.0, 0.0]], [[30, 10], [1, 1]])
    np.testing.assert_allclose(b.model[0], [0.25, 0.75])
    np.testing.assert_allclose(b.human[0], [0.75, 0.25])
    assert b.valid.tolist() == [True, False]  # an all-zero distribution stays an invalid item, not an error
