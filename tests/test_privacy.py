"""Privacy (issue 10.4): no respondent-level data in any output, and no figure for a cell below the
minimum group size, in JSON, CSV, parquet, HTML and PDF alike.

One real audit (tiny random Llama, HTML + PDF report) on a synthetic official-format file with
distinctive respondent ids, a minimum size that suppresses several groups, and a question
answered by only 10 men so that the (Male, Q1) cell is suppressed while (Female, Q1) is not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

MIN_SIZE = 25
QUESTIONS = ("Q1", "Q2", "Q3")
N = 150


def _survey_file(path: Path):
    from cvaudit.audit.synthetic import generate_frame, to_csv_bytes

    frame = generate_frame("SG", n=N, seed=3)
    rng = np.random.default_rng(7)
    frame["D_INTERVIEW"] = rng.choice(np.arange(810_000_000, 900_000_000), size=N, replace=False)
    male = (frame["Q260"] == 1).to_numpy()
    q1 = frame["Q1"].to_numpy().copy()
    mute = male.copy()
    mute[np.flatnonzero(male)[:10]] = False  # only 10 men answer Q1
    q1[mute] = -1
    frame["Q1"] = q1
    path.write_bytes(to_csv_bytes(frame))
    return frame


@pytest.fixture(scope="module")
def audit(tmp_path_factory, tiny_llama_dir):
    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.run import run_audit

    root = tmp_path_factory.mktemp("privacy")
    frame = _survey_file(root / "wvs.csv")
    config = RunConfig(model=str(tiny_llama_dir), wvs_file=str(root / "wvs.csv"), questions=",".join(QUESTIONS),
                       attributes=("sex", "ethnicity", "religion"), min_size=MIN_SIZE, n_boot=20, no_cache=True,
                       out=str(root / "out"), formats=("html", "pdf"), progress=False)  # fmt: skip
    path = run_audit(config)
    return frame, json.loads(path.read_text(encoding="utf-8")), root / "out"


def _texts(out: Path) -> dict[str, str]:
    """Every output file as text: parquet through pyarrow, PDF through pdftotext."""
    import pyarrow.parquet as pq

    texts = {}
    for f in sorted(out.iterdir()):
        if f.suffix in (".json", ".csv", ".html"):
            texts[f.name] = f.read_text(encoding="utf-8")
        elif f.suffix == ".parquet":
            texts[f.name] = json.dumps(pq.read_table(f).to_pylist(), default=str)
        elif f.suffix == ".pdf":
            if shutil.which("pdftotext") is None:
                pytest.skip("pdftotext (poppler-utils) not installed: PDF text not scanned")
            texts[f.name] = subprocess.run(["pdftotext", str(f), "-"], capture_output=True, text=True,
                                           check=True, timeout=120).stdout  # fmt: skip
        else:
            raise AssertionError(f"unexpected output file {f.name}: every output must be covered by this scan")
    return texts


def test_every_expected_output_exists(audit):
    _, record, out = audit
    assert record["complete"] is True
    assert {"results.json", "items.csv", "items.parquet", "report.html", "report.pdf"} <= {f.name for f in out.iterdir()}


def test_no_respondent_id_or_row_in_any_output(audit):
    frame, record, out = audit
    ids = {str(v) for v in frame["D_INTERVIEW"]}
    for name, text in _texts(out).items():
        found = ids & set(re.findall(r"(?<![\d.])\d{9}(?![\d])", text))
        assert not found, f"{name} contains respondent ids {sorted(found)[:3]}"
        assert "D_INTERVIEW" not in text, name
        # a respondent-level row would carry the raw codes of one person: 455 official columns
        assert "J_INTDATE" not in text and "K_TIME_START" not in text, name


def test_no_respondent_length_vector_in_results(audit):
    """Any list of numbers as long as a publishable group would be per-respondent data."""
    _, record, _ = audit

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            if node and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in node):
                yield where, len(node)
            for i, v in enumerate(node):
                yield from walk(v, f"{where}[{i}]")

    long = [(w, n) for w, n in walk(record, "$") if n >= MIN_SIZE]
    assert not long, long


def _valid_counts(frame, question: str) -> dict[str, int]:
    """Independently: valid (non-negative) answers per sex, straight from the file's frame."""
    valid = frame[question] >= 0
    return {"Male": int((valid & (frame["Q260"] == 1)).sum()), "Female": int((valid & (frame["Q260"] == 2)).sum())}


def test_cells_below_min_size_have_no_figures_anywhere(audit):
    frame, record, out = audit
    import pandas as pd

    counts = {q: _valid_counts(frame, q) for q in QUESTIONS}
    assert counts["Q1"]["Male"] == 10 < MIN_SIZE <= counts["Q1"]["Female"]
    cells = {(i["group"], i["question"]) for i in record["items"] if i["attribute"] == "sex"}
    expected = {(g, q) for q in QUESTIONS for g, n in counts[q].items() if n >= MIN_SIZE}
    assert cells == expected
    for item in record["items"]:
        assert item["n"] >= MIN_SIZE, item
        if item["attribute"] == "sex":
            assert item["n"] == counts[item["question"]][item["group"]]
    for table in (pd.read_csv(out / "items.csv"), pd.read_parquet(out / "items.parquet")):
        assert len(table) == len(record["items"])
        rows = {(a, g, q) for a, g, q in table[["attribute", "group", "question"]].itertuples(index=False)}
        assert ("sex", "Male", "Q1") not in rows and ("sex", "Female", "Q1") in rows
        assert (table["n"] >= MIN_SIZE).all()


def test_suppressed_groups_only_listed_without_figures(audit):
    frame, record, out = audit
    suppressed = record["subgroups"]["suppressed"]
    assert len(suppressed) >= 3 and all(s["n"] < MIN_SIZE for s in suppressed)
    assert set(suppressed[0]) == {"attribute", "group", "n"}  # a listing: no figure beyond the count
    # independent count for one of them: the Indian ethnicity code of Singapore is 702003
    indian = next(s for s in suppressed if s["group"] == "Indian")
    assert indian["n"] == int((frame["Q290"] == 702003).sum())
    audited = {(g["attribute"], g["group"]) for g in record["groups"]}
    assert all(g["n"] >= MIN_SIZE for g in record["groups"])
    names = {(s["attribute"], s["group"]) for s in suppressed}
    assert not names & audited
    assert not names & {(i["attribute"], i["group"]) for i in record["items"]}
    assert not names & {(c["attribute"], c["group"]) for c in record.get("categories") or []}
    for d in record.get("disparity") or []:
        for key in ("best_group", "worst_group", "reference_group"):
            assert (d["attribute"], d.get(key)) not in names, d
    labels = {s["group"] for s in suppressed} - {g for _, g in audited}
    for name, text in _texts(out).items():
        if name == "results.json":
            continue  # checked structurally above
        for s in suppressed:
            # drop the listing entries "Label (n=12)"; the label must then be gone entirely
            text = re.sub(rf"{re.escape(s['group'])}\s*\(n\s*=\s*{s['n']}\)", "", text)
        left = [lab for lab in labels if re.search(rf"(?<!\w){re.escape(lab)}(?!\w)", text)]
        assert not left, f"{name} mentions suppressed groups {left} outside the suppressed listing"
