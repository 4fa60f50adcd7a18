"""``cvaudit run`` and ``cvaudit demo``: the command line over :func:`run_audit`.

Options map 1:1 onto :class:`~cvaudit.audit.config.RunConfig`. A method adds its
own named options by declaring them on its class::

    @register_method("steering")
    class Steering(Method):
        cli_options = (
            click.Option(["--steer-alpha", "alpha"], help="Comma list of strengths, e.g. 0,2,4."),
            click.Option(["--steer-layer", "layer"], type=int, help="Decoder layer to steer."),
        )

The option's name ("alpha", "layer") becomes the method parameter, exactly as if the
user had written ``--method-param alpha=...``; options left unset are not passed.
Using a method's option with another ``--method`` is a one-line error. Methods whose
module cannot be imported simply contribute no options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .config import FORMATS, RunConfig, split_csv

PREFIX = "method__"  # keeps a method's option names apart from run's own (e.g. steering's alpha vs --alpha)


def _method_options() -> dict[str, tuple[click.Option, list[str]]]:
    """param name -> (click option renamed PREFIX+name, methods declaring it), from every importable method."""
    import copy

    from .methods.base import available_methods, get_method_class

    found: dict[str, tuple[click.Option, list[str]]] = {}
    for name in available_methods():
        try:
            cls = get_method_class(name)
        except Exception:  # a method module not built yet or broken: its options are simply absent
            continue
        for opt in getattr(cls, "cli_options", ()) or ():
            if not isinstance(opt, click.Option) or opt.name is None:
                continue
            if opt.name in found:
                found[opt.name][1].append(name)
            else:
                renamed = copy.copy(opt)
                renamed.name = PREFIX + opt.name
                found[opt.name] = (renamed, [name])
    return found


def _print_summary(results_path: Path, out: Path, formats: tuple[str, ...] = FORMATS, since: float = 0.0) -> None:
    """Headline figures, flagged groups, where the files are (reports written by this run only)."""
    record = json.loads(results_path.read_text(encoding="utf-8"))
    overall = record.get("overall") or {}
    for metric in ("accuracy", "nmae", "representativeness", "similarity"):
        fig = overall.get(metric) or {}
        if fig.get("value") is None:
            continue
        ci = fig.get("ci")
        ci_txt = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else ""
        click.echo(f"  overall {metric:<18} {fig['value']:.3f}{ci_txt}")
    flagged = [
        f"{g['attribute']}={g['group']} ({m}: {f['status']})"
        for g in record.get("groups") or []
        for m, f in (g.get("flags") or {}).items()
        if f.get("status") in ("favoured", "disfavoured")
    ]
    if flagged:
        click.echo(f"  flagged: {'; '.join(flagged[:8])}{' ...' if len(flagged) > 8 else ''}")
    from .results import unavailable_notes

    notes = [*((record.get("questions") or {}).get("notes") or []),
             *unavailable_notes((record.get("subgroups") or {}).get("unavailable"))]  # fmt: skip
    for note in notes:
        click.echo(f"NOTE: {note}")
    click.echo(f"results: {results_path}")
    for fmt in formats:
        path = out / f"report.{fmt}"
        if path.is_file() and path.stat().st_mtime >= since:
            click.echo(f"report:  {path}")
    if (record.get("data") or {}).get("synthetic"):
        click.echo(
            "NOTE: SYNTHETIC DATA - the survey side is cvaudit's synthetic sample, not World Values Survey "
            "respondents; the figures illustrate the tool only. Pass --wvs-file for a real audit."
        )


def _execute(config: RunConfig) -> None:
    import time

    from .run import run_audit

    start = time.time() - 1.0  # file-system timestamps can be coarse
    results_path = run_audit(config)
    _print_summary(results_path, Path(config.out), config.formats, since=start)


def _run_callback(**kw: Any) -> None:
    method_opts = _METHOD_OPTIONS
    method_params = list(kw.pop("method_param") or ())
    method = kw["method"]
    for flag, (opt, owners) in method_opts.items():
        value = kw.pop(PREFIX + flag, None)
        if value is None or value == () or value is False:
            continue
        if method not in owners:
            raise click.UsageError(f"{opt.opts[0]} applies to --method {'/'.join(owners)} only")
        method_params.append((flag, value))
    formats = () if kw.pop("no_report") else split_csv(kw.pop("format"))
    kw.pop("format", None)
    if kw["no_cache"] and kw["cache"] is not None:
        raise click.UsageError("--no-cache and --cache contradict each other; give one of them")
    config = RunConfig(
        model=kw["model"], revision=kw["revision"], dtype=kw["dtype"], device=kw["device"],
        device_map=kw["device_map"], trust_remote_code=kw["trust_remote_code"], allow_pickle=kw["allow_pickle"], method=method,
        method_params=tuple(method_params), country=kw["country"], wvs_file=kw["wvs_file"],
        questions=kw["questions"], attributes=kw["attributes"], intersections=kw["intersections"],
        min_size=kw["min_size"], limit=kw["limit"], batch_size=kw["batch_size"], seed=kw["seed"],
        n_boot=kw["n_boot"], level=kw["level"], tau=kw["tau"], alpha=kw["alpha"],
        reference=tuple(kw["reference"]), respondents=kw["respondent_bootstrap"],
        noise_correction=not kw["no_noise_correction"], out=kw["out"], cache=kw["cache"], no_cache=kw["no_cache"],
        formats=formats, progress=not kw["quiet"],
    )  # fmt: skip
    _execute(config)


_D = RunConfig()
_RUN_OPTIONS = [
    click.Option(["--model"], default=None, help="HF id, local directory, or smollm2-135m (embedded). Default: smollm2-135m, or a --checkpoint adapter's recorded base."),
    click.Option(["--revision"], default=None, help="Model revision (branch, tag or commit) for hub ids."),
    click.Option(["--dtype"], default=_D.dtype, show_default=True, type=click.Choice(["auto", "float32", "float16", "bfloat16"])),
    click.Option(["--device"], default=_D.device, show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
    click.Option(["--device-map"], default=None, help="accelerate device map, e.g. auto for models larger than one GPU."),
    click.Option(["--trust-remote-code"], is_flag=True, help="Allow the model repo's own code (only for models you trust)."),
    click.Option(["--allow-pickle"], is_flag=True, help="Allow pickle (.bin/.pt) weights for --model or --checkpoint; they can run code, so only for trusted files."),
    click.Option(["--method"], default=_D.method, show_default=True, help="none, persona, disca, steering or checkpoint."),
    click.Option(["--method-param"], multiple=True, metavar="KEY=VALUE", help="Method parameter (repeatable)."),
    click.Option(["--country"], default=_D.country, show_default=True, help="Country: alpha-2, alpha-3 or numeric (SG, SGP, 702)."),
    click.Option(["--wvs-file"], default=None, type=click.Path(dir_okay=False), help="Official WVS Wave 7 file (.csv/.dta/.sav/.parquet). Default: synthetic demo sample."),
    click.Option(["--questions"], default=_D.questions, show_default=True, metavar="SET|ID,...", help="Question set (all, core, a category slug) or ids."),
    click.Option(["--attributes"], default=None, metavar="A,B|all|none", help="Subgroup attributes. Default: sex,age,ethnicity,religion,education."),
    click.Option(["--intersections"], default=None, metavar="A:B,...", help="Intersectional groups, e.g. sex:age,ethnicity:religion."),
    click.Option(["--min-size"], default=_D.min_size, show_default=True, help="Smallest group (respondents) that gets figures."),
    click.Option(["--limit"], default=None, help="Only the first N questions (quick runs)."),
    click.Option(["--batch-size"], default="auto", show_default=True, help="Prompts per forward pass, or auto."),
    click.Option(["--seed"], default=_D.seed, show_default=True),
    click.Option(["--n-boot"], default=_D.n_boot, show_default=True, help="Bootstrap replicates (questions resampled, paired; at least 2)."),
    click.Option(["--level"], default=_D.level, show_default=True, help="Confidence level of the intervals."),
    click.Option(["--tau"], default=_D.tau, show_default=True, help="Aequitas band: pass when tau <= ratio <= 1/tau."),
    click.Option(["--alpha"], default=_D.alpha, show_default=True, help="Significance level (Holm-adjusted) for flags."),
    click.Option(["--reference"], multiple=True, metavar="ATTRIBUTE=GROUP", help="Reference group for flags (repeatable). Default: largest group."),
    click.Option(["--respondent-bootstrap"], is_flag=True, help="Also resample each group's respondents in the bootstrap: intervals include survey sampling error."),
    click.Option(["--no-noise-correction"], is_flag=True, help="Flag on the raw figures, without subtracting the shift a group's sample size alone gives (see docs/metrics.md)."),
    click.Option(["--out"], default=_D.out, show_default=True, type=click.Path(file_okay=False), help="Output directory."),
    click.Option(["--cache"], default=None, type=click.Path(dir_okay=False), help="Score cache file (SQLite). Default: ~/.cache/cvaudit/scores.sqlite."),
    click.Option(["--no-cache"], is_flag=True, help="Do not read or write the score cache."),
    click.Option(["--format"], default=",".join(FORMATS), show_default=True, metavar="html,pdf", help="Report formats."),
    click.Option(["--no-report"], is_flag=True, help="Write results only, no HTML/PDF."),
    click.Option(["--quiet"], is_flag=True, help="No progress output."),
]  # fmt: skip
_METHOD_OPTIONS = _method_options()

run = click.Command(
    name="run",
    callback=_run_callback,
    params=[*_RUN_OPTIONS, *(opt for opt, _ in _METHOD_OPTIONS.values())],
    help="Audit a model: ask every question as every subgroup, compare with the survey, "
    "write OUT/results.json, items.csv/.parquet and the HTML/PDF report.",
)


@click.command(name="demo")
@click.option("--out", default="cvaudit-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--no-report", is_flag=True, help="Write results only, no HTML/PDF.")
def demo(out: str, quiet: bool, no_report: bool) -> None:
    """Run the demo audit: embedded SmolLM2, synthetic Singapore sample, persona method, core questions."""
    click.echo(
        "cvaudit demo: embedded SmolLM2-135M-Instruct, persona prompts, core questions, "
        "SYNTHETIC Singapore sample (not WVS respondents)",
        err=True,
    )
    config = RunConfig(method="persona", country="SG", out=out, progress=not quiet, formats=() if no_report else FORMATS)
    _execute(config)
