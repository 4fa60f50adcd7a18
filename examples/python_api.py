"""Run an audit from Python and read its results with pandas and fairlearn.

    python examples/python_api.py --out api-out                 # embedded model, synthetic SG sample
    python examples/python_api.py --model meta-llama/Llama-3.1-8B-Instruct --wvs-file WVS.csv --out api-out

`run_audit` is what `cvaudit run` calls; it takes the same settings as a frozen
`RunConfig` and returns the path of results.json, the single source of every figure.
`cvaudit.metrics.frames` turns it into tidy DataFrames (groups, disparity, items,
categories). The per-item metrics are columns of OUT/items.parquet, so any slice (a category, a
question, one attribute) is a pandas group-by away. fairlearn's MetricFrame over those
items reproduces the report's group means and its "difference" the report's gap.
Without --wvs-file the survey data are SYNTHETIC and every output says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="hub id or local directory (default: the embedded SmolLM2-135M)")
    p.add_argument("--method", default="persona")
    p.add_argument("--wvs-file", default=None, help="your official WVS Wave 7 file (default: synthetic sample)")
    p.add_argument("--questions", default="core")
    p.add_argument("--attributes", default="sex,age,ethnicity")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--out", default="api-out")
    args = p.parse_args(argv)

    import numpy as np
    import pandas as pd
    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.run import run_audit
    from cvaudit.metrics.frames import baseline_frame, group_frame
    from fairlearn.metrics import MetricFrame

    config = RunConfig(model=args.model, method=args.method, country="SG", wvs_file=args.wvs_file,
                       questions=args.questions, attributes=tuple(args.attributes.split(",")),
                       n_boot=args.n_boot, out=args.out, formats=("html",), progress=False)  # fmt: skip
    results_path = run_audit(config)
    record = json.loads(results_path.read_text(encoding="utf-8"))
    if record["data"]["synthetic"]:
        print("SYNTHETIC DATA: not World Values Survey respondents; figures show the tool, not the model.")

    # tidy frames of results.json: one row per (group, metric) with interval and flag
    groups = group_frame(results_path)
    print(groups[groups.metric == "similarity"][["attribute", "group", "n", "value", "ci_lo", "ci_hi", "status"]]
          .to_string(index=False))  # fmt: skip

    # is the model better than a uniform answer, or than giving every group the country's answers?
    base = baseline_frame(results_path)
    print(base[["baseline", "metric", "value", "diff", "diff_lo", "diff_hi"]].round(3).to_string(index=False))

    # the items with their metrics (also item_frame(results_path)); MetricFrame over one attribute's items
    items = pd.read_parquet(Path(results_path).parent / "items.parquet")
    attribute = args.attributes.split(",")[0]
    rows = items[(items.attribute == attribute) & items.similarity.notna()]
    frame = MetricFrame(metrics=lambda y_true, y_pred: float(np.mean(y_pred)), y_true=rows.similarity,
                        y_pred=rows.similarity, sensitive_features=rows.group)  # fmt: skip
    gap = next(d for d in record["disparity"] if d["attribute"] == attribute and d["metric"] == "similarity")["gap"]
    print(f"\n{attribute}: similarity by group (MetricFrame)\n{frame.by_group.to_string()}")
    ci = "no interval" if gap["ci"] is None else f"{record['bootstrap']['level']:.0%} CI {gap['ci'][0]:.4f} to {gap['ci'][1]:.4f}"
    print(f"difference {frame.difference():.4f}; results.json gap {gap['value']:.4f} ({ci})")

    # a slice the report does not show: mean similarity per question category and group
    by_category = rows.pivot_table(index="category", columns="group", values="similarity", aggfunc="mean")
    print(f"\n{by_category.round(3).to_string()}")
    print(f"\nresults: {results_path}; report: {Path(results_path).parent / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
