"""`cvaudit run` / `cvaudit demo` on the command line: user errors exit 2 with one line, no traceback,
and never leave a results.json that looks complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest


def cvaudit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from cvaudit.audit.cli import main; main()", *args],
        capture_output=True, text=True, cwd=cwd, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "telepathy"], "unknown method 'telepathy'"),
        (["--country", "XX"], "XX"),
        (["--questions", "Q99999"], "Q99999"),
        (["--questions", "no-such-set"], "no-such-set"),
        (["--format", "docx"], "unknown report format 'docx'"),
        (["--reference", "sex"], "expected attribute=group"),
        (["--attributes", "colour"], "unknown attribute 'colour'"),
        (["--limit", "zero"], "limit must be an integer"),
        (["--method", "none", "--method-param", "alpha=1"], "takes no parameters"),
        (["--method", "persona", "--method-param", "nokey"], "expected key=value"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "out"
    proc = cvaudit("run", "--out", str(out), "--no-cache", "--quiet", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("cvaudit: error:"), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    results = out / "results.json"
    assert not results.exists() or json.loads(results.read_text())["complete"] is False


def test_missing_wvs_file_leaves_no_complete_results(tmp_path):
    out = tmp_path / "out"
    proc = cvaudit("run", "--out", str(out), "--no-cache", "--quiet", "--wvs-file", str(tmp_path / "nope.csv"),
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (out / "results.json").exists()  # refused before anything was written


def test_method_option_for_another_method_is_rejected(monkeypatch):
    """A method's own option (declared in cli_options) is refused when another method is chosen."""
    from click.testing import CliRunner
    from cvaudit.audit import cli_run
    from cvaudit.audit.methods import base

    class Fancy(base.Method):
        cli_options = (click.Option(["--fancy-level", "level"], type=int),)

    monkeypatch.setitem(base._REGISTRY, "fancy", Fancy)
    opts = cli_run._method_options()
    assert opts["level"][1] == ["fancy"]
    cmd = click.Command("run", callback=cli_run._run_callback, params=[*cli_run._RUN_OPTIONS, opts["level"][0]])
    monkeypatch.setattr(cli_run, "_METHOD_OPTIONS", {"level": opts["level"]})
    seen = {}
    monkeypatch.setattr(cli_run, "_execute", lambda config: seen.setdefault("config", config))
    result = CliRunner().invoke(cmd, ["--method", "none", "--fancy-level", "3"])
    assert result.exit_code == 2 and "--fancy-level applies to --method fancy only" in result.output
    result = CliRunner().invoke(cmd, ["--method", "fancy", "--fancy-level", "3", "--method-param", "x=1"])
    assert result.exit_code == 0, result.output
    assert seen["config"].method_params == (("level", 3), ("x", "1"))


def test_run_options_map_onto_run_config(monkeypatch):
    from click.testing import CliRunner
    from cvaudit.audit import cli_run

    seen = {}
    monkeypatch.setattr(cli_run, "_execute", lambda config: seen.setdefault("config", config))
    args = ["--model", "m", "--revision", "r1", "--dtype", "float32", "--device", "cpu", "--method", "none",
            "--country", "SGP", "--questions", "Q1,Q8", "--attributes", "sex,age", "--intersections", "sex:age",
            "--min-size", "12", "--limit", "2", "--batch-size", "4", "--seed", "3", "--n-boot", "50",
            "--tau", "0.9", "--reference", "sex=Male", "--out", "o", "--cache", "c.sqlite", "--format", "html",
            "--quiet", "--trust-remote-code", "--device-map", "auto"]  # fmt: skip
    result = CliRunner().invoke(cli_run.run, args)
    assert result.exit_code == 0, result.output
    c = seen["config"]
    assert (c.model, c.revision, c.dtype, c.device, c.method, c.country) == ("m", "r1", "float32", "cpu", "none", "SGP")
    assert (c.questions, c.attributes, c.intersections) == ("Q1,Q8", ("sex", "age"), ("sex:age",))
    assert (c.min_size, c.limit, c.batch_size, c.seed, c.n_boot, c.tau) == (12, 2, 4, 3, 50, 0.9)
    assert (c.reference, c.out, c.cache, c.formats, c.progress) == ((("sex", "Male"),), "o", "c.sqlite", ("html",), False)
    assert c.trust_remote_code and c.device_map == "auto" and not c.allow_pickle
    seen.clear()
    result = CliRunner().invoke(cli_run.run, ["--no-report", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert seen["config"].formats == () and seen["config"].no_cache and seen["config"].progress
    assert seen["config"].respondents is False and seen["config"].model is None  # --model not given
    seen.clear()
    result = CliRunner().invoke(cli_run.run, ["--respondent-bootstrap", "--allow-pickle"])
    assert result.exit_code == 0, result.output
    assert seen["config"].respondents is True and seen["config"].allow_pickle is True


def test_help_lists_method_options_and_stays_light(tmp_path):
    proc = cvaudit("run", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    for flag in ("--method-param", "--wvs-file", "--reference", "--no-report", "--limit"):
        assert flag in proc.stdout


def test_demo_runs_the_documented_default_audit(monkeypatch, tmp_path):
    """`cvaudit demo` = persona method, embedded model, synthetic SG sample, core questions, default attributes."""
    from click.testing import CliRunner
    from cvaudit.audit import cli_run
    from cvaudit.audit.config import DEFAULT_ATTRIBUTES

    seen = {}
    monkeypatch.setattr(cli_run, "_execute", lambda config: seen.setdefault("config", config))
    result = CliRunner().invoke(cli_run.demo, ["--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    c = seen["config"]
    assert (c.method, c.model_id(), c.country, c.wvs_file, c.questions) == ("persona", "smollm2-135m", "SG", None, "core")
    assert c.effective_attributes() == DEFAULT_ATTRIBUTES and c.formats == ("html", "pdf")
    assert c.out == str(tmp_path / "d")
    assert "SYNTHETIC" in result.output


def test_summary_names_report_and_synthetic_data(tmp_path, capsys):
    """What the user reads at the end of a run: figures, where the files are, the synthetic warning."""
    from cvaudit.audit import cli_run

    record = {"overall": {"accuracy": {"value": 0.5, "ci": [0.25, 0.75]}, "nmae": {"value": None, "ci": None}},
              "groups": [{"attribute": "sex", "group": "Male", "flags": {"accuracy": {"status": "disfavoured"}}}],
              "data": {"synthetic": True}}  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(record))
    (tmp_path / "report.html").write_text("<html></html>")
    (tmp_path / "report.pdf").write_text("stale, from an earlier run")
    os.utime(tmp_path / "report.pdf", (1_000_000, 1_000_000))
    cli_run._print_summary(tmp_path / "results.json", tmp_path, ("html", "pdf"), since=2_000_000)
    out = capsys.readouterr().out
    assert "overall accuracy" in out and "0.500 [0.250, 0.750]" in out and "nmae" not in out
    assert "sex=Male (accuracy: disfavoured)" in out
    assert f"report:  {tmp_path / 'report.html'}" in out and "report.pdf" not in out
    assert "SYNTHETIC DATA" in out


def test_summary_prints_unavailable_subgroups_and_question_notes(tmp_path, capsys):
    from cvaudit.audit import cli_run

    record = {"overall": {}, "groups": [], "data": {"synthetic": False},
              "questions": {"notes": ["steering: 1 question(s) excluded because they are in the vectors' calibration split: Q2"]},
              "subgroups": {"unavailable": {"settlement": "column H_URBRURAL absent or all missing",
                                            "sex:settlement": "needs settlement"}}}  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(record))
    cli_run._print_summary(tmp_path / "results.json", tmp_path, ())
    out = capsys.readouterr().out.splitlines()
    assert "NOTE: subgroups 'settlement' not audited: column H_URBRURAL absent or all missing" in out
    assert "NOTE: subgroups 'sex:settlement' not audited: needs settlement" in out
    assert "NOTE: steering: 1 question(s) excluded because they are in the vectors' calibration split: Q2" in out
