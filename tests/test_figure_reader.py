"""One reader of {"value", "ci"} figures for the HTML report, the model-card export and the gate.

results.json is edited by hand and by other tools, and Python's json reads NaN and
Infinity, so the three consumers must agree on what a damaged figure means: not defined.
"""

from __future__ import annotations

import json
import math

import pytest
from cvaudit.reports.export import performance_metrics
from cvaudit.reports.gate import gate
from cvaudit.reports.html import render_html
from cvaudit.reports.load import read_figure
from results_factory import make_results


@pytest.mark.parametrize(
    ("fig", "want"),
    [
        ({"value": 0.5, "ci": [0.4, 0.6]}, (0.5, 0.4, 0.6)),
        ({"value": 1, "ci": [0, 1]}, (1.0, 0.0, 1.0)),
        ({"value": math.inf, "ci": [0.4, 0.6]}, (None, 0.4, 0.6)),
        ({"value": math.nan, "ci": None}, (None, None, None)),
        ({"value": True, "ci": [0.1, 0.2]}, (None, 0.1, 0.2)),
        ({"value": 0.5, "ci": [0.4, None]}, (0.5, None, None)),
        ({"value": 0.5, "ci": [0.4]}, (0.5, None, None)),
        ({"value": 0.5, "ci": [0.4, -math.inf]}, (0.5, None, None)),
        ({"value": "0.5"}, (None, None, None)),
        (None, (None, None, None)),
        ([0.5], (None, None, None)),
    ],
)
def test_read_figure(fig, want):
    assert read_figure(fig) == want


@pytest.fixture(scope="module")
def damaged() -> dict:
    """A complete record whose ethnicity gap of similarity is Infinity and whose Male interval is one-sided."""
    rec = make_results(n_questions=8, n_boot=50)
    rec = json.loads(json.dumps(rec))
    for d in rec["disparity"]:
        if d["attribute"] == "ethnicity" and d["metric"] == "similarity":
            d["gap"] = {"value": math.inf, "ci": None}
    male = next(g for g in rec["groups"] if g["group"] == "Male")
    male["metrics"]["similarity"]["ci"] = [0.5, None]
    return json.loads(json.dumps(rec))  # through JSON as a file would be: Infinity survives


def test_gate_treats_non_finite_as_undefined(damaged):
    res = gate(damaged, {"rules": [{"metric": "similarity", "attribute": "ethnicity", "max_gap": 1.0}]})
    assert not res.passed and "not defined" in " ".join(c.message for c in res.checks).lower()
    lower = gate(damaged, {"undefined": "skip", "rules": [{"metric": "similarity", "attribute": "sex",
                                                            "min_group_value": {"threshold": 0.0, "on": "ci_lower"}}]})  # fmt: skip
    (check,) = [c for c in lower.checks if c.metric == "similarity"]
    assert check.status == "pass" and "1 group(s) not defined" in check.message, "Male's half interval is no bound"


def test_export_and_report_do_not_print_what_is_not_defined(damaged):
    rows = performance_metrics(damaged)
    assert all(math.isfinite(r["value"]) for r in rows)
    male = next(r for r in rows if r["type"] == "similarity" and "Male" in r["slice"])
    assert "confidence_interval" not in male
    html = render_html(damaged)
    assert "inf" not in html.lower().replace("info", "")
