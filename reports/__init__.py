"""Reports from results.json alone: HTML/PDF audit report, compare, CI gate, model-card export.

Public API (docs/reports.md)::

    render_report(results, out_dir, formats=("html", "pdf"), *, policy=None, signer=None,
                  allow_incomplete=False) -> list[Path]
    compare_results(base, other, out_dir=None, formats=("html", "pdf"), *, n_boot=None, seed=None,
                    min_change=None) -> dict
    run_gate(results, policy, allow_incomplete=False) -> GateResult
    export_model_card(results, out_dir) -> list[Path]

Heavy imports (jinja2, weasyprint, numpy) happen inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FORMATS = ("html", "pdf")
REPORT_OUTPUTS = ("report.html", "report.pdf")


def check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """Normalise "html,pdf" or a sequence; refuse unknown formats with the valid ones named."""
    from cvaudit.audit.errors import ConfigError

    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = tuple(dict.fromkeys(f.strip().lower() for f in items if f.strip()))
    bad = [f for f in out if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown report format(s) {', '.join(bad)}; choose from html, pdf (e.g. --format html,pdf)")
    return out


def render_report(
    results: dict | str | os.PathLike,
    out_dir: str | os.PathLike,
    formats: Sequence[str] | str = FORMATS,
    *,
    policy: Any = None,
    signer: str | None = None,
    allow_incomplete: bool = False,
) -> list[Path]:
    """Write OUT/report.html and/or OUT/report.pdf from a results record or results.json path.

    ``policy`` (a path, dict or Policy) adds a pass/fail verdict; ``signer`` ("Name, Role")
    pre-fills the sign-off block. Refuses malformed, foreign-version or incomplete results
    (DataError) unless ``allow_incomplete``, which renders an INCOMPLETE RUN banner. An
    earlier report.html/report.pdf in OUT is removed, also in a format not written now.
    """
    from cvaudit.audit.io import atomic_write_bytes, remove_outputs

    from .html import render_html
    from .load import load_results
    from .pdf import require_pdf

    fmts = check_formats(formats)
    require_pdf(fmts)
    record = load_results(results, allow_incomplete=allow_incomplete)
    gate = run_gate(record, policy, allow_incomplete=allow_incomplete) if policy is not None else None
    html = render_html(record, gate=gate, signer=signer)
    files: dict[str, bytes] = {}
    if "html" in fmts:
        files["report.html"] = html.encode("utf-8")
    if "pdf" in fmts:
        from .pdf import html_to_pdf_bytes

        files["report.pdf"] = html_to_pdf_bytes(html)
    out = Path(out_dir)
    # rendered first, so a failure leaves OUT as it was; then an earlier report in a format not asked for
    # this time goes too, so the folder never holds two runs' reports side by side
    remove_outputs(out, REPORT_OUTPUTS)
    return [atomic_write_bytes(out / name, data) for name, data in files.items()]


def compare_results(
    base: dict | str | os.PathLike,
    other: dict | str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    formats: Sequence[str] | str = FORMATS,
    *,
    n_boot: int | None = None,
    seed: int | None = None,
    min_change: float | None = None,
) -> dict[str, Any]:
    """Paired comparison OTHER - BASE (see reports/compare.py); writes compare.json (+ HTML/PDF) when out_dir."""
    from .compare import MIN_CHANGE, compare, write_compare
    from .pdf import require_pdf

    fmts = check_formats(formats)
    if out_dir is not None:
        require_pdf(fmts)
    result = compare(base, other, n_boot=n_boot, seed=seed, min_change=MIN_CHANGE if min_change is None else min_change)
    if out_dir is not None:
        write_compare(result, out_dir, fmts)
    return result


def run_gate(results: dict | str | os.PathLike, policy: Any, allow_incomplete: bool = False) -> Any:
    """Check results against a policy (path, dict or Policy); returns a GateResult (reports/gate.py).

    Incomplete results raise DataError unless ``allow_incomplete`` (then require_complete fails).
    """
    from .gate import gate

    return gate(results, policy, allow_incomplete=allow_incomplete)


def export_model_card(results: dict | str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Write model_card_metrics.json and model-index.yaml (reports/export.py)."""
    from .export import export

    return export(results, out_dir)


__all__ = ["FORMATS", "check_formats", "compare_results", "export_model_card", "render_report", "run_gate"]
