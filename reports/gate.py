"""CI gate: check a results.json against a policy; JUnit XML and GitHub Actions output.

Exit codes (reports/cli.py): 0 every check passed, 1 at least one breach, 2 bad input
(missing or malformed file, unknown metric/attribute/check: ConfigError/DataError).
An incomplete run (complete=false) is refused like bad input (exit 2), as ``report``
refuses it; with ``allow_incomplete`` it is evaluated instead and fails the
require_complete check (exit 1), so a CI job can record why it stopped.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvaudit.audit.errors import ConfigError, DataError

from .load import finite_number, higher_is_better, load_results, metric_names, read_figure
from .policy import Check, Policy, load_policy, require_active

OPS = {"max": "<=", "min": ">="}


@dataclass(frozen=True)
class CheckResult:
    """One evaluated check: status pass | fail | skip, and a one-line message saying why."""

    name: str
    status: str
    message: str
    metric: str = ""
    attribute: str = ""
    check: str = ""
    on: str = "value"
    threshold: float | None = None
    observed: float | None = None


@dataclass(frozen=True)
class GateResult:
    policy_name: str
    checks: tuple[CheckResult, ...]
    results_name: str = "results"
    policy_sha256: str = ""  # of the parsed policy (thresholds included), so a report names exactly what it passed
    require_non_synthetic: bool = False

    @property
    def passed(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    @property
    def breaches(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == "fail"]

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _pick(fig: Any, on: str) -> float | None:
    value, lo, hi = read_figure(fig)
    return {"value": value, "ci_lower": lo, "ci_upper": hi}[on]


def _fmt(x: float | None) -> str:
    return "null" if x is None else f"{x:.4g}"


def _ok(value: float, comparison: str, threshold: float) -> bool:
    return value <= threshold if comparison == "max" else value >= threshold


def _attributes(record: dict[str, Any]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for g in record.get("groups") or []:
        out.setdefault(str(g["attribute"]), []).append(g)
    return out


def _name(c: Check, attribute: str) -> str:
    if c.check == "no_disfavoured_group":
        return f"{c.metric} no_disfavoured_group [{attribute}]"
    op = OPS[c.comparison]
    return f"{c.metric} {c.check} ({c.on}) {op} {c.threshold:g} [{attribute}]"


def _undefined(policy: Policy, c: Check, attribute: str, what: str) -> CheckResult:
    status = "skip" if policy.undefined == "skip" else "fail"
    return CheckResult(_name(c, attribute), status, f"{_name(c, attribute)}: {what} is not defined (null)",
                       c.metric, attribute, c.check, c.on, c.threshold, None)  # fmt: skip


def _damaged(source: str, what: str) -> DataError:
    return DataError(f"{source}: {what}; the file is damaged, re-run the audit")


def _evaluate(policy: Policy, c: Check, attribute: str, record: dict[str, Any], groups: list[dict],
              source: str = "results") -> CheckResult:  # fmt: skip
    name = _name(c, attribute)
    base = {"metric": c.metric, "attribute": attribute, "check": c.check, "on": c.on, "threshold": c.threshold}
    kind = c.kind
    if kind.startswith("disparity:") or kind == "overall":  # one figure compared with the threshold
        if kind == "overall":
            label, what = "overall", f"overall {c.metric}"
            if c.metric not in (record.get("overall") or {}):
                raise _damaged(source, f"no overall.{c.metric}")
            fig = record["overall"][c.metric]
        else:
            label = kind.split(":", 1)[1]
            what = f"{label} of {c.metric} across {attribute}"
            entry = next((d for d in record.get("disparity") or []
                          if d.get("attribute") == attribute and d.get("metric") == c.metric), None)  # fmt: skip
            if entry is None or label not in entry:  # load_results refuses this; a figure never read is no pass
                raise _damaged(source, f"no disparity {label} of {c.metric} across {attribute}")
            fig = entry[label]
        value = _pick(fig, c.on)
        if value is None:
            return _undefined(policy, c, attribute, what)
        ok = _ok(value, c.comparison, c.threshold)  # type: ignore[arg-type]
        msg = f"{name}: {label} {c.on} = {_fmt(value)}" + ("" if ok else f", breaches the limit {c.threshold:g}")
        return CheckResult(name, "pass" if ok else "fail", msg, observed=value, **base)
    if kind.startswith("baseline:"):
        return _evaluate_baseline(policy, c, record, source, name, base)
    if kind == "flags":
        flags = [(g.get("flags") or {}).get(c.metric) or {} for g in groups]
        bad = [str(g["group"]) for g, f in zip(groups, flags) if f.get("status") == "disfavoured"]
        if bad:
            return CheckResult(name, "fail", f"{name}: disfavoured on {c.metric}: {', '.join(bad)}", **base)
        # "no group disfavoured" is a pass only where a group could have been: tested, and able to reach alpha
        from cvaudit.metrics.flags import holm_floor, replicates_to_flag

        tested = sum(finite_number(f.get("p_value")) is not None for f in flags)
        if not tested:
            return _undefined(policy, c, attribute, f"the flag test of {c.metric} in {attribute} (no group was tested "
                                                    "against the reference: one question, each group's metric defined on one question "
                                                    "only, or no replicates)")  # fmt: skip
        n_boot = int(finite_number((record.get("bootstrap") or {}).get("replicates")) or 0)
        alpha = finite_number((record.get("flags") or {}).get("alpha"))
        if alpha is not None and holm_floor(tested, n_boot) >= alpha:
            return _undefined(policy, c, attribute, f"the flag test of {c.metric} in {attribute} (with {n_boot} "
                                                    f"replicates and {tested} groups tested none can be flagged; "
                                                    f"re-run with --n-boot {replicates_to_flag(tested, alpha)})")  # fmt: skip
        return CheckResult(name, "pass", f"{name}: no group disfavoured on {c.metric} ({tested} tested)", **base)
    # per group: every group must meet the threshold; the worst one is reported
    lacking = [str(g["group"]) for g in groups if c.metric not in (g.get("metrics") or {})]
    if lacking:
        raise _damaged(source, f"no {c.metric} figure for group {attribute}={lacking[0]}")
    values = [(str(g["group"]), _pick((g.get("metrics") or {}).get(c.metric), c.on)) for g in groups]
    defined = [(g, v) for g, v in values if v is not None]
    if not defined:
        return _undefined(policy, c, attribute, f"{c.metric} of every group in {attribute}")
    failing = [(g, v) for g, v in defined if not _ok(v, c.comparison, c.threshold)]  # type: ignore[arg-type]
    worst = (max if c.comparison == "max" else min)(defined, key=lambda t: t[1])
    if failing:
        listed = ", ".join(f"{g}={_fmt(v)}" for g, v in failing)
        return CheckResult(name, "fail", f"{name}: {listed} breach the limit {c.threshold:g}", observed=worst[1], **base)
    undefined = [g for g, v in values if v is None]
    if undefined and policy.undefined == "fail":  # a group without a figure is not a group that passed
        return CheckResult(name, "fail", f"{name}: not defined (null) for {', '.join(undefined)}; the other groups "
                           f"pass (worst {worst[0]} {c.on} = {_fmt(worst[1])})", observed=worst[1], **base)  # fmt: skip
    note = f" ({len(undefined)} group(s) not defined)" if undefined else ""
    msg = f"{name}: worst group {worst[0]} {c.on} = {_fmt(worst[1])}{note}"
    return CheckResult(name, "pass", msg, observed=worst[1], **base)


def _evaluate_baseline(policy: Policy, c: Check, record: dict[str, Any], source: str, name: str,
                       base: dict[str, Any]) -> CheckResult:  # fmt: skip
    """The model's overall advantage over a baseline, oriented so that positive is better for every metric."""
    key = c.kind.split(":", 1)[1]
    baselines = record.get("baselines")
    if baselines is None:  # a file from before baselines were computed: nothing was measured, so no pass
        return _undefined(policy, c, "overall", f"the {key} baseline (this results file has none; re-run the audit)")
    if not isinstance(baselines, dict):
        raise _damaged(source, "baselines is not a mapping")
    entry = baselines.get(key)
    if entry is None:
        return _undefined(policy, c, "overall", f"the {key} baseline (not computed for this run)")
    diffs = entry.get("model_minus_baseline") if isinstance(entry, dict) else None
    if not isinstance(diffs, dict) or c.metric not in diffs:
        raise _damaged(source, f"no baselines.{key}.model_minus_baseline.{c.metric}")
    value, lo, hi = read_figure(diffs[c.metric])
    if not higher_is_better(c.metric, record):  # lower is better: the advantage is baseline - model, interval mirrored
        value, lo, hi = (None if value is None else -value), (None if hi is None else -hi), (None if lo is None else -lo)
    observed = {"value": value, "ci_lower": lo, "ci_upper": hi}[c.on]
    if observed is None:
        return _undefined(policy, c, "overall", f"the advantage of {c.metric} over the {key} baseline")
    ok = observed >= c.threshold  # type: ignore[operator]
    msg = (f"{name}: advantage over the {key} baseline {c.on} = {_fmt(observed)}"
           + ("" if ok else f", below the limit {c.threshold:g}"))  # fmt: skip
    return CheckResult(name, "pass" if ok else "fail", msg, observed=observed, **{**base, "attribute": "overall"})


def policy_digest(policy: Policy) -> str:
    """sha256 of the policy as parsed: the same rules and thresholds give the same digest, whatever the file's layout."""
    import dataclasses
    import hashlib
    import json

    return hashlib.sha256(json.dumps(dataclasses.asdict(policy), sort_keys=True).encode()).hexdigest()


def gate(
    results: dict | str | os.PathLike, policy: Policy | dict | str | os.PathLike, allow_incomplete: bool = False
) -> GateResult:
    """Evaluate every check of ``policy`` on ``results``; bad input raises (exit 2), breaches do not."""
    pol = load_policy(policy)
    record = load_results(results, allow_incomplete=allow_incomplete)
    name = os.fspath(results) if not isinstance(results, dict) else "results"
    out: list[CheckResult] = []
    complete = record.get("complete") is True
    if pol.require_complete or not complete:
        ok = complete
        out.append(CheckResult("require_complete", "pass" if ok else "fail",
                               "run is complete" if ok else "run is incomplete (complete=false): finish the run first",
                               check="require_complete"))  # fmt: skip
    if pol.require_non_synthetic:
        synthetic = bool((record.get("data") or {}).get("synthetic", True))
        out.append(CheckResult("require_non_synthetic", "fail" if synthetic else "pass",
                               "survey data is synthetic (not WVS respondents)" if synthetic
                               else "survey data is not synthetic", check="require_non_synthetic"))  # fmt: skip
    if not complete:
        for c in pol.checks:
            n = _name(c, c.attribute)
            out.append(CheckResult(n, "fail", f"{n}: not evaluated, the run is incomplete", c.metric, c.attribute,
                                   c.check, c.on, c.threshold))  # fmt: skip
        return GateResult(pol.name, tuple(out), name, policy_digest(pol), pol.require_non_synthetic)
    # after the incomplete branch: an incomplete run fails whatever the policy; a complete one must be checked
    require_active(pol)
    metrics = metric_names(record)
    attrs = _attributes(record)
    for c in pol.checks:
        if c.metric not in metrics:
            raise ConfigError(f"policy names unknown metric {c.metric!r}; this results file has {', '.join(metrics)}")
        if c.attribute != "*" and c.attribute not in attrs:
            raise ConfigError(f"policy names unknown attribute {c.attribute!r}; this results file has "
                              f"{', '.join(attrs)} (or use \"*\")")  # fmt: skip
    for c in pol.checks:
        if c.kind == "overall" or c.kind.startswith("baseline:"):
            out.append(_evaluate(pol, c, "overall", record, [], name))
            continue
        if c.attribute == "*":
            # disparity needs two groups: "*" covers the attributes where it is defined by construction
            targets = [a for a, gs in attrs.items() if not c.kind.startswith("disparity:") or len(gs) > 1]
            if not targets:  # nothing to check is not a pass
                out.append(_undefined(pol, c, "*", "every attribute (the results have no groups it applies to)"))
                continue
        else:
            targets = [c.attribute]
        for attr in targets:
            out.append(_evaluate(pol, c, attr, record, attrs.get(attr, []), name))
    checked = [r for r in out if r.check not in ("require_complete", "require_non_synthetic")]
    if checked and all(r.status == "skip" for r in checked):
        # `undefined: skip` lets a null figure pass one check; a gate that verified nothing is not a pass
        out.append(CheckResult("nothing_checked", "fail", f"every one of the {len(checked)} figure check(s) was "
                               "skipped (figures undefined): the results verify nothing against this policy",
                               check="nothing_checked"))  # fmt: skip
    return GateResult(pol.name, tuple(out), name, policy_digest(pol), pol.require_non_synthetic)


# ------------------------------------------------------------------ outputs
def junit_xml(result: GateResult) -> str:
    """JUnit XML: one testcase per check, a failure element (with message) per breach."""
    fails = sum(c.status == "fail" for c in result.checks)
    skips = sum(c.status == "skip" for c in result.checks)
    suites = ET.Element("testsuites", name="cvaudit gate", tests=str(len(result.checks)), failures=str(fails))
    suite = ET.SubElement(suites, "testsuite", name=f"cvaudit gate: {result.policy_name}",
                          tests=str(len(result.checks)), failures=str(fails), errors="0", skipped=str(skips))  # fmt: skip
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"cvaudit.gate.{c.attribute or 'run'}", name=c.name)
        if c.status == "fail":
            fail = ET.SubElement(case, "failure", message=c.message, type=c.check or "breach")
            fail.text = c.message
        elif c.status == "skip":
            ET.SubElement(case, "skipped", message=c.message)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = c.message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_annotations(result: GateResult) -> list[str]:
    """`::error title=...::...` workflow commands, one per breach."""
    return [f"::error title={_gh_escape('cvaudit gate: ' + c.name, prop=True)}::{_gh_escape(c.message)}"
            for c in result.breaches]  # fmt: skip


def markdown_summary(result: GateResult) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    lines = [f"### cvaudit gate: {verdict} ({result.policy_name})", "",
             "| Check | Status | Detail |", "|---|---|---|"]  # fmt: skip
    icon = {"pass": "✅ pass", "fail": "❌ fail", "skip": "⏭ skip"}
    for c in result.checks:
        detail = c.message.replace("|", "\\|")
        lines.append(f"| {c.name.replace('|', chr(92) + '|')} | {icon.get(c.status, c.status)} | {detail} |")
    return "\n".join(lines) + "\n"


def publish_github(result: GateResult, env: dict[str, str] | None = None, echo: Any = print) -> None:
    """Under GitHub Actions: annotations on stdout and a table appended to $GITHUB_STEP_SUMMARY."""
    env = dict(os.environ if env is None else env)
    if env.get("GITHUB_ACTIONS") != "true":
        return
    for line in github_annotations(result):
        echo(line)
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        with Path(summary).open("a", encoding="utf-8") as fh:  # appending is the Actions contract
            fh.write(markdown_summary(result))
