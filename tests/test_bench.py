"""The benchmark runs end to end on CPU and its figures are consistent with their definitions."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner
from cvaudit.audit.cli_bench import bench, build_model


def test_bench_cli_tiny(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "bench.json"
    args = ["--shape", "tiny", "--device", "cpu", "--prompts", "12", "--max-groups", "2", "--naive-prompts", "6",
            "--anchor-batch", "4", "--repeat", "3", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(bench, args)
    assert res.exit_code == 0, res.output
    assert "engine (exact) vs naive" in res.output
    r = json.loads(out.read_text())
    from cvaudit.audit.questions import select_questions

    ind, aud = r["workloads"]["independent"], r["workloads"]["audit"]
    assert ind["prompts"] == 12 and 12 * 120 <= ind["tokens"] <= 12 * 260
    assert aud["prompts"] == 2 * len(select_questions("core")) * 2  # groups x questions x orders
    for w in (ind, aud):
        assert w["floor_s"] == pytest.approx(2 * r["params"] * w["tokens"] / r["matmul_flops"])
        for way in ("naive", "anchor", "engine_exact", "engine_reuse"):
            assert w[way]["seconds"] > 0
            assert len(w[way]["runs_s"]) == 3 and w[way]["seconds"] == pytest.approx(sorted(w[way]["runs_s"])[1])  # median
            assert w[way]["tokens_per_s"] == pytest.approx(w["tokens"] / w[way]["seconds"])
        for way in ("engine_exact", "engine_reuse"):
            assert w[way]["max_abs_logprob_diff_vs_naive"] < 1e-4  # same numbers as one prompt per pass
        assert w["ratios"]["naive_over_engine"] == pytest.approx(w["naive"]["seconds"] / w["engine"]["seconds"])
    # the audit structure shares persona and stem tokens: reuse computes fewer than the prompts hold
    assert aud["engine_reuse"]["forward_tokens"] < aud["tokens"]
    # tiny model (hidden 64): the default path is exact
    assert aud["engine"]["path"] == "exact"
    # the measured pass cost: a line through (tokens, median seconds) of three batch sizes
    from cvaudit.audit.engine import pass_cost_tokens

    pc = r["pass_cost"]
    assert len(pc["seconds"]) == len(pc["rows"]) == 3 and all(t > 0 for t in pc["seconds"])
    assert pc["fixed_s"] >= 0 and pc["engine_tokens"] == pytest.approx(pass_cost_tokens(build_model("tiny", "cpu"), "cpu"))
    assert pc["tokens"] is None if pc["per_token_s"] <= 0 else pc["tokens"] == pytest.approx(pc["fixed_s"] / pc["per_token_s"])
    assert "tokens per pass (the engine assumes" in res.output
    for w in (ind, aud):
        assert w["engine_exact"]["forward_passes"] >= 1


def test_gpu_check_tools_on_cpu(tmp_path, tiny_llama_dir, smollm2_dir):
    """benchmarks/gpu_check.sh's pieces run here, so a lent GPU's minutes are not spent on their bugs."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu-out"
    res = CliRunner().invoke(bench, ["--shape", "tiny", "--device", "cpu", "--prompts", "8", "--max-groups", "1",
                                     "--naive-prompts", "4", "--tokenizer", str(smollm2_dir), "--out", str(out / "bench.json")])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_summary.py"), str(out)],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    r = json.loads((out / "bench.json").read_text())
    ratio = r["workloads"]["independent"]["ratios"]["anchor_over_engine"]
    assert f"anchor/engine {ratio:.2f}x (target 1.25x" in summary and "target 2.0x" in summary
    # a whole run on a random model built from a config + tokenizer directory (the tiny Llama's here)
    run = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_run_check.py"), "--device", "cpu",
                          "--tokenizer", str(tiny_llama_dir), "--questions", "Q1,Q2", "--out", str(out / "run")],
                         capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "persona:" in run.stdout and "disca:" in run.stdout and "CHECK FAILED" not in run.stdout
    for method in ("persona", "disca"):
        done = json.loads((out / "run" / method / "results.json").read_text())
        assert done["complete"] and done["method"]["name"] == method and (out / "run" / method / "report.html").is_file()


def test_flags_under_null_benchmark_runs_and_reports_every_scenario():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "flags_under_null.py"
    proc = subprocess.run([sys.executable, str(script), "--surveys", "2", "--replicates", "50"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    import runpy

    n = len(runpy.run_path(str(script), run_name="bench")["SCENARIOS"])  # every scenario reported, none skipped
    assert n >= 7 and proc.stdout.count("share of surveys") == n
    for metric in ("accuracy", "nmae", "representativeness", "similarity"):
        assert proc.stdout.count(metric) == n
