"""Country resolution: users type SG, SGP, 702 or a name; the file speaks B_COUNTRY numeric codes."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from .errors import ConfigError
from .types import Country


@lru_cache(maxsize=1)
def _table() -> tuple[dict, ...]:
    text = resources.files("cvaudit.audit.data").joinpath("countries.json").read_text(encoding="utf-8")
    return tuple(json.loads(text)["countries"])


def all_countries() -> list[Country]:
    """Every WVS Wave 7 country (codebook B_COUNTRY), in numeric order."""
    return [Country(c["alpha2"], c["alpha3"], c["numeric"], c["name"]) for c in _table()]


def resolve_country(code: str | int) -> Country:
    """Resolve alpha-2, alpha-3 (WVS or ISO spelling), numeric code or exact name to a :class:`Country`."""
    key = str(code).strip()
    for c in _table():
        names = {c["alpha2"].upper(), c["alpha3"].upper(), c["name"].upper(), *(a.upper() for a in c["aliases"])}
        if key.upper() in names or (key.lstrip("-").isdigit() and int(key) == c["numeric"]):
            return Country(c["alpha2"], c["alpha3"], c["numeric"], c["name"])
    raise ConfigError(
        f"unknown country {code!r}: use a WVS Wave 7 country as alpha-2, alpha-3 or numeric code "
        f"(e.g. SG, SGP or 702); `cvaudit data --list-countries` lists all {len(_table())}"
    )


def country_lines() -> list[str]:
    """One aligned line per country (alpha-2, alpha-3, numeric, name): what ``cvaudit data --list-countries`` prints."""
    return [f"{c.alpha2:<3} {c.alpha3:<4} {c.numeric:>3}  {c.name}" for c in all_countries()]


def country_by_numeric(numeric: int) -> Country | None:
    for c in _table():
        if c["numeric"] == int(numeric):
            return Country(c["alpha2"], c["alpha3"], c["numeric"], c["name"])
    return None
