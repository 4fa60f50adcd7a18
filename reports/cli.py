"""click commands: ``cvaudit report``, ``compare``, ``gate`` and ``export`` (all from results.json alone).

Bad input raises CVAuditError, which ``cvaudit.audit.cli.main`` prints as one line
with exit code 2; ``gate`` itself exits 1 on a breach and 0 on a pass.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

FILE = click.Path(dir_okay=False, path_type=Path)  # existence checked by the loaders (one-line errors, exit 2)


def _finite(value: float, name: str) -> float:
    """click's FloatRange lets NaN through (every comparison with NaN is false)."""
    import math

    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", param_hint=name)
    return value


@click.command()
@click.argument("results", type=FILE)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory. Default: the folder of RESULTS.")
@click.option("--format", "formats", default="html,pdf", show_default=True, metavar="html,pdf", help="Report formats.")
@click.option("--policy", type=FILE, default=None,
              help="Gate policy (YAML, or JSON for a .json file): adds a pass/fail verdict to the report.")
@click.option("--signer", default=None, metavar='"NAME, ROLE"', help="Pre-fill the sign-off block.")
@click.option("--allow-incomplete", is_flag=True, help="Render a run marked complete=false, with an INCOMPLETE RUN banner.")
def report(results: Path, out: Path | None, formats: str, policy: Path | None, signer: str | None,
           allow_incomplete: bool) -> None:  # fmt: skip
    """Render the HTML/PDF audit report from RESULTS (a results.json)."""
    from . import check_formats, render_report

    fmts = check_formats(formats)
    if not fmts:
        raise click.UsageError("--format needs at least one of html, pdf")
    paths = render_report(results, out if out is not None else results.parent, fmts, policy=policy, signer=signer,
                          allow_incomplete=allow_incomplete)  # fmt: skip
    for p in paths:
        click.echo(f"report: {p}")


@click.command()
@click.argument("base", type=FILE)
@click.argument("other", type=FILE)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("cvaudit-compare"),
              show_default=True, help="Output directory (compare.json, compare.html, compare.pdf).")
@click.option("--format", "formats", default="html,pdf", show_default=True, metavar="html,pdf",
              help="Report formats besides compare.json (empty string for JSON only).")
@click.option("--n-boot", type=click.IntRange(min=0), default=None,
              help="Replicates (0: no intervals; 1 is refused; widened/narrowed need 200+). Default: BASE's.")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=None, help="Bootstrap seed. Default: BASE's.")
@click.option("--min-change", type=click.FloatRange(min=0, max=1), default=1e-3, show_default=True,
              callback=lambda _c, _p, v: _finite(v, "--min-change"),
              help="Smallest disparity change called widened/narrowed (the whole interval must lie beyond it).")
def compare(base: Path, other: Path, out: Path, formats: str, n_boot: int | None, seed: int | None,
            min_change: float) -> None:  # fmt: skip
    """Compare OTHER with BASE (OTHER - BASE) with paired bootstrap intervals over questions."""
    from . import check_formats, compare_results

    result = compare_results(base, other, out, check_formats(formats), n_boot=n_boot, seed=seed,
                             min_change=min_change)  # fmt: skip
    for o in result["overall"]:
        ch = o["change"]
        ci = f" [{round(ch['ci'][0], 4) + 0.0:+.4f}, {round(ch['ci'][1], 4) + 0.0:+.4f}]" if ch.get("ci") else ""
        val = "n/a" if ch["value"] is None else f"{round(ch['value'], 4) + 0.0:+.4f}"
        click.echo(f"{o['metric']}: change {val}{ci}")
    widened = result["widened"]
    click.echo(f"disparity widened: {len(widened)} figure(s)"
               + (": " + ", ".join(f"{d['attribute']}/{d['metric']}/{d['figure']}" for d in widened[:8])
                  if widened else ""))  # fmt: skip
    for note in result["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"compare: {out / 'compare.json'}")


@click.command()
@click.argument("results", type=FILE)
@click.option("--policy", type=FILE, required=True, help="Policy YAML, or JSON for a .json file (see examples/policy.yaml).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JUnit XML (one testcase per check).")
@click.option("--quiet", is_flag=True, help="Print only breaches and the verdict.")
@click.option("--allow-incomplete", is_flag=True,
              help="Evaluate a run marked complete=false (it then breaches require_complete) instead of refusing it.")
def gate(results: Path, policy: Path, junit: Path | None, quiet: bool, allow_incomplete: bool) -> None:
    """Check RESULTS against POLICY: exit 0 pass, 1 breach, 2 bad input."""
    from cvaudit.audit.cli import echo_safely
    from cvaudit.audit.io import atomic_write_text

    from .gate import gate as run
    from .gate import junit_xml, publish_github

    result = run(results, policy, allow_incomplete=allow_incomplete)
    # the files first: one that cannot be written is bad input (exit 2), never a breach (exit 1)
    if junit is not None:
        atomic_write_text(junit, junit_xml(result))
    publish_github(result, dict(os.environ), echo=echo_safely)
    for c in result.checks:
        if c.status == "fail" or not quiet:
            echo_safely(f"{c.status.upper():4}  {c.message}")
    verdict = "PASS" if result.passed else f"FAIL ({len(result.breaches)} breach(es))"
    echo_safely(f"gate: {verdict} — policy {result.policy_name}, {len(result.checks)} checks")
    sys.exit(result.exit_code)


@click.command()
@click.argument("results", type=FILE)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory. Default: the folder of RESULTS.")
def export(results: Path, out: Path | None) -> None:
    """Export per-group results as Model Card Toolkit metrics (JSON) and a HF model-index YAML snippet."""
    from . import export_model_card

    for p in export_model_card(results, out if out is not None else results.parent):
        click.echo(f"export: {p}")
