"""``cvaudit data`` (what an audit of this country would cover) and ``cvaudit synth`` (write a synthetic file).

Heavy imports stay inside the commands so ``cvaudit --help`` remains instant.
"""

from __future__ import annotations

from typing import Any

import click

from .synthetic import MAX_RESPONDENTS  # light: no numpy/pandas at import

BANNER = ("SYNTHETIC DATA: cvaudit's generated sample, not World Values Survey responses "
          "(pass --wvs-file with your own WVS Wave 7 file for a real audit)")


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def usable_counts(survey: Any, min_size: int) -> dict[str, dict[str, Any]]:
    """Per named question set: how many questions exist and how many have >= min_size valid answers."""
    import numpy as np

    from .groundtruth import option_index
    from .questions import load_bank, question_sets

    bank = load_bank()
    usable = set()
    for q in bank.values():
        if q.id in survey.frame.columns:
            valid = int(np.sum(option_index(survey.frame[q.id].to_numpy(dtype=float), q) >= 0))
            if valid >= min_size:
                usable.add(q.id)
    return {name: {"n": len(ids), "usable": sum(i in usable for i in ids), "usable_ids": [i for i in ids if i in usable]}
            for name, ids in question_sets().items()}


def data_summary(country: str, wvs_file: str | None, attributes: list[str] | None, intersections: list[str],
                 min_size: int, questions: str) -> dict[str, Any]:
    """Everything ``cvaudit data`` prints, as one JSON-ready dict."""
    import dataclasses

    from .countries import resolve_country
    from .questions import select_questions
    from .subgroups import build_groups, require_groups
    from .survey import demo_survey, load_survey

    ctry = resolve_country(country)
    selected = select_questions(questions)  # validate before the (slower) file load
    survey = demo_survey(ctry.alpha2) if wvs_file is None else load_survey(wvs_file, ctry)
    gs = require_groups(build_groups(survey, attributes, intersections, min_size))  # run refuses it too
    sets = usable_counts(survey, min_size)
    usable_all = set(sets["all"]["usable_ids"])
    chosen = [q.id for q in selected]
    return {
        "data": dataclasses.asdict(survey.source),
        "min_size": min_size,
        "attributes": list(gs.attributes),
        "intersections": list(gs.intersections),
        "groups": [{"attribute": g.attribute, "group": g.label, "n": g.n, "n_eff": round(g.n_eff, 2)} for g in gs.groups],
        "suppressed": [{"attribute": g.attribute, "group": g.label, "n": g.n, "n_eff": round(g.n_eff, 2)}
                       for g in gs.suppressed],
        "unavailable": dict(gs.unavailable),
        "questions": {"set": questions, "n": len(chosen), "usable": sum(q in usable_all for q in chosen),
                      "ids": [q for q in chosen if q in usable_all],
                      "unusable": [q for q in chosen if q not in usable_all],
                      "sets": {k: {"n": v["n"], "usable": v["usable"]} for k, v in sets.items()}},
    }


def _print_text(s: dict[str, Any]) -> None:
    d = s["data"]
    c = d["country"]
    click.echo(f"Data: {d['path']} ({d['format']}, sha256 {d['sha256'][:12]}...)")
    click.echo(f"Country: {c['name']} ({c['alpha2']}/{c['alpha3']}/{c['numeric']}), {d['n_respondents']} respondents, "
               f"weight {d['weight_column'] or 'none (unweighted)'}")
    n_attr = len({g["attribute"] for g in s["groups"]})
    click.echo(f"\nSubgroups with >= {s['min_size']} respondents: {len(s['groups'])} across {n_attr} attributes")
    click.echo(f"  {'attribute':<20} {'group':<34} {'n':>6} {'n_eff':>8}")
    for g in s["groups"]:
        click.echo(f"  {g['attribute']:<20} {g['group']:<34} {g['n']:>6} {g['n_eff']:>8.1f}")
    if s["suppressed"]:
        click.echo(f"\nSuppressed (< {s['min_size']} respondents): {len(s['suppressed'])}")
        for g in s["suppressed"]:
            click.echo(f"  {g['attribute']:<20} {g['group']:<34} {g['n']:>6}")
    for attr, why in s["unavailable"].items():
        click.echo(f"\nUnavailable attribute {attr}: {why}")
    q = s["questions"]
    click.echo(f"\nQuestions: set {q['set']!r}: {q['usable']} of {q['n']} usable (>= {s['min_size']} valid answers)")
    for name, v in q["sets"].items():
        click.echo(f"  {name:<52} {v['usable']:>4} / {v['n']:<4}")


def _list_countries(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """Eager --list-countries: the valid --country codes, so the unknown-country error can point here."""
    if not value or ctx.resilient_parsing:
        return
    from .countries import country_lines

    click.echo("\n".join(country_lines()))
    ctx.exit(0)


@click.command("data")
@click.option("--list-countries", is_flag=True, is_eager=True, expose_value=False, callback=_list_countries,
              help="List the WVS Wave 7 countries (alpha-2, alpha-3, numeric, name) and exit.")
@click.option("--country", default="SG", show_default=True, help="Country: alpha-2, alpha-3 or numeric (SG, SGP, 702).")
@click.option("--wvs-file", type=click.Path(dir_okay=False), default=None,
              help="Your WVS Wave 7 file (.csv, .dta, .sav, .parquet). Without it: synthetic demo data.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("--attributes", default=None,
              help="Comma-separated: sex,age,ethnicity,religion,education,income,marital,settlement,employment, "
                   "'all' for all nine or 'none' (default: sex,age,ethnicity,religion,education, as cvaudit run).")
@click.option("--intersections", default="", help="Comma-separated intersections such as sex:age,ethnicity:religion.")
@click.option("--min-size", type=int, default=30, show_default=True, help="Smallest group kept (unweighted respondents).")
@click.option("--questions", default="core", show_default=True, help="Question set name or comma-separated ids.")
def data(country: str, wvs_file: str | None, as_json: bool, attributes: str | None, intersections: str,
         min_size: int, questions: str) -> None:
    """Show a country's subgroups, their sizes and the usable questions."""
    from .config import DEFAULT_ATTRIBUTES, parse_attributes

    parsed = parse_attributes(attributes)  # what `cvaudit run --attributes` means, so the preview is the audit's
    attrs = list(DEFAULT_ATTRIBUTES if parsed is None else parsed)
    summary = data_summary(country, wvs_file, attrs, _split(intersections), min_size, questions)
    if summary["data"]["synthetic"]:
        click.echo(BANNER, err=as_json)
    for note in summary["data"]["notes"]:
        if "SYNTHETIC" not in note:
            click.echo(f"cvaudit: warning: {note}", err=True)
    if as_json:
        from .io import dumps_json

        click.echo(dumps_json(summary).strip())  # NaN/inf (degenerate weights) as null: always valid JSON
    else:
        _print_text(summary)


@click.command("synth")
@click.option("--country", default="SG", show_default=True, help="Country: alpha-2, alpha-3 or numeric.")
@click.option("--n", "n", type=click.IntRange(min=1, max=MAX_RESPONDENTS), default=2012, show_default=True,
              help="Number of respondents (the whole file is built in memory).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True, help="Random seed (same seed, same bytes).")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Output CSV file.")
def synth(country: str, n: int, seed: int, out: str) -> None:
    """Write a synthetic WVS-format respondent file (for demos and tests)."""
    from .countries import resolve_country
    from .errors import ConfigError
    from .synthetic import write_synthetic

    if not out.lower().endswith(".csv"):
        raise ConfigError(f"--out {out!r}: synth writes the official CSV format; give a file name ending in .csv")
    ctry = resolve_country(country)
    path = write_synthetic(out, ctry.alpha2, n, seed)
    click.echo(f"wrote {path}: {n} SYNTHETIC respondents for {ctry.name} in the official WVS7 CSV format (seed {seed})")
