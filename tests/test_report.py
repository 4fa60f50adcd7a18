"""HTML report: escaping, StrictUndefined, refusal of bad results, content from results.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cvaudit.audit.errors import DataError
from cvaudit.reports import render_report
from cvaudit.reports.html import build_context, render_html, render_template
from cvaudit.reports.load import load_results
from results_factory import incomplete, inject, make_results, run_cli

PAYLOAD = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def record() -> dict:
    return make_results(n_questions=10, n_boot=200)


def test_markup_in_model_question_and_group_is_escaped(record):
    html = render_html(inject(record, PAYLOAD))
    assert "<script" not in html.lower()  # no script element at all, injected or ours
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert "evil" + escaped in html  # model id
    assert "How important is topic 1 in your life?" + escaped in html  # question wording (appendix)
    assert "Female" + escaped in html  # group label (tables)
    # inside the SVG charts the label is escaped too (forest plot text element)
    svg = re.search(r"<svg[^>]*class='chart forest'.*?</svg>", html, re.S).group(0)
    assert "Female&lt;script&gt;" in svg and "<script" not in svg


def test_csp_forbids_scripts(record):
    html = render_html(record)
    assert "default-src 'none'" in html and "script-src" not in html


def test_strict_undefined_fails_loudly(record):
    import jinja2

    ctx = build_context(record)
    del ctx["verdict"]
    with pytest.raises(jinja2.UndefinedError):
        render_template("report.html.j2", ctx)
    ctx = build_context(record)
    del ctx["meta"]["model_id"]
    with pytest.raises(jinja2.UndefinedError):
        render_template("report.html.j2", ctx)


def test_refuses_malformed_foreign_and_incomplete(tmp_path, record):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": "1", "complete": tr')
    with pytest.raises(DataError, match="not valid JSON"):
        load_results(bad)
    other = dict(record, schema_version="2")
    with pytest.raises(DataError, match="schema_version '2'"):
        load_results(other)
    with pytest.raises(DataError, match="incomplete run"):
        load_results(incomplete(record))
    broken = {k: v for k, v in record.items() if k != "groups"}
    with pytest.raises(DataError, match="lacks groups"):
        load_results(broken)


def test_cli_exit_2_one_line_on_incomplete(tmp_path, record, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(incomplete(record)))
    assert run_cli(["report", str(path), "--format", "html"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incomplete run" in err[0] and "--allow-incomplete" in err[0]
    assert not (tmp_path / "report.html").exists()
    assert run_cli(["report", str(path), "--format", "html", "--allow-incomplete"]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "INCOMPLETE RUN" in html and "incomplete-banner" in html
    assert run_cli(["report", str(tmp_path / "missing.json")]) == 2
    assert run_cli(["report", str(path), "--format", "docx", "--allow-incomplete"]) == 2


def test_synthetic_banner_only_for_synthetic(record):
    html = render_html(record)
    assert "SYNTHETIC DATA — not World Values Survey respondents; figures illustrate the tool only" in html
    assert 'class="synthetic-running"' in html  # the copy repeated in every PDF page's margin
    real = render_html(make_results(n_questions=4, n_boot=20, synthetic=False))
    assert "synthetic-banner" not in real.split("<body", 1)[1]


def test_verdict_and_tables_show_the_record(record):
    html = render_html(record, signer="Ada Lovelace, Lead auditor")
    ov = record["overall"]["accuracy"]
    assert f"{ov['value']:.3f} [{ov['ci'][0]:.3f},\u00a0{ov['ci'][1]:.3f}]" in html
    disfavoured = [(g["attribute"], g["group"]) for g in record["groups"]
                   if any(f["status"] == "disfavoured" for f in g["flags"].values())]
    assert disfavoured == [("ethnicity", "Malay")]  # the factory's badly modelled group
    verdict = html.split('id="verdict"', 1)[1].split("</section>", 1)[0]
    assert "ethnicity: Malay" in verdict
    assert "Ada Lovelace" in html and "Lead auditor" in html
    # one forest plot per attribute, each group on it, flag named in words (not colour alone)
    assert html.count("class='chart forest'") == 3
    assert "▼ disfavoured: Accuracy" in html
    # every question of the appendix with its wording and options
    for q in record["questions"]["details"]:
        assert q["text"] in html
    assert "Christian" in html  # nominal options


def test_forest_reference_line_at_reference_value(record):
    from cvaudit.reports.charts import Scale, nice_domain

    ctx = build_context(record)
    sex = next(a for a in ctx["attributes"] if a["name"] == "sex")
    ref = next(g for g in record["groups"] if g["attribute"] == "sex" and g["group"] == sex["reference"])
    groups = [g for g in record["groups"] if g["attribute"] == "sex"]
    # first panel (accuracy): domain over values and CI bounds, x0 = label width
    vals = [v for g in groups for v in [g["metrics"]["accuracy"]["value"], *g["metrics"]["accuracy"]["ci"]]]
    lo, hi = nice_domain(vals + [ref["metrics"]["accuracy"]["value"]])
    x = Scale(lo, hi, 170 + 4, 170 + 140 - 4)(ref["metrics"]["accuracy"]["value"])
    assert f"<line x1='{x:.1f}' x2='{x:.1f}'" in str(sex["svg"])


def test_method_report_rendered_generically(record):
    html = render_html(record)
    section = html.split('id="method-report"', 1)[1].split("</section>", 1)[0]
    assert "Persona texts" in section and "You are a Malay person living in Singapore." in section
    assert "Alpha sweep" in section and "<polyline" in section and "perplexity (right axis)" in section
    odd = dict(record, method_report={"Summary": {"k": 1.5, "nested": {"a": 1}}, "Note": "plain text",
                                      "plot": {"x": [0, 1, 2], "y": {"gap": [0.1, None, 0.3]}}})
    html = render_html(odd)
    assert "Summary" in html and "plain text" in html and "{&#34;a&#34;: 1}" in html


def test_policy_verdict_in_report(tmp_path, record):
    malay = next(g for g in record["groups"] if g["group"] == "Malay")
    metric = next(m for m, f in malay["flags"].items() if f["status"] == "disfavoured")
    policy = {"rules": [{"metric": metric, "attribute": "ethnicity", "no_disfavoured_group": True}]}
    paths = render_report(record, tmp_path, formats=("html",), policy=policy)
    html = Path(paths[0]).read_text()
    assert "FAIL</strong>" in html and f"disfavoured on {metric}: Malay" in html
    paths = render_report(record, tmp_path, formats="html", policy={"rules": [{"metric": "similarity",
                                                                                 "min_overall_value": 0.0}]})
    assert "PASS</strong>" in Path(paths[0]).read_text()


def test_appendix_capped_for_large_audits(record, monkeypatch):
    import cvaudit.reports.html as h

    n_items = len(record["items"])
    per_question = n_items // len(record["questions"]["ids"])
    monkeypatch.setattr(h, "APPENDIX_MAX_ITEMS", 3 * per_question)
    ctx = h.build_context(record)
    assert len(ctx["appendix"]) == 3 and ctx["appendix_left_out"] == len(record["questions"]["ids"]) - 3
    first = ctx["divisive"]["by_modes"][0]["id"]
    assert first in [q["id"] for q in ctx["appendix"]]
    assert "left out of this appendix" in h.render_template("report.html.j2", ctx)


def test_missing_weasyprint_fails_before_anything_is_written(tmp_path, monkeypatch, tiny_llama_dir):
    """Without WeasyPrint a PDF request is refused up front: no audit runs, no report.html or results.json."""
    import sys

    from cvaudit.audit.config import RunConfig
    from cvaudit.audit.errors import ConfigError
    from cvaudit.audit.run import run_audit
    from cvaudit.reports import compare_results, render_report
    from results_factory import make_results

    monkeypatch.setitem(sys.modules, "weasyprint", None)  # `import weasyprint` now raises ImportError
    record = make_results(n_questions=4, n_boot=20)
    with pytest.raises(ConfigError, match="PDF output needs WeasyPrint"):
        render_report(record, tmp_path / "rep", formats="html,pdf")
    with pytest.raises(ConfigError, match="PDF output needs WeasyPrint"):
        compare_results(record, record, tmp_path / "cmp", formats="html,pdf")
    cfg = RunConfig(model=str(tiny_llama_dir), attributes=("sex",), questions="Q1", n_boot=5,
                    out=str(tmp_path / "run"), no_cache=True, progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="PDF output needs WeasyPrint"):
        run_audit(cfg)
    assert not any(p.exists() for p in (tmp_path / "rep", tmp_path / "cmp", tmp_path / "run"))
    assert render_report(record, tmp_path / "html-only", formats="html")[0].name == "report.html"


@pytest.mark.parametrize(("path", "value", "fragment"), [
    (("disparity",), [1, 2], "disparity[0] lacks attribute/metric"),
    (("items",), [1, "a", None], "items[0] lacks attribute/group/question"),
    (("items",), [{}], "items[0] lacks attribute/group/question"),
    (("groups", 0, "flags"), [1], "groups[0].flags must map each metric"),
    (("groups", 0, "metrics"), [1, 2], "groups[0].metrics must map each metric"),
    (("overall", "accuracy"), 0.5, "overall must map each metric"),
])  # fmt: skip
def test_damaged_entries_are_one_line_exit_2_everywhere(tmp_path, record, capsys, path, value, fragment):
    """results.json is the single source of report, gate, export and compare: a damaged entry stops each cleanly."""
    rec = json.loads(json.dumps(record))
    target = rec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    f = tmp_path / "results.json"
    f.write_text(json.dumps(rec))
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - metric: accuracy\n    max_gap: 1.0\n")
    for args in (["report", str(f), "--format", "html", "--out", str(tmp_path / "r")],
                 ["gate", str(f), "--policy", str(policy)], ["export", str(f), "--out", str(tmp_path / "e")],
                 ["compare", str(f), str(f), "--out", str(tmp_path / "c"), "--format", ""]):  # fmt: skip
        assert run_cli(args) == 2, args
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1 and "internal error" not in err, (args, err)


def test_deeply_nested_json_is_refused(tmp_path, capsys):
    f = tmp_path / "results.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    assert run_cli(["report", str(f), "--format", "html", "--out", str(tmp_path / "r")]) == 2
    assert "nests too deeply" in capsys.readouterr().err


def _text(page: str) -> str:
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_verdict_states_the_whole_flag_rule_and_when_flags_cannot_fire(record):
    text = _text(render_html(record))
    assert "its interval lies wholly on one side of the reference group's value" in text
    assert "significant at 0.05 after Holm correction" in text and "largest group unless the run named one" in text
    assert "Flags could not fire here" not in text
    rec = json.loads(json.dumps(record))
    rec["metric_notes"] = [*rec["metric_notes"], "attribute 'sex': 1 groups ... no group can be flagged; re-run"]
    assert "Flags could not fire here. attribute 'sex'" in _text(render_html(rec))


def test_group_tables_show_ratio_and_holm_p_of_every_group(record):
    text = _text(render_html(record))
    for g in record["groups"]:
        fl = g["flags"]["similarity"]
        if fl["status"] == "reference" or fl["ratio"] is None:
            continue
        want = f"ratio {fl['ratio']:.3f}"
        assert want in text, want
    assert "Holm p" in text


def test_limitations_follow_the_run(record):
    text = _text(render_html(record))
    assert "twice, with the answer options in their order and reversed" in text
    assert ("Persona prompts." in text) and ("No persona." not in text)
    none = json.loads(json.dumps(record))
    none["method"]["name"] = "none"
    none["bootstrap"] = {**none["bootstrap"], "respondents": True}
    text = _text(render_html(none))
    assert "No persona." in text and "Persona prompts." not in text
    assert "Respondents were resampled too" in text and "respondents were not resampled" not in text


def test_heatmap_columns_say_how_many_questions_and_rows_stay_distinct(record):
    import html

    from cvaudit.reports.charts import _truncate_middle, heatmap

    page = html.unescape(render_html(record))
    cat = record["categories"][0]
    assert re.search(rf"<title>{re.escape(cat['category'])} \(\d+\u00a0q\)</title>", page)  # "(2 q)" never splits
    a = "religion:age: Other religion, 25-34"
    b = "religion:age: Other religion, 65+"
    assert _truncate_middle(a, 28) != _truncate_middle(b, 28) and len(_truncate_middle(a, 28)) == 28
    svg = str(heatmap([a, b], ["A category with a very long name indeed"], [[0.1], [0.9]]))
    assert "<title>A category with a very long name indeed</title>" in svg and "darker = better" in svg


def test_every_axis_gets_at_least_two_round_ticks():
    import numpy as np
    from cvaudit.reports.charts import ticks

    rng = np.random.default_rng(0)
    for _ in range(2000):
        lo = float(rng.uniform(-1, 1))
        hi = lo + float(10 ** rng.uniform(-3, 1))
        t = ticks(lo, hi)
        assert len(t) >= 2 and all(lo - 1e-9 <= x <= hi + 1e-9 for x in t), (lo, hi, t)
        assert len(t) <= 12, (lo, hi, t)


def test_policy_report_names_the_policy_and_lists_every_check(tmp_path, record):
    from cvaudit.reports.gate import gate, policy_digest
    from cvaudit.reports.policy import load_policy

    pol = {"name": "release", "rules": [{"metric": "accuracy", "attribute": "*", "max_gap": 1.0}]}
    res = gate(record, pol)
    assert res.policy_sha256 == policy_digest(load_policy(pol)) and len(res.policy_sha256) == 64
    text = _text(render_html(record, gate=res))
    assert "Gate checks: policy “release”" in text and res.policy_sha256 in text
    assert "require_non_synthetic: false" in text
    for c in res.checks:
        assert f"{c.status.upper()} {c.message}" in text
    stricter = {"name": "release", "rules": [{"metric": "accuracy", "attribute": "*", "max_gap": 0.5}]}
    assert gate(record, stricter).policy_sha256 != res.policy_sha256


def test_line_plot_names_both_axes():
    from cvaudit.reports.charts import line_plot

    svg = str(line_plot([0, 2, 4], {"accuracy": [0.2, 0.3, 0.4], "nmae": [0.5, 0.4, 0.3]},
                        {"perplexity": [10, 12, 15]}, "sweep", "alpha"))  # fmt: skip
    assert "rotate(-90)' font-size='10' text-anchor='middle'>accuracy / nmae</text>" in svg
    assert "rotate(90)' font-size='10' text-anchor='middle'>perplexity</text>" in svg


def test_heatmap_figures_also_come_as_a_table(record):
    """What the colours show is readable without them: each category cell of results.json is in a table row."""
    import html
    import math

    page = render_html(record)
    section = page[page.index('id="categories"'):page.index('id="divisive"')]
    blocks = re.findall(r'<details class="data-alt">(.*?)</details>', section, re.S)
    assert blocks, "no data table under the heatmaps"
    table = blocks[0]
    heads = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)][1:]
    rows = {}
    for tr in re.findall(r"<tr><td>(.*?)</tr>", table, re.S):
        tds = [html.unescape(t) for t in re.findall(r"(?:^|<td[^>]*>)([^<]*)</td>", tr)]
        rows[tds[0]] = tds[1:]
    cells = [c for c in record["categories"] if c["metric"] == "representativeness"]
    assert len(rows) == len({(c["attribute"], c["group"]) for c in cells}) > 1
    for c in cells:
        col = next(i for i, h in enumerate(heads) if h.split(" (")[0] == c["category"])
        v = c.get("value")
        shown = rows[f"{c['attribute']}: {c['group']}"][col]
        assert shown == (f"{v:.2f}" if v is not None and math.isfinite(v) else "–"), (c, shown)


def test_report_says_flags_are_net_of_the_size_shift(record):
    import copy

    text = _text(render_html(record))
    assert "net of the size shift" in text and "the shift never adds a flag" in text
    removed = [f for g in record["groups"] for f in g["flags"].values()
               if f.get("noise_removed") is not None and abs(f["noise_removed"]) >= 5e-4]  # fmt: skip
    assert removed and f"{removed[0]['noise_removed']:+.3f} from sample size" in text
    net = [f for f in removed if None not in (f["ratio"], f["ratio_net"]) and f"{f['ratio']:.3f}" != f"{f['ratio_net']:.3f}"]
    assert net and f"ratio {net[0]['ratio']:.3f} (net {net[0]['ratio_net']:.3f})" in text
    raw = copy.deepcopy(record)
    raw["flags"]["noise_corrected"] = False
    for g in raw["groups"]:
        for f in g["flags"].values():
            f["noise_shift"] = f["noise_removed"] = f["ratio_net"] = None
    text = _text(render_html(raw))
    assert "computed on the raw figures" in text and "from sample size" not in text and "(net " not in text


def test_significant_differences_inside_the_band_are_listed_in_the_verdict(record):
    import copy

    from cvaudit.reports.html import title

    rec = copy.deepcopy(record)
    alpha = rec["flags"]["alpha"]
    flags = [(g, m, f) for g in rec["groups"] for m, f in g["flags"].items() if f["status"] == "neutral"]
    (g1, m1, f1), (g2, m2, f2), (g3, m3, f3) = flags[:3]
    f1.update(ratio=0.931, ratio_net=0.935, p_holm=alpha / 5)  # significant, inside the band, worse
    f2.update(ratio=1.07, ratio_net=None, p_holm=alpha / 2)  # significant, better
    f3.update(ratio=0.9, ratio_net=None, p_holm=alpha)  # not significant (p == alpha): not listed
    want = {(g["attribute"], g["group"], title(m)) for g in rec["groups"] for m, f in g["flags"].items()
            if f["status"] == "neutral" and f["p_holm"] is not None and f["p_holm"] < alpha}  # fmt: skip
    inside = build_context(rec)["verdict"]["inside"]
    got = {(f["attribute"], f["group"], f["metric"]): f for f in inside}
    assert set(got) == want and len(want) >= 2
    assert got[(g1["attribute"], g1["group"], title(m1))]["side"] == "worse"
    assert got[(g2["attribute"], g2["group"], title(m2))]["side"] == "better"
    assert (g3["attribute"], g3["group"], title(m3)) not in got
    assert [f["side"] for f in inside] == sorted((f["side"] for f in inside), key=lambda s: s != "worse")  # worse first
    text = _text(render_html(rec))
    assert "Significant differences that are not flagged" in text and "0.931 (net 0.935)" in text
    # none significant: the section says so instead of staying silent
    for g in rec["groups"]:
        for f in g["flags"].values():
            if f["status"] == "neutral":
                f["p_holm"] = 1.0
    assert "None: no unflagged group differs significantly" in _text(render_html(rec))


def test_verdict_says_when_no_policy_decided_and_names_the_minimum_size(tmp_path, record):
    text = _text(render_html(record))
    assert "No release policy was applied" in text
    assert f"fewer than {record['subgroups']['min_size']} respondents" in text or not record["subgroups"]["suppressed"]
    assert "Kish effective sample size" in text and "below 1 is worse than the reference for every metric" in text
    paths = render_report(record, tmp_path, formats=("html",), policy={"rules": [{"metric": "similarity",
                                                                                   "min_overall_value": 0.0}]})  # fmt: skip
    assert "No release policy was applied" not in _text(Path(paths[0]).read_text())


def test_verdict_shows_the_baselines_and_where_the_model_is_worse(record):
    import copy

    from cvaudit.reports.html import fmt_fig

    text = _text(render_html(record))
    for key, head in (("uniform", "Uniform answer"), ("population", "Country's answers for every group")):
        assert head in text
        for m, fig in record["baselines"][key]["overall"].items():
            assert fmt_fig(fig).replace("\u00a0", " ") in text, (key, m)
            assert fmt_fig(record["baselines"][key]["model_minus_baseline"][m]).replace("\u00a0", " ") in text
    assert "significantly worse" not in text  # the factory's model is close to the survey
    rec = copy.deepcopy(record)
    rec["baselines"]["uniform"]["model_minus_baseline"]["similarity"] = {"value": -0.05, "ci": [-0.08, -0.02]}
    rec["baselines"]["uniform"]["model_minus_baseline"]["nmae"] = {"value": 0.05, "ci": [0.01, 0.09]}
    assert "The model is significantly worse than a uniform answer on NMAE, Similarity." in _text(render_html(rec))
    # which survey noise the baselines' intervals carry is said, from the file itself
    rec["bootstrap"]["respondents"] = True
    assert "These intervals resample questions only, not respondents." in _text(render_html(rec))
    for key in rec["baselines"]:
        rec["baselines"][key]["respondents"] = True
    resampled = _text(render_html(rec))
    assert "Respondents are resampled in these intervals too" in resampled and "resample questions only" not in resampled
    # a results file from before the baselines existed: no baseline columns, no spread table, no error
    for key in ("baselines", "spread"):
        del rec[key]
    old = _text(render_html(rec))
    assert "Uniform answer" not in old and "How far apart the groups' answers are" not in old


def test_spread_table_shows_model_and_survey_per_attribute(record):
    from cvaudit.reports.html import fmt_fig

    text = _text(render_html(record))
    assert "How far apart the groups' answers are" in text
    for s in record["spread"]:
        row = f"{s['attribute']} {fmt_fig(s['model'])} {fmt_fig(s['survey'])} {s['survey_noise']:.3f} {fmt_fig(s['ratio'], 2)}"
        assert row.replace("\u00a0", " ") in text, row


def test_answer_position_check_counts_end_choices_and_near_ties(record):
    import copy

    from cvaudit.reports.html import _position

    rec = copy.deepcopy(record)
    shapes = [
        {"model_dist": [0.6, 0.1, 0.3], "human_mode": [1]},  # end choice, mode in the middle
        {"model_dist": [0.2, 0.3, 0.1, 0.4], "human_mode": [3]},  # end choice, mode at the end
        {"model_dist": [0.2, 0.5, 0.1, 0.2], "human_mode": [0, 2]},  # middle choice; a tied mode at an end
        {"model_dist": [0.504, 0.496], "human_mode": [0]},  # two options: only the near-tie count
        {"model_dist": None, "human_mode": [0]},  # suppressed / damaged: skipped
    ]
    rec["items"] = [dict(it, **shape) for it, shape in zip(rec["items"], shapes)]
    pos = _position(rec)
    assert pos["n"] == "3" and pos["model_ends"] == "67%" and pos["survey_ends"] == "67%"
    assert pos["chance_ends"] == f"{(2 / 3 + 2 / 4 + 2 / 4) / 3:.0%}"
    assert pos["near_ties"] == "1 (25%)" and pos["n_all"] == "4"
    text = _text(render_html(rec))
    assert "Answer position check" in text and "is the first or last one in 67%" in text
    assert "cancels a preference for a display position exactly only for two options" in text


def test_report_removes_the_earlier_report_in_a_format_it_does_not_write(tmp_path, record, monkeypatch):
    """`cvaudit report new.json --format html` over an earlier html+pdf report: no stale report.pdf beside it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("<p>earlier run</p>")
    (out / "report.pdf").write_bytes(b"%PDF- earlier run")
    (out / ".report.pdf.abc123.tmp").write_bytes(b"a killed write")
    (out / "results.json").write_text(json.dumps(record))
    # a render that fails (here: a bad policy) leaves the earlier report as it was
    bad = tmp_path / "p.yaml"
    bad.write_text("rules: []\n")
    assert run_cli(["report", str(out / "results.json"), "--format", "html", "--policy", str(bad)]) == 2
    assert (out / "report.pdf").read_bytes() == b"%PDF- earlier run"
    assert run_cli(["report", str(out / "results.json"), "--format", "html"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "results.json"]
    assert "earlier run" not in (out / "report.html").read_text()
    (out / "report.pdf").write_bytes(b"%PDF- earlier run")
    import cvaudit.reports.pdf as pdf_mod

    monkeypatch.setattr(pdf_mod, "_weasyprint", lambda: None)  # PDF bytes without WeasyPrint
    monkeypatch.setattr(pdf_mod, "html_to_pdf_bytes", lambda html: b"%PDF- this run")
    assert [p.name for p in render_report(record, out, formats="pdf")] == ["report.pdf"]
    assert sorted(p.name for p in out.iterdir()) == ["report.pdf", "results.json"]
    assert (out / "report.pdf").read_bytes() == b"%PDF- this run"


def test_complete_results_without_items_are_refused(tmp_path, record, capsys):
    """A complete audit has its (group, question) items: `items: []` is a damaged file, not an empty report."""
    rec = json.loads(json.dumps(record))
    rec["items"] = []
    f = tmp_path / "results.json"
    f.write_text(json.dumps(rec))
    assert run_cli(["report", str(f), "--format", "html", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "items is empty" in err and not (tmp_path / "r").exists(), err
    with pytest.raises(DataError, match="items is empty"):
        load_results(rec)


def test_cells_and_questions_the_method_left_out_are_listed(record):
    """excluded_cells and questions.excluded are shown in "What was audited", not only as notes."""
    rec = json.loads(json.dumps(record))
    cells = [{"attribute": "sex", "group": g, "question": f"Q{i}"} for g in ("Female", "Male") for i in range(1, 8)]
    rec["excluded_cells"] = {"reason": "training examples of the checkpoint", "cells": cells}
    rec["questions"]["excluded"] = ["Q57", "Q58"]
    rec["model"]["persona_role"] = "user-preamble"
    text = _text(render_html(rec))
    assert "cells left out 14 (group, question) cell(s), training examples of the checkpoint, in no figure" in text
    assert "sex=Female × Q1; sex=Female × Q2" in text and "and 2 more" in text and "sex=Male × Q6" not in text
    assert "questions left out Q57, Q58" in text and "user-preamble" in text
    plain = _text(render_html(record))
    assert "cells left out" not in plain and "questions left out" not in plain


def test_verdict_says_when_groups_were_not_tested():
    """One question: no p-values, so "no group flagged" must not read as a finding."""
    one = make_results(n_questions=1, n_boot=200)
    text = _text(render_html(one))
    assert "No group is flagged as disfavoured among the groups tested (see below)." in text
    assert "Flags could not fire here. sex: no group was tested on accuracy" in text
    assert "no flag there is no finding" in text
    tested = _text(render_html(make_results(n_questions=8, n_boot=200)))
    assert "no group was tested" not in tested and "among the groups tested" not in tested
