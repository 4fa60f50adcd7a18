"""Gate policies: thresholds per metric and attribute, read from YAML and validated strictly.

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
"""

from __future__ import annotations

import math
import os
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


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"policy: {where} must be true or false, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"policy: {where} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"policy: {where} must be a finite number, got {value!r}")
    return float(value)


#: thresholds a figure can never cross are a mistake in the policy, not a breach of it
_RANGES = {"min_ratio": (0.0, 1.0, "a ratio min/max lies in [0, 1]"),
           **{name: (0.0, math.inf, "the figure is never negative")
              for name in ("max_gap", "max_normalised_range", "max_cv", "max_abs_to_overall")}}  # fmt: skip


def _threshold(name: str, value: Any, where: str) -> float:
    x = _number(value, where)
    lo, hi, why = _RANGES.get(name, (-math.inf, math.inf, ""))
    if not lo <= x <= hi:
        raise ConfigError(f"policy: {where} = {x:g} can never be met or never fail ({why}); fix the threshold")
    return x


def _bound(value: Any, where: str) -> str:
    if value not in BOUNDS:
        raise ConfigError(f"policy: {where} 'on' must be one of {', '.join(BOUNDS)}, got {value!r}")
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
                checks.append(Check(metric, attribute, name, _threshold(name, spec, f"{where}.{name}"), bound))
    return Policy(
        name=str(raw.get("name") or source),
        require_complete=_bool(raw.get("require_complete", True), f"{source}: require_complete"),
        require_non_synthetic=_bool(raw.get("require_non_synthetic", False), f"{source}: require_non_synthetic"),
        undefined=str(undefined),
        checks=tuple(checks),
    )


def _unique_keys_loader() -> Any:
    """A SafeLoader that refuses a key given twice in one mapping: YAML would keep the last one silently,
    and ``max_gap: 0.1`` followed by ``max_gap: 0.9`` would loosen the gate unnoticed."""
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
    return UniqueKeys


def load_policy(source: Policy | dict | str | os.PathLike) -> Policy:
    """A Policy from a Policy, a mapping or a YAML file path."""
    if isinstance(source, Policy):
        return source
    if isinstance(source, dict):
        return parse_policy(source)
    import yaml

    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"policy file {os.fspath(path)!r} not found; see examples/policy.yaml for the format")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_unique_keys_loader())  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()
        msg = " ".join(line.strip() for line in first[:3])
        raise ConfigError(f"policy file {path.name} is not valid YAML ({msg})") from None
    return parse_policy(raw, source=path.name)
