"""`RunConfig`: every option of ``cvaudit run`` in one frozen, validated value.

The CLI maps its options 1:1 onto this class and Python users build it directly;
``to_dict()`` is what results.json records under "config", so a run can be
reproduced from its results file alone. Validation happens here, before any
model or data loads, and fails with one-line :class:`ConfigError` messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigError

FORMATS = ("html", "pdf")
DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")
ATTRIBUTES = ("sex", "age", "ethnicity", "religion", "education", "income", "marital", "settlement", "employment")
#: what ``attributes=None`` audits: seed 003's train-split attributes plus education. With
#: Singapore's synthetic sample that is 22 groups; x 34 core questions x 2 option orders
#: = 1,496 prompts, what a 5-minute persona run on 2 CPU cores affords (see
#: docs/methods-persona.md). ``attributes=ATTRIBUTES`` (CLI: ``--attributes all``) audits all nine.
DEFAULT_ATTRIBUTES = ("sex", "age", "ethnicity", "religion", "education")
#: what ``model=None`` (no ``--model``) loads: the embedded SmolLM2-135M-Instruct
DEFAULT_MODEL = "smollm2-135m"


def is_device_name(device: Any) -> bool:
    """auto, cpu, cuda, mps, cuda:N or mps:N: the names --device accepts (whether they exist is checked at load)."""
    return device in DEVICES or re.fullmatch(r"(cuda|mps):\d+", str(device)) is not None


def parse_attributes(value: Any) -> tuple[str, ...] | None:
    """``--attributes``: None (not given), the nine for 'all', ('none',), or validated names in order."""
    if value is None:
        return None
    attrs = split_csv(value)
    if not attrs:
        raise ConfigError("attributes is empty; give names like sex,age, 'all' for all nine, or 'none'")
    if attrs == ("all",):
        return ATTRIBUTES
    if attrs == ("none",):
        return attrs
    if {"all", "none"} & set(attrs):
        raise ConfigError("'all' and 'none' stand alone in --attributes; give them by themselves or list attributes")
    unknown = [a for a in attrs if a not in ATTRIBUTES]
    if unknown:
        raise ConfigError(f"unknown attribute {unknown[0]!r}; valid: {', '.join(ATTRIBUTES)}, all, none")
    return tuple(dict.fromkeys(attrs))


def split_csv(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """'a,b , c' -> ('a', 'b', 'c'); sequences pass through stripped; empty parts dropped."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(p.strip() for p in parts if p.strip())


def parse_pair(text: str, what: str, example: str) -> tuple[str, str]:
    """'key=value' -> ('key', 'value'), with a one-line error naming the expected form."""
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"bad {what} {text!r}: expected {example}")
    return key.strip(), value.strip()


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if out != float(value) or out < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def _float(name: str, value: Any, lo: float, hi: float, lo_open: bool = True, hi_open: bool = True) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in ({lo}, {hi}), got {value!r}") from None
    if not (lo < out if lo_open else lo <= out) or not (out < hi if hi_open else out <= hi):
        raise ConfigError(f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}, got {value!r}")
    return out


@dataclass(frozen=True)
class RunConfig:
    """One audit run. Defaults give the embedded model on the synthetic Singapore sample."""

    model: str | None = None  # None: not given, DEFAULT_MODEL (or a LoRA adapter's recorded base)
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False  # pickle (.bin/.pt) weights can run code: only for trusted files
    method: str = "persona"
    method_params: tuple[tuple[str, Any], ...] = ()
    country: str = "SG"
    wvs_file: str | None = None  # None: the synthetic demo sample, flagged in every output
    questions: str = "core"
    attributes: tuple[str, ...] | None = None  # None: DEFAULT_ATTRIBUTES; ("none",): whole country
    intersections: tuple[str, ...] = ()
    min_size: int = 30
    limit: int | None = None
    batch_size: int | str = "auto"
    seed: int = 0
    n_boot: int = 1000
    level: float = 0.95
    tau: float = 0.8
    alpha: float = 0.05
    reference: tuple[tuple[str, str], ...] = ()
    respondents: bool = False  # also resample each group's respondents in the bootstrap (wider, honest CIs)
    noise_correction: bool = True  # flags net of each group's sampling-noise shift (cvaudit.metrics.noise)
    out: str = "cvaudit-out"
    cache: str | None = None  # None: cvaudit.audit.embedded.cache_root()/scores.sqlite
    no_cache: bool = False
    formats: tuple[str, ...] = FORMATS
    progress: bool = True

    def __post_init__(self) -> None:

        def set_(name: str, value: Any) -> None:  # frozen: normalise in place, once
            object.__setattr__(self, name, value)

        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ConfigError(f"model must be a non-empty string (or None for {DEFAULT_MODEL}), got {self.model!r}")
        if self.model is not None:
            set_("model", self.model.strip())
        for name in ("method", "country", "questions", "out"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
            set_(name, value.strip())
        for name in ("revision", "device_map", "wvs_file", "cache"):
            value = getattr(self, name)
            if value is not None:
                set_(name, str(value))
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if not is_device_name(self.device):
            raise ConfigError(f"unknown device {self.device!r}; choose auto, cpu, cuda, cuda:N or mps")
        set_("method_params", self._method_params(self.method_params))
        set_("attributes", self._attributes(self.attributes))
        set_("intersections", self._intersections(self.intersections))
        set_("min_size", _int("min_size", self.min_size, 1))
        if self.limit is not None:
            set_("limit", _int("limit", self.limit, 1))
        if self.batch_size != "auto":
            set_("batch_size", _int("batch_size (or 'auto')", self.batch_size, 1))
        set_("seed", _int("seed", self.seed, 0))
        if not isinstance(self.n_boot, bool) and self.n_boot in (1, "1"):
            raise ConfigError("n_boot must be >= 2: one replicate is a point, not an interval (use 1000)")
        set_("n_boot", _int("n_boot", self.n_boot, 2))
        set_("level", _float("level", self.level, 0.0, 1.0))
        set_("tau", _float("tau", self.tau, 0.0, 1.0, hi_open=False))
        set_("alpha", _float("alpha", self.alpha, 0.0, 1.0))
        set_("reference", self._reference(self.reference))
        set_("formats", self._formats(self.formats))
        set_("trust_remote_code", bool(self.trust_remote_code))
        set_("allow_pickle", bool(self.allow_pickle))
        set_("no_cache", bool(self.no_cache))
        set_("respondents", bool(self.respondents))
        set_("noise_correction", bool(self.noise_correction))
        set_("progress", bool(self.progress))

    @staticmethod
    def _method_params(params: Any) -> tuple[tuple[str, Any], ...]:
        items = params.items() if isinstance(params, dict) else params
        out: dict[str, Any] = {}
        for item in items or ():
            key, value = parse_pair(item, "method parameter", "key=value") if isinstance(item, str) else item
            if not str(key).isidentifier():
                raise ConfigError(f"bad method parameter name {key!r}: use letters, digits and underscores")
            if key in out:
                raise ConfigError(f"method parameter {key!r} given twice")
            out[str(key)] = value
        return tuple(sorted(out.items()))

    @staticmethod
    def _attributes(value: Any) -> tuple[str, ...] | None:
        return parse_attributes(value)

    @staticmethod
    def _intersections(value: Any) -> tuple[str, ...]:
        out = []
        for spec in split_csv(value):
            parts = [p.strip() for p in spec.split(":")]
            if len(parts) < 2 or any(p not in ATTRIBUTES for p in parts) or len(set(parts)) != len(parts):
                raise ConfigError(
                    f"bad intersection {spec!r}: expected attributes joined by ':' such as sex:age "
                    f"(valid: {', '.join(ATTRIBUTES)})"
                )
            out.append(":".join(parts))
        return tuple(dict.fromkeys(out))

    @staticmethod
    def _reference(value: Any) -> tuple[tuple[str, str], ...]:
        items = value.items() if isinstance(value, dict) else value
        out: dict[str, str] = {}
        for item in items or ():
            attr, group = (
                parse_pair(item, "reference", "attribute=group, e.g. sex=Female")
                if isinstance(item, str)
                else (str(item[0]), str(item[1]))
            )
            if attr in out:
                raise ConfigError(f"reference for {attr!r} given twice")
            out[attr] = group
        return tuple(sorted(out.items()))

    @staticmethod
    def _formats(value: Any) -> tuple[str, ...]:
        formats = split_csv(value)
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise ConfigError(f"unknown report format {bad[0]!r}; choose from {', '.join(FORMATS)} (or --no-report)")
        return tuple(dict.fromkeys(formats))

    def model_id(self) -> str:
        """The model to load when no method overrides it: ``model``, or the embedded default."""
        return DEFAULT_MODEL if self.model is None else self.model

    def effective_attributes(self) -> tuple[str, ...]:
        return DEFAULT_ATTRIBUTES if self.attributes is None else self.attributes

    def method_kwargs(self) -> dict[str, Any]:
        return dict(self.method_params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of every field (tuples as lists), for results.json "config".

        ``progress`` is left out: it changes what the terminal shows, not the audit, so a
        ``--quiet`` re-run must give the same results.json.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "progress":
                continue
            value = getattr(self, f.name)
            if f.name in ("method_params", "reference"):
                value = {k: v for k, v in value}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["attributes_effective"] = list(self.effective_attributes())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild a config from results.json "config" (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
