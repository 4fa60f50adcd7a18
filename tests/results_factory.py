"""Realistic results.json records for the report, compare, gate and export tests.

Items are generated (human distributions from a Dirichlet, the model close to
them for most groups and far for one "disfavoured" group), then every figure is
computed by the real ``cvaudit.metrics.evaluate``, so groups, CIs, flags and
disparity are consistent with the items exactly as in a real run. Nominal
questions (positions null) get null distance metrics, as in a real run.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

GROUPS = {
    "sex": [("Female", 520), ("Male", 480)],
    "age": [("18-29", 210), ("30-49", 400), ("50+", 390)],
    "ethnicity": [("Chinese", 700), ("Malay", 160), ("Indian", 110)],
}
CATEGORIES = ("Social Values, Attitudes & Stereotypes", "Happiness and Well-Being", "Religious Values")
OPTIONS4 = ["Very important", "Rather important", "Not very important", "Not at all important"]
NOMINAL = ["Christian", "Muslim", "Buddhist", "None of these"]


def questions(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        nominal = i % 4 == 3  # every fourth question nominal
        out.append({
            "id": f"Q{i + 1}", "text": f"How important is topic {i + 1} in your life?", "short": f"Topic {i + 1}",
            "category": CATEGORIES[i % len(CATEGORIES)], "options": list(NOMINAL if nominal else OPTIONS4),
            "ordinal": not nominal, "positions": None if nominal else [0.0, 1.0, 2.0, 3.0],
        })  # fmt: skip
    return out


def make_results(
    seed: int = 0,
    n_questions: int = 8,
    attributes: tuple[str, ...] = ("sex", "age", "ethnicity"),
    synthetic: bool = True,
    n_boot: int = 200,
    bad_group: tuple[str, str] = ("ethnicity", "Malay"),
    model_id: str = "tiny-llama-test",
    method_report: bool = True,
) -> dict[str, Any]:
    """A complete schema-1 record with figures from cvaudit.metrics.evaluate."""
    import pandas as pd
    from cvaudit.metrics import MetricsConfig, evaluate

    rng = np.random.default_rng(seed)
    qs = questions(n_questions)
    rows, groups = [], []
    for attr in attributes:
        for label, n in GROUPS[attr]:
            groups.append({"attribute": attr, "group": label, "n": n, "n_eff": round(n * 0.9, 1)})
            for q in qs:
                human = rng.dirichlet(np.ones(4) * 2.0)
                if (attr, label) == bad_group:  # systematically wrong: the survey's answers in reverse order
                    model = np.abs(0.8 * human[::-1] + 0.05 + rng.normal(0, 0.05, 4)) + 1e-3
                else:
                    model = np.abs(human + rng.normal(0, 0.04, 4)) + 1e-3
                model /= model.sum()
                mode = [int(np.argmax(human))]
                rows.append({
                    "attribute": attr, "group": label, "question": q["id"], "category": q["category"],
                    "options": q["options"], "positions": q["positions"], "model_dist": model.tolist(),
                    "human_dist": human.tolist(), "human_mode": mode, "model_choice": int(np.argmax(model)),
                    "n": n - 3, "n_eff": round((n - 3) * 0.9, 1), "missing": 3, "extra": {},
                })  # fmt: skip
    items = pd.DataFrame(rows)
    # the whole sample's answers: the size-weighted mix of the first attribute's groups (a partition of it)
    first = items[items["attribute"] == attributes[0]]
    population = {q: np.average(np.stack(f["human_dist"].tolist()), axis=0, weights=f["n"]).tolist()
                  for q, f in first.groupby("question", sort=False)}  # fmt: skip
    ev = evaluate(items, pd.DataFrame(groups), MetricsConfig(n_boot=n_boot, seed=seed), population=population)
    metrics = ev["item_metrics"]
    records = items.to_dict(orient="records")
    for rec, (_i, m) in zip(records, metrics.iterrows()):
        rec["metrics"] = {k: (None if not np.isfinite(v) else float(v)) for k, v in m.items()}
    record: dict[str, Any] = {
        "schema_version": "1",
        "tool": {"name": "cvaudit", "version": "0.1.0", "python": "3.11.0"},
        "complete": True,
        "timing_fields": ["created_at", "timings", "device"],
        "created_at": "2026-11-23T07:00:00Z",
        "timings": {"load_s": 1.2, "score_s": 30.1, "metrics_s": 2.0, "total_s": 34.0},
        "device": {"type": "cpu", "name": "x86_64", "count": 1, "torch": "2.13.0"},
        "config": {"model": model_id, "method": "persona", "country": "SG", "questions": "core", "seed": seed},
        "seed": seed,
        "model": {"id": model_id, "revision": None, "fingerprint": "sha256:" + "ab" * 32, "dtype": "float32",
                  "n_parameters": 1234567, "embedded": False},  # fmt: skip
        "method": {"name": "persona", "params": {"template": "default", "both_orders": True},
                   "fingerprint": "persona-" + "cd" * 8},  # fmt: skip
        "data": {"path": "synthetic:SG:seed0" if synthetic else "/data/WVS_Cross-National_Wave_7_csv_v6_0.csv",
                 "sha256": "ef" * 32, "synthetic": synthetic, "format": "csv",
                 "country": {"alpha2": "SG", "alpha3": "SGP", "numeric": 702, "name": "Singapore"},
                 "n_respondents": 1000, "weight_column": "W_WEIGHT",
                 "notes": (["SYNTHETIC DATA: not World Values Survey respondents; figures illustrate the tool only"]
                           if synthetic else [])},  # fmt: skip
        "questions": {"set": "core", "limit": None, "ids": [q["id"] for q in qs], "details": qs},
        "subgroups": {"min_size": 30, "attributes": list(attributes), "intersections": [],
                      "suppressed": [{"attribute": "ethnicity", "group": "Eurasian", "n": 12}]},  # fmt: skip
        "items": records,
    }
    for key in ("groups", "overall", "categories", "disparity", "baselines", "spread", "flags", "bootstrap",
                "metric_notes", "metric_info"):
        record[key] = ev[key]
    if method_report:
        record["method_report"] = {
            "Persona texts": [{"attribute": g["attribute"], "group": g["group"],
                               "persona": f"You are a {g['group']} person living in Singapore."} for g in groups],
            "Alpha sweep": [{"alpha": a, "accuracy": 0.4 + 0.02 * a, "perplexity": 12.0 + a} for a in (0, 1, 2, 4)],
            "plot": {"title": "Alignment by steering strength", "table": "Alpha sweep", "x": "alpha",
                     "y": ["accuracy"], "y2": ["perplexity"]},
        }  # fmt: skip
    return record


def incomplete(record: dict[str, Any] | None = None) -> dict[str, Any]:
    """What results.json looks like while a run is in progress (header only, complete=false)."""
    base = record or make_results(n_questions=4, n_boot=20)
    keep = ("schema_version", "tool", "complete", "timing_fields", "created_at", "config", "seed")
    out = {k: copy.deepcopy(base[k]) for k in keep}
    out["complete"] = False
    out["note"] = "run in progress or interrupted; re-run the same command to resume from the score cache"
    return out


def inject(record: dict[str, Any], payload: str = "<script>alert(1)</script>") -> dict[str, Any]:
    """A copy with ``payload`` in the model id, every question wording and one group label (everywhere it occurs)."""
    rec = copy.deepcopy(record)
    rec["model"]["id"] = "evil" + payload
    for q in rec["questions"]["details"]:
        q["text"] = q["text"] + payload
        q["short"] = q["short"] + payload
    old = rec["groups"][0]["group"]
    new = old + payload
    for g in rec["groups"]:
        if g["group"] == old and g["attribute"] == rec["groups"][0]["attribute"]:
            g["group"] = new
    for it in rec["items"]:
        if it["group"] == old:
            it["group"] = new
    for d in rec["disparity"]:
        for k in ("best_group", "worst_group", "reference_group"):
            if d.get(k) == old:
                d[k] = new
    for c in rec.get("categories", []):
        if c["group"] == old:
            c["group"] = new
    return rec


def run_cli(args: list[str]) -> int:
    """Exit code of `cvaudit ARGS` run in-process."""
    from cvaudit.audit.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
