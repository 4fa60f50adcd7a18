"""``cvaudit steer fit``: fit steering vectors once, reuse them in ``cvaudit run --method steering``.

Heavy imports (torch, transformers, pandas) happen inside the command so
``cvaudit --help`` stays instant.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def steer() -> None:
    """Activation steering vectors (contrastive activation addition, seed 002)."""


@steer.command("fit")
@click.option("--model", default="smollm2-135m", show_default=True, help="HF id, local directory, or smollm2-135m (embedded).")
@click.option("--revision", default=None, help="Model revision for hub ids.")
@click.option("--dtype", default="auto", show_default=True, type=click.Choice(["auto", "float32", "float16", "bfloat16"]))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--trust-remote-code", is_flag=True, help="Allow the model repo's own code (only for models you trust).")
@click.option("--country", default="SG", show_default=True, help="Country whose subgroups get vectors (kind subgroup).")
@click.option("--wvs-file", default=None, type=click.Path(dir_okay=False), help="Official WVS Wave 7 file. Default: synthetic demo sample.")
@click.option("--kind", type=click.Choice(["subgroup", "axes"]), default="subgroup", show_default=True,
              help="subgroup: persona minus neutral per group; axes: Inglehart-Welzel pole personas.")
@click.option("--layers", default=None, metavar="L,...", help="Decoder layers to fit (default: the middle layer).")
@click.option("--attributes", default=None, metavar="A,B|all|none",
              help="Subgroup attributes (kind subgroup), as in cvaudit run. Default: sex,age,ethnicity,religion,education.")
@click.option("--intersections", default=None, metavar="A:B,...", help="Intersectional groups, e.g. sex:age.")
@click.option("--min-size", default=30, show_default=True, help="Smallest group (respondents) that gets a vector.")
@click.option("--calibration-fraction", default=0.3, show_default=True, help="Share of the eligible bank used as the calibration split.")
@click.option("--holdout", default="core", show_default=True, metavar="SET|ID,...|none",
              help="Questions never used for calibration (the ones you will audit).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True, help="Seed of the calibration split.")
@click.option("--max-calibration", default=None, type=click.IntRange(min=1), help="Fit on at most N calibration questions (cost cap; the whole split stays excluded).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Prompts per forward pass while reading activations.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="VECTORS.safetensors (a .json description is written beside it).")
def fit(**kw: object) -> None:
    """Fit steering vectors on a seeded calibration split of the question bank."""
    from .config import DEFAULT_ATTRIBUTES, parse_attributes, split_csv
    from .countries import resolve_country
    from .errors import ConfigError
    from .models import ModelSpec, load_model
    from .questions import load_bank, select_questions
    from .steering import fit_steering, parse_int_list, save_vectors

    if not str(kw["out"]).endswith(".safetensors"):
        raise ConfigError(f"--out must end in .safetensors, got {kw['out']!r}; e.g. --out vectors.safetensors")
    country = resolve_country(str(kw["country"]))
    bank = load_bank()
    holdout_spec = str(kw["holdout"]).strip()
    holdout = [] if holdout_spec.lower() in ("", "none") else [q.id for q in select_questions(holdout_spec)]
    kind = str(kw["kind"])
    if kind == "axes":
        given = [f"--{n.replace('_', '-')}" for n in ("attributes", "intersections", "wvs_file") if kw[n]]
        if given:  # the axes are fitted from pole personas, not from survey groups
            raise ConfigError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to --kind subgroup only; "
                              "drop it for --kind axes")  # fmt: skip
    groups: list = []
    persona = None
    if kind == "subgroup":
        from cvaudit.personas.persona import persona_text

        from .subgroups import build_groups
        from .survey import demo_survey, load_survey

        survey = demo_survey(country.alpha2, seed=0) if kw["wvs_file"] is None else load_survey(kw["wvs_file"], country)
        attributes = parse_attributes(kw["attributes"]) or DEFAULT_ATTRIBUTES  # "all" = the nine, as in run
        groupset = build_groups(survey, attributes=list(attributes), intersections=list(split_csv(kw["intersections"])),
                                min_size=int(kw["min_size"]))  # fmt: skip
        groups = list(groupset.groups)
        if not groups:
            raise ConfigError(f"no subgroup has at least {kw['min_size']} respondents; lower --min-size or change --attributes")
        persona = lambda g: persona_text(g, country)  # noqa: E731

    loaded = load_model(ModelSpec(id=str(kw["model"]), revision=kw["revision"], dtype=str(kw["dtype"]),
                                  device=str(kw["device"]), trust_remote_code=bool(kw["trust_remote_code"])))  # fmt: skip
    click.echo(f"cvaudit: fitting {kind} vectors on {loaded.info.get('id', kw['model'])} ({len(groups) or 2} directions)", err=True)
    sv = fit_steering(
        loaded.model, loaded.tokenizer, kind=kind, bank=bank, layers=parse_int_list(kw["layers"]), groups=groups,
        persona=persona, fraction=float(kw["calibration_fraction"]), seed=int(kw["seed"]), holdout=holdout,
        max_calibration=kw["max_calibration"], batch_size=int(kw["batch_size"]),
        model_meta={"id": str(kw["model"]), "revision": kw["revision"], "fingerprint": loaded.fingerprint},
        country=country,
    )  # fmt: skip
    path, desc = save_vectors(sv, kw["out"])
    split = sv.meta["split"]
    click.echo(
        f"calibration split: {len(split['calibration'])} of {split['bank_size']} questions "
        f"(fitted on {len(split['fitted_on'])}; {len(split['holdout'])} held out)"
    )
    for name, per in sv.norms().items():
        click.echo(f"  {name}: " + ", ".join(f"layer {layer} |v|={norm:.3f}" for layer, norm in per.items()))
    click.echo(f"vectors: {path}\ndescription: {desc}")
