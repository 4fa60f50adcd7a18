"""A whole ``cvaudit run`` on a GPU machine that has no model weights: random weights of a real shape.

Builds a randomly initialised model from a config (default: the embedded
SmolLM2-135M's, carried by benchmarks/gpu_prepare.sh) with its tokenizer, saves
it as a local model directory, then runs the real CLI on it with ``--device
auto`` and ``--dtype auto`` (persona, then disca, sharing the score cache) and
checks what a GPU run must record: a CUDA device, bf16, peak GPU memory, and
answer distributions that sum to one. Prints one line per run; exits 1 on a
failed check. Used by benchmarks/gpu_check.sh; runs on a CPU too (``--device cpu``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def build(tokenizer_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(target)


def check(out: Path, device: str) -> list[str]:
    res = json.loads((out / "results.json").read_text())
    problems = []
    if not res.get("complete"):
        problems.append("results.json is not complete")
    dev = res.get("device", {})
    if device == "cuda" and dev.get("type") != "cuda":
        problems.append(f"device is {dev!r}, not cuda")
    if device == "cuda" and res["model"].get("dtype") != "bfloat16":
        problems.append(f"dtype is {res['model'].get('dtype')}, not bfloat16 (auto on a GPU)")
    engine = res.get("timings", {}).get("engine", {})
    if device == "cuda" and not engine.get("peak_memory_bytes"):
        problems.append("no peak GPU memory recorded")
    bad = [i for i in res["items"] if not math.isclose(sum(i["model_dist"]), 1.0, abs_tol=1e-6)]
    if bad:
        problems.append(f"{len(bad)} items whose model_dist does not sum to 1")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tokenizer", required=True, type=Path, help="directory with config.json and the tokenizer")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--questions", default="core")
    args = ap.parse_args()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "cvaudit-gpu-run-model"
    shutil.rmtree(work, ignore_errors=True)
    t = time.perf_counter()
    build(args.tokenizer, work)
    print(f"random model saved to {work} ({time.perf_counter() - t:.1f}s)")
    failed = False
    cache = args.out / "scores.sqlite"
    for method in ("persona", "disca"):
        out = args.out / method
        cmd = [sys.executable, "-m", "cvaudit", "run", "--model", str(work), "--method", method, "--country", "SG",
               "--questions", args.questions, "--device", "auto" if args.device == "cuda" else args.device,
               "--cache", str(cache), "--format", "html", "--quiet", "--out", str(out)]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            print(f"{method}: exit {proc.returncode} after {wall:.1f}s\n{proc.stderr[-3000:]}")
            failed = True
            continue
        res = json.loads((out / "results.json").read_text())
        eng = res.get("timings", {}).get("engine", {})
        peak = eng.get("peak_memory_bytes")
        print(f"{method}: {wall:.1f}s wall, score {res['timings'].get('score_s', 0):.1f}s, "
              f"{eng.get('computed')} prompts computed, {eng.get('forward_tokens')} forward tokens in "
              f"{eng.get('forward_passes')} passes, largest batch {eng.get('batch_size')}, "
              f"peak {'-' if peak is None else f'{peak / 2**30:.2f} GiB'}, device {res['device'].get('name')}, "
              f"dtype {res['model'].get('dtype')}, {len(res['items'])} items, report {(out / 'report.html').is_file()}")  # fmt: skip
        problems = check(out, args.device)
        for p in problems:
            print(f"{method}: CHECK FAILED: {p}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
