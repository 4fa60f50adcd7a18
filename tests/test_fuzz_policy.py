"""Fuzzing the gate policy parser (issue 10.6): any YAML document gives a valid Policy or a
one-line ConfigError/CVAuditError, never another exception; and a policy it accepts can be
evaluated against a results file without crashing.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from cvaudit.audit.errors import CVAuditError
from cvaudit.metrics import metric_specs
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

policy_mod = pytest.importorskip("cvaudit.reports.policy", reason="reports/policy.py not built yet")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = ("name", "version", "require_complete", "require_non_synthetic", "undefined", "rules", "description",
        "metric", "attribute", "on", "threshold", "max_gap", "min_ratio", "max_normalised_range", "max_cv",
        "max_abs_to_overall", "min_group_value", "max_group_value", "max_group_nmae", "min_overall_value",
        "max_overall_value", "no_disfavoured_group", "min_vs_uniform", "min_vs_population", "bogus", "")  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["accuracy", "nmae", "representativeness", "similarity", "*", "sex", "value", "ci_lower",
                     "ci_upper", "fail", "skip", "0.1", "", "yes"]),
    st.text(max_size=8),
)  # fmt: skip
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.booleans(), st.integers(0, 3)), inner, max_size=6),
    ),
    max_leaves=25,
)


def _policy_shaped():
    """Documents close to valid policies, so the deeper validation paths are reached."""
    bound = st.sampled_from(["value", "ci_lower", "ci_upper", "median", None])
    threshold = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2), st.booleans(),
                          st.none(), st.text(max_size=3),
                          st.fixed_dictionaries({}, optional={"threshold": st.floats(0, 1), "on": bound,
                                                              "extra": st.just(1)}))  # fmt: skip
    rule = st.dictionaries(st.sampled_from(KEYS[7:]), st.one_of(threshold, bound,
                           st.sampled_from(["accuracy", "nmae", "*", "sex"])), max_size=5)  # fmt: skip
    return st.fixed_dictionaries(
        {"rules": st.one_of(st.lists(rule, max_size=4), rule, st.none())},
        optional={"name": SCALARS, "undefined": st.sampled_from(["fail", "skip", "maybe", 1]),
                  "require_complete": st.one_of(st.booleans(), st.just("yes")),
                  "require_non_synthetic": st.booleans()},
    )  # fmt: skip


@pytest.fixture(scope="module")
def results_record():
    from results_factory import make_results  # tests/results_factory.py (reports' test helper)

    return make_results(n_questions=4, n_boot=20)


def _parse(raw):
    try:
        policy = policy_mod.parse_policy(raw)
    except CVAuditError as exc:
        assert str(exc) and "\n" not in str(exc), repr(str(exc))
        event("refused")
        return None
    event("accepted")
    assert isinstance(policy, policy_mod.Policy)
    assert isinstance(policy.require_complete, bool) and policy.undefined in ("fail", "skip")
    for check in policy.checks:
        assert check.check in policy_mod.CHECKS and check.on in policy_mod.BOUNDS
        assert isinstance(check.metric, str) and isinstance(check.attribute, str)
        assert check.threshold is None or isinstance(check.threshold, float)
        spec = metric_specs().get(check.metric)
        known = None if spec is None else spec.bounds
        if known is not None and check.kind in ("group", "overall"):  # a built-in's mean lies in its range
            assert known[0] <= check.threshold <= known[1], check
    return policy


def _gate_verdict_is_sound(record, policy) -> None:
    from cvaudit.reports.gate import gate

    try:
        result = gate(record, policy)
    except CVAuditError as exc:
        assert "\n" not in str(exc), repr(str(exc))
        return
    # a PASS always rests on at least one check of the audit itself, never on require_complete alone
    assert not result.passed or any(c.name != "require_complete" for c in result.checks), result
    for c in result.checks:
        assert c.status in ("pass", "fail", "skip"), c
        if c.threshold is not None and math.isnan(c.threshold):
            assert c.status != "pass", f"a NaN threshold must never pass: {c}"
        if c.status == "pass" and c.observed is not None and c.threshold is not None and c.check:
            direction = policy_mod.CHECKS[c.check][1]
            assert (c.observed <= c.threshold) if direction == "max" else (c.observed >= c.threshold), c


@FUZZ
@given(DOCS)
def test_random_documents(results_record, raw):
    policy = _parse(raw)
    if policy is not None:
        _gate_verdict_is_sound(results_record, policy)


@FUZZ
@given(_policy_shaped())
def test_near_valid_policies(results_record, raw):
    policy = _parse(raw)
    if policy is not None:
        _gate_verdict_is_sound(results_record, policy)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_random_yaml_text_files(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "policy.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            policy = policy_mod.load_policy(path)
        except CVAuditError as exc:
            assert "\n" not in str(exc), repr(str(exc))
            event("refused")
            return
    event("accepted")
    assert isinstance(policy, policy_mod.Policy)


def test_example_policy_is_valid():
    example = Path(__file__).resolve().parents[1] / "examples" / "policy.yaml"
    if not example.is_file():
        pytest.skip("examples/policy.yaml not written yet")
    policy = policy_mod.load_policy(example)
    assert policy.checks


@FUZZ
@given(_policy_shaped())
def test_policy_documents_through_yaml_files(results_record, raw):
    """The CLI path: a YAML file on disk (PyYAML reads a bare ``on:`` key as True)."""
    import yaml

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "policy.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False).replace("'on':", "on:"), encoding="utf-8")
        try:
            policy = policy_mod.load_policy(path)
        except CVAuditError as exc:
            assert "\n" not in str(exc), repr(str(exc))
            event("refused")
            return
    event("accepted")
    _gate_verdict_is_sound(results_record, policy)


@FUZZ
@given(_policy_shaped())
def test_policy_documents_through_json_files(results_record, raw):
    """A ``.json`` policy is read by the json module: whatever json.dumps writes (tabs included) parses."""
    import json

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "policy.json"
        path.write_text(json.dumps(raw, indent="\t"), encoding="utf-8")
        try:
            policy = policy_mod.load_policy(path)
        except CVAuditError as exc:
            assert "\n" not in str(exc) and "not valid" not in str(exc), repr(str(exc))  # JSON it wrote: parsed
            event("refused")
            return
    event("accepted")
    assert policy == policy_mod.parse_policy(raw, source="policy.json")  # as the dict itself parses
    _gate_verdict_is_sound(results_record, policy)


@FUZZ
@given(st.integers(1, 999), st.sampled_from(["e", "E"]), st.integers(-12, -3), st.sampled_from(["", "."]))
def test_exponent_thresholds_in_yaml(mantissa, e, exponent, dot):
    """``max_gap: 1e-3`` (a YAML 1.2 float; YAML 1.1 needs a dot and a signed exponent) is the number."""
    text = f"{mantissa}{dot}{e}{exponent}"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "policy.yaml"
        path.write_text(f"rules:\n  - metric: accuracy\n    max_gap: {text}\n", encoding="utf-8")
        policy = policy_mod.load_policy(path)
    assert policy.checks[0].threshold == float(text)
