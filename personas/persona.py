"""Persona texts for the ``persona`` method, built from a subgroup's own attributes only.

Seed 003 prompts "You are a 25-34 year old Malay woman living in Singapore ...". The
wording lives in ``texts/persona.txt`` (the sentence frame) and ``texts/phrases.json``
(label -> words per attribute) so it can be read, reviewed and changed without code.
Labels come from the data layer's readable group labels ("Female", "25-34",
"Higher education"); unknown labels fall back to a neutral "Your X is <label>."
sentence instead of failing, so a new country's ethnic groups still get a persona.
"""

from __future__ import annotations

import json
import re
import string
from functools import lru_cache
from importlib import resources
from pathlib import Path

from cvaudit.audit.errors import ConfigError
from cvaudit.audit.types import Country, Group

#: attributes fused into the identity phrase, in the order they are spoken
IDENTITY = ("age", "ethnicity", "sex")
#: attributes that add one sentence each, in this order
DETAILS = ("religion", "education", "income", "marital", "settlement", "employment")
#: the fields a persona template may use
FIELDS = ("identity", "country", "details")

_PREFIX = re.compile(r"^[A-Z]{2,3}:\s*")  # codebook country prefix "SG: Malay"
_PAREN = re.compile(r"\s*\([^)]*\)\s*$")
_RANGE = re.compile(r"^(\d+)\s*(?:-|–|to)\s*(\d+)(?:\s*years?)?(?:\s*old)?$", re.I)
_OVER = re.compile(r"^(\d+)\s*(?:\+|and over|and older|or over|or older|years and over)(?:\s*years?)?$", re.I)
_UNDER = re.compile(r"^(?:under|below|less than)\s*(\d+)(?:\s*years?)?$", re.I)


def _read_text(name: str) -> str:
    return resources.files("cvaudit.personas").joinpath("texts", name).read_text(encoding="utf-8")


@lru_cache(maxsize=8)
def load_template(path: str | None = None) -> str:
    """The sentence frame: the non-comment lines of ``persona.txt`` (or a user's file)."""
    if path is None:
        raw = _read_text("persona.txt")
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"persona template {path!r} not found; pass an existing text file or omit template=")
        try:
            raw = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"persona template {path!r} is not UTF-8 text; re-save it as UTF-8") from None
    lines = [ln for ln in raw.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    text = " ".join(ln.strip() for ln in lines)
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:  # a lone "{" or "}"
        raise ConfigError(f"persona template {path or 'persona.txt'!r} is malformed ({exc}); write literal braces as {{{{ }}}}") from None
    unknown = sorted(used - set(FIELDS))
    if unknown:
        raise ConfigError(f"persona template field {{{unknown[0]}}} is unknown; use only {{identity}}, {{country}}, {{details}}")
    for field in ("identity", "country"):
        if field not in used:
            raise ConfigError(f"persona template must contain {{{field}}}; see docs/methods-persona.md")
    return text


@lru_cache(maxsize=1)
def phrases() -> dict:
    return json.loads(_read_text("phrases.json"))


def clean_label(label: str) -> str:
    """Drop codebook decorations from a label ("SG: ", a trailing "(ISCED 6)", " years")."""
    s = _PREFIX.sub("", label.strip())
    s = _PAREN.sub("", s)
    s = re.sub(r"\s+years?$", "", s, flags=re.I)
    return re.sub(r"\s+", " ", s).strip()


def normalise_label(label: str) -> str:
    """The lookup key of a label in phrases.json: cleaned and lower-cased."""
    return clean_label(label).lower()


def lookup_phrase(attribute: str, label: str) -> str | None:
    """phrases.json's words for ``label`` of ``attribute`` (exact, then cleaned key; else the fallback).

    Shared by persona texts and DISCA panel texts so a group is described the same way in both.
    """
    table = phrases().get(attribute, {})
    for key in (label.strip().lower(), normalise_label(label)):
        if key in table:
            return table[key]
    return table.get("fallback", "{label}")


def _age_words(label: str) -> tuple[str, str]:
    """(adjective before the noun, phrase after it) for an age-band label."""
    s = normalise_label(label)
    if m := _RANGE.match(s):
        return f"{m.group(1)}-{m.group(2)} year old", ""
    if m := _OVER.match(s):
        return "", f" aged {m.group(1)} or over"
    if m := _UNDER.match(s):
        return "", f" under {m.group(1)} years old"
    return "", f" in the age group {label.strip()}"


def _article(word: str) -> str:
    """'a' or 'an' by sound: numbers 8, 11, 18, 80-89 and vowel words (not 'Eu'/'Uni'/'One') take 'an'."""
    w = word.lower()
    if m := re.match(r"\d+", w):
        n = m.group(0)
        return "an" if n.startswith("8") or n in ("11", "18") else "a"
    if w.startswith(("eu", "uni", "use", "one", "uk")):
        return "a"
    return "an" if w[:1] in "aeiou" else "a"


def _identity(values: dict[str, str], country: Country) -> tuple[str, str]:
    """'a 25-34 year old Malay woman' plus any sentence for an 'other' ethnicity."""
    pre: list[str] = []
    post = ""
    extra = ""
    if "age" in values:
        adj, post = _age_words(values["age"])
        if adj:
            pre.append(adj)
    if "ethnicity" in values:
        word = lookup_phrase("ethnicity", values["ethnicity"])
        if word is None:  # "Other": not an adjective; say it in a sentence instead
            extra = phrases()["ethnicity_other_sentence"].format(country=country.name)
        else:
            pre.append(word.format(label=clean_label(values["ethnicity"])))
    noun = lookup_phrase("sex", values["sex"]) if "sex" in values else "person"
    words = [*pre, noun or "person"]
    return f"{_article(words[0])} {' '.join(words)}{post}", extra


def persona_text(group: Group, country: Country, template: str | None = None) -> str | None:
    """The system text describing ``group``; the whole-country group is "a person living in <country>".

    Only the group's own attributes are used (no guessed traits). ``template`` is an
    optional path to a custom frame with the same fields as ``texts/persona.txt``.
    Returns ``None`` only when the template renders to nothing.
    """
    values = {k: v for k, v in group.values if k in IDENTITY or k in DETAILS}
    identity, details = _identity(values, country)
    for attr in DETAILS:
        if attr in values:
            sentence = lookup_phrase(attr, values[attr]) or ""
            details += sentence.format(label=clean_label(values[attr]), country=country.name)
    text = load_template(template).format(identity=identity, country=country.name, details=details).strip()
    return text or None
