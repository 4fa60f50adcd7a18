"""The synthetic generator: official layout, Singapore realism, determinism, real subgroup differences."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from cvaudit.audit.subgroups import build_groups
from cvaudit.audit.survey import load_survey
from cvaudit.audit.synthetic import (
    demo_path,
    demo_survey,
    generate_frame,
    official_header,
    to_csv_bytes,
    write_synthetic,
)
from shared_ref import WVS7

FORMAT_DOC = WVS7 / "OFFICIAL_FORMAT.md"


@pytest.fixture(scope="module")
def sg_file(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("synth") / "sg.csv", "SG", 2012, 0)


def test_official_layout(sg_file):
    raw = sg_file.read_bytes()
    assert raw.startswith(b'\xef\xbb\xbf"version";"doi";"A_YEAR";"B_COUNTRY"')
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    header = rows[0]
    assert len(header) == 455 and all(len(r) == 455 for r in rows[1:])
    assert len(rows) == 2013
    first_line = raw.decode("utf-8-sig").split("\n", 1)[0]
    assert all(cell.startswith('"') and cell.endswith('"') for cell in first_line.split(";"))
    if FORMAT_DOC.exists():
        line = [ln for ln in FORMAT_DOC.read_text().splitlines() if ln.startswith('"version";')][0]
        assert first_line == line
    r = dict(zip(header, rows[1]))
    assert r["B_COUNTRY"] == "702" and r["B_COUNTRY_ALPHA"] == "SGP" and r["A_YEAR"] == "2020"
    assert "cvaudit-synthetic" in r["version"] and "cvaudit-synthetic" in r["doi"]
    second_line = raw.decode("utf-8-sig").split("\n")[1]
    assert ';"SGP";' in second_line and ";702;" in second_line  # strings quoted, numbers bare


def test_singapore_demographics(sg_file):
    s = load_survey(sg_file, "SG")
    f = s.frame
    assert s.source.synthetic is True and s.source.weight_column == "W_WEIGHT"
    assert set(f["Q290"].dropna().astype(int)) <= {702001, 702003, 702004, 702006, 702008, 702999}
    share = f["Q290"].value_counts(normalize=True)
    assert 0.68 < share[702004] < 0.80 and 0.09 < share[702006] < 0.18 and 0.06 < share[702003] < 0.13
    assert f["Q262"].min() >= 18 and f["Q262"].max() <= 85
    assert abs(s.weights.mean() - 1.0) < 1e-3 and s.weights.std() > 0.05
    malay = f["Q290"] == 702006
    assert (f.loc[malay, "Q289"] == 5).mean() > 0.9  # Malays are overwhelmingly Muslim
    assert (f["Q289"] == 7).mean() > 0.2  # Buddhists are the largest religion


def test_missing_codes(sg_file):
    import pandas as pd

    raw = pd.read_csv(sg_file, sep=";", encoding="utf-8-sig", usecols=["Q1", "Q46", "Q86"])
    for col in ("Q1", "Q46"):
        neg = (raw[col] < 0).mean()
        assert 0.02 < neg < 0.12, (col, neg)
        assert set(raw[col][raw[col] < 0]) <= {-1, -2}
    assert (raw["Q86"] == -4).all()  # an item not asked in this country


def test_deterministic_bytes(tmp_path):
    a = to_csv_bytes(generate_frame("SG", 300, 7))
    b = to_csv_bytes(generate_frame("SG", 300, 7))
    c = to_csv_bytes(generate_frame("SG", 300, 8))
    assert a == b and a != c


def test_subgroups_really_differ(sg_file):
    """Religiosity items split religions strongly; age splits a traditional-values item."""
    s = load_survey(sg_file, "SG")
    f = s.frame
    god = f["Q164"]  # 1 = not at all important .. 10 = very important
    none_mean = god[f["Q289"] == 0].mean()
    muslim_mean = god[f["Q289"] == 5].mean()
    assert muslim_mean - none_mean > 3.0, (none_mean, muslim_mean)
    just = f["Q182"]  # homosexuality justifiable 1..10
    young = just[f["Q262"] < 35].mean()
    old = just[f["Q262"] >= 65].mean()
    assert young - old > 0.8, (young, old)
    gs = build_groups(s, ["religion"])
    assert len(gs.groups) >= 5


def test_other_country_uses_its_codes(tmp_path):
    p = write_synthetic(tmp_path / "us.csv", "US", 200, 1)
    s = load_survey(p, "USA")
    assert set(s.frame["Q290"].dropna().astype(int)) <= {840001, 840002, 840003, 840004, 840005}
    assert s.source.synthetic and s.n == 200


def test_demo_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVAUDIT_CACHE", str(tmp_path))
    p = demo_path("SG", 0)
    assert p.parent == tmp_path / "synthetic" and p.is_file()
    mtime = p.stat().st_mtime_ns
    s = demo_survey("SGP")
    assert p.stat().st_mtime_ns == mtime  # reused, not regenerated
    assert s.source.synthetic and s.n == 2012 and s.country.alpha2 == "SG"
    assert not [x for x in p.parent.iterdir() if x.name.endswith(".tmp")]
    assert official_header()[0] == "version"
    assert np.isfinite(s.weights).all()


def test_generate_frame_refuses_too_many_respondents():
    """Defect 5: the frame is built in memory; past MAX_RESPONDENTS it is a one-line ConfigError, at once."""
    import time

    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.synthetic import MAX_RESPONDENTS

    assert MAX_RESPONDENTS == 200_000
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="at most 200,000 respondents"):
        generate_frame("SG", n=100_000_000)
    assert time.perf_counter() - t0 < 1.0
    assert len(generate_frame("SG", n=3)) == 3
