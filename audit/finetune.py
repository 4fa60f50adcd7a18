"""LoRA SFT on subgroup modal answers, the way seed 003 trained (GitHub issue 8).

Each example is exactly the prompt the audit scores (persona system text + question
with numbered options, rendered by :func:`cvaudit.audit.prompts.render_prompts`) and
its target is the answer token of the group's modal answer; the loss is the
cross-entropy of that one token, nothing else. Train groups are seed 003's split
(:mod:`cvaudit.audit.splits`); held-out combinations never enter training. The
adapter is saved with PEFT (safetensors) next to ``cvaudit_finetune.json``, which
records the split, questions, seed, hyper-parameters and base fingerprint, so an
audit of the adapter can tell trained groups from held-out ones.

Seed 003 used lr 1e-6 for one epoch over ~20,000 examples on a GPU. A CPU run of the
embedded model can afford a few dozen steps, at which 1e-6 changes nothing visible:
the default here is :data:`DEFAULT_LR` (a usual LoRA rate); pass ``lr=1e-6`` to
follow the paper on a GPU.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .adapters import SPLIT_FILE
from .errors import ConfigError, DataError, ModelError
from .io import atomic_write_json

if TYPE_CHECKING:
    import pandas as pd

    from .survey import SurveyData
    from .types import Country, Group, Question

DEFAULT_LR = 2e-4
PAPER_LR = 1e-6
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that changes the adapter; saved verbatim in cvaudit_finetune.json."""

    out: str
    country: str = "SG"
    wvs_file: str | None = None  # None: the synthetic demo sample
    model: str = "smollm2-135m"
    revision: str | None = None
    questions: str = "core"
    epochs: int = 1
    lr: float = DEFAULT_LR
    rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    batch_size: int = 8
    max_steps: int | None = None
    layers: int | None = None  # adapt only the last N decoder layers: backward stops there (CPU runs)
    min_size: int = 30
    both_orders: bool = True  # train on both option orders, as the audit scores both
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    allow_pickle: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "rank", "lora_alpha", "batch_size", "min_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        for name in ("max_steps", "layers"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and 0 < float(self.lr) < 1):
            raise ConfigError(f"--lr must be a number in (0, 1), got {self.lr!r}")
        if not 0 <= float(self.lora_dropout) < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not self.target_modules:
            raise ConfigError("target_modules is empty; name the linear layers to adapt, e.g. q_proj,v_proj")
        if not str(self.out).strip():
            raise ConfigError("--out is required: the directory the adapter is written to")

    def hyperparameters(self) -> dict[str, Any]:
        keep = ("epochs", "lr", "rank", "lora_alpha", "lora_dropout", "target_modules", "batch_size", "max_steps",
                "layers", "min_size", "both_orders", "seed")
        out = {k: v for k, v in asdict(self).items() if k in keep}
        out["target_modules"] = list(self.target_modules)
        out["loss"] = "cross-entropy on the modal answer's option token only"
        out["optimizer"] = "AdamW, constant lr, weight_decay 0"
        return out


def modal_targets(truth: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of ``ground_truth`` that make examples: not suppressed and a single modal answer.

    Ties are skipped (no single right answer to teach); the counts say how many.
    """
    counts = {"cells": len(truth), "suppressed": 0, "ties": 0}
    keep = []
    for i, row in enumerate(truth.itertuples(index=False)):
        if row.suppressed or row.human_mode is None:
            counts["suppressed"] += 1
        elif len(row.human_mode) != 1:
            counts["ties"] += 1
        else:
            keep.append(i)
    out = truth.iloc[keep].reset_index(drop=True).copy()
    out["target"] = [int(m[0]) for m in out["human_mode"]]
    return out, counts


@dataclass(frozen=True)
class ExampleSet:
    """Training examples: prompt spec, canonical target option and group id of each, plus counts."""

    specs: tuple[Any, ...]
    targets: tuple[int, ...]
    groups: tuple[str, ...]
    counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.specs)


def build_examples(survey: SurveyData, groups: Sequence[Group], questions: Sequence[Question],
                   country: Country, min_size: int = 30, both_orders: bool = True) -> ExampleSet:
    """One example per (train group, question) with a single modal answer, in both option orders."""
    from cvaudit.personas.persona import persona_text

    from .groundtruth import ground_truth
    from .methods.base import PromptSpec

    truth = ground_truth(survey, list(groups), list(questions), min_size=min_size)
    rows, counts = modal_targets(truth)
    by_id = {g.id: g for g in groups}
    qs = {q.id: q for q in questions}
    personas: dict[str, str | None] = {}
    specs: list[Any] = []
    targets: list[int] = []
    gids: list[str] = []
    for row in rows.itertuples(index=False):
        gid = f"{row.attribute}={row.group}"
        if gid not in personas:
            personas[gid] = persona_text(by_id[gid], country)
        for rev in (False, True) if both_orders else (False,):
            specs.append(PromptSpec(question=qs[row.question], system=personas[gid], reverse=rev))
            targets.append(int(row.target))
            gids.append(gid)
    counts["examples"] = len(specs)
    counts["cells_used"] = len(rows)
    return ExampleSet(tuple(specs), tuple(targets), tuple(gids), counts)


def encode_examples(tokenizer: Any, specs: Sequence[Any], targets: Sequence[int]) -> list[tuple[tuple[int, ...], int]]:
    """(input ids, answer token id) per example, via the audit's own prompt renderer."""
    from .prompts import render_prompts

    out = []
    for rp, t in zip(render_prompts(tokenizer, specs), targets):
        display = rp.order.index(t)  # canonical option -> where the prompt lists it
        out.append((rp.input_ids, int(rp.option_token_ids[display])))
    return out


def collate(batch: Sequence[tuple[Sequence[int], int]], pad_id: int, device: Any) -> dict[str, Any]:
    """Left-pad so every prompt ends at the last position (the answer slot); positions ignore padding."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (ids, _) in enumerate(batch):
        input_ids[i, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[i, width - len(ids):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    labels = torch.tensor([t for _, t in batch], dtype=torch.long)
    return {"input_ids": input_ids.to(device), "attention_mask": mask.to(device),
            "position_ids": positions.to(device), "labels": labels.to(device)}


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy of the target token at the answer slot (the only supervised position)."""
    import torch.nn.functional as F

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"], logits_to_keep=1)
    return F.cross_entropy(out.logits[:, -1, :].float(), batch["labels"])


def train_lora(model: Any, tokenizer: Any, examples: Sequence[tuple[Sequence[int], int]], config: FinetuneConfig,
               device: Any = "cpu", on_step: Callable[[int, float], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Wrap ``model`` with a fresh LoRA adapter and train it on ``examples``; return (peft model, stats)."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm

    if not examples:
        raise DataError("no training examples: every train cell is suppressed or tied; lower --min-size or add questions")
    torch.manual_seed(config.seed)
    extra: dict[str, Any] = {}
    if config.layers is not None:
        n_layers = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
        if not 0 < config.layers <= n_layers:
            raise ConfigError(f"--layers must be between 1 and the model's {n_layers} decoder layers, got {config.layers}")
        extra["layers_to_transform"] = list(range(n_layers - config.layers, n_layers))
    lcfg = LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM", **extra)
    try:
        peft_model = get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ConfigError(f"cannot put LoRA on this model ({str(exc).splitlines()[0][:200]}); "
                          "choose target modules it has") from None
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=float(config.lr), weight_decay=0.0)
    per_epoch = math.ceil(len(examples) / config.batch_size)
    # like transformers' Trainer: max_steps, when given, overrides epochs (short runs and long ones alike)
    total = per_epoch * config.epochs if config.max_steps is None else config.max_steps
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rng = np.random.default_rng(config.seed)
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(total=total, desc="finetune", unit="step", disable=not config.progress)
    step = seen = 0
    try:
        while step < total:
            order = rng.permutation(len(examples))
            for b in range(per_epoch):
                if step >= total:
                    break
                chosen = order[b * config.batch_size:(b + 1) * config.batch_size]
                batch = collate([examples[i] for i in chosen], pad_id, device)
                seen += len(chosen)
                loss = answer_loss(peft_model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
                if not math.isfinite(losses[-1]):  # the adapter is now NaN: never publish it
                    raise ModelError(
                        f"training diverged at step {step} (loss {losses[-1]}); no adapter written: lower --lr "
                        "or use --dtype float32 (or bfloat16 on GPU)"
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if on_step is not None:
                    on_step(step, losses[-1])
    finally:
        bar.close()
    peft_model.eval()
    stats = {
        "steps": step,
        "epochs_planned": config.epochs,
        "epochs_done": round(step / per_epoch, 3),
        "examples_seen": seen,
        "seconds": round(time.perf_counter() - started, 2),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "losses": [round(x, 5) for x in losses],
        "trainable_parameters": int(sum(p.numel() for p in params)),
    }
    return peft_model, stats


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "adapter_config.json").is_file())):
        raise ConfigError(f"--out {os.fspath(out)!r} exists and is not an adapter directory; choose a new or empty one")


def _publish(tmp: Path, out: Path) -> None:
    """Swap the finished adapter into place: a reader never sees half an adapter."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "prev")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def finetune(config: FinetuneConfig, log: Callable[[str], None] | None = None) -> Path:
    """Train a LoRA adapter on seed 003's train groups and write it to ``config.out``; return that path."""
    from cvaudit import __version__

    from .countries import resolve_country
    from .models import ModelSpec, load_model
    from .questions import select_questions
    from .results import now_utc
    from .splits import seed003_groups

    say = log or (lambda _m: None)
    out = Path(config.out).expanduser()
    _prepare_out(out)
    country = resolve_country(config.country)
    questions = select_questions(config.questions)
    from .run import load_data

    survey = load_data(config.wvs_file, country)
    if survey.source.synthetic:
        say("SYNTHETIC DATA: training on cvaudit's synthetic sample, not WVS respondents")
    split, _ = seed003_groups(survey, min_size=config.min_size)
    if not split.train:
        raise DataError(f"no train group has at least {config.min_size} respondents; lower --min-size")
    exset = build_examples(survey, split.train, questions, country, config.min_size, config.both_orders)
    counts = exset.counts
    say(f"{len(split.train)} train groups, {len(split.heldout)} held out, {len(questions)} questions: "
        f"{counts['examples']} examples ({counts['ties']} tied and {counts['suppressed']} suppressed cells skipped)")

    loaded = load_model(ModelSpec(id=config.model, revision=config.revision, dtype=config.dtype,
                                  device=config.device, allow_pickle=config.allow_pickle))
    examples = encode_examples(loaded.tokenizer, exset.specs, exset.targets)
    peft_model, stats = train_lora(loaded.model, loaded.tokenizer, examples, config, device=loaded.device)
    say(f"{stats['steps']} steps in {stats['seconds']:.1f}s, loss {stats['loss_first']:.3f} -> {stats['loss_last']:.3f}")

    base_id = config.model
    if Path(base_id).expanduser().is_dir():
        base_id = os.fspath(Path(base_id).expanduser().resolve())
    peft_model.peft_config["default"].base_model_name_or_path = base_id
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        record = {
            "tool": {"name": "cvaudit", "version": __version__},
            "created_at": now_utc(),
            "country": asdict(country),
            "data": {"path": survey.source.path, "sha256": survey.source.sha256, "synthetic": survey.source.synthetic},
            "base_model": {"id": base_id, "revision": config.revision, "fingerprint": loaded.fingerprint,
                           "dtype": loaded.info.get("dtype"), "device": str(loaded.device)},
            "questions": {"set": config.questions, "ids": [q.id for q in questions]},
            "split": split.to_dict(),
            "seed": config.seed,
            "hyperparameters": config.hyperparameters(),
            "examples": counts,
            "training": stats,
        }
        atomic_write_json(tmp / SPLIT_FILE, record)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
