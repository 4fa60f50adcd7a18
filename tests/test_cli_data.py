"""`cvaudit data` and `cvaudit synth` through the real entry point (exit codes, --json shape)."""

from __future__ import annotations

import json

import pytest
from cvaudit.audit.cli import main


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CVAUDIT_CACHE", str(tmp_path / "cache"))


def test_data_text_has_banner_and_groups(capsys):
    code, out, _ = run(["data", "--country", "SG"], capsys)
    assert code == 0
    assert out.startswith("SYNTHETIC DATA")
    assert "Subgroups with >= 30 respondents" in out and "Female" in out and "Suppressed" in out


def test_data_json_shape(capsys):
    code, out, err = run(["data", "--country", "SGP", "--json", "--intersections", "sex:age"], capsys)
    assert code == 0 and "SYNTHETIC DATA" in err
    obj = json.loads(out)
    assert {"groups", "suppressed", "questions", "data"} <= set(obj)
    assert obj["data"]["synthetic"] is True and obj["data"]["country"]["numeric"] == 702
    assert len(obj["groups"]) >= 20 and len({g["attribute"] for g in obj["groups"]}) >= 6
    assert all(set(g) == {"attribute", "group", "n", "n_eff"} and g["n"] >= 30 for g in obj["groups"])
    assert any(g["attribute"] == "sex:age" for g in obj["groups"])
    assert obj["questions"]["set"] == "core" and obj["questions"]["n"] >= 25


def test_wrong_file_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("hello;world\n1;2\n")
    code, out, err = run(["data", "--wvs-file", str(bad)], capsys)
    assert code == 2 and err.startswith("cvaudit: error:") and len(err.strip().splitlines()) == 1
    code, _, err = run(["data", "--country", "XX"], capsys)
    assert code == 2 and "unknown country" in err


def test_synth_then_data_with_unweighted_warning(tmp_path, capsys):
    out_file = tmp_path / "s.csv"
    code, out, _ = run(["synth", "--country", "SG", "--n", "120", "--seed", "3", "--out", str(out_file)], capsys)
    assert code == 0 and out_file.is_file() and "SYNTHETIC" in out
    # strip both weight columns: the loader must fall back to unweighted and the CLI must warn on stderr
    import pandas as pd

    df = pd.read_csv(out_file, sep=";", encoding="utf-8-sig").drop(columns=["W_WEIGHT", "S018"])
    df.to_csv(tmp_path / "nw.csv", sep=";", index=False)
    code, out, err = run(["data", "--wvs-file", str(tmp_path / "nw.csv"), "--json", "--attributes", "sex,age",
                          "--min-size", "10"], capsys)
    assert code == 0 and "unweighted" in err
    obj = json.loads(out)
    assert obj["data"]["weight_column"] is None and obj["attributes"] == ["sex", "age"]


def test_data_attributes_mean_what_run_means(capsys):
    """The preview is the audit's group set: run's defaults, 'all' = the nine attributes, 'none' = the country."""
    from cvaudit.audit.config import DEFAULT_ATTRIBUTES, RunConfig
    from cvaudit.audit.subgroups import ATTRIBUTES

    def attrs(*extra):
        code, out, _ = run(["data", "--json", *extra], capsys)
        assert code == 0
        return json.loads(out)["attributes"], json.loads(out)["groups"]

    default, _ = attrs()
    assert default == list(DEFAULT_ATTRIBUTES) == list(RunConfig().effective_attributes())
    every, groups = attrs("--attributes", "all")
    assert every == list(ATTRIBUTES) and len(every) == 9 and not any(g["group"] == "All respondents" for g in groups)
    _, whole = attrs("--attributes", "none")
    assert [g["group"] for g in whole] == ["All respondents"]
    code, _, err = run(["data", "--attributes", "colour"], capsys)
    assert code == 2 and "unknown attribute 'colour'" in err


def test_synth_refuses_a_non_csv_name(tmp_path, capsys):
    code, _, err = run(["synth", "--n", "10", "--out", str(tmp_path / "s.parquet")], capsys)
    assert code == 2 and "ending in .csv" in err and not (tmp_path / "s.parquet").exists()


def _synth_without(tmp_path, capsys, drop=()):
    """A small synthetic file (official layout) with the ``drop`` columns removed."""
    import pandas as pd

    src = tmp_path / "src.csv"
    code, _, _ = run(["synth", "--n", "60", "--seed", "1", "--out", str(src)], capsys)
    assert code == 0
    path = tmp_path / "edited.csv"
    pd.read_csv(src, sep=";", encoding="utf-8-sig").drop(columns=list(drop)).to_csv(path, sep=";", index=False)
    return path


def _run_refusal(wvs_file, **kw) -> str:
    """The message `cvaudit run` gives for the same groups (audit/run.py make_groups), without a model."""
    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.countries import resolve_country
    from cvaudit.audit.errors import DataError
    from cvaudit.audit.run import load_data, make_groups

    config = RunConfig(wvs_file=str(wvs_file), **kw)
    survey = load_data(config.wvs_file, resolve_country(config.country))
    with pytest.raises(DataError) as exc:
        make_groups(config, survey)
    return str(exc.value)


def test_data_refuses_zero_subgroups_as_run_does(tmp_path, capsys):
    """Defect 1: `data` printed "0 across 0 attributes" and exit 0 where `run` exits 2; now the same line."""
    nosex = _synth_without(tmp_path, capsys, drop=["Q260"])
    code, out, err = run(["data", "--wvs-file", str(nosex), "--attributes", "sex"], capsys)
    assert code == 2 and err.startswith("cvaudit: error: no subgroup can be built") and "Q260" in err
    assert err.count("\n") == 1 and "0 across 0" not in out
    assert err.strip() == f"cvaudit: error: {_run_refusal(nosex, attributes=('sex',))}"

    full = tmp_path / "src.csv"
    code, out, err = run(["data", "--wvs-file", str(full), "--min-size", "100000", "--json"], capsys)
    assert code == 2 and "no subgroup has at least 100000 respondents" in err and out == ""
    assert err.strip() == f"cvaudit: error: {_run_refusal(full, min_size=100000)}"
    code, _, err = run(["data", "--wvs-file", str(full), "--attributes", "none", "--min-size", "61"], capsys)
    assert code == 2 and "no subgroup has at least 61 respondents" in err


def test_require_groups_passes_a_usable_set_through():
    from cvaudit.audit.errors import DataError
    from cvaudit.audit.subgroups import GroupSet, build_groups, require_groups
    from cvaudit.audit.survey import demo_survey

    gs = build_groups(demo_survey("SG"), ["sex"])
    assert require_groups(gs) is gs
    with pytest.raises(DataError, match="at least 7 respondents"):
        require_groups(GroupSet([], [], ("sex",), (), 7))
    with pytest.raises(DataError, match=r"no subgroup can be built \(sex: gone\)"):
        require_groups(GroupSet([], [], ("sex",), (), 30, {"sex": "gone"}))


@pytest.mark.parametrize("spec", ["", " ", " , ", ",", ",,"])
def test_empty_question_selection_is_exit_2(spec, capsys):
    """Defect 2: '' meant the default set and ' , ' gave "0 of 0 usable", both exit 0."""
    code, out, err = run(["data", "--questions", spec], capsys)
    assert code == 2 and err.startswith("cvaudit: error: no questions selected") and err.count("\n") == 1, err
    assert repr(spec) in err and out == ""


def test_select_questions_empty_spec_raises_but_none_is_core():
    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.questions import select_questions

    assert select_questions(None) == select_questions("core")
    for spec in ("", "  ", " , "):
        with pytest.raises(ConfigError, match="no questions selected"):
            select_questions(spec)


def test_list_countries_is_what_the_unknown_country_error_points_to(capsys):
    """Defect 4: the error said `cvaudit data --help` lists the countries; it did not."""
    from cvaudit.audit.countries import all_countries

    code, _, err = run(["data", "--country", "XX"], capsys)
    assert code == 2 and "`cvaudit data --list-countries` lists all 90" in err and err.count("\n") == 1
    code, _, err = run(["synth", "--country", "XX", "--out", "never.csv"], capsys)
    assert code == 2 and "--list-countries" in err
    code, out, _ = run(["data", "--list-countries"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == len(all_countries()) == 90
    assert "SG  SGP  702  Singapore" in lines and any(line.startswith("XI  NIR  909") for line in lines)
    assert "SYNTHETIC" not in out  # exits before any data is loaded


@pytest.mark.parametrize("n", ["0", "200001", "100000000"])
def test_synth_n_is_bounded(n, tmp_path, capsys):
    """Defect 5: --n had no upper bound; 100000000 built the whole file in memory and hung."""
    out_file = tmp_path / "big.csv"
    code, _, err = run(["synth", "--n", n, "--out", str(out_file)], capsys)
    assert code == 2 and err.startswith("cvaudit: error:") and "1<=x<=200000" in err and err.count("\n") == 1
    assert not out_file.exists()
