"""How often flags fire when no group differs, with and without the size shift (docs/metrics.md).

Run: python benchmarks/flags_under_null.py [--surveys 150] [--replicates 500]

Every group answers from one population (Dirichlet(1) answer shares per question,
2-10 options); one model answer for all groups, close to the population (a noisy
softmax around it), which is where sample size looks most like bias. Two scenarios
let the groups hold their own opinions (a Dirichlet draw around the population) and
give each group a model answer that follows its own true answers, exactly or closely:
an aligned persona model, whose small groups still look worse by sample size alone. Each survey
redraws questions, model and respondents. For each scenario and metric it prints
the share of surveys in which any group was flagged, and in which any group was
"significant" (Holm p < alpha) on its own; both should be at most about alpha
(0.05). Raw = ``noise_correction=False``; net = the default. Then the same for a
scenario in which the smallest group truly answers differently (power).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

METRICS = ["accuracy", "nmae", "representativeness", "similarity"]
SCENARIOS = {  # name: (group sizes, questions, model noise, share of the last group's answers from elsewhere,
    #                reference group named by the run or None for the largest,
    #                groups' own opinions: None = one population, else the Dirichlet concentration around it, in
    #                which case the model follows each group's own true answers, with the model noise)
    "4 groups 500/200/100/30, 100 q, close model": ([500, 200, 100, 30], 100, 0.3, 0.0, None, None),
    "10 groups 600..30, 100 q, close model": ([600, 300, 150, 100, 80, 60, 50, 40, 35, 30], 100, 0.3, 0.0, None, None),
    "4 groups 500/200/100/30, 34 q, moderate model": ([500, 200, 100, 30], 34, 1.0, 0.0, None, None),
    "as the first, reference named: the 30-person group": ([500, 200, 100, 30], 100, 0.3, 0.0, "g3", None),
    "groups differ (concentration 50), model = each group's truth": ([500, 200, 100, 30], 100, 0.0, 0.0, None, 50.0),
    "groups differ (concentration 20), model close to each group's own": ([500, 200, 100, 30], 100, 0.3, 0.0, None, 20.0),
    "power: 500/200/100/60, last group differs (0.5), 100 q": ([500, 200, 100, 60], 100, 1.0, 0.5, None, None),
}


def _near(p: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    z = np.log(p + 1e-6) + noise * rng.standard_normal(len(p))
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


def one_survey(sizes: list[int], n_q: int, noise: float, lam: float, rng: np.random.Generator,
               differ: float | None = None):  # fmt: skip
    rows = []
    for q in range(n_q):
        k = int(rng.choice([2, 3, 4, 4, 4, 5, 10]))
        pop = rng.dirichlet(np.ones(k))
        other = (1 - lam) * pop + lam * rng.dirichlet(np.ones(k))
        shared = _near(pop, noise, rng)
        for g, n in enumerate(sizes):
            truth = other if g == len(sizes) - 1 else pop
            model = shared
            if differ is not None:  # the group's own opinion, and a model that follows it (an aligned persona)
                truth = rng.dirichlet(pop * differ + 1e-3)
                model = _near(truth, noise, rng) if noise > 0 else truth
            h = rng.multinomial(n, truth) / n
            rows.append({"attribute": "grp", "group": f"g{g}", "question": f"Q{q}", "category": "c",
                         "positions": list(range(k)), "model_dist": list(model), "human_dist": list(h),
                         "human_mode": [int(i) for i in np.flatnonzero(h >= h.max() - 1e-9)], "n": n,
                         "n_eff": float(n)})  # fmt: skip
    groups = pd.DataFrame({"attribute": "grp", "group": [f"g{g}" for g in range(len(sizes))], "n": sizes,
                           "n_eff": [float(n) for n in sizes]})  # fmt: skip
    return pd.DataFrame(rows), groups


def main() -> None:
    from cvaudit.metrics import MetricsConfig, evaluate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--surveys", type=int, default=150)
    ap.add_argument("--replicates", type=int, default=500)
    args = ap.parse_args()
    for name, (sizes, n_q, noise, lam, ref, differ) in SCENARIOS.items():
        named = (("grp", ref),) if ref else ()
        t0 = time.perf_counter()
        rng = np.random.default_rng(sum(map(ord, name)))  # a fixed seed per scenario
        rec = []
        for s in range(args.surveys):
            items, groups = one_survey(sizes, n_q, noise, lam, rng, differ)
            for corrected in (False, True):
                config = MetricsConfig(n_boot=args.replicates, seed=s, noise_correction=corrected, reference=named)
                res = evaluate(items, groups, config)
                for g in res["groups"]:
                    for m, f in g["flags"].items():
                        if f["status"] != "reference":
                            rec.append({"survey": s, "net": corrected, "group": g["group"], "metric": m,
                                        "flag": f["status"] in ("favoured", "disfavoured"),
                                        "sig": (f["p_holm"] if f["p_holm"] is not None else 1.0) < 0.05})  # fmt: skip
        df = pd.DataFrame(rec)
        if lam > 0:  # power: the last group only
            df = df[df.group == f"g{len(sizes) - 1}"]
        rate = df.groupby(["metric", "net", "survey"])[["flag", "sig"]].any().groupby(["metric", "net"]).mean()
        table = rate.unstack("net").rename(columns={False: "raw", True: "net"})
        print(f"\n{name}  ({args.surveys} surveys, B={args.replicates}, {time.perf_counter() - t0:.0f} s)")
        print("share of surveys where the differing group is flagged / significant" if lam > 0
               else "share of surveys with any group flagged / significant (no group differs)")  # fmt: skip
        print(table.round(3).to_string())


if __name__ == "__main__":
    main()
