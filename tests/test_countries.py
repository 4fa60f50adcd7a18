"""Country resolution against the WVS7 codebook's own country list."""

from __future__ import annotations

import json

import pytest
from cvaudit.audit.countries import all_countries, resolve_country
from cvaudit.audit.errors import ConfigError
from shared_ref import WVS7

CODEBOOK = WVS7 / "codebook.json"


@pytest.mark.parametrize("code", ["SG", "sg", "SGP", "sgp", 702, "702", " Singapore "])
def test_singapore_spellings(code):
    c = resolve_country(code)
    assert (c.alpha2, c.alpha3, c.numeric, c.name) == ("SG", "SGP", 702, "Singapore")


def test_wvs_and_iso_alpha3_for_morocco():
    # WVS writes MOR, ISO says MAR: both must find numeric 504
    assert resolve_country("MOR").numeric == 504
    assert resolve_country("MAR").numeric == 504
    assert resolve_country("MA").numeric == 504


@pytest.mark.parametrize("code", ["XX", "ZZZ", 999, "", "Atlantis"])
def test_unknown_country_is_config_error(code):
    with pytest.raises(ConfigError, match="unknown country"):
        resolve_country(code)


def test_codes_unique():
    cs = all_countries()
    for attr in ("alpha2", "alpha3", "numeric"):
        values = [getattr(c, attr) for c in cs]
        assert len(values) == len(set(values)), attr


@pytest.mark.skipif(not CODEBOOK.exists(), reason="reference codebook not available")
def test_matches_codebook_country_list():
    book = json.loads(CODEBOOK.read_text())
    numeric = {int(k) for k in book["B_COUNTRY"]["choices"]}
    assert {c.numeric for c in all_countries()} == numeric
    alpha3 = set(book["B_COUNTRY_ALPHA"]["choices"])
    ours = {c.alpha3 for c in all_countries()}
    assert alpha3 <= ours  # the codebook lists 88 alpha-3 codes for 90 numeric ones


def test_unknown_country_points_to_a_real_listing():
    """Defect 4: the message named `cvaudit data --help`, which lists no countries."""
    from cvaudit.audit.countries import country_lines

    with pytest.raises(ConfigError, match=r"`cvaudit data --list-countries` lists all 90$") as exc:
        resolve_country("XX")
    assert "\n" not in str(exc.value) and "--help" not in str(exc.value)
    lines = country_lines()
    assert len(lines) == len(all_countries()) == 90
    assert [line.split()[0] for line in lines] == [c.alpha2 for c in all_countries()]
    assert all(resolve_country(line.split()[0]).name == line.split(None, 3)[3] for line in lines)
