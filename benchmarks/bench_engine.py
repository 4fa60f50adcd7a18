"""Engine benchmark as a script: ``python benchmarks/bench_engine.py [cvaudit bench options]``.

Same as ``cvaudit bench`` (audit/cli_bench.py): one run times one prompt per pass,
length-sorted batches (the lm-evaluation-harness anchor), the engine's exact and
prefix-reuse paths and the compute floor, on the independent and audit workloads.
On a GPU it defaults to a randomly initialised Llama-3.1-8B shape in bf16; run it
in the same call as ``shared/bench/gpu_anchor_bench.py`` to compare.
"""

from __future__ import annotations

import sys

from cvaudit.audit.cli_bench import bench

if __name__ == "__main__":
    bench.main(args=sys.argv[1:], prog_name="bench_engine.py")
