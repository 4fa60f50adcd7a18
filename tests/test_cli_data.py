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
