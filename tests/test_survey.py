"""The survey loader on small files written in the official WVS7 layout, plus .dta/.parquet/.sav round trips."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from cvaudit.audit.errors import ConfigError, DataError
from cvaudit.audit.survey import load_survey
from cvaudit.audit.synthetic import official_header

STRING_COLS = {"version", "doi", "B_COUNTRY_ALPHA", "C_COW_ALPHA", "N_REGION_ISO", "LNGE_ISO"}


def official_csv(path, rows, sep=";", bom=True, header=None, quote=True):
    """Write rows (dicts of overrides) with every official column; unspecified numeric cells are -4."""
    header = list(header or official_header())
    lines = [sep.join(f'"{h}"' if quote else h for h in header)]
    for r in rows:
        cells = []
        for h in header:
            v = r.get(h, "WVS 7 v6.0" if h == "version" else ("" if h in STRING_COLS else -4))
            cells.append(f'"{v}"' if h in STRING_COLS and quote else str(v))
        lines.append(sep.join(cells))
    text = "\r\n".join(lines) + "\r\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def person(country=702, **kw):
    base = {"B_COUNTRY": country, "B_COUNTRY_ALPHA": "SGP" if country == 702 else "DEU", "A_YEAR": 2020,
            "Q260": 1, "Q262": 30, "W_WEIGHT": 1.0, "S018": 0.5, "Q1": 1, "Q2": 2}
    base.update(kw)
    return base


@pytest.fixture
def small(tmp_path):
    rows = [person(Q1=1, W_WEIGHT=0.5), person(Q1=-1, W_WEIGHT=1.5, Q260=2), person(Q1=4, Q2=-2, W_WEIGHT=2.0),
            person(country=276, Q1=3)]
    return official_csv(tmp_path / "WVS_Cross-National_Wave_7_csv_v6_0.csv", rows)


def test_official_csv_loads_filters_and_marks_missing(small):
    s = load_survey(small, "SG")
    assert len(s.frame) == 3 and list(s.frame.index) == [0, 1, 2]
    assert s.frame["Q1"].tolist()[0] == 1.0 and np.isnan(s.frame["Q1"].tolist()[1]) and s.frame["Q1"][2] == 4.0
    assert np.isnan(s.frame["Q2"][2])
    assert all(s.frame[c].dtype == np.float64 for c in s.frame.columns)
    assert s.weights.tolist() == [0.5, 1.5, 2.0] and s.source.weight_column == "W_WEIGHT"
    assert s.source.sha256 == hashlib.sha256(small.read_bytes()).hexdigest()
    assert s.source.synthetic is False and s.source.format == "csv" and s.source.n_respondents == 3
    assert "Y001" not in s.frame.columns and "D_INTERVIEW" not in s.frame.columns  # only needed columns read
    assert s.country.numeric == 702
    assert load_survey(small, 276).frame["Q1"].tolist() == [3.0]


def test_birth_year_and_survey_year_are_read_for_disca_cohorts(tmp_path):
    """DISCA's cohorts use A_YEAR - Q261 (METHODS.md); the loader must keep both columns."""
    from cvaudit.personas.panel import respondent_ages

    rows = [person(Q261=1985, Q262=36), person(Q261=1964, A_YEAR=2019, Q262=54), person(Q261=-2, Q262=41)]
    s = load_survey(official_csv(tmp_path / "w.csv", rows), "SG")
    assert {"A_YEAR", "Q261"} <= set(s.frame.columns)
    assert respondent_ages(s.frame).tolist() == [35.0, 55.0, 41.0]  # a missing birth year falls back to Q262


def test_s018_fallback_and_unweighted_warning(tmp_path):
    header = [h for h in official_header() if h != "W_WEIGHT"]
    p = official_csv(tmp_path / "a.csv", [person(S018=0.2), person(S018=0.6)], header=header)
    s = load_survey(p, "SGP")
    assert s.source.weight_column == "S018" and s.weights.tolist() == [0.2, 0.6]
    assert any("S018" in n for n in s.source.notes) and not any("unweighted)" in n for n in s.source.notes)
    # the codebook's S018 is 1000/N: one value for the whole country, which weights nothing; say so
    flat = load_survey(official_csv(tmp_path / "b.csv", [person(S018=0.5), person(S018=0.5)], header=header), "SGP")
    assert any("same for every respondent here, so the distributions are unweighted" in n for n in flat.source.notes)
    header = [h for h in header if h != "S018"]
    p = official_csv(tmp_path / "b.csv", [person(), person()], header=header)
    s = load_survey(p, 702)
    assert s.source.weight_column is None and s.weights.tolist() == [1.0, 1.0]
    assert any("unweighted" in n for n in s.source.notes)


@pytest.mark.parametrize("sep", [",", "\t"])
def test_comma_and_tab_exports_and_lowercase_headers(tmp_path, sep):
    header = [h.lower() for h in official_header()]
    rows = [{k.lower(): v for k, v in person(Q1=2).items()}]
    p = official_csv(tmp_path / "x.csv", rows, sep=sep, bom=False, header=header, quote=False)
    s = load_survey(p, "SG")
    assert s.frame["Q1"].tolist() == [2.0] and "Q260" in s.frame.columns


def frame_for_binary():
    return pd.DataFrame({"B_COUNTRY": [702, 702, 276], "W_WEIGHT": [1.0, 2.0, 1.0], "Q260": [1, 2, 1],
                         "Q262": [20, 70, 40], "Q1": [1, -1, 2], "Q164": [10, 3, -4], "Y001": [1, 2, 3]})


def test_parquet_round_trip(tmp_path):
    p = tmp_path / "w.parquet"
    frame_for_binary().rename(columns={"Q1": "q1"}).to_parquet(p)
    s = load_survey(p, "SG")
    assert s.source.format == "parquet" and s.frame["Q1"].tolist()[0] == 1.0 and np.isnan(s.frame["Q1"][1])
    assert s.frame["Q164"].tolist() == [10.0, 3.0] and s.weights.tolist() == [1.0, 2.0]


def test_stata_round_trip(tmp_path):
    p = tmp_path / "w.dta"
    frame_for_binary().to_stata(p, write_index=False)
    s = load_survey(p, "SG")
    assert s.source.format == "dta" and s.frame["Q262"].tolist() == [20.0, 70.0] and np.isnan(s.frame["Q1"][1])


def test_spss_round_trip(tmp_path):
    pyreadstat = pytest.importorskip("pyreadstat")
    p = tmp_path / "w.sav"
    pyreadstat.write_sav(frame_for_binary(), str(p))
    s = load_survey(p, "SG")
    assert s.source.format == "sav" and s.frame["Q164"].tolist() == [10.0, 3.0]


def test_synthetic_marker_detected(tmp_path):
    p = official_csv(tmp_path / "s.csv", [person(version="cvaudit-synthetic v1 (NOT WVS DATA)")])
    assert load_survey(p, "SG").source.synthetic is True


# ------------------------------------------------------------------ errors


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_survey(tmp_path / "nope.csv", "SG")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_survey(tmp_path / "empty.csv", "SG")


def test_not_a_wvs_file(tmp_path):
    p = tmp_path / "other.csv"
    p.write_text("a;b;c\n1;2;3\n")
    with pytest.raises(DataError, match="B_COUNTRY"):
        load_survey(p, "SG")
    p.write_text("B_COUNTRY;foo\n702;1\n")
    with pytest.raises(DataError, match="question columns"):
        load_survey(p, "SG")


def test_wrong_separator(tmp_path):
    p = official_csv(tmp_path / "pipe.csv", [person()], sep="|")
    with pytest.raises(DataError, match="separator"):
        load_survey(p, "SG")
    # header with ';' but data rows with ','
    good = official_csv(tmp_path / "g.csv", [person()])
    lines = good.read_bytes().split(b"\r\n")
    (tmp_path / "mixed.csv").write_bytes(lines[0] + b"\r\n" + lines[1].replace(b";", b",") + b"\r\n")
    with pytest.raises(DataError, match="separator"):
        load_survey(tmp_path / "mixed.csv", "SG")


def test_undecodable(tmp_path):
    p = official_csv(tmp_path / "u.csv", [person(N_REGION_ISO="SG-01")])
    p.write_bytes(p.read_bytes().replace(b"SG-01", b"S\xe9G"))
    with pytest.raises(DataError, match="UTF-8"):
        load_survey(p, "SG")
    (tmp_path / "u16.csv").write_bytes("\ufeffB_COUNTRY;Q1\n702;1\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF"):
        load_survey(tmp_path / "u16.csv", "SG")


def test_truncated_and_ragged_rows(tmp_path):
    p = official_csv(tmp_path / "t.csv", [person(), person()])
    data = p.read_bytes()
    (tmp_path / "trunc.csv").write_bytes(data[: len(data) - 400])
    with pytest.raises(DataError, match="truncated or ragged"):
        load_survey(tmp_path / "trunc.csv", "SG")
    lines = data.split(b"\r\n")
    lines[1] = lines[1] + b";7"
    (tmp_path / "ragged.csv").write_bytes(b"\r\n".join(lines))
    with pytest.raises(DataError, match="line 2"):
        load_survey(tmp_path / "ragged.csv", "SG")


def test_non_numeric_code(tmp_path):
    p = official_csv(tmp_path / "n.csv", [person(), person(Q1="abc")])
    with pytest.raises(DataError, match="Q1.*'abc'"):
        load_survey(p, "SG")


def test_country_not_present_lists_countries(small):
    with pytest.raises(DataError, match=r"no respondents of France.*DE \(Germany, 276\), SG \(Singapore, 702\)"):
        load_survey(small, "FR")
    with pytest.raises(ConfigError):
        load_survey(small, "XX")


def test_no_demographic_columns(tmp_path):
    header = [h for h in official_header() if not h.startswith(("Q26", "Q27", "Q28", "Q29", "X003", "H_URB"))]
    p = official_csv(tmp_path / "nodemo.csv", [person()], header=header)
    with pytest.raises(DataError, match="demographic"):
        load_survey(p, "SG")


def test_unsupported_and_corrupt_binary(tmp_path):
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match="unsupported"):
        load_survey(tmp_path / "x.xlsx", "SG")
    (tmp_path / "x.dta").write_bytes(b"not stata at all" * 10)
    with pytest.raises(DataError, match="Stata"):
        load_survey(tmp_path / "x.dta", "SG")
    (tmp_path / "x.parquet").write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="parquet"):
        load_survey(tmp_path / "x.parquet", "SG")


@pytest.mark.parametrize(("column", "value"), [("Q260", "1.5"), ("Q1", "2.5"), ("Q289", "-1.5"), ("B_COUNTRY", "702.5"),
                                               ("Q262", "inf"), ("Q290", "1e-3")])  # fmt: skip
def test_non_integer_code(tmp_path, column, value):
    """Defect 3: Q260 = 1.5 was truncated into Male; a fractional code is refused like a non-numeric one."""
    p = official_csv(tmp_path / "f.csv", [person(), person(), person(**{column: value})])
    with pytest.raises(DataError, match=rf"column {column} has a non-integer code '.*' \(data row 3\); WVS answers "
                                        "must be integer codes"):  # fmt: skip
        load_survey(p, "SG")


def test_integer_valued_floats_and_empty_cells_stay_allowed(tmp_path):
    p = official_csv(tmp_path / "ok.csv", [person(Q260="2.0", Q1="", W_WEIGHT="0.75"), person(Q2="-1.0")])
    s = load_survey(p, "SG")
    assert s.frame["Q260"].tolist() == [2.0, 1.0] and np.isnan(s.frame["Q1"][0]) and np.isnan(s.frame["Q2"][1])
    assert s.weights.tolist() == [0.75, 1.0]  # weights are not codes: fractions are fine


def test_non_integer_code_in_binary_file(tmp_path):
    frame = frame_for_binary().astype({"Q260": float})
    frame.loc[1, "Q260"] = 1.25
    frame.to_parquet(tmp_path / "w.parquet")
    with pytest.raises(DataError, match=r"column Q260 has a non-integer code '1.25' \(data row 2\)"):
        load_survey(tmp_path / "w.parquet", "SG")


def test_non_integer_code_row_counts_across_chunks(tmp_path, monkeypatch):
    import cvaudit.audit.survey as survey

    monkeypatch.setattr(survey, "CHUNK_ROWS", 2)
    rows = [person() for _ in range(4)] + [person(Q57="3.5")]
    with pytest.raises(DataError, match=r"Q57 has a non-integer code '3.5' \(data row 5\)"):
        load_survey(official_csv(tmp_path / "c.csv", rows), "SG")
