"""The benchmark runs end to end on CPU and its figures are consistent with their definitions."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from cvaudit.audit.cli_bench import bench


def test_bench_cli_tiny(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "bench.json"
    args = ["--shape", "tiny", "--device", "cpu", "--prompts", "12", "--max-groups", "2", "--naive-prompts", "6",
            "--anchor-batch", "4", "--out", str(out)]  # fmt: skip
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
            assert w[way]["tokens_per_s"] == pytest.approx(w["tokens"] / w[way]["seconds"])
        for way in ("engine_exact", "engine_reuse"):
            assert w[way]["max_abs_logprob_diff_vs_naive"] < 1e-4  # same numbers as one prompt per pass
        assert w["ratios"]["naive_over_engine"] == pytest.approx(w["naive"]["seconds"] / w["engine"]["seconds"])
    # the audit structure shares persona and stem tokens: reuse computes fewer than the prompts hold
    assert aud["engine_reuse"]["forward_tokens"] < aud["tokens"]
    # tiny model (hidden 64): the default path is exact
    assert aud["engine"]["path"] == "exact"
