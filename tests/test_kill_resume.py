"""Crash safety (issue 10.2): Ctrl-C or SIGKILL mid-run loses no computed score, and the re-run
resumes from the score cache to exactly the results of an uninterrupted run.

Real processes: ``python -m cvaudit run`` on the tiny random Llama at batch size 1, polled
through its SQLite score cache and interrupted once scores exist. The uninterrupted
reference runs at the same time in another folder with its own fresh cache.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

N_GROUPS, N_QUESTIONS = 2, 40  # sex (Male, Female) x the first 40 questions: long enough to be caught mid-run
TOTAL = N_GROUPS * N_QUESTIONS * 2  # both option orders of every prompt


def cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0])
    except sqlite3.OperationalError:  # table not created yet, or the writer holds a lock
        return 0


def start(cwd: Path, model: Path, hash_seed: str = "1") -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    # relative --out/--cache: both runs record the same config, so their results.json can be compared
    args = ["run", "--model", str(model), "--attributes", "sex", "--questions", "all", "--limit", str(N_QUESTIONS), "--batch-size", "1",
            "--n-boot", "50", "--out", "out", "--cache", "scores.sqlite", "--no-report", "--quiet"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "CVAUDIT_DEBUG"}
    # a different PYTHONHASHSEED for the reference: no result may depend on set/dict hash order
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED=hash_seed)
    return subprocess.Popen([sys.executable, "-m", "cvaudit", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_for_rows(proc: subprocess.Popen, cache: Path, at_least: int, timeout: float = 240.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = cached_rows(cache)
        if n >= at_least:
            return n
        assert proc.poll() is None, f"run ended before it was interrupted: {proc.communicate()}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {at_least} cached scores within {timeout}s")


def results(cwd: Path) -> dict:
    return json.loads((cwd / "out" / "results.json").read_text(encoding="utf-8"))


def test_interrupt_then_kill_then_resume_gives_identical_results(tmp_path, tiny_llama_dir):
    from cvaudit.audit.results import strip_timing

    run_dir, ref_dir = tmp_path / "interrupted", tmp_path / "reference"
    cache = run_dir / "scores.sqlite"
    reference = start(ref_dir, tiny_llama_dir, hash_seed="2")

    # 1. Ctrl-C: exit 130 with the resume hint; every score seen in the cache survives
    first = start(run_dir, tiny_llama_dir)
    seen = wait_for_rows(first, cache, 3)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert "interrupted" in err and "re-run" in err and "Traceback" not in err
    kept = cached_rows(cache)
    assert seen <= kept < TOTAL
    assert results(run_dir)["complete"] is False

    # 2. SIGKILL (no chance to clean up): still nothing lost, results.json still not complete
    second = start(run_dir, tiny_llama_dir)
    seen = wait_for_rows(second, cache, kept + 3)
    second.send_signal(signal.SIGKILL)
    second.communicate(timeout=60)
    assert second.returncode == -signal.SIGKILL
    killed_at = cached_rows(cache)
    assert seen <= killed_at < TOTAL
    assert results(run_dir)["complete"] is False
    assert not list((run_dir / "out").glob("items.*")), "items written by a run that never finished"

    # 3. the re-run completes and computes only what the cache did not have
    third = start(run_dir, tiny_llama_dir)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    resumed = results(run_dir)
    assert resumed["complete"] is True
    stats = resumed["timings"]["engine"]
    assert stats["cached"] == killed_at and stats["computed"] == TOTAL - killed_at
    assert cached_rows(cache) == TOTAL

    # 4. identical to the uninterrupted run apart from the timing fields
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    fresh = results(ref_dir)
    assert fresh["timings"]["engine"]["computed"] == TOTAL and fresh["timings"]["engine"]["cached"] == 0
    assert set(resumed["timing_fields"]) == {"created_at", "timings", "device"}
    assert strip_timing(resumed) == strip_timing(fresh)
    assert len(resumed["items"]) == N_GROUPS * N_QUESTIONS
    assert (run_dir / "out" / "items.csv").read_bytes() == (ref_dir / "out" / "items.csv").read_bytes()
