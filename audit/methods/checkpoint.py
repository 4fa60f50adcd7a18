"""``checkpoint`` (seeds 003 and 004): audit a fine-tuned model directory or a LoRA adapter.

Prompts are the persona method's (same :func:`persona_text`, same renderer), so a
base-model persona run and a checkpoint run compare like for like. The checkpoint is
validated when the method is built, before data or model load: a missing, corrupt
or pickle-only checkpoint is a one-line ModelError (exit code 2).

For a LoRA adapter the run can also score the base model in the same process
(``compare_base``, on by default): PEFT's ``disable_adapter()`` gives the exact base
weights, so no second model is loaded. When the adapter carries the split that
``cvaudit finetune`` recorded, ``method_report`` then holds seed 003's two findings:
the accuracy change on held-out (unseen) groups, and the change in NMAE normalised
range and coefficient of variation across groups.

Training cells (``on_overlap``): ``cvaudit finetune`` trains on the modal answers of
the split's *train* groups to its questions. Those (group, question) cells are
in-sample for the checkpoint, so by default they are left out of every figure of
the run (:meth:`CheckpointMethod.training_cells`); ``method_report`` still scores
them, by role. Held-out groups' cells on the trained questions are the test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..splits import HELDOUT_INTERSECTIONS
from ..types import ItemPrediction
from .base import HeldOutCells, Method, MethodContext, PromptSpec, register_method
from .params import as_bool

PARAMS = ("checkpoint", "base", "allow_pickle", "compare_base", "template", "on_overlap")
OVERLAP = ("exclude", "keep", "error")
#: what to audit instead of the training cells
HELDOUT_ADVICE = (f"audit the held-out combinations (--intersections {','.join(HELDOUT_INTERSECTIONS)}) "
                  "or questions it was not trained on")  # fmt: skip

@register_method("checkpoint")
class CheckpointMethod(Method):
    per_group = True
    cli_options = (
        click.Option(["--checkpoint", "checkpoint"], help="Fine-tuned model directory or PEFT LoRA adapter directory."),
        click.Option(["--checkpoint-base", "base"],
                     help="Base model of a LoRA adapter (default: --model when given, else the adapter's own "
                          "base when available offline, else the embedded model)."),
    )  # pickle weights: the run-wide --allow-pickle reaches this method as its allow_pickle parameter

    def __init__(self, checkpoint: str | None = None, base: str | None = None, allow_pickle: Any = None,
                 compare_base: Any = None, template: str | None = None, on_overlap: str = "exclude",
                 **params: Any) -> None:
        from ..adapters import check_adapter_dir, check_model_dir, checkpoint_kind, read_split

        if params:
            raise ConfigError(f"unknown checkpoint parameter(s) {', '.join(sorted(params))}; valid: {', '.join(PARAMS)}")
        if on_overlap not in OVERLAP:
            raise ConfigError(f"method param on_overlap must be one of {', '.join(OVERLAP)}, got {on_overlap!r}")
        self.on_overlap = on_overlap
        if not checkpoint:
            raise ConfigError("method checkpoint needs the checkpoint directory: --checkpoint PATH "
                              "(or --method-param checkpoint=PATH)")
        self.path = Path(str(checkpoint)).expanduser()
        self.allow_pickle = as_bool(allow_pickle, "allow_pickle", False)
        self.kind = checkpoint_kind(self.path)
        if self.kind == "adapter":
            self.adapter_config = check_adapter_dir(self.path, self.allow_pickle)
        else:
            self.adapter_config = {}
            check_model_dir(self.path, self.allow_pickle)
            if base:
                raise ConfigError("--checkpoint-base applies to LoRA adapters; a full model directory is its own model")
        self.path = self.path.resolve()
        self.base = str(base) if base else None
        self.compare_base = as_bool(compare_base, "compare_base", self.kind == "adapter")
        if self.compare_base and self.kind != "adapter":
            raise ConfigError("compare_base needs a LoRA adapter; for a full model run the base separately "
                              "and use cvaudit compare")
        self.template = None if template is None else str(template)
        if self.template is not None:
            from cvaudit.personas.persona import load_template

            load_template(self.template)  # fail now, before the model loads
        self.split = read_split(self.path)
        self._fingerprint: str | None = None
        self._model: str | None = None  # the run's explicit --model, told by model_overrides()
        super().__init__(checkpoint=os.fspath(self.path))

    # ------------------------------------------------------------- identity
    def checkpoint_fingerprint(self) -> str:
        if self._fingerprint is None:  # lazy: a large model dir is hashed once, when needed
            from ..adapters import checkpoint_fingerprint

            self._fingerprint = checkpoint_fingerprint(self.path)
        return self._fingerprint

    def base_id(self) -> str | None:
        """The base an adapter loads on: --checkpoint-base, else an explicit --model, else its recorded base
        if loadable offline (None: the run's default model)."""
        if self.kind != "adapter":
            return None
        if self.base:
            return self.base
        if self._model:
            return self._model
        from ..adapters import base_available

        recorded = self.adapter_config.get("base_model_name_or_path")
        if recorded and not base_available(recorded):
            # never the default model in its place: the adapter's numbers would be about another base
            raise ConfigError(f"adapter {self.path.name} was trained on {recorded}, which is not available here "
                              "(not a local folder, not in the Hugging Face cache); pass --checkpoint-base or --model")  # fmt: skip
        return recorded or None

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "checkpoint": os.fspath(self.path),
            "kind": self.kind,
            "fingerprint": self.checkpoint_fingerprint(),
            "allow_pickle": self.allow_pickle,
            "compare_base": self.compare_base,
            "on_overlap": self.on_overlap,
        }
        if self.kind == "adapter":
            out["base"] = self.base_id()
            out["adapter_base"] = self.adapter_config.get("base_model_name_or_path")
        if self.template is not None:
            from cvaudit.personas.persona import load_template

            out["template_text"] = load_template(self.template)
        if self.split is not None:
            out["finetune"] = {k: self.split.get(k) for k in ("hyperparameters", "seed", "base_model", "questions")}
        return out

    def model_overrides(self, model: str | None = None) -> dict[str, Any]:
        """``model``: the --model the user gave (None: not given). It beats the adapter's recorded base."""
        if model is not None and self.kind == "model" and Path(model).expanduser().resolve() != self.path:
            raise ConfigError(f"--checkpoint {self.path} is a full model and replaces --model {model}; "
                              "drop one of them")
        if model is not None and self.base and model != self.base:
            raise ConfigError(f"--model {model} and --checkpoint-base {self.base} disagree on the adapter's base; "
                              "give one of them")
        self._model = model
        if self.kind == "model":
            return {"id": os.fspath(self.path), "allow_pickle": self.allow_pickle}
        out: dict[str, Any] = {"adapter": os.fspath(self.path), "allow_pickle": self.allow_pickle}
        base = self.base_id()
        if base:
            out["id"] = base
        return out

    def model_modifier(self) -> str | None:
        # a full model has its own weight fingerprint; an adapter is tagged on top of its base's
        return f"adapter:{self.checkpoint_fingerprint()[:16]}" if self.kind == "adapter" else None

    # ------------------------------------------------------------- training cells
    def training_cells(self, groups: Any, questions: Any, country: Any) -> HeldOutCells:
        """The train-role groups x the trained questions among those audited (see the module docstring).

        Without a split record nothing is left out (the note says why): cvaudit cannot
        tell what an arbitrary checkpoint saw. A record written for another country
        describes other respondents, so its groups are not this audit's training cells.
        """
        from ..adapters import SPLIT_FILE

        if self.split is None:
            return HeldOutCells(notes=(f"checkpoint {self.path.name} has no {SPLIT_FILE}: cvaudit cannot tell which "
                                       "(group, question) cells it was trained on, so none is left out; audited "
                                       "cells may be its training examples",))  # fmt: skip
        trained_in = recorded_country(self.split)
        if trained_in is not None and trained_in not in {country.alpha2, country.alpha3}:
            return HeldOutCells(notes=(f"checkpoint {self.path.name} was trained on {trained_in} respondents "
                                       f"({SPLIT_FILE}), this audit is of {country.alpha2}: no audited cell is "
                                       "one of its training examples",))  # fmt: skip
        qids, q_note = trained_questions(self.split, questions)
        train = [g for g in groups if self._role(g) == "train"]
        cells = frozenset((g.id, q) for g in train for q in qids)
        return self._overlap(cells, len(train), len(qids), q_note)

    def _role(self, group: Any) -> str:
        from ..splits import role_of

        return role_of(group, self.split.get("split") or {})  # only asked once a split is known

    def _overlap(self, cells: frozenset[tuple[str, str]], n_groups: int, n_questions: int,
                 q_note: str | None) -> HeldOutCells:
        """Apply ``on_overlap`` to the training cells found (exclude, keep or error)."""
        from ..adapters import SPLIT_FILE

        extra = (q_note,) if q_note else ()
        if not cells:
            return HeldOutCells(notes=(f"no audited (group, question) cell is a training example of the checkpoint "
                                       f"({SPLIT_FILE})", *extra))  # fmt: skip
        what = (f"{len(cells)} of the audited (group, question) cells are training examples of the checkpoint "
                f"({n_groups} groups it was trained on x {n_questions} of its training questions, {SPLIT_FILE})")
        if self.on_overlap == "error":
            raise ConfigError(f"{what} (on_overlap=error); {HELDOUT_ADVICE}, or set --method-param "
                              "on_overlap=exclude to leave them out or on_overlap=keep to keep them")  # fmt: skip
        if self.on_overlap == "keep":
            return HeldOutCells(notes=(f"{what}: kept (on_overlap=keep), so the figures include in-sample "
                                       "training examples", *extra))  # fmt: skip
        return HeldOutCells(
            cells=cells,
            notes=(f"{what}: left out of every figure; method_report still scores them by role; "
                   "--method-param on_overlap=keep keeps them", *extra),
            reason=f"training examples of the checkpoint ({SPLIT_FILE}: train groups x training questions)",
            advice=(f"every audited cell is a training example of the checkpoint: {HELDOUT_ADVICE}, "
                    "or set --method-param on_overlap=keep"),
        )  # fmt: skip

    # ------------------------------------------------------------- scoring
    def predict(self, ctx: MethodContext) -> dict[tuple[str, str], ItemPrediction]:
        from contextlib import nullcontext

        from cvaudit.personas.persona import persona_text

        specs: list[PromptSpec] = []
        keys: list[tuple[str, str]] = []
        for g in ctx.groups:
            text = persona_text(g, ctx.country, self.template)
            for q in ctx.questions:
                specs.append(PromptSpec(question=q, system=text))
                keys.append((g.id, q.id))
        tag = self.model_modifier()
        with ctx.scorer.modified(tag) if tag else nullcontext():
            dists = ctx.scorer.distributions(specs)
        base_dists = None
        if self.compare_base:
            disable = getattr(ctx.scorer.model, "disable_adapter", None)
            if disable is None:
                raise ConfigError("compare_base: the loaded model carries no LoRA adapter to disable; "
                                  "set --method-param compare_base=false")
            with disable(), ctx.scorer.modified(f"{tag}:disabled"):
                base_dists = ctx.scorer.distributions(specs)
        preds: dict[tuple[str, str], ItemPrediction] = {}
        for i, (k, d) in enumerate(zip(keys, dists)):
            extra = {"base_dist": [float(x) for x in base_dists[i]]} if base_dists is not None else {}
            preds[k] = ItemPrediction(dist=tuple(float(x) for x in d), extra=extra)
        report = self.report(ctx, dists, base_dists, keys)
        if report:
            ctx.extra["method_report"] = report
        return preds

    def report(self, ctx: MethodContext, dists: list, base_dists: list | None,
               keys: list[tuple[str, str]]) -> dict[str, list[dict[str, Any]]]:
        """Titled tables for results.json ``method_report`` (see docs/methods-checkpoint.md)."""
        truth = (ctx.extra or {}).get("ground_truth")
        if truth is None and ctx.survey is not None:
            from ..groundtruth import ground_truth

            truth = ground_truth(ctx.survey, list(ctx.groups), list(ctx.questions))
        if truth is None:
            return {}
        return findings_tables(ctx.groups, ctx.questions, truth, dict(zip(keys, dists)),
                               None if base_dists is None else dict(zip(keys, base_dists)), self.split)


def recorded_country(record: dict[str, Any]) -> str | None:
    """The country a split record was trained on (alpha-2 as `cvaudit finetune` writes it), or None."""
    c = record.get("country")
    if isinstance(c, dict):
        c = c.get("alpha2") or c.get("alpha3")
    return str(c).upper() if c else None


def trained_questions(record: dict[str, Any], questions: Any) -> tuple[list[str], str | None]:
    """(audited question ids the checkpoint was trained on, note or None).

    A record that lists no questions cannot rule any out: every audited question then
    counts as trained on (the safe side), and the note says so.
    """
    listed = (record.get("questions") or {}).get("ids")
    audited = [q.id for q in questions]
    if listed is None:
        return audited, "the split record lists no training questions: every audited question counts as trained on"
    known = {str(q) for q in listed}
    return [q for q in audited if q in known], None


# ----------------------------------------------------------------- findings
ROLE_ORDER = ("heldout", "train", "unseen", "all")
ROLE_NAMES = {"heldout": "held-out (unseen combinations)", "train": "trained on", "unseen": "not in the split",
              "all": "all audited groups"}


def spread(values: Any) -> dict[str, float | None]:
    """Mean, seed 003's normalised range (max - min) / max, and coefficient of variation sigma / mu (ddof 0)."""
    import numpy as np

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "normalised_range": None, "cv": None}
    mean, top = float(v.mean()), float(v.max())
    return {
        "mean": mean,
        "normalised_range": float((top - v.min()) / top) if top > 0 else None,
        "cv": float(v.std() / mean) if mean > 0 else None,
    }


def group_means(groups: Any, questions: Any, truth: Any, scored: dict) -> dict[str, dict[str, float | None]]:
    """Per group: mean accuracy and mean NMAE over its non-suppressed questions (cvaudit.metrics.item)."""
    import numpy as np
    import pandas as pd
    from cvaudit.metrics.item import item_metrics

    qs = {q.id: q for q in questions}
    gid = {(g.attribute, g.label): g.id for g in groups}
    rows = []
    for r in truth.itertuples(index=False):
        key = (gid.get((r.attribute, r.group)), r.question)
        if r.suppressed or key not in scored or r.question not in qs:
            continue
        pos = qs[r.question].positions
        rows.append({"gid": key[0], "positions": list(pos) if pos else None,
                     "model_dist": [float(x) for x in scored[key]], "human_dist": list(r.human_dist),
                     "human_mode": list(r.human_mode)})
    if not rows:
        return {}
    frame = pd.DataFrame(rows)
    m = item_metrics(frame)
    frame["accuracy"], frame["nmae"] = m["accuracy"].to_numpy(), m["nmae"].to_numpy()
    out = {}
    for g, sub in frame.groupby("gid", sort=False):
        acc, err = sub["accuracy"].to_numpy(float), sub["nmae"].to_numpy(float)
        out[g] = {"accuracy": float(np.nanmean(acc)) if np.isfinite(acc).any() else None,
                  "nmae": float(np.nanmean(err)) if np.isfinite(err).any() else None}
    return out


def findings_tables(groups: Any, questions: Any, truth: Any, scored: dict, base_scored: dict | None,
                    split: dict | None) -> dict[str, list[dict[str, Any]]]:
    """Seed 003's figures by split role: mean accuracy, and normalised range and CV of accuracy and NMAE."""
    from ..splits import role_of

    ckpt = group_means(groups, questions, truth, scored)
    base = group_means(groups, questions, truth, base_scored) if base_scored is not None else None
    roles = {g.id: (role_of(g, split["split"]) if split and "split" in split else "all") for g in groups}
    per_group = []
    for g in groups:
        if g.id not in ckpt:
            continue
        row = {"attribute": g.attribute, "group": g.label, "role": roles[g.id],
               "accuracy": ckpt[g.id]["accuracy"], "nmae": ckpt[g.id]["nmae"]}
        if base is not None:
            row["accuracy_base"] = base.get(g.id, {}).get("accuracy")
            row["nmae_base"] = base.get(g.id, {}).get("nmae")
        per_group.append(row)
    summary = []
    present = [r for r in ROLE_ORDER if r == "all" or any(v == r for v in roles.values())]
    for role in present:
        ids = [g.id for g in groups if g.id in ckpt and (role == "all" or roles[g.id] == role)]
        if not ids:
            continue
        for metric in ("accuracy", "nmae"):
            c = spread(ckpt[i][metric] for i in ids)
            b = spread(base[i][metric] for i in ids if i in base) if base is not None else None
            for stat in ("mean", "normalised_range", "cv"):
                row = {"groups": ROLE_NAMES[role], "n_groups": len(ids), "figure": f"{metric} {stat.replace('_', ' ')}",
                       "checkpoint": c[stat]}
                if b is not None:
                    row["base"] = b[stat]
                    row["change"] = None if b[stat] is None or c[stat] is None else c[stat] - b[stat]
                summary.append(row)
    title = "Checkpoint vs base: seed 003 findings" if base is not None else "Checkpoint: accuracy and NMAE spread"
    return {title: summary, "Checkpoint: groups by fine-tune split role": per_group}
