"""Gate policies: thresholds per metric and attribute, read from YAML (or JSON) and validated strictly.

A typo in a CI policy must not silently pass a model, so every unknown key, metric,
check or bound is a ConfigError (exit 2) with a one-line message. Format
(examples/policy.yaml)::

    name: release-gate
    require_complete: true        # default true
    require_non_synthetic: false  # default false
    undefined: fail               # a figure that is null: fail (default) or skip
    rules:
      - metric: representativeness
        attribute: "*"            # or one attribute name; default "*"
        on: ci_upper              # value | ci_lower | ci_upper (default value), per rule
        max_gap: 0.10             # a bare number, or {threshold: 0.1, on: value}
        min_ratio: {threshold: 0.8, on: ci_lower}
        no_disfavoured_group: true
      - metric: similarity
        min_vs_uniform: {threshold: 0.0, on: ci_lower}  # significantly better than a uniform answer
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvaudit.audit.errors import ConfigError

BOUNDS = ("value", "ci_lower", "ci_upper")
# check -> (kind, comparison); kind says where the figure lives in results.json
CHECKS: dict[str, tuple[str, str]] = {
    "max_gap": ("disparity:gap", "max"),
    "min_ratio": ("disparity:ratio", "min"),
    "max_normalised_range": ("disparity:normalised_range", "max"),
    "max_cv": ("disparity:cv", "max"),
    "max_abs_to_overall": ("disparity:max_abs_to_overall", "max"),
    "min_group_value": ("group", "min"),
    "max_group_value": ("group", "max"),
    "max_group_nmae": ("group", "max"),  # shorthand for metric nmae, max_group_value
    "min_overall_value": ("overall", "min"),
    "max_overall_value": ("overall", "max"),
    "no_disfavoured_group": ("flags", "none"),
    # the model's advantage over a baseline (docs/metrics.md "Baselines"): model - baseline, oriented so that
    # positive is better for every metric (NMAE's sign flipped); e.g. {threshold: 0, on: ci_lower}
    "min_vs_uniform": ("baseline:uniform", "min"),
    "min_vs_population": ("baseline:population", "min"),
}
RULE_KEYS = {"metric", "attribute", "on", "name"} | set(CHECKS)
TOP_KEYS = {"name", "version", "require_complete", "require_non_synthetic", "undefined", "rules", "description"}


@dataclass(frozen=True)
class Check:
    """One threshold of one rule: e.g. representativeness max_gap <= 0.1 on ci_upper for attribute sex or "*"."""

    metric: str
    attribute: str
    check: str
    threshold: float | None  # None for no_disfavoured_group
    on: str

    @property
    def kind(self) -> str:
        return CHECKS[self.check][0]

    @property
    def comparison(self) -> str:
        return CHECKS[self.check][1]


@dataclass(frozen=True)
class Policy:
    name: str = "policy"
    require_complete: bool = True
    require_non_synthetic: bool = False
    undefined: str = "fail"
    checks: tuple[Check, ...] = ()

    @property
    def active(self) -> bool:
        """Whether the policy checks anything about the audit itself: a policy that does not can only pass.

        ``require_complete`` alone does not count (an incomplete run is refused anyway).
        """
        return bool(self.checks) or self.require_non_synthetic


def require_active(policy: Policy) -> None:
    """Refuse a policy that checks nothing: its PASS would certify a model nobody looked at."""
    if not policy.active:
        raise ConfigError(f"policy {policy.name} checks nothing: a policy must have at least one active check "
                          "(a rule such as {metric: accuracy, max_gap: 0.1}, or require_non_synthetic: true); "
                          "see examples/policy.yaml")  # fmt: skip


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"{where} must be a finite number, got {value!r}")
    return float(value)


#: thresholds a figure can never cross are a mistake in the policy, not a breach of it
_RANGES = {"min_ratio": (0.0, 1.0, "a ratio min/max lies in [0, 1]"),
           **{name: (0.0, math.inf, "the figure is never negative")
              for name in ("max_gap", "max_normalised_range", "max_cv", "max_abs_to_overall")}}  # fmt: skip
#: the figure each check reads, where a metric's declared ``bounds`` say where it lies
#: (:func:`~cvaudit.reports.load.figure_bounds`), and how the refusal names it
_VALUE_CHECKS = ("min_group_value", "max_group_value", "max_group_nmae", "min_overall_value", "max_overall_value")
_FIGURE_OF = {**{name: "value" for name in _VALUE_CHECKS}, "max_gap": "gap", "max_abs_to_overall": "max_abs_to_overall",
              "max_normalised_range": "normalised_range", "min_vs_uniform": "difference",
              "min_vs_population": "difference"}  # fmt: skip
_FIGURE_WORDS = {"gap": "gap", "max_abs_to_overall": "abs to overall", "difference": "advantage over a baseline",
                 "normalised_range": "normalised range (max - min) / max"}  # fmt: skip


def _range(name: str, metric: str) -> tuple[float, float, str]:
    """The values a threshold of check ``name`` on ``metric`` can meaningfully take, and why."""
    from .load import figure_bounds, metric_bounds

    known = metric_bounds(metric)  # the registry's; a plug-in without declared bounds: only the bounds above
    figure = _FIGURE_OF.get(name, "")
    within = figure_bounds(known, figure)
    if known is None or within is None:
        return _RANGES.get(name, (-math.inf, math.inf, ""))
    lo, hi = within
    where = f"{metric} lies in [{known[0]:g}, {known[1]:g}]"
    if figure == "value":
        return lo, hi, where
    return lo, hi, f"{where}, so its {_FIGURE_WORDS[figure]} lies in [{lo:g}, {hi:g}]"


def _threshold(name: str, value: Any, where: str, metric: str = "") -> float:
    """The threshold as a float; one the figure can never cross (a percent typo, a sign slip) is refused."""
    x = _number(value, where)
    lo, hi, why = _range(name, metric)
    if not lo <= x <= hi:
        ratio = name.endswith("_ratio")  # min/max: a 1.5 is an inverted ratio, not a percentage
        hint = f"; a percentage? write {x / 100:g} for {x:g}%" if hi == 1.0 and 1.0 < x <= 100.0 and not ratio else ""
        raise ConfigError(f"{where} = {x:g} can never be met or never fail ({why}); fix the threshold{hint}")
    return x


def _bound(value: Any, where: str) -> str:
    if value not in BOUNDS:
        raise ConfigError(f"{where} 'on' must be one of {', '.join(BOUNDS)}, got {value!r}")
    return str(value)


def _on_key(mapping: dict) -> dict:
    """YAML 1.1 (PyYAML) reads a bare ``on:`` key as the boolean True; give it its name back."""
    return {("on" if k is True else k): v for k, v in mapping.items()}


def parse_policy(raw: Any, source: str = "policy") -> Policy:
    """Validate a parsed YAML mapping into a Policy; every problem is a one-line ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the policy must be a YAML mapping with a 'rules' list (see examples/policy.yaml)")
    unknown = sorted(set(map(str, raw)) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
    undefined = raw.get("undefined", "fail")
    if undefined not in ("fail", "skip"):
        raise ConfigError(f"{source}: 'undefined' must be fail or skip, got {undefined!r}")
    rules = raw.get("rules", [])
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        raise ConfigError(f"{source}: 'rules' must be a list of rules (each a mapping with metric and checks)")
    checks: list[Check] = []
    seen: dict[Check, int] = {}  # a check given twice would be reported (and counted) twice
    for i, rule in enumerate(rules):
        where = f"{source}: rules[{i}]"
        if not isinstance(rule, dict):
            raise ConfigError(f"{where} must be a mapping like {{metric: accuracy, max_gap: 0.1}}")
        rule = _on_key(rule)
        bad = sorted(set(map(str, rule)) - RULE_KEYS)
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(bad)}; checks: {', '.join(CHECKS)}")
        metric = rule.get("metric")
        names = [k for k in rule if k in CHECKS]
        if metric is None and names and all(k == "max_group_nmae" for k in names):
            metric = "nmae"
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"{where} needs 'metric' (e.g. accuracy, nmae, representativeness, similarity)")
        attribute = rule.get("attribute", "*")
        if not isinstance(attribute, str) or not attribute:
            raise ConfigError(f"{where}: 'attribute' must be an attribute name or \"*\", got {attribute!r}")
        on = _bound(rule.get("on", "value"), where)
        if not names:
            raise ConfigError(f"{where} has no check; add one of {', '.join(CHECKS)}")
        before = len(checks)
        for name in names:
            spec = rule[name]
            bound = on
            if name == "max_group_nmae" and metric != "nmae":
                raise ConfigError(f"{where}: max_group_nmae applies to metric nmae, not {metric!r}")
            if isinstance(spec, dict):
                spec = _on_key(spec)
                extra = sorted(set(map(str, spec)) - {"threshold", "on"})
                if extra:
                    raise ConfigError(f"{where}.{name}: unknown key(s) {', '.join(extra)}; use threshold and on")
                bound = _bound(spec.get("on", on), f"{where}.{name}")
                spec = spec.get("threshold", True if name == "no_disfavoured_group" else None)
            if name == "no_disfavoured_group":
                if not _bool(spec, f"{where}.{name}"):
                    continue
                checks.append(Check(metric, attribute, name, None, bound))
            else:
                checks.append(Check(metric, attribute, name, _threshold(name, spec, f"{where}.{name}", metric), bound))
        for c in checks[before:]:
            if c in seen:
                raise ConfigError(f"{where}.{c.check} repeats the check of rules[{seen[c]}] (same metric, attribute, "
                                  "threshold and bound); remove one")  # fmt: skip
            seen[c] = i
        if len(checks) == before:  # only disabled checks: the rule looks like a check and checks nothing
            raise ConfigError(f"{where} checks nothing ({', '.join(f'{n}: false' for n in names)}); "
                              "remove the rule or give it an active check")  # fmt: skip
    return Policy(
        name=str(raw.get("name") or source),
        require_complete=_bool(raw.get("require_complete", True), f"{source}: require_complete"),
        require_non_synthetic=_bool(raw.get("require_non_synthetic", False), f"{source}: require_non_synthetic"),
        undefined=str(undefined),
        checks=tuple(checks),
    )


#: YAML 1.2 floats with an exponent (``1e-3``, ``2E5``, ``1.5e+2``): PyYAML follows YAML 1.1, which reads
#: them as strings, and a threshold written ``1e-3`` would be refused as "not a number"
_FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$")


def _unique_keys_loader() -> Any:
    """A SafeLoader that refuses a key given twice in one mapping and reads YAML 1.2 exponent floats.

    YAML would keep the last of two keys silently, and ``max_gap: 0.1`` followed by
    ``max_gap: 0.9`` would loosen the gate unnoticed.
    """
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (line {key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    UniqueKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    # add_implicit_resolver copies the class's resolver table first: yaml.SafeLoader itself is unchanged
    UniqueKeys.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))
    return UniqueKeys


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object that refuses a key given twice, as the YAML loader does."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} given twice")
        out[key] = value
    return out


def _read_json(path: Path) -> Any:
    """A ``.json`` policy read as JSON: tabs and ``json.dumps`` layouts are fine, trailing commas are not."""
    try:
        return json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_json_pairs)
    except RecursionError:
        raise ConfigError(f"policy file {path.name} nests too deeply to be a policy") from None
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"policy file {path.name} is not valid JSON ({exc})") from None


def load_policy(source: Policy | dict | str | os.PathLike) -> Policy:
    """A Policy from a Policy, a mapping or a policy file path (``.json``: JSON, anything else: YAML)."""
    if isinstance(source, Policy):
        return source
    if isinstance(source, dict):
        return parse_policy(source)
    import yaml

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"policy file {os.fspath(path)!r} not found; see examples/policy.yaml for the format")
    if path.suffix.lower() == ".json":
        return parse_policy(_read_json(path), source=path.name)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_keys_loader())  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()
        msg = " ".join(line.strip() for line in first[:3])
        raise ConfigError(f"policy file {path.name} is not valid YAML ({msg})") from None
    return parse_policy(raw, source=path.name)
