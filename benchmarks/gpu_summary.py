"""Summary of benchmarks/gpu_check.sh's outputs: issue 9's targets as ratios measured in one run.

``python benchmarks/gpu_summary.py OUT`` reads OUT/anchor.json (shared anchor),
OUT/bench.json and OUT/bench_all.json (``cvaudit bench --out``), whichever exist.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def lines(out: Path) -> list[str]:
    anchor = _load(out / "anchor.json")
    rows = []
    if anchor:
        rows.append(f"shared anchor: {anchor['prompts']} prompts, {anchor['tokens']} tokens, floor {anchor['limit_s']:.2f}s, "
                    f"naive {anchor['naive_s']:.1f}s, batched 16/64/128: {anchor['batched16_s']:.2f}/"
                    f"{anchor['batched64_s']:.2f}/{anchor['batched128_s']:.2f}s ({anchor['peak_tflops']:.0f} TFLOP/s)")  # fmt: skip
    for name in ("bench.json", "bench_all.json"):
        bench = _load(out / name)
        if not bench:
            continue
        pc = bench.get("pass_cost") or {}
        measured = "undefined" if pc.get("tokens") is None else f"{pc['tokens']:.0f}"
        rows.append(f"{name}: {bench['shape']} {bench['dtype']} on {bench['device_name']}; one pass costs "
                    f"{measured} tokens measured, {pc.get('engine_tokens', float('nan')):.0f} assumed")  # fmt: skip
        for key, w in bench["workloads"].items():
            e, r = w["engine"], w["ratios"]
            target = 1.25 if key == "independent" else 2.0
            peak = e.get("peak_memory_bytes")
            verdict = "met" if r["anchor_over_engine"] >= target else "NOT met"
            rows.append(f"  {w['name']}: engine ({e['path']}) {e['seconds']:.2f}s, {e['tokens_per_s']:.0f} tok/s, "
                        f"MFU {e['mfu']:.0%}, peak {'-' if peak is None else f'{peak / 2**30:.1f} GiB'}; "
                        f"anchor/engine {r['anchor_over_engine']:.2f}x (target {target}x: {verdict}), "
                        f"naive/engine {r['naive_over_engine']:.1f}x, floor/engine {r['floor_over_engine']:.2f}, "
                        f"max |dlogp| vs naive {e['max_abs_logprob_diff_vs_naive']:.1e}")  # fmt: skip
            if key == "independent" and anchor and w["prompts"] == anchor["prompts"]:
                rows.append(f"    vs the shared anchor's batches of 128 (same prompts): "
                            f"{anchor['batched128_s'] / e['seconds']:.2f}x")  # fmt: skip
    return rows or ["no results found"]


if __name__ == "__main__":
    print("\n".join(lines(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-out"))))
