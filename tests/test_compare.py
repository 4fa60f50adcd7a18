"""Compare: paired bootstrap over questions, known shifts, widened disparity, mismatched files."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from cvaudit.audit.errors import DataError
from cvaudit.reports import compare_results
from cvaudit.reports.compare import reduction
from results_factory import make_results


@pytest.fixture(scope="module")
def base() -> dict:
    return make_results(n_questions=8, n_boot=200)


def shifted(record: dict, group: str, metric: str, shift_of_question) -> dict:
    """``record`` with ``group``'s items of ``metric`` moved per question, its group figure kept their mean."""
    other = copy.deepcopy(record)
    for it in other["items"]:
        v = it["metrics"][metric]
        if it["group"] == group and v is not None:
            it["metrics"][metric] = v + shift_of_question(it["question"])
    return regroup(other)


def regroup(record: dict) -> dict:
    """Each group's figures set to the mean of its items, as a run writes them (the loader checks this)."""
    for g in record["groups"]:
        for metric, fig in g["metrics"].items():
            if fig["value"] is not None:
                fig["value"] = group_means(record, metric).get((g["attribute"], g["group"]))
    return record


def group_means(record: dict, metric: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], list[float]] = {}
    for it in record["items"]:
        v = it["metrics"][metric]
        if v is not None:
            out.setdefault((it["attribute"], it["group"]), []).append(v)
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_identical_files_no_change(base):
    res = compare_results(base, copy.deepcopy(base), n_boot=100)
    for entry in res["groups"] + res["overall"]:
        ch = entry["change"]
        if ch["value"] is not None:
            assert ch["value"] == pytest.approx(0.0, abs=1e-12)
            assert ch["ci"] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert res["widened"] == []


def test_known_constant_shift(base):
    mb = group_means(base, "representativeness")
    top, low = sorted(["Female", "Male"], key=lambda g: -mb[("sex", g)])
    other = shifted(base, low, "representativeness", lambda q: -0.05)  # down: figures stay in [0, 1]
    res = compare_results(base, other, n_boot=300, seed=1)
    row = next(g for g in res["groups"] if g["group"] == low and g["metric"] == "representativeness")
    assert row["change"]["value"] == pytest.approx(-0.05)
    assert row["change"]["ci"] == pytest.approx([-0.05, -0.05])  # every question moved by the same amount
    rest = next(g for g in res["groups"] if g["group"] == top and g["metric"] == "representativeness")
    assert rest["change"]["value"] == pytest.approx(0.0)
    # gap change by hand from the group means of both files
    mo = group_means(other, "representativeness")
    gap_b = mb[("sex", top)] - mb[("sex", low)]
    gap_o = mo[("sex", top)] - mo[("sex", low)]
    d = next(x for x in res["disparity"] if x["attribute"] == "sex" and x["metric"] == "representativeness"
             and x["figure"] == "gap")
    assert d["change"]["value"] == pytest.approx(gap_o - gap_b) == pytest.approx(0.05)
    # the worse group got worse on every question: the gap widened in every replicate
    assert d["widened"] and not d["narrowed"] and d["change"]["ci"][0] > 0
    ratio = next(x for x in res["disparity"] if x["attribute"] == "sex" and x["metric"] == "representativeness"
                 and x["figure"] == "ratio")
    assert ratio["widened"] and ratio["change"]["ci"][1] < 0  # min/max fell: wider on the ratio scale too
    # relative reduction in misalignment, overall, by hand
    ov = next(o for o in res["overall"] if o["metric"] == "representativeness")
    rb, ro = ov["base"]["value"], ov["other"]["value"]
    assert ov["reduction"]["value"] == pytest.approx(1 - (1 - ro) / (1 - rb))


def test_paired_interval_matches_independent_bootstrap(base):
    qids = base["questions"]["ids"]
    shifts = {q: -0.01 * (i + 1) for i, q in enumerate(qids)}  # different per question: interval has width
    other = shifted(base, "Male", "similarity", lambda q: shifts[q])
    n_boot, seed = 400, 7
    res = compare_results(base, other, n_boot=n_boot, seed=seed)
    row = next(g for g in res["groups"] if g["group"] == "Male" and g["metric"] == "similarity")
    # independent: same draw as metrics.bootstrap.question_indices (numpy default_rng(seed).integers)
    idx = np.random.default_rng(seed).integers(0, len(qids), size=(n_boot, len(qids)))
    vec = np.array([shifts[q] for q in qids])
    reps = vec[idx].mean(axis=1)  # every Male item defined for similarity: mean change = mean shift
    assert row["change"]["value"] == pytest.approx(vec.mean())
    assert row["change"]["ci"] == pytest.approx(list(np.quantile(reps, [0.025, 0.975])))


def _stored(record: dict, entry: dict, kind: str) -> dict:
    if kind == "overall":
        return record["overall"][entry["metric"]]
    if kind == "groups":
        row = next(g for g in record["groups"] if (g["attribute"], g["group"]) == (entry["attribute"], entry["group"]))
        return row["metrics"][entry["metric"]]
    row = next(d for d in record["disparity"] if (d["attribute"], d["metric"]) == (entry["attribute"], entry["metric"]))
    return row[entry["figure"]]


def test_base_figures_are_the_results_own(base):
    """compare recomputes BASE from the items (to pair the draws); it must land on results.json's figures."""
    other = shifted(base, "Male", "similarity", lambda q: 0.02)
    res = compare_results(base, other)  # n_boot and seed from the file, as the report drew them
    checked = 0
    for kind in ("overall", "groups", "disparity"):
        for entry in res[kind]:
            want = _stored(base, entry, kind)
            got = entry["base"]
            if want["value"] is None:
                assert got["value"] is None
                continue
            assert got["value"] == pytest.approx(want["value"], abs=1e-12)
            assert (got["ci"] is None) == (want["ci"] is None)
            if want["ci"] is not None:
                assert got["ci"] == pytest.approx(want["ci"], abs=1e-12)
                checked += 1
    assert checked > 50


def test_respondent_bootstrap_is_noted(base):
    other = copy.deepcopy(base)
    other["bootstrap"] = {**other["bootstrap"], "respondents": True}
    assert any("OTHER resampled respondents" in n for n in compare_results(base, other, n_boot=20)["notes"])
    assert not any("resampled respondents" in n for n in compare_results(base, base, n_boot=20)["notes"])


def test_nmae_reduction_direction():
    assert float(reduction(np.float64(0.4), np.float64(0.3), higher=False)) == pytest.approx(0.25)
    assert float(reduction(np.float64(0.6), np.float64(0.7), higher=True)) == pytest.approx(0.25)


def test_mismatched_files_refused(tmp_path, base, capsys):
    other = copy.deepcopy(base)
    other["data"]["country"] = {"alpha2": "DE", "alpha3": "DEU", "numeric": 276, "name": "Germany"}
    with pytest.raises(DataError, match="country"):
        compare_results(base, other)
    fewer = make_results(n_questions=6, n_boot=20)
    with pytest.raises(DataError, match="question ids differ"):
        compare_results(base, fewer)
    groups = make_results(n_questions=8, n_boot=20, attributes=("sex", "age"))
    with pytest.raises(DataError, match=r"groups differ \(only in BASE: ethnicity=Chinese, ethnicity=Indian, "
                                         r"ethnicity=Malay; only in OTHER: -\)"):
        compare_results(base, groups)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(base))
    b.write_text(json.dumps(fewer))
    from cvaudit.audit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["compare", str(a), str(b), "--out", str(tmp_path / "c")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot compare" in err[0]


def test_cli_writes_json_and_html(tmp_path, base):
    other = shifted(base, "Malay", "accuracy", lambda q: 0.0)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(base))
    b.write_text(json.dumps(other))
    from cvaudit.audit.cli import main

    main(["compare", str(a), str(b), "--out", str(tmp_path / "c"), "--format", "html", "--n-boot", "50"])
    data = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert data["kind"] == "compare" and data["bootstrap"]["replicates"] == 50 and data["bootstrap"]["paired"]
    assert {"overall", "groups", "disparity", "widened"} <= set(data)
    html = (tmp_path / "c" / "compare.html").read_text()
    assert "Audit comparison" in html and "SYNTHETIC DATA" in html and "<script" not in html


def test_min_change_keeps_tiny_shifts_from_widening(base):
    mb = group_means(base, "similarity")
    top = max(["Female", "Male"], key=lambda g: mb[("sex", g)])
    other = shifted(base, top, "similarity", lambda q: 1e-4)  # interval excludes 0, but the change is negligible
    res = compare_results(base, other, n_boot=200, min_change=1e-3)
    gap = next(x for x in res["disparity"] if x["attribute"] == "sex" and x["metric"] == "similarity"
               and x["figure"] == "gap")
    assert gap["change"]["value"] == pytest.approx(1e-4) and not gap["widened"]
    res = compare_results(base, other, n_boot=200, min_change=0.0)  # 200: enough replicates to call a change
    gap = next(x for x in res["disparity"] if x["attribute"] == "sex" and x["metric"] == "similarity"
               and x["figure"] == "gap")
    assert gap["widened"] == (gap["change"]["ci"][0] > 0)


def test_compare_names_its_inputs_exactly(base):
    """Each side is identified as its own report identifies it: results digest, method fingerprint, survey hash."""
    from cvaudit.reports.html import render_compare_html, results_digest

    other = shifted(base, "Male", "similarity", lambda q: 0.01)
    other["method"] = {**other["method"], "fingerprint": "other-method-fp"}
    res = compare_results(base, other, n_boot=20)
    assert res["base"]["results_digest"] == "sha256:" + results_digest(base)
    assert res["other"]["results_digest"] == "sha256:" + results_digest(other) != res["base"]["results_digest"]
    page = render_compare_html(res)
    for value in (res["base"]["results_digest"], res["other"]["results_digest"], "other-method-fp",
                  str(base["data"]["sha256"])):  # fmt: skip
        assert value in page, value


def _cli(args: list[str]) -> int:
    from results_factory import run_cli

    return run_cli(args)


def _widening(base: dict) -> tuple[dict, dict]:
    """OTHER: sex's worse group worse by 0.05 on every question, so the gap widens in every replicate."""
    mb = group_means(base, "representativeness")
    low = min(["Female", "Male"], key=lambda g: mb[("sex", g)])
    other = shifted(base, low, "representativeness", lambda q: -0.05)
    gap = lambda res: next(x for x in res["disparity"] if x["attribute"] == "sex"  # noqa: E731
                           and x["metric"] == "representativeness" and x["figure"] == "gap")  # fmt: skip
    return other, gap


def test_too_few_replicates_refused_or_never_call_a_change(tmp_path, base, capsys):
    """One replicate is a point, not an interval: refused; below 200 nothing is called widened or narrowed."""
    from cvaudit.audit.errors import ConfigError

    other, gap = _widening(base)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(base))
    b.write_text(json.dumps(other))
    assert _cli(["compare", str(a), str(b), "--n-boot", "1", "--out", str(tmp_path / "c"), "--format", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--n-boot 1" in err and not (tmp_path / "c").exists(), err
    with pytest.raises(ConfigError, match="at least 2 replicates"):
        compare_results(base, other, n_boot=1)
    one = copy.deepcopy(base)
    one["bootstrap"]["replicates"] = 1  # BASE's own count is the default: refused too, naming where it came from
    with pytest.raises(ConfigError, match="BASE's bootstrap.replicates"):
        compare_results(one, other)
    for n in (0, 2, 199):
        res = compare_results(base, other, n_boot=n)
        assert not gap(res)["widened"] and res["widened"] == [] and res["bootstrap"]["changes_called"] is False
        assert any(("only 2 bootstrap" if n == 2 else "no bootstrap" if n == 0 else "only 199") in x
                   for x in res["notes"]), res["notes"]  # fmt: skip
    res = compare_results(base, other, n_boot=200)
    assert gap(res)["widened"] and res["bootstrap"]["changes_called"] is True
    assert not any("bootstrap replicates" in x for x in res["notes"])
    assert _cli(["compare", str(a), str(b), "--n-boot", "2", "--out", str(tmp_path / "c"), "--format", "html"]) == 0
    out = capsys.readouterr().out
    assert "disparity widened: 0 figure(s)" in out and "note: only 2 bootstrap replicates" in out
    assert "not called (see the notes)" in (tmp_path / "c" / "compare.html").read_text()


def test_one_paired_question_never_calls_a_change():
    single = make_results(n_questions=1, n_boot=20)
    other, gap = _widening(single)
    res = compare_results(single, other, n_boot=200)
    assert gap(res)["change"]["ci"] is not None and not gap(res)["widened"]  # a zero-width interval
    assert any("only one paired question" in n for n in res["notes"])


def _item(rec: dict, i: int = 0) -> dict:
    return rec["items"][i]


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda r: _item(r)["metrics"].update(nmae="x"), "items[0].metrics.nmae"),
    (lambda r: _item(r)["metrics"].update(nmae=float("nan")), "items[0].metrics.nmae"),
    (lambda r: _item(r)["metrics"].update(accuracy=True), "items[0].metrics.accuracy"),
    (lambda r: _item(r)["metrics"].update(similarity=float("inf")), "items[0].metrics.similarity"),
    (lambda r: _item(r).pop("metrics"), "items[0]"),
    (lambda r: _item(r)["metrics"].pop("representativeness"), "items[0].metrics"),
    (lambda r: r["items"].append(copy.deepcopy(_item(r))), "repeats the item"),
    (lambda r: _item(r).update(group="Martian"), "items[0] is for group"),
    (lambda r: r.update(items=[]), "items is empty"),
])  # fmt: skip
def test_damaged_items_are_refused_naming_the_item(tmp_path, base, capsys, damage, fragment):
    """compare recomputes every figure from items[].metrics: a damaged item is exit 2, never a shifted figure."""
    rec = copy.deepcopy(base)
    damage(rec)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(base))
    b.write_text(json.dumps(rec))  # NaN and Infinity go in as Python's json writes them
    for args in (["compare", str(a), str(b)], ["compare", str(b), str(a)]):
        assert _cli([*args, "--out", str(tmp_path / "c"), "--format", ""]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err and "internal error" not in err, err
        assert "Martian" in err or str(b) in err
    assert not (tmp_path / "c").exists()


def test_outputs_of_formats_not_written_are_removed(tmp_path, base, monkeypatch):
    """A folder never holds one comparison's compare.json beside an earlier one's compare.html/compare.pdf."""
    other, _gap = _widening(base)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(base))
    b.write_text(json.dumps(other))
    out = tmp_path / "c"
    assert _cli(["compare", str(a), str(a), "--out", str(out), "--format", "html", "--n-boot", "20"]) == 0
    (out / "compare.pdf").write_bytes(b"%PDF- from an earlier comparison")
    (out / ".compare.pdf.x1y2.tmp").write_bytes(b"a killed write")
    first = (out / "compare.json").read_text()
    # a render that fails leaves the earlier outputs as they were
    import cvaudit.reports.html as html_mod

    def broken(_result):
        raise RuntimeError("boom")

    monkeypatch.setattr(html_mod, "render_compare_html", broken)
    with pytest.raises(RuntimeError):
        compare_results(a, b, out, formats="html", n_boot=20)
    assert sorted(p.name for p in out.iterdir()) == [".compare.pdf.x1y2.tmp", "compare.html", "compare.json",
                                                     "compare.pdf"]  # fmt: skip
    assert (out / "compare.json").read_text() == first
    monkeypatch.undo()
    assert _cli(["compare", str(a), str(b), "--out", str(out), "--format", "", "--n-boot", "20"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.json"]
    assert json.loads((out / "compare.json").read_text())["other"]["path"] == str(b)
    assert _cli(["compare", str(a), str(b), "--out", str(out), "--format", "html", "--n-boot", "20"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.json"]


def test_comparing_results_with_themselves_is_noted(tmp_path, base, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(base))
    b.write_text(json.dumps(base, indent=2))  # another file, the same results
    for x, y in ((a, a), (a, b)):
        assert _cli(["compare", str(x), str(y), "--out", str(tmp_path / "c"), "--format", "html", "--n-boot", "20"]) == 0
        out = capsys.readouterr().out
        assert "note: BASE and OTHER are the same results (same digest sha256:" in out
        data = json.loads((tmp_path / "c" / "compare.json").read_text())
        assert data["same_results"] is True and any("same results" in n for n in data["notes"])
        assert "BASE and OTHER are the same results" in (tmp_path / "c" / "compare.html").read_text()
    res = compare_results(base, shifted(base, "Male", "similarity", lambda q: 0.01), n_boot=20)
    assert res["same_results"] is False and not any("same results" in n for n in res["notes"])


def _drop_cells(record: dict, cells: set[tuple[str, str, str]], listed: bool = True) -> dict:
    """``record`` without ``cells``; with ``listed`` its excluded_cells names them (a method's training cells)."""
    out = copy.deepcopy(record)
    out["items"] = [i for i in out["items"] if (i["attribute"], i["group"], i["question"]) not in cells]
    regroup(out)
    if listed:
        out["excluded_cells"] = {"reason": "training examples of the checkpoint",
                                 "cells": [{"attribute": a, "group": g, "question": q} for a, g, q in sorted(cells)]}
    return out


def test_cells_one_run_excluded_are_left_out_of_both_sides(base):
    sex = sorted({(i["attribute"], i["group"]) for i in base["items"] if i["attribute"] == "sex"})
    qids = base["questions"]["ids"]
    cells = {(a, g, q) for a, g in sex for q in qids[:3]}
    other = _drop_cells(shifted(base, "Male", "similarity", lambda q: -0.05), cells)
    res = compare_results(base, other, n_boot=50)
    note = next(n for n in res["notes"] if "in one run only" in n)
    assert f"{len(cells)} cell(s)" in note and "excluded by OTHER (training examples of the checkpoint)" in note
    assert res["left_out_cells"] == [{"attribute": a, "group": g, "question": q, "excluded_by": "OTHER",
                                      "reason": "training examples of the checkpoint"} for a, g, q in sorted(cells)]
    assert compare_results(base, base, n_boot=0)["left_out_cells"] == []
    # BASE's figures are its means over the shared cells only
    kept = [i for i in base["items"] if (i["attribute"], i["group"], i["question"]) not in cells]
    male = next(e for e in res["groups"] if e["group"] == "Male" and e["metric"] == "similarity")
    want = np.mean([i["metrics"]["similarity"] for i in kept if i["group"] == "Male"])
    assert male["base"]["value"] == pytest.approx(want)
    assert male["change"]["value"] == pytest.approx(-0.05)
    overall = next(e for e in res["overall"] if e["metric"] == "similarity")
    vals = [i["metrics"]["similarity"] for i in kept if i["metrics"]["similarity"] is not None]
    assert overall["base"]["value"] == pytest.approx(np.mean(vals))
    # identical to a compare whose BASE was trimmed to the same cells by hand, intervals included
    by_hand = compare_results(_drop_cells(base, cells), other, n_boot=50)
    for kind in ("overall", "groups", "disparity"):
        assert [(e["base"], e["change"]) for e in res[kind]] == [(e["base"], e["change"]) for e in by_hand[kind]]
    # either side may be the excluding one
    flipped = compare_results(other, base, n_boot=50)
    assert any("excluded by BASE" in n for n in flipped["notes"])


def test_cells_missing_without_excluded_cells_are_still_refused(base):
    cell = next((i["attribute"], i["group"], i["question"]) for i in base["items"])
    with pytest.raises(DataError, match="is in one file only"):
        compare_results(base, _drop_cells(base, {cell}, listed=False), n_boot=20)
    # listing a cell does not excuse a different one
    other = _drop_cells(base, {cell})
    stray = next((i["attribute"], i["group"], i["question"]) for i in other["items"])
    other["items"] = [i for i in other["items"] if (i["attribute"], i["group"], i["question"]) != stray]
    regroup(other)  # a cell a run lacks (e.g. suppressed) is in none of its figures
    with pytest.raises(DataError, match="is in one file only"):
        compare_results(base, other, n_boot=20)
    # each run left out what the other kept: no cell to pair on
    sex = {(i["attribute"], i["group"], i["question"]) for i in base["items"] if i["attribute"] == "sex"}
    rest = {(i["attribute"], i["group"], i["question"]) for i in base["items"]} - sex
    with pytest.raises(DataError, match="share no"):
        compare_results(_drop_cells(base, sex), _drop_cells(base, rest), n_boot=20)


def test_min_change_above_one_is_refused(tmp_path, base, capsys):
    """Every figure of the built-in metrics changes by at most 1: a larger --min-change could never call a change."""
    a = tmp_path / "a.json"
    a.write_text(json.dumps(base))
    assert _cli(["compare", str(a), str(a), "--min-change", "5", "--out", str(tmp_path / "c"), "--format", ""]) == 2
    err = capsys.readouterr().err
    assert "--min-change" in err and not (tmp_path / "c").exists()
