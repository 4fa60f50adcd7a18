"""CI gate: exit codes 0/1/2, value vs interval bounds, strict policy validation, JUnit XML, GitHub output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from cvaudit.audit.errors import ConfigError, DataError
from cvaudit.reports.gate import gate, github_annotations, junit_xml, publish_github
from cvaudit.reports.policy import parse_policy
from results_factory import incomplete, make_results, run_cli


@pytest.fixture(scope="module")
def record() -> dict:
    return make_results(n_questions=8, n_boot=200)


@pytest.fixture()
def results_file(tmp_path, record):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(record))
    return path


def write(tmp_path, text: str, name: str = "policy.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def eth_gap(record, metric="representativeness") -> dict:
    return next(d for d in record["disparity"] if d["attribute"] == "ethnicity" and d["metric"] == metric)["gap"]


def test_pass_and_breach_exit_codes(tmp_path, results_file, record, capsys):
    # the gap computed by hand from the group means of results.json
    means = [g["metrics"]["representativeness"]["value"] for g in record["groups"] if g["attribute"] == "ethnicity"]
    gap = max(means) - min(means)
    assert eth_gap(record)["value"] == pytest.approx(gap)
    ok = write(tmp_path, f"rules:\n  - metric: representativeness\n    attribute: ethnicity\n    max_gap: {gap + 0.01}\n")
    assert run_cli(["gate", str(results_file), "--policy", str(ok)]) == 0
    assert "gate: PASS" in capsys.readouterr().out
    bad = write(tmp_path, f"rules:\n  - metric: representativeness\n    attribute: ethnicity\n    max_gap: {gap - 0.01}\n")
    assert run_cli(["gate", str(results_file), "--policy", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and f"{gap:.4g}" in out


def test_on_interval_bound(record):
    fig = eth_gap(record)
    lo, value, hi = fig["ci"][0], fig["value"], fig["ci"][1]
    assert lo < value < hi
    threshold = (value + hi) / 2  # the point passes, the pessimistic upper bound does not
    rule = {"metric": "representativeness", "attribute": "ethnicity", "max_gap": threshold}
    assert gate(record, {"rules": [dict(rule, on="value")]}).passed
    res = gate(record, {"rules": [dict(rule, on="ci_upper")]})
    assert not res.passed and res.breaches[0].observed == pytest.approx(hi)
    # per-check override of the rule's bound
    res = gate(record, {"rules": [{"metric": "representativeness", "attribute": "ethnicity", "on": "value",
                                   "max_gap": {"threshold": threshold, "on": "ci_upper"}}]})
    assert not res.passed


def test_star_expands_to_attributes_and_group_checks(record):
    res = gate(record, {"rules": [{"metric": "accuracy", "attribute": "*", "min_group_value": 0.0,
                                   "no_disfavoured_group": True}]})
    attrs = {c.attribute for c in res.checks if c.check == "min_group_value"}
    assert attrs == {"sex", "age", "ethnicity"}
    flagged = [c for c in res.breaches if c.check == "no_disfavoured_group"]
    assert [c.attribute for c in flagged] == ["ethnicity"] and "Malay" in flagged[0].message
    worst = min(g["metrics"]["nmae"]["value"] for g in record["groups"] if g["attribute"] == "age")
    res = gate(record, {"rules": [{"attribute": "age", "max_group_nmae": worst - 1e-9}]})
    assert not res.passed  # every age group has nmae >= worst > threshold


def test_overall_and_synthetic(record):
    acc = record["overall"]["accuracy"]
    assert gate(record, {"rules": [{"metric": "accuracy", "min_overall_value": acc["value"] - 1e-9}]}).passed
    assert not gate(record, {"rules": [{"metric": "accuracy", "min_overall_value": acc["value"] + 1e-9}]}).passed
    res = gate(record, {"require_non_synthetic": True})
    assert not res.passed and res.breaches[0].name == "require_non_synthetic"
    assert gate(make_results(n_questions=4, n_boot=20, synthetic=False), {"require_non_synthetic": True}).passed


def test_incomplete_results_refused_or_breach(tmp_path, record, capsys):
    path = tmp_path / "inc.json"
    path.write_text(json.dumps(incomplete(record)))
    pol = write(tmp_path, "rules:\n  - metric: accuracy\n    max_gap: 0.5\n")
    junit = tmp_path / "gate.xml"
    assert run_cli(["gate", str(path), "--policy", str(pol), "--junit", str(junit)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incomplete run" in err[0] and not junit.exists()
    assert "`cvaudit gate --allow-incomplete`, as a breach" in err[0]  # the hint names the option of this command
    args = ["gate", str(path), "--policy", str(pol), "--junit", str(junit), "--allow-incomplete"]
    assert run_cli(args) == 1
    root = ET.parse(junit).getroot()
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert names[0] == "require_complete" and len(names) == 2
    assert all(tc.find("failure") is not None for tc in root.iter("testcase"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rules: [\n", "not valid YAML"),
        ("- just a list\n", "YAML mapping"),
        ("rules:\n  - metric: accuracy\n    max_gapp: 0.1\n", "unknown key(s) max_gapp"),
        ("rules:\n  - metric: accuracy\n    max_gap: high\n", "must be a number"),
        ("rules:\n  - metric: accuracy\n    on: upper\n    max_gap: 0.1\n", "'on' must be one of"),
        ("rules:\n  - metric: accuracy\n", "has no check"),
        ("rules:\n  - metric: fairness\n    max_gap: 0.1\n", "unknown metric 'fairness'"),
        ("rules:\n  - metric: accuracy\n    attribute: caste\n    max_gap: 0.1\n", "unknown attribute 'caste'"),
        ("threshold: 3\n", "unknown key(s) threshold"),
        ("undefined: ignore\n", "'undefined' must be fail or skip"),
    ],
)
def test_bad_policy_exit_2_one_line(tmp_path, results_file, capsys, text, fragment):
    pol = write(tmp_path, text)
    assert run_cli(["gate", str(results_file), "--policy", str(pol)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_bad_results_exit_2(tmp_path, capsys):
    pol = write(tmp_path, "rules: []\n")
    assert run_cli(["gate", str(tmp_path / "none.json"), "--policy", str(pol)]) == 2
    broken = write(tmp_path, "{not json", "results.json")
    assert run_cli(["gate", str(broken), "--policy", str(pol)]) == 2
    assert run_cli(["gate", str(broken), "--policy", str(tmp_path / "missing.yaml")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_junit_structure(record):
    res = gate(record, {"rules": [{"metric": "representativeness", "max_gap": 0.05, "min_ratio": 0.5}]})
    root = ET.fromstring(junit_xml(res))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(res.checks) == int(suite.get("tests")) == 1 + 2 * 3
    fails = [c for c in cases if c.find("failure") is not None]
    assert len(fails) == int(suite.get("failures")) == len(res.breaches) > 0
    for c in fails:
        assert c.find("failure").get("message").startswith(c.get("name"))
    assert {c.get("classname") for c in cases} == {"cvaudit.gate.run", "cvaudit.gate.sex", "cvaudit.gate.age",
                                                   "cvaudit.gate.ethnicity"}


def test_github_annotations_and_summary(tmp_path, record):
    res = gate(record, {"rules": [{"metric": "representativeness", "attribute": "ethnicity", "max_gap": 0.0}]})
    lines = github_annotations(res)
    assert len(lines) == 1 and lines[0].startswith("::error title=cvaudit gate%3A representativeness max_gap")
    printed: list[str] = []
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    publish_github(res, {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}, echo=printed.append)
    assert printed == lines
    text = summary.read_text()
    assert text.startswith("earlier step\n") and "| Check | Status | Detail |" in text and "❌ fail" in text
    printed.clear()
    publish_github(res, {}, echo=printed.append)
    assert printed == []


def test_undefined_figure_fails_unless_skip(record):
    rec = json.loads(json.dumps(record))
    for d in rec["disparity"]:
        if d["metric"] == "nmae":
            d["gap"] = {"value": None, "ci": None}
    assert not gate(rec, {"rules": [{"metric": "nmae", "max_gap": 1.0}]}).passed
    res = gate(rec, {"undefined": "skip", "rules": [{"metric": "nmae", "max_gap": 1.0},
                                                    {"metric": "accuracy", "max_gap": 1.0}]})  # fmt: skip
    assert res.passed and {c.status for c in res.checks if c.metric == "nmae"} == {"skip"}
    assert {c.status for c in res.checks if c.metric == "accuracy"} == {"pass"}


def test_parse_policy_direct():
    pol = parse_policy({"name": "p", "rules": [{"metric": "accuracy", "on": "ci_lower", "min_ratio": 0.8}]})
    assert pol.checks[0].on == "ci_lower" and pol.checks[0].threshold == 0.8 and pol.require_complete
    with pytest.raises(ConfigError):
        parse_policy({"rules": [{"metric": "accuracy", "no_disfavoured_group": "yes"}]})


def test_gate_files_and_closed_stdout_never_read_as_a_breach(tmp_path, results_file):
    """An unwritable --junit or step summary is exit 2 (not 1); a closed stdout keeps the verdict's exit code."""
    import os
    import subprocess
    import sys

    policy = write(tmp_path, "rules:\n  - metric: accuracy\n    attribute: sex\n    max_gap: 1.0\n")
    afile = tmp_path / "afile"
    afile.write_text("x")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "CVAUDIT_DEBUG"))}

    def gate_proc(*extra, env_extra=None, close_stdout=False):
        cmd = [sys.executable, "-m", "cvaudit", "gate", str(results_file), "--policy", str(policy), *extra]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env, **(env_extra or {})})
        if close_stdout:
            p.stdout.close()  # like `| grep -q`: the reader is gone before the gate prints
            _, err = p.communicate(timeout=120)
            return p.returncode, "", err.decode()
        out, err = p.communicate(timeout=120)
        return p.returncode, out.decode(), err.decode()

    assert gate_proc()[0] == 0
    code, out, err = gate_proc("--junit", str(afile / "gate.xml"))
    assert code == 2 and err.startswith("cvaudit: error: cannot write") and "Traceback" not in err
    code, _, err = gate_proc(env_extra={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(afile / "s.md")})
    assert code == 2 and err.startswith("cvaudit: error: cannot access") and err.count("\n") == 1
    assert gate_proc(close_stdout=True)[0] == 0


@pytest.mark.parametrize(("text", "fragment"), [
    ("rules:\n  - metric: accuracy\n    max_gap: .nan\n", "must be a finite number"),
    ("rules:\n  - metric: accuracy\n    min_ratio: 2\n", "a ratio min/max lies in [0, 1]"),
    ("rules:\n  - metric: accuracy\n    max_cv: -0.1\n", "never negative"),
    ("rules:\n  - metric: accuracy\n    max_gap: 0.1\n    max_gap: 0.9\n", "key 'max_gap' given twice (line 4)"),
    ("rules:\n  - {metric: accuracy, max_gap: 0.1}\n  - {metric: accuracy, max_gap: 0.1}\n",
     "rules[1].max_gap repeats the check of rules[0]"),
])  # fmt: skip
def test_policy_mistakes_are_bad_input_not_breaches(tmp_path, results_file, capsys, text, fragment):
    code = run_cli(["gate", str(results_file), "--policy", str(write(tmp_path, text))])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") <= 1, err


def test_undefined_groups_and_empty_attribute_sets_are_not_passes(record):
    rec = json.loads(json.dumps(record))
    male = next(g for g in rec["groups"] if g["group"] == "Male")
    male["metrics"]["similarity"] = {"value": None, "ci": None}
    for it in rec["items"]:  # as a run writes it: no item of Male has similarity
        if it["group"] == "Male":
            it["metrics"]["similarity"] = None
    rule = {"rules": [{"metric": "similarity", "attribute": "sex", "min_group_value": 0.0}]}
    (check,) = [c for c in gate(rec, rule).checks if c.metric == "similarity"]
    assert check.status == "fail" and "not defined (null) for Male" in check.message
    (check,) = [c for c in gate(rec, {**rule, "undefined": "skip"}).checks if c.metric == "similarity"]
    assert check.status == "pass" and "1 group(s) not defined" in check.message
    # one attribute with a single group: "*" has no attribute where a disparity is defined
    empty = json.loads(json.dumps(record))
    female = lambda x: (x["attribute"], x["group"]) == ("sex", "Female")  # noqa: E731
    empty["groups"] = [g for g in empty["groups"] if female(g)]
    empty["items"] = [i for i in empty["items"] if female(i)]
    empty["disparity"] = [d for d in empty["disparity"] if d["attribute"] == "sex"]
    star = {"rules": [{"metric": "accuracy", "attribute": "*", "max_gap": 1.0}]}
    res = gate(empty, star)
    assert not res.passed and any("no groups it applies to" in c.message for c in res.checks)
    skipped = gate(empty, {**star, "undefined": "skip"})  # every check skipped: nothing verified, not a pass
    assert not skipped.passed and [c.name for c in skipped.breaches] == ["nothing_checked"]
    assert {c.status for c in skipped.checks} == {"pass", "skip", "fail"}  # require_complete passes


def test_a_gate_whose_every_figure_check_is_skipped_fails(record):
    """`undefined: skip` skips a null figure; when it skips them all, the gate verified nothing and fails."""
    rec = json.loads(json.dumps(record))
    for d in rec["disparity"]:
        d["gap"] = {"value": None, "ci": None}
    rules = {"undefined": "skip", "rules": [{"metric": "nmae", "max_gap": 1.0}, {"metric": "accuracy", "max_gap": 1.0}]}
    res = gate(rec, rules)
    assert not res.passed and res.exit_code == 1
    (breach,) = res.breaches
    assert breach.name == "nothing_checked" and "every one of the" in breach.message
    assert all(c.status == "skip" for c in res.checks if c.metric)
    one_left = json.loads(json.dumps(record))  # one figure defined: that check verifies something, so PASS
    for d in one_left["disparity"]:
        if d["metric"] == "nmae":
            d["gap"] = {"value": None, "ci": None}
    assert gate(one_left, rules).passed


# ------------------------------------------------------------------ policies that check nothing
@pytest.mark.parametrize("text", [
    "name: x\n",
    "rules: []\n",
    "name: x\nrules:\n",
    "rules:\n  - metric: accuracy\n    no_disfavoured_group: false\n",
    "rules:\n  - metric: accuracy\n    no_disfavoured_group: {threshold: false}\n",
])  # fmt: skip
def test_policy_that_checks_nothing_is_bad_input(tmp_path, results_file, capsys, text):
    """Its PASS would certify a model nobody checked: exit 2 in gate and in report --policy, not exit 0."""
    pol = write(tmp_path, text)
    assert run_cli(["gate", str(results_file), "--policy", str(pol)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checks nothing" in err, err
    out = tmp_path / "rep"
    assert run_cli(["report", str(results_file), "--policy", str(pol), "--format", "html", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checks nothing" in err and not (out / "report.html").exists(), err


def test_active_checks_besides_rules_and_disabled_checks_beside_active_ones(record):
    assert gate(record, {"require_non_synthetic": True}).checks  # a real check: refused data is a breach
    res = gate(record, {"rules": [{"metric": "accuracy", "attribute": "sex", "max_gap": 1.0,
                                   "no_disfavoured_group": False}]})  # fmt: skip
    assert res.passed and [c.check for c in res.checks] == ["require_complete", "max_gap"]
    with pytest.raises(ConfigError, match=r"rules\[1\] checks nothing"):
        parse_policy({"rules": [{"metric": "accuracy", "max_gap": 0.5},
                                {"metric": "nmae", "no_disfavoured_group": False}]})  # fmt: skip


# ------------------------------------------------------------------ damaged figures are not "undefined"
def _sex_gone(rec):
    rec["disparity"] = [d for d in rec["disparity"] if d["attribute"] != "sex"]


def _entry(rec, metric="accuracy", attribute="sex"):
    return next(d for d in rec["disparity"] if d["metric"] == metric and d["attribute"] == attribute)


def _group(rec, name="Male"):
    return next(g for g in rec["groups"] if g["group"] == name)


@pytest.mark.parametrize(("damage", "rule", "fragment"), [
    (_sex_gone, {"attribute": "sex", "max_gap": 0.9}, "disparity has no entry for accuracy across sex"),
    (lambda r: _entry(r)["gap"].update(value="0.9"), {"attribute": "sex", "max_gap": 0.9}, ".gap.value is '0.9'"),
    (lambda r: _entry(r).pop("gap"), {"attribute": "sex", "max_gap": 0.9}, "has no gap (accuracy across sex)"),
    (lambda r: _entry(r)["gap"].update(value=True), {"attribute": "sex", "max_gap": 0.9}, ".gap.value is True"),
    (lambda r: _entry(r)["gap"].update(ci="wide"), {"attribute": "sex", "max_gap": 0.9}, ".gap.ci is 'wide'"),
    (lambda r: _entry(r)["gap"].pop("value"), {"attribute": "sex", "max_gap": 0.9}, ".gap has no value"),
    (lambda r: r["overall"].pop("accuracy"), {"min_overall_value": 0.1}, "overall has no accuracy"),
    (lambda r: r["overall"]["accuracy"].update(value=[0.5]), {"min_overall_value": 0.1},
     "overall.accuracy.value is [0.5]"),
    (lambda r: _group(r)["metrics"].pop("accuracy"), {"attribute": "sex", "min_group_value": 0.1},
     "metrics has no accuracy (sex=Male)"),
    (lambda r: _group(r)["metrics"]["accuracy"].update(value="0.4"), {"attribute": "sex", "min_group_value": 0.1},
     "metrics.accuracy.value is '0.4'"),
    (lambda r: r["disparity"].append(dict(_entry(r))), {"attribute": "sex", "max_gap": 0.9},
     "repeats accuracy across sex"),
])  # fmt: skip
def test_damaged_figures_are_bad_input_not_undefined(tmp_path, record, capsys, damage, rule, fragment):
    """Only a JSON null is "not defined"; a missing or non-numeric figure is a damaged file, even with undefined: skip."""
    rec = json.loads(json.dumps(record))
    damage(rec)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rec))
    pol = write(tmp_path, "undefined: skip\nrules:\n  - " + json.dumps({"metric": "accuracy", **rule}) + "\n")
    assert run_cli(["gate", str(path), "--policy", str(pol)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and fragment in err and "damaged" in err, err


def test_a_null_figure_is_still_undefined_not_damaged(tmp_path, record, capsys):
    rec = json.loads(json.dumps(record))
    _entry(rec)["gap"] = {"value": None, "ci": None}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rec))
    pol = write(tmp_path, "undefined: skip\nrules:\n  - {metric: accuracy, attribute: sex, max_gap: 0.9}\n"
                          "  - {metric: similarity, attribute: sex, max_gap: 1.0}\n")  # one figure is still checked
    assert run_cli(["gate", str(path), "--policy", str(pol)]) == 0
    assert "SKIP" in capsys.readouterr().out


# ------------------------------------------------------------------ thresholds outside the metric's range
@pytest.mark.parametrize(("rule", "fragment"), [
    ("metric: accuracy\n    max_gap: 15", "accuracy lies in [0, 1], so its gap lies in [0, 1]"),
    ("metric: accuracy\n    min_overall_value: 25", "write 0.25 for 25%"),
    ("metric: representativeness\n    min_group_value: -1", "representativeness lies in [0, 1]"),
    ("metric: similarity\n    max_group_value: 1.2", "similarity lies in [0, 1]"),
    ("max_group_nmae: 2", "nmae lies in [0, 1]"),
    ("metric: nmae\n    max_abs_to_overall: {threshold: 1.5, on: ci_upper}", "abs to overall lies in [0, 1]"),
    ("metric: accuracy\n    max_normalised_range: 1.5", "normalised range (max - min) / max lies in [0, 1]"),
    ("metric: accuracy\n    min_ratio: 1.5", "a ratio min/max lies in [0, 1]"),
])  # fmt: skip
def test_thresholds_outside_the_metrics_range_are_bad_input(tmp_path, results_file, capsys, rule, fragment):
    pol = write(tmp_path, f"rules:\n  - {rule}\n")
    assert run_cli(["gate", str(results_file), "--policy", str(pol)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "can never be met or never fail" in err and fragment in err, err
    assert "ratio" not in rule or "percentage" not in err  # an inverted ratio is not a percent typo


def test_range_edges_and_plug_in_metrics_keep_working(record):
    edges = parse_policy({"rules": [{"metric": "accuracy", "max_gap": 1, "min_group_value": 0,
                                     "max_overall_value": 1, "max_cv": 3.0}]})  # fmt: skip
    assert [c.threshold for c in edges.checks] == [1.0, 0.0, 1.0, 3.0]  # cv = std / mean can exceed 1
    # a plug-in metric's range is unknown: only the metric-free bounds apply
    assert parse_policy({"rules": [{"metric": "fluency", "min_overall_value": 25, "max_gap": 7}]}).checks
    with pytest.raises(ConfigError, match="never negative"):
        parse_policy({"rules": [{"metric": "fluency", "max_gap": -1}]})
    # the gate on a record whose metric is a plug-in on a 0-10 scale (similarity renamed and scaled)
    rec = _fluency(record)
    res = gate(rec, {"rules": [{"metric": "fluency", "attribute": "sex", "min_group_value": 2.5}]})
    assert res.passed and res.checks[-1].observed > 1


def _fluency(record: dict, bounds: list | None = None) -> dict:
    """``record`` with similarity renamed "fluency" and its group and item values scaled to 0-10, recorded
    with ``bounds`` in metric_info (a plug-in that declared none: null)."""
    rec = json.loads(json.dumps(record).replace('"similarity"', '"fluency"'))
    for row in (*(g["metrics"]["fluency"] for g in rec["groups"]), *(it["metrics"] for it in rec["items"])):
        key = "value" if "value" in row else "fluency"
        row[key] = None if row[key] is None else row[key] * 10
    rec["metric_info"]["fluency"]["bounds"] = bounds
    return rec


def test_a_plug_in_metrics_declared_bounds_check_files_and_policies(record):
    """register_metric(bounds=...) is recorded in metric_info: a figure outside it is damage, read by a process
    without the plug-in too; a policy threshold outside it is refused where the plug-in is registered."""
    import copy

    from cvaudit.metrics import register_metric
    from cvaudit.metrics.registry import unregister_metric

    assert record["metric_info"]["accuracy"]["bounds"] == [0.0, 1.0]  # the built-ins declare [0, 1]
    rec = _fluency(record, [0.0, 10.0])
    assert gate(rec, {"rules": [{"metric": "fluency", "attribute": "sex", "min_group_value": 2.5}]}).passed
    hurt = copy.deepcopy(rec)
    next(g for g in hurt["groups"] if g["group"] == "Female")["metrics"]["fluency"]["ci"] = [3.0, 10.5]
    with pytest.raises(DataError, match=r"fluency.* is 10.5, outside \[0, 10\]"):
        gate(hurt, {"rules": [{"metric": "fluency", "min_overall_value": 1}]})
    hurt = copy.deepcopy(rec)
    hurt["items"][0]["metrics"]["fluency"] = -1.0
    with pytest.raises(DataError, match=r"items\[0\].metrics.fluency"):
        gate(hurt, {"rules": [{"metric": "fluency", "min_overall_value": 1}]})
    for bad in ([1.0], [5.0, 5.0], ["0", 1], [0, float("inf")]):
        hurt = copy.deepcopy(rec)
        hurt["metric_info"]["fluency"]["bounds"] = bad
        with pytest.raises(DataError, match=r"metric_info.fluency.bounds is"):
            gate(hurt, {"rules": [{"metric": "fluency", "min_overall_value": 1}]})

    register_metric("fluency", bounds=(0, 10))(lambda b: b.k * 0.0)
    try:
        with pytest.raises(ConfigError, match=r"fluency lies in \[0, 10\]"):
            parse_policy({"rules": [{"metric": "fluency", "min_overall_value": 25}]})
        with pytest.raises(ConfigError, match=r"advantage over a baseline lies in \[-10, 10\]"):
            parse_policy({"rules": [{"metric": "fluency", "min_vs_uniform": 11}]})
        # an advantage of 5 points is possible on a 0-10 scale (the [-1, 1] of a [0, 1] metric does not apply)
        assert parse_policy({"rules": [{"metric": "fluency", "min_vs_uniform": 5, "max_gap": 10}]}).checks
    finally:
        unregister_metric("fluency")
    with pytest.raises(ValueError, match="lo < hi"):
        register_metric("fluency", bounds=(1, 0))


# ------------------------------------------------------------------ JSON policies, YAML 1.2 floats
def test_json_policy_files_are_read_as_json(tmp_path, record):
    from cvaudit.reports.gate import policy_digest
    from cvaudit.reports.policy import load_policy

    raw = {"name": "j", "undefined": "skip", "rules": [{"metric": "accuracy", "attribute": "sex", "on": "ci_upper",
                                                        "max_gap": 0.9, "min_ratio": {"threshold": 0.1}}]}  # fmt: skip
    pj = write(tmp_path, json.dumps(raw, indent="\t"), "policy.json")
    py = write(tmp_path, "name: j\nundefined: skip\nrules:\n  - metric: accuracy\n    attribute: sex\n"
               "    on: ci_upper\n    max_gap: 0.9\n    min_ratio: {threshold: 0.1}\n")  # fmt: skip
    assert policy_digest(load_policy(pj)) == policy_digest(load_policy(py))
    assert gate(record, pj).passed
    for text, fragment in (('{"rules": [{"metric": "accuracy", "max_gap": 0.1},]}', "not valid JSON"),
                           ('{"rules": [{"metric": "accuracy", "max_gap": 0.1, "max_gap": 0.9}]}', "given twice"),
                           ('[' * 50_000 + ']' * 50_000, "nests too deeply|not valid JSON|mapping")):  # fmt: skip
        with pytest.raises(ConfigError, match=fragment):
            load_policy(write(tmp_path, text, "bad.json"))


@pytest.mark.parametrize(("text", "want"), [("1e-3", 1e-3), ("1E-1", 0.1), ("1.5e-1", 0.15), ("+2e-2", 0.02),
                                            (".5e-1", 0.05), ("1e0", 1.0), ("0.1", 0.1)])  # fmt: skip
def test_yaml_exponent_floats_are_numbers(tmp_path, text, want):
    import yaml
    from cvaudit.reports.policy import load_policy

    pol = load_policy(write(tmp_path, f"rules:\n  - metric: accuracy\n    max_gap: {text}\n"))
    assert pol.checks[0].threshold == pytest.approx(want)
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}  # PyYAML's own SafeLoader is left as it is
    quoted = write(tmp_path, f"rules:\n  - metric: accuracy\n    max_gap: '{text}'\n")
    with pytest.raises(ConfigError, match="must be a number"):  # a quoted string stays a string
        load_policy(quoted)


def test_the_model_must_beat_a_baseline(record):
    """min_vs_uniform / min_vs_population: the model's advantage, positive = better for every metric."""
    import copy

    from cvaudit.audit.errors import DataError

    rec = copy.deepcopy(record)
    uni = rec["baselines"]["uniform"]["model_minus_baseline"]
    uni["similarity"] = {"value": 0.05, "ci": [0.02, 0.08]}
    uni["nmae"] = {"value": -0.04, "ci": [-0.07, 0.01]}  # lower NMAE than uniform: an advantage of 0.04 [-0.01, 0.07]
    policy = {"rules": [{"metric": "similarity", "min_vs_uniform": {"threshold": 0.0, "on": "ci_lower"}},
                        {"metric": "nmae", "min_vs_uniform": 0.03},
                        {"metric": "nmae", "min_vs_uniform": {"threshold": 0.0, "on": "ci_lower"}}]}  # fmt: skip
    res = gate(rec, policy)
    got = [(c.check, c.status, c.observed) for c in res.checks if c.check.startswith("min_vs")]
    assert got == [("min_vs_uniform", "pass", 0.02), ("min_vs_uniform", "pass", pytest.approx(0.04)),
                   ("min_vs_uniform", "fail", pytest.approx(-0.01))]  # fmt: skip
    assert "advantage over the uniform baseline ci_lower = -0.01, below the limit 0" in res.breaches[0].message
    # the population baseline the factory's model beats: a pass on the measured figure
    pop = gate(rec, {"rules": [{"metric": "accuracy", "min_vs_population": 0.0}]})
    want = rec["baselines"]["population"]["model_minus_baseline"]["accuracy"]["value"] >= 0
    assert pop.passed is want
    # a results file from before baselines: not measured is not a pass (undefined: fail), or a skip
    del rec["baselines"]
    old = gate(rec, policy)
    assert not old.passed and "this results file has none" in old.breaches[0].message
    skipped = gate(rec, dict(policy, undefined="skip"))  # every check skipped: verified nothing, not a pass
    assert [c.name for c in skipped.breaches] == ["nothing_checked"]
    # damaged, not undefined
    bad = copy.deepcopy(record)
    bad["baselines"]["uniform"]["model_minus_baseline"]["similarity"]["value"] = "0.9"
    with pytest.raises(DataError, match="baselines.uniform.model_minus_baseline.similarity"):
        gate(bad, policy)
    with pytest.raises(ConfigError, match="never be met or never fail"):
        parse_policy({"rules": [{"metric": "similarity", "min_vs_uniform": 2}]})


def test_a_plug_in_metrics_direction_comes_from_the_results_file(record):
    """metric_info records each metric's direction: the gate reads it even where the plug-in is not registered."""
    import copy

    rec = copy.deepcopy(record)
    assert rec["metric_info"]["nmae"]["higher_is_better"] is False and rec["metric_info"]["similarity"]["higher_is_better"]
    # pretend "similarity" were a lower-is-better plug-in (e.g. a Brier score) recorded so by the run
    rec["metric_info"]["similarity"]["higher_is_better"] = False
    diff = rec["baselines"]["uniform"]["model_minus_baseline"]["similarity"]
    diff.update(value=-0.05, ci=[-0.08, -0.02])
    res = gate(rec, {"rules": [{"metric": "similarity", "min_vs_uniform": {"threshold": 0.0, "on": "ci_lower"}}]})
    assert res.passed and res.checks[-1].observed == pytest.approx(0.02)  # lower is better: -(-0.02)
    del rec["metric_info"]  # an older file: the registry decides (higher is better for similarity)
    assert not gate(rec, {"rules": [{"metric": "similarity", "min_vs_uniform": 0.0}]}).passed


# ------------------------------------------------------------------ figures no run could write
def _sex_gap(rec: dict, metric: str = "similarity") -> dict:
    return next(d for d in rec["disparity"] if d["attribute"] == "sex" and d["metric"] == metric)


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda r: _group(r, "Female")["metrics"]["similarity"].update(value=1.4), "outside [0, 1]"),
    (lambda r: _group(r, "Female")["metrics"]["accuracy"].update(ci=[-0.2, 0.9]), "outside [0, 1]"),
    (lambda r: r["overall"]["nmae"].update(value=-0.1), "overall.nmae is -0.1, outside [0, 1]"),
    (lambda r: _sex_gap(r).update(ratio={"value": 1.3, "ci": None}), "].ratio is 1.3, outside [0, 1]"),
    (lambda r: _sex_gap(r).update(gap={"value": -0.05, "ci": None}), "outside [0, 1]"),
    (lambda r: r["items"][0]["metrics"].update(similarity=1.2), "items[0].metrics.similarity"),
    (lambda r: r.update(items=r["items"][:-3]), "item(s) average"),  # a truncated item grid
    (lambda r: _group(r, "Female")["metrics"]["similarity"].update(value=_group(r, "Female")["metrics"]["similarity"]["value"] - 0.01),
     "(items missing or edited)"),
    (lambda r: _group(r, "Female")["metrics"]["similarity"].update(value=None), "is null but"),
    (lambda r: _group(r, "Female")["metrics"]["similarity"].update(ci=[0.9, 0.1]), "lower end is above its upper"),
    (lambda r: _group(r, "Female")["metrics"]["similarity"].update(ci=[0.1]), "not [lower, upper] or null"),
    (lambda r: _group(r, "Female")["flags"]["similarity"].update(status="weird"), "not one of favoured"),
    (lambda r: _group(r, "Female")["flags"]["similarity"].update(p_value=2.0), "not a probability"),
    (lambda r: _group(r, "Female").update(n=-5), "groups[0].n is -5"),
    (lambda r: r["items"][0].update(human_dist=[5, -4, 0, 0]), "items[0].human_dist is not a distribution"),
    (lambda r: r["items"][0].update(model_dist=[1.0, 1.0, 0, 0]), "items[0].model_dist is not a distribution"),
    (lambda r: r["metric_info"]["similarity"].update(higher_is_better="yes"), "higher_is_better is 'yes'"),
    (lambda r: r["metric_info"]["similarity"].update(bounds=[0, 0.5]), "outside [0, 0.5]"),  # narrowed to hide
    (lambda r: r.update(excluded_cells=["sex=Male"]), "excluded_cells must be {reason, cells"),
    (lambda r: r.update(excluded_cells={"reason": "x", "cells": [{"group": "Male"}]}), "excluded_cells must be"),
])  # fmt: skip
def test_figures_outside_their_range_or_apart_from_the_items_are_damage(tmp_path, record, capsys, damage, fragment):
    """A figure no run could write (similarity 1.4, a ratio above 1) or a group figure that is not its items'
    mean (items cut off or edited) is a damaged file: exit 2, never a gate verdict or a rendered report."""
    import copy

    rec = copy.deepcopy(record)
    damage(rec)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(rec))
    pol = write(tmp_path, "rules:\n  - {metric: similarity, attribute: sex, max_gap: 1.0}\n")
    for args in (["gate", str(path), "--policy", str(pol)], ["report", str(path), "--out", str(tmp_path / "r")]):
        assert run_cli(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err and "damaged" in err, err
    assert not (tmp_path / "r").exists()
    # cv is std / mean: above 1 is a measurement, not damage
    ok = copy.deepcopy(record)
    _sex_gap(ok)["cv"] = {"value": 1.7, "ci": [0.2, 2.5]}
    assert gate(ok, {"rules": [{"metric": "similarity", "attribute": "sex", "max_gap": 1.0}]}).passed


def test_no_disfavoured_group_is_not_a_pass_when_no_group_could_be_flagged():
    """One question (no group tested) or too few replicates for Holm to reach alpha: the flag check is undefined."""
    rule = {"rules": [{"metric": "similarity", "attribute": "ethnicity", "no_disfavoured_group": True}]}
    one = make_results(n_questions=1, n_boot=200)
    (check,) = [c for c in gate(one, rule).checks if c.metric]
    assert check.status == "fail" and "no group was tested against the reference" in check.message
    skipped = gate(one, {**rule, "undefined": "skip"})
    assert [c.name for c in skipped.breaches] == ["nothing_checked"]
    few = make_results(n_questions=8, n_boot=20)  # 2 groups tested: smallest Holm p = 2 * 2 / 21 > 0.05
    (check,) = [c for c in gate(few, rule).checks if c.metric]
    assert check.status == "fail" and "none can be flagged; re-run with --n-boot 80" in check.message
    many = make_results(n_questions=8, n_boot=200)  # the factory's Malay group is disfavoured: a real breach
    (check,) = [c for c in gate(many, rule).checks if c.metric]
    assert check.status == "fail" and "disfavoured on similarity: Malay" in check.message
    fine = make_results(n_questions=8, n_boot=200, bad_group=("sex", "Nobody"))
    (check,) = [c for c in gate(fine, rule).checks if c.metric]
    assert check.status == "pass" and "(2 tested)" in check.message
