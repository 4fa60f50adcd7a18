"""Time the paired question bootstrap: 1,000 replicates for 100 groups x 240 questions (target < 10 s).

Run: python benchmarks/bench_bootstrap.py [--groups 100] [--questions 240] [--replicates 1000]

Prints the seconds of the full ``evaluate`` (item metrics, every group/overall/disparity
interval, flags with their size shift), of ``evaluate`` without the size shift, and of the
bootstrap core alone, each as a ratio to the 10 s target,
and compares with a naive per-replicate pandas loop (timed on a few replicates and
scaled up, since running it 1,000 times is exactly what this design avoids). Last, the
cost of ``--respondent-bootstrap`` on a run-sized grid (22 groups x 34 questions).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

TARGET_S = 10.0


def synthetic(n_groups: int, n_questions: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Items for n_groups groups spread over 9 attributes, 4-5 option questions, 5% suppressed cells."""
    rng = np.random.default_rng(seed)
    attrs = [f"attr{i}" for i in range(9)]
    groups = pd.DataFrame([{"attribute": attrs[i % 9], "group": f"g{i}", "n": int(rng.integers(30, 900)),
                            "n_eff": 30.0} for i in range(n_groups)])  # fmt: skip
    ks = 4 + (np.arange(n_questions) % 2)
    rows = []
    for a, g in zip(groups["attribute"], groups["group"]):
        for q in range(n_questions):
            if rng.random() < 0.05:
                continue
            k = int(ks[q])
            h = rng.dirichlet(np.ones(k))
            rows.append((a, g, f"Q{q}", f"C{q % 12}", None if q % 10 == 0 else list(range(k)),
                         list(rng.dirichlet(np.ones(k))), list(h), [int(np.argmax(h))]))  # fmt: skip
    cols = ["attribute", "group", "question", "category", "positions", "model_dist", "human_dist", "human_mode"]
    return pd.DataFrame(rows, columns=cols), groups


def naive_replicate(long: pd.DataFrame, draw: np.ndarray, qids: np.ndarray) -> pd.DataFrame:
    """One replicate the obvious way: build the resampled item table, groupby, then disparity per attribute."""
    sample = pd.DataFrame({"question": qids[draw]}).merge(long, on="question")
    means = sample.groupby(["attribute", "group"])[["accuracy", "nmae", "representativeness", "similarity"]].mean()
    return means.groupby(level="attribute").agg(lambda s: s.max() - s.min())


def main() -> None:
    from cvaudit.metrics import MetricsConfig, evaluate
    from cvaudit.metrics.aggregate import make_layout, sum_counts, to_matrix
    from cvaudit.metrics.bootstrap import percentile_ci, question_indices, replicate_counts
    from cvaudit.metrics.disparity import disparity_figures

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=100)
    ap.add_argument("--questions", type=int, default=240)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--naive", type=int, default=20, help="replicates to time for the naive loop")
    args = ap.parse_args()

    items, groups = synthetic(args.groups, args.questions)
    print(f"{len(groups)} groups x {args.questions} questions = {len(items)} items, {args.replicates} replicates")

    t0 = time.perf_counter()
    res = evaluate(items, groups, MetricsConfig(n_boot=args.replicates))
    full = time.perf_counter() - t0
    print(f"evaluate (all sections)  : {full:7.3f} s   ratio to {TARGET_S:.0f} s target: {full / TARGET_S:.3f}")
    t0 = time.perf_counter()
    evaluate(items, groups, MetricsConfig(n_boot=args.replicates, noise_correction=False))
    plain = time.perf_counter() - t0
    print(f"  without the size shift : {plain:7.3f} s   (the size shift: {full - plain:.1f} s)")

    im = res["item_metrics"]
    layout = make_layout(items, list(zip(groups["attribute"], groups["group"])))
    t0 = time.perf_counter()
    w = replicate_counts(question_indices(len(layout.questions), args.replicates, 0), len(layout.questions))
    for name in im.columns:
        reps = sum_counts(to_matrix(im[name].to_numpy(), layout), w).group_means()
        percentile_ci(reps, 0.95)
        for rows in layout.attribute_rows().values():
            for fig in disparity_figures(reps[:, rows]).values():
                percentile_ci(fig[:, None], 0.95)
    core = time.perf_counter() - t0
    print(f"bootstrap core (4 metrics): {core:7.3f} s   ratio to {TARGET_S:.0f} s target: {core / TARGET_S:.3f}")

    long = pd.concat([items[["attribute", "group", "question"]], im], axis=1)
    qids = np.array(layout.questions)
    draws = question_indices(len(qids), args.naive, 0)
    t0 = time.perf_counter()
    for d in draws:
        naive_replicate(long, d, qids)
    per = (time.perf_counter() - t0) / max(args.naive, 1)
    naive = per * args.replicates
    print(f"naive pandas loop        : {naive:7.1f} s (scaled from {args.naive} replicates, {per * 1000:.0f} ms each)")
    print(f"speed-up of evaluate without the size shift over the naive loop: {naive / plain:.0f}x")
    respondent_section(args.replicates)


def respondent_section(n_boot: int, n_groups: int = 22, n_questions: int = 34, n_resp: int = 60) -> None:
    """--respondent-bootstrap on a run-sized grid: its cost over the question bootstrap alone, and over
    scoring the uniform baseline's K tie-breaks for every metric (what it did before reads_choice)."""
    import dataclasses

    from cvaudit.metrics import MetricsConfig, evaluate, registry
    from cvaudit.metrics.bootstrap import respondent_replicates

    items, groups = synthetic(n_groups, n_questions, seed=1)
    rng = np.random.default_rng(2)
    reps = [respondent_replicates(rng.choice(len(h), size=n_resp, p=np.asarray(h) / np.sum(h)).astype(float),
                                  None, len(h), n_boot, rng) for h in items["human_dist"]]  # fmt: skip
    cfg = dict(n_boot=n_boot, noise_correction=False)

    def timed(**kw: object) -> float:
        t0 = time.perf_counter()
        evaluate(items, groups, MetricsConfig(**cfg, **kw), human_replicates=reps if kw else None)
        return time.perf_counter() - t0

    plain, resp = timed(), timed(respondents=True)
    saved = dict(registry._REGISTRY)
    try:
        for name, spec in saved.items():
            registry._REGISTRY[name] = dataclasses.replace(spec, reads_choice=True)
        every = timed(respondents=True)
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
    print(f"respondent bootstrap, {len(items)} items x {n_boot} replicates ({n_resp} respondents per cell): "
          f"{resp:.2f} s vs {plain:.2f} s without (ratio {resp / plain:.1f}); with every metric tie-broken for "
          f"the uniform baseline {every:.2f} s (ratio {every / resp:.2f} to now)")


if __name__ == "__main__":
    main()
