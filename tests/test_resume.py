"""An interrupted run leaves results.json incomplete, resumes from the score cache and gives the same results."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cvaudit.audit.config import RunConfig
from cvaudit.audit.io import dumps_json
from cvaudit.audit.results import strip_timing


def cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(str(path), timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_interrupt_after_some_batches_then_resume(tmp_path, tiny_llama_dir, monkeypatch):
    import torch
    from cvaudit.audit.engine import Engine
    from cvaudit.audit.run import run_audit

    torch.set_num_threads(1)
    cache = tmp_path / "scores.sqlite"
    cfg = RunConfig(model=str(tiny_llama_dir), attributes=("sex", "age"), limit=4, batch_size=4, n_boot=50,
                    out=str(tmp_path / "out"), cache=str(cache), formats=(), progress=False)  # fmt: skip
    results = tmp_path / "out" / "results.json"

    real = Engine._run_chunk
    calls = {"n": 0}

    def flaky(self, chunk):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C arrives while the 4th batch is being scored
            raise KeyboardInterrupt
        return real(self, chunk)

    monkeypatch.setattr(Engine, "_run_chunk", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_audit(cfg)
    monkeypatch.setattr(Engine, "_run_chunk", real)
    assert load(results)["complete"] is False
    assert cached_rows(cache) == 3 * 4  # the three finished batches survived the interrupt

    resumed = load(run_audit(cfg))
    stats = resumed["timings"]["engine"]
    assert resumed["complete"] is True
    assert stats["cached"] == 12 and stats["computed"] == stats["unique"] - 12

    cache.unlink()
    for extra in ("-wal", "-shm"):
        Path(str(cache) + extra).unlink(missing_ok=True)
    fresh = load(run_audit(cfg))
    assert fresh["timings"]["engine"]["cached"] == 0
    assert dumps_json(strip_timing(resumed)) == dumps_json(strip_timing(fresh))


def test_killed_process_resumes_to_identical_results(tmp_path, tiny_llama_dir):
    """SIGKILL a real `cvaudit run` mid-scoring; the re-run finishes from the cache and matches a fresh run."""
    cache = tmp_path / "scores.sqlite"
    out = tmp_path / "out"
    args = [sys.executable, "-c", "from cvaudit.audit.cli import main; main()", "run",
            "--model", str(tiny_llama_dir), "--attributes", "sex", "--questions", "all", "--limit", "20",
            "--batch-size", "2", "--n-boot", "50", "--out", str(out), "--cache", str(cache), "--no-report",
            "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 240
    while cached_rows(cache) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = cached_rows(cache)
    assert 6 <= done_before < 80
    assert load(out / "results.json")["complete"] is False

    rerun = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    resumed = load(out / "results.json")
    assert resumed["complete"] is True and resumed["timings"]["engine"]["cached"] >= done_before

    from cvaudit.audit.run import run_audit  # the same audit in-process, from an empty cache

    fresh_cfg = RunConfig(model=str(tiny_llama_dir), attributes=("sex",), questions="all", limit=20, batch_size=2,
                          n_boot=50, out=str(out), cache=str(tmp_path / "fresh.sqlite"), formats=(),
                          progress=False)  # fmt: skip
    fresh = load(run_audit(fresh_cfg))
    assert fresh["timings"]["engine"]["cached"] == 0
    fresh["config"]["cache"] = resumed["config"]["cache"]  # the only input that differs
    assert dumps_json(strip_timing(resumed)) == dumps_json(strip_timing(fresh))
