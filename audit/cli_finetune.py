"""``cvaudit finetune``: LoRA SFT on subgroup modal answers in seed 003's split (see docs/methods-checkpoint.md)."""

from __future__ import annotations

from typing import Any

import click

from .finetune import DEFAULT_LR, DEFAULT_TARGETS, PAPER_LR
from .splits import HELDOUT_INTERSECTIONS

HELDOUT_HINT = ",".join(HELDOUT_INTERSECTIONS)


@click.command(name="finetune")
@click.option("--country", default="SG", show_default=True, help="Country code (alpha-2, alpha-3 or numeric).")
@click.option("--wvs-file", type=click.Path(dir_okay=False), default=None,
              help="WVS Wave 7 respondent file; omitted: the synthetic sample (flagged).")
@click.option("--model", default="smollm2-135m", show_default=True, help="Base model: embedded alias, local dir or hub id.")
@click.option("--revision", default=None, help="Hub revision of the base model.")
@click.option("--questions", default="core", show_default=True, help="Question set or comma-separated ids.")
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=DEFAULT_LR, show_default=True,
              help=f"Learning rate. Seed 003 used {PAPER_LR:g} (GPU, ~20k examples); the default suits short CPU runs.")
@click.option("--rank", type=int, default=8, show_default=True, help="LoRA rank.")
@click.option("--lora-alpha", type=int, default=16, show_default=True, help="LoRA scaling alpha.")
@click.option("--target-modules", default=",".join(DEFAULT_TARGETS), show_default=True,
              help="Comma-separated linear layers to adapt.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--max-steps", type=int, default=None, help="Train exactly N optimiser steps, overriding --epochs (short CPU runs).")
@click.option("--layers", type=int, default=None,
              help="Adapt only the last N decoder layers (default all); the backward pass stops there, so CPU runs are faster.")
@click.option("--min-size", type=int, default=30, show_default=True, help="Minimum respondents per group and cell.")
@click.option("--one-order", is_flag=True, help="Train on the canonical option order only (default: both orders).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0, show_default=True)
@click.option("--dtype", default="auto", show_default=True, type=click.Choice(["auto", "float32", "float16", "bfloat16"]))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--allow-pickle", is_flag=True, help="Allow pickle (.bin/.pt) base weights; only for trusted sources.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Adapter directory to write.")
def finetune(**kw: object) -> None:
    """Train a LoRA adapter on seed 003's train groups; held-out combinations stay unseen.

    Then audit it on the held-out groups and compare with the base model:

      cvaudit run --method checkpoint --checkpoint OUT --questions ... --intersections age:religion,... --out ckpt

    (it prints the exact line, with this run's country, survey file and questions)
    """
    from .config import split_csv
    from .finetune import FinetuneConfig
    from .finetune import finetune as run_finetune

    quiet = bool(kw.pop("quiet"))
    config = FinetuneConfig(
        out=str(kw["out"]), country=str(kw["country"]), wvs_file=kw["wvs_file"], model=str(kw["model"]),
        revision=kw["revision"], questions=str(kw["questions"]), epochs=kw["epochs"], lr=kw["lr"],
        rank=kw["rank"], lora_alpha=kw["lora_alpha"], target_modules=split_csv(kw["target_modules"]),
        batch_size=kw["batch_size"], max_steps=kw["max_steps"], layers=kw["layers"], min_size=kw["min_size"],
        both_orders=not kw["one_order"], seed=kw["seed"], dtype=str(kw["dtype"]), device=str(kw["device"]),
        allow_pickle=bool(kw["allow_pickle"]), progress=not quiet,
    )  # type: ignore[arg-type]
    say = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    out = run_finetune(config, log=say)
    click.echo(f"adapter written to {out}")
    click.echo("audit the held-out groups on the same survey and questions: " + audit_command(config, out))
    click.echo("cells the adapter was trained on are left out of the figures (method param on_overlap=exclude, "
               "the default; keep or error instead)")


def audit_command(config: Any, adapter: object) -> str:
    """The `cvaudit run` line that audits ``adapter`` on what it was trained from (same country, file, questions)."""
    import shlex

    args = ["cvaudit", "run", "--method", "checkpoint", "--checkpoint", str(adapter),
            "--country", str(config.country)]  # fmt: skip
    wvs = config.wvs_file
    if wvs:
        args += ["--wvs-file", str(wvs)]
    args += ["--questions", str(config.questions), "--min-size", str(config.min_size),
             "--intersections", HELDOUT_HINT]  # fmt: skip
    if config.revision:
        args += ["--revision", str(config.revision)]
    for flag, value in (("--dtype", config.dtype), ("--device", config.device)):
        if value and value != "auto":
            args += [flag, str(value)]
    if config.allow_pickle:
        args.append("--allow-pickle")
    return " ".join(shlex.quote(a) for a in args) + " --out <dir>"
