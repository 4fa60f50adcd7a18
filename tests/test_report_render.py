"""The report as a reader sees it: headless Chromium without console errors, and the WeasyPrint PDF."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
from cvaudit.reports import render_report
from results_factory import inject, make_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def record() -> dict:
    return make_results(n_questions=8, n_boot=100)


def chromium(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", *extra, url]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_chromium_renders_without_console_errors(tmp_path, record):
    # injected markup included: it must stay text, so nothing may try to execute
    html = render_report(inject(record), tmp_path, formats=("html",))[0]
    shot = tmp_path / "shot.png"
    proc = chromium(html.as_uri(), tmp_path, "--window-size=1280,2400", f"--screenshot={shot}")
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # CSP violations, script errors and failed loads all log here
    assert shot.exists() and shot.stat().st_size > 20_000
    dom = chromium(html.as_uri(), tmp_path, "--dump-dom").stdout
    assert "Cultural alignment audit" in dom and "<script" not in dom


def test_console_check_catches_a_script(tmp_path):
    """The console check above would see a blocked script: prove it on a page that has one."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    page = tmp_path / "bad.html"
    page.write_text("<html><head><meta http-equiv='Content-Security-Policy' content=\"default-src 'none'\">"
                    "</head><body><script>console.log(1)</script></body></html>")  # fmt: skip
    proc = chromium(page.as_uri(), tmp_path, f"--screenshot={tmp_path / 'b.png'}")
    assert any(":CONSOLE" in line for line in proc.stderr.splitlines())


def test_pdf_pages_banner_and_page_numbers(tmp_path, record):
    pytest.importorskip("weasyprint")
    t0 = time.perf_counter()
    pdf = render_report(record, tmp_path, formats=("pdf",))[0]
    elapsed = time.perf_counter() - t0
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert elapsed < 120  # a few seconds on an idle core; generous for shared CI runners
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed: page text not checked")
    pages = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout.split("\f")  # fmt: skip
    pages = [p for p in pages if p.strip()]
    n = len(pages)
    assert n >= 5  # verdict, audited, groups, ..., appendix each start a page
    runline = "tiny-llama-test · Singapore"
    for i, text in enumerate(pages, start=1):
        flat = " ".join(text.split())
        assert f"page {i} of {n}" in flat
        # the red banner on every page, once: full width on page 1, in the margin after
        assert flat.count("SYNTHETIC DATA —") == 1, (i, flat[:300])
        # running header from page 2; page 1 has the title instead of repeating it
        assert flat.count(runline) == (0 if i == 1 else 1), (i, flat[:300])
    # the verdict opens page 1; section 2 starts a page of its own (the verdict may run onto page 2)
    assert "1. Verdict" in pages[0] and "2. What was audited" not in pages[0]
    second = next(p for p in pages if "2. What was audited" in p)
    assert "1. Verdict" not in second and second.split("2. What was audited")[0].count("Significant differences") == 0
    assert "darker = better" in " ".join(pages)  # heatmaps drawn (their key), their screen-reader tables not
    assert "category as a table" not in " ".join(" ".join(pages).split())
    if shutil.which("pdfinfo"):  # a tagged PDF: its structure is readable by assistive technology
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        assert re.search(r"^Tagged:\s+yes", info, re.M), info


def test_pdf_without_synthetic_banner(tmp_path):
    pytest.importorskip("weasyprint")
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    pdf = render_report(make_results(n_questions=4, n_boot=20, synthetic=False), tmp_path, formats=("pdf",))[0]
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "SYNTHETIC" not in text


def _boxes(box):
    yield box
    for child in getattr(box, "children", None) or []:
        yield from _boxes(child)


def overflowing(html: str) -> list[tuple[int, str, float]]:
    """(page, element, points past the right margin) for every box wider than its page's content area."""
    import weasyprint

    out = []
    for i, page in enumerate(weasyprint.HTML(string=html).render().pages, start=1):
        root = page._page_box  # WeasyPrint's laid-out box tree; no public API gives box geometry
        right = root.content_box_x() + root.width
        for b in _boxes(root):
            if b is root or not hasattr(b, "margin_width"):
                continue
            past = b.position_x + b.margin_width() - right
            if past > 1.0:
                out.append((i, str(getattr(b, "element_tag", type(b).__name__)), round(past, 1)))
    return out


def test_no_table_runs_off_the_pdf_page(record):
    """Every box of the PDF lies inside the page's content width: a clipped column hides figures from the reader."""
    pytest.importorskip("weasyprint")
    from cvaudit.reports.html import render_html

    rec = dict(record)
    # the widest group rows a real audit gives: long labels, ratio and net ratio, Holm p and a size shift
    rec["groups"] = [dict(g, group=f"{g['group']} (secondary or post-secondary school)") for g in record["groups"]]
    for g in rec["groups"]:
        g["flags"] = {m: dict(f, ratio_net=(f["ratio"] or 1) * 0.987, noise_removed=-0.0123) if f.get("ratio") else f
                      for m, f in g["flags"].items()}  # fmt: skip
    assert overflowing(render_html(rec)) == []


def test_overflow_check_sees_a_wide_table():
    pytest.importorskip("weasyprint")
    wide = "<table><tr>" + "".join(f"<td style='white-space:nowrap'>{'x' * 40}</td>" for _ in range(6)) + "</tr></table>"
    assert overflowing(f"<html><body>{wide}</body></html>")
