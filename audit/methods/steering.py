"""``steering`` (seed 002): contrastive activation addition during the forward pass.

Kind ``subgroup``: each group's own vector (its persona prompts minus neutral
prompts) is added while the *neutral* question is asked, so the audit measures
whether steering alone recovers the group's answers. Kind ``axes``: one
Inglehart-Welzel axis vector for every group. Vectors come from ``cvaudit steer
fit`` (``vectors=PATH``) or are fitted on the fly on a calibration split that
excludes the audited questions. Every alpha of a sweep is scored; the main
items use ``main_alpha`` (default: the last alpha). The method report adds the
sweep (alignment + perplexity on neutral text) and the entanglement table: the
shift of the model's answers along each axis's defining items per steered
vector, with bootstrap intervals over items. See docs/methods-steering.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError
from ..types import Group, ItemPrediction, Question
from .base import Method, MethodContext, PromptSpec, register_method
from .params import as_bool, as_floats, as_int, as_number

PARAMS = (
    "vectors", "alpha", "main_alpha", "layer", "force", "kind", "axis", "layers", "calibration_fraction",
    "split_seed", "max_calibration", "prompt", "on_overlap", "fluency", "entanglement", "n_boot", "batch_size",
)
METRICS = ("accuracy", "nmae", "representativeness", "similarity")


def _fmt(alpha: float) -> str:
    return f"{alpha:g}"


@register_method("steering")
class SteeringMethod(Method):
    per_group = True
    cli_options = (
        click.Option(["--steer-vectors", "vectors"], help="Vectors from `cvaudit steer fit` (default: fit on the fly)."),
        click.Option(["--steer-alpha", "alpha"], help="Steering strength or a comma list to sweep, e.g. 0,2,4,8."),
        click.Option(["--steer-layer", "layer"], help="Layer(s) of the vectors file to steer (default: all fitted)."),
    )

    def __init__(
        self,
        vectors: str | None = None,
        alpha: Any = "4",
        main_alpha: Any = None,
        layer: Any = None,
        force: Any = False,
        kind: str = "subgroup",
        axis: str | None = None,
        layers: Any = None,
        calibration_fraction: Any = 0.3,
        split_seed: Any = 0,
        max_calibration: Any = None,
        prompt: str | None = None,
        on_overlap: str = "exclude",
        fluency: Any = True,
        entanglement: Any = True,
        n_boot: Any = 1000,
        batch_size: Any = 8,
        **unknown: Any,
    ) -> None:
        from ..steering import AXES, KINDS, description_path, parse_int_list

        if unknown:
            raise ConfigError(f"unknown steering parameter(s) {', '.join(sorted(unknown))}; valid: {', '.join(PARAMS)}")
        self.vectors_path = Path(vectors) if vectors else None
        if self.vectors_path is not None:
            if not self.vectors_path.is_file() or not description_path(self.vectors_path).is_file():
                raise ConfigError(
                    f"steering vectors {vectors} (or its .json description) not found; fit them with cvaudit steer fit"
                )
            import json

            desc = json.loads(description_path(self.vectors_path).read_text(encoding="utf-8"))
            kind = desc.get("kind", kind)
        if kind not in KINDS:
            raise ConfigError(f"unknown steering kind {kind!r}; use one of: {', '.join(KINDS)}")
        if axis is not None and axis not in AXES:
            raise ConfigError(f"unknown axis {axis!r}; use one of: {', '.join(AXES)}")
        self.alphas = as_floats(alpha, "alpha")
        self.main_alpha = as_floats(main_alpha, "main_alpha")[0] if main_alpha not in (None, "") else self.alphas[-1]
        if self.main_alpha not in self.alphas:
            self.alphas.append(self.main_alpha)
        self.layer = parse_int_list(layer)
        self.fit_layers = parse_int_list(layers)
        self.force = as_bool(force, "force")
        self.kind = kind
        self.axis = axis
        self.fraction = as_number(calibration_fraction, "calibration_fraction")
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"method param calibration_fraction must lie strictly between 0 and 1, got {self.fraction:g}")
        self.split_seed = as_int(split_seed, "split_seed") or 0
        self.max_calibration = as_int(max_calibration, "max_calibration")
        self.prompt = prompt or "neutral"
        if self.prompt not in ("neutral", "persona"):
            raise ConfigError(f"method param prompt must be neutral or persona, got {prompt!r}")
        if on_overlap not in ("exclude", "error"):
            raise ConfigError(f"method param on_overlap must be exclude or error, got {on_overlap!r}")
        self.on_overlap = on_overlap
        self.fluency = as_bool(fluency, "fluency")
        self.entanglement = as_bool(entanglement, "entanglement")
        parsed = {"n_boot": as_int(n_boot, "n_boot"), "batch_size": as_int(batch_size, "batch_size")}
        self.n_boot = 1000 if parsed["n_boot"] is None else parsed["n_boot"]
        self.batch_size = 8 if parsed["batch_size"] is None else parsed["batch_size"]
        for name, value in (("n_boot", self.n_boot), ("batch_size", self.batch_size), ("max_calibration",
                            1 if self.max_calibration is None else self.max_calibration)):  # fmt: skip
            if value < 1:
                raise ConfigError(f"method param {name} must be >= 1, got {value}")
        recorded: dict[str, Any] = {
            "vectors": str(self.vectors_path) if self.vectors_path else None,
            "alpha": self.alphas,
            "main_alpha": self.main_alpha,
            "layer": self.layer,
            "kind": self.kind,
            "axis": self.axis,
            "prompt": self.prompt,
            "force": self.force,
        }
        if self.vectors_path is None:
            recorded.update(
                layers=self.fit_layers, calibration_fraction=self.fraction, split_seed=self.split_seed,
                max_calibration=self.max_calibration,
            )
        super().__init__(**recorded)
        self.resolved: dict[str, Any] = {}
        self.report: dict[str, Any] = {}
        self._checked: Any = None  # the vectors file as loaded by check()

    # ----------------------------------------------------------------- contract
    def params(self) -> dict[str, Any]:
        """The user's parameters plus what predict resolved: vectors digest, layers used, calibration split."""
        out = super().params()
        if self.vectors_path is not None:
            from ..io import sha256_file

            out["vectors_sha256"] = sha256_file(self.vectors_path)
            out["calibration"] = self.calibration_ids()
        out.update(self.resolved)
        return out

    def calibration_ids(self) -> list[str]:
        """The calibration split of the vectors file (empty before an on-the-fly fit)."""
        if self.vectors_path is None:
            return list(self.resolved.get("calibration", []))
        import json

        from ..steering import description_path

        desc = json.loads(description_path(self.vectors_path).read_text(encoding="utf-8"))
        return list(desc.get("split", {}).get("calibration", []))

    def filter_questions(self, questions: Sequence[Question]) -> tuple[list[Question], list[str]]:
        """Drop calibration questions before the audit selects ground truth; returns (kept, notes).

        An on-the-fly fit holds the audited questions out of calibration, so
        nothing is dropped then.
        """
        cal = set(self.calibration_ids())
        dropped = [q.id for q in questions if q.id in cal]
        if dropped and self.on_overlap == "error":
            raise ConfigError(
                f"questions {', '.join(dropped)} are in the steering vectors' calibration split; drop them from --questions "
                "or set --method-param on_overlap=exclude"
            )
        kept = [q for q in questions if q.id not in cal]
        if not kept:
            raise ConfigError("every selected question is in the steering calibration split; choose other --questions")
        notes = (
            [f"steering: {len(dropped)} question(s) excluded because they are in the vectors' calibration split: "
             f"{', '.join(dropped)}"]
            if dropped
            else []
        )
        return kept, notes

    def method_report(self, ctx: MethodContext | None = None) -> dict[str, Any]:
        return self.report

    # ------------------------------------------------------------------ check
    def check(self, ctx: MethodContext) -> None:
        """Everything about layers and vectors that the loaded model can refuse, before OUT changes.

        A vectors file is loaded here (fingerprint, groups, layers, hidden size); an
        on-the-fly fit has its layers and persona texts checked, without fitting.
        """
        from ..questions import load_bank
        from ..steering import calibration_split, check_layers, check_width, default_layer

        model = ctx.scorer.model
        typed = {}  # normalised layer -> as the user typed it (-1 for the last), for messages
        if self.layer is not None:
            typed = {check_layers(model, [t])[0]: t for t in self.layer}
            self.layer = check_layers(model, self.layer)
        if self.vectors_path is None:
            fit = check_layers(model, self.fit_layers if self.fit_layers else [default_layer(model)])
            unfitted = [layer for layer in self.layer or () if layer not in fit]
            if unfitted:
                raise ConfigError(
                    f"--steer-layer {','.join(str(typed.get(x, x)) for x in unfitted)} is not among the layers "
                    f"fitted on the fly ({','.join(map(str, fit))}); set --method-param layers to include it"
                )
            # the split the fit will draw: a bank too small for the holdout fails here, not after OUT changes
            calibration_split(list(load_bank()), self.fraction, self.split_seed, [q.id for q in ctx.questions])
            if self.kind == "subgroup":
                persona = _persona_fn(ctx.country)
                mute = [g.id for g in ctx.groups if not persona(g)]
                if mute:
                    raise ConfigError(f"group(s) {', '.join(mute)} have no persona text, so no steering direction; "
                                      "drop them with --attributes")  # fmt: skip
            return
        sv = self._vectors(ctx)
        layers = self.layer if self.layer is not None else check_layers(model, list(sv.layers))
        sv.additions(sv.names[0], layers)  # layers the file lacks are named before groups it lacks
        for name in sorted(set(self._names(sv, ctx.groups).values())):
            for layer, vec in sv.additions(name, layers).items():
                check_width(model, vec, f"steering vector {name!r} at layer {layer}")
        self._checked = sv

    # ------------------------------------------------------------------ predict
    def predict(self, ctx: MethodContext) -> dict[tuple[str, str], ItemPrediction]:
        import numpy as np

        from ..steering import vectors_digest

        sv = self._checked if self._checked is not None else self._vectors(ctx)
        overlap = [q.id for q in ctx.questions if q.id in set(sv.calibration)]
        if overlap:
            # run_audit should have dropped them through filter_questions(); too late to drop cells now
            raise ConfigError(
                f"questions {', '.join(overlap)} are in the steering calibration split and cannot be audited; "
                "drop them from --questions or fit with: cvaudit steer fit --holdout <your question set>"
            )
        questions = list(ctx.questions)
        notes: list[str] = []
        layers = self.layer if self.layer is not None else list(sv.layers)
        names = self._names(sv, ctx.groups)
        self._digest = vectors_digest(sv.vectors)[:16]
        self.resolved.update(layers_used=layers, vector_names=sorted(set(names.values())), vectors_digest=self._digest)

        scored = {a: self._score(ctx, sv, names, questions, layers, a) for a in self.alphas}
        main = scored[self.main_alpha]
        out: dict[tuple[str, str], ItemPrediction] = {}
        for g in ctx.groups:
            for q in ctx.questions:
                d = np.asarray(main[(g.id, q.id)], dtype=float)
                out[(g.id, q.id)] = ItemPrediction(
                    dist=tuple(float(x) for x in d), extra={"alpha": self.main_alpha, "steer_vector": names[g.id]}
                )

        report: dict[str, Any] = {
            "Steering vectors": self._vector_rows(sv, layers),
            "Calibration split": [_split_row(sv)],
        }
        sweep = self._sweep(ctx, sv, names, questions, layers, scored)
        report["Alpha sweep"] = sweep
        report["plot"] = {
            "title": "Alignment and fluency by steering strength",
            "table": "Alpha sweep",
            "x": "alpha",
            "y": [m for m in METRICS if any(r.get(m) is not None for r in sweep)],
            "y2": ["perplexity"] if self.fluency else [],
        }
        if self.entanglement:
            rows, summary = self._entanglement(ctx, sv, names, layers)
            report["Entanglement"] = rows
            if summary:
                report["Entanglement summary"] = summary
        report["Notes"] = [{"note": n} for n in self._notes(sv, notes)]
        self.report = report
        ctx.extra["method_report"] = report
        return out

    # ----------------------------------------------------------------- helpers
    def _vectors(self, ctx: MethodContext) -> Any:
        from ..steering import fit_steering, load_vectors

        fingerprint = _fingerprint(ctx.scorer)
        if self.vectors_path is not None:
            sv = load_vectors(self.vectors_path, fingerprint=fingerprint, force=self.force)
            self.resolved["fitted_on_the_fly"] = False
            return sv
        from ..questions import load_bank

        persona = _persona_fn(ctx.country)
        sv = fit_steering(
            ctx.scorer.model, ctx.scorer.tokenizer, kind=self.kind, bank=load_bank(), layers=self.fit_layers,
            groups=list(ctx.groups), persona=persona, fraction=self.fraction, seed=self.split_seed,
            holdout=[q.id for q in ctx.questions], max_calibration=self.max_calibration, batch_size=self.batch_size,
            model_meta={"fingerprint": fingerprint}, country=ctx.country,
        )
        self.resolved.update(
            fitted_on_the_fly=True, calibration=sv.calibration, fit_layers=list(sv.layers),
            fitted_on=list(sv.meta["split"]["fitted_on"]),
        )
        return sv

    def _names(self, sv: Any, groups: Sequence[Group]) -> dict[str, str]:
        """group id -> the vector it is steered with."""
        if sv.kind == "subgroup":
            missing = [g.id for g in groups if g.id not in sv.vectors]
            if missing:
                raise ConfigError(
                    f"the steering vectors have no vector for {', '.join(missing)}; fitted for: {', '.join(sv.names)}. "
                    "Re-fit with the same --country and --attributes as the run"
                )
            return {g.id: g.id for g in groups}
        name = self.axis or sv.names[0]
        if name not in sv.vectors:
            raise ConfigError(f"the vectors file has no axis {name!r}; it has: {', '.join(sv.names)}")
        return {g.id: name for g in groups}

    @contextmanager
    def _steered(self, ctx: MethodContext, sv: Any, name: str, layers: list[int], alpha: float) -> Iterator[None]:
        """Hooks plus a score-cache namespace unique to (vectors, name, layers, alpha)."""
        from ..steering import steering_hooks

        if alpha == 0.0:
            # adding 0 * v changes no activation bit: share the unsteered model's cache
            with ctx.scorer.modified(None):
                yield
            return
        tag = f"steering:{self._digest}:{name}:L{','.join(map(str, layers))}:a{_fmt(alpha)}"
        with ctx.scorer.modified(tag), steering_hooks(ctx.scorer.model, sv.additions(name, layers), alpha):
            yield

    def _score(
        self, ctx: MethodContext, sv: Any, names: dict[str, str], questions: Sequence[Question],
        layers: list[int], alpha: float,
    ) -> dict[tuple[str, str], Any]:
        persona = _persona_fn(ctx.country) if self.prompt == "persona" else (lambda g: None)
        out: dict[tuple[str, str], Any] = {}
        # groups that share a vector and a prompt share one scoring call (axes + neutral prompt)
        batches: dict[tuple[str, str | None], list[Group]] = {}
        for g in ctx.groups:
            batches.setdefault((names[g.id], persona(g)), []).append(g)
        for (name, system), members in batches.items():
            specs = [PromptSpec(question=q, system=system) for q in questions]
            with self._steered(ctx, sv, name, layers, alpha):
                dists = ctx.scorer.distributions(specs)
            for g in members:
                for q, d in zip(questions, dists):
                    out[(g.id, q.id)] = d
        return out

    def _sweep(
        self, ctx: MethodContext, sv: Any, names: dict[str, str], questions: Sequence[Question],
        layers: list[int], scored: dict[float, dict[tuple[str, str], Any]],
    ) -> list[dict[str, Any]]:
        from ..fluency import perplexity
        from ..steering import steering_hooks

        items = _ground_truth_items(ctx, questions)
        base_ppl = perplexity(ctx.scorer.model, ctx.scorer.tokenizer) if self.fluency else None
        rows = []
        for alpha in self.alphas:
            row: dict[str, Any] = {"alpha": alpha, "main": alpha == self.main_alpha}
            row.update(_alignment(items, scored[alpha]))
            if self.fluency:
                ppls = []
                for name in sorted(set(names.values())):
                    with steering_hooks(ctx.scorer.model, sv.additions(name, layers), alpha):
                        ppls.append(perplexity(ctx.scorer.model, ctx.scorer.tokenizer))
                row["perplexity"] = sum(ppls) / len(ppls)
                row["perplexity_max"] = max(ppls)
                row["perplexity_ratio"] = row["perplexity"] / base_ppl
            rows.append(row)
        return rows

    def _entanglement(
        self, ctx: MethodContext, sv: Any, names: dict[str, str], layers: list[int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Shift of the neutral prompt's answers along each axis when steering with each vector."""
        import numpy as np

        from ..questions import load_bank
        from ..steering import AXES, axis_item_score

        bank = load_bank()
        cal = set(sv.calibration)
        per_axis: dict[str, tuple[list[Any], bool]] = {}
        for axis in AXES.values():
            present = [it for it in axis.items if it.id in bank]
            held_out = [it for it in present if it.id not in cal]
            per_axis[axis.name] = (held_out or present, not held_out)
        qs = {it.id: bank[it.id] for items, _ in per_axis.values() for it in items}
        specs = [PromptSpec(question=q) for q in qs.values()]
        with ctx.scorer.modified(None):
            base = dict(zip(qs, ctx.scorer.distributions(specs)))
        steer_names = sorted(set(names.values())) if sv.kind == "subgroup" else list(sv.names)
        rng_seed = ctx.seed
        rows: list[dict[str, Any]] = []
        summary: list[dict[str, Any]] = []
        shifts_by: dict[tuple[str, str], np.ndarray] = {}
        for name in steer_names:
            with self._steered(ctx, sv, name, layers, self.main_alpha):
                steered = dict(zip(qs, ctx.scorer.distributions(specs)))
            for axis_name, (items, in_sample) in per_axis.items():
                shift = np.array(
                    [axis_item_score(qs[it.id], steered[it.id], it) - axis_item_score(qs[it.id], base[it.id], it) for it in items]
                )
                shifts_by[(name, axis_name)] = shift
                lo, hi = _boot_mean_ci(shift, self.n_boot, rng_seed)
                rows.append({
                    "steered": name, "measured_axis": axis_name, "on_axis": name == axis_name,
                    "alpha": self.main_alpha, "shift": float(shift.mean()), "ci_low": lo, "ci_high": hi,
                    "n_items": len(items), "items": ", ".join(it.id for it in items), "in_sample": in_sample,
                })
        if sv.kind == "axes":
            for name in steer_names:
                for other in AXES:
                    if other == name:
                        continue
                    on, off = shifts_by[(name, name)], shifts_by[(name, other)]
                    ratio, lo, hi = _boot_ratio_ci(off, on, self.n_boot, rng_seed)
                    on_lo, on_hi = _boot_mean_ci(on, self.n_boot, rng_seed)
                    summary.append({
                        # a ratio over an on-axis shift indistinguishable from 0 is not interpretable
                        "on_axis_shift_clear": bool(on_lo is not None and (on_lo > 0 or on_hi < 0)),
                        "steered": name, "other_axis": other, "on_axis_shift": float(on.mean()),
                        "off_axis_shift": float(off.mean()), "entanglement_ratio": ratio,
                        "ratio_ci_low": lo, "ratio_ci_high": hi,
                    })
        return rows, summary

    def _vector_rows(self, sv: Any, layers: list[int]) -> list[dict[str, Any]]:
        norms = sv.norms()
        return [
            {"vector": n, "layer": layer, "norm": norms[n][str(layer)], "kind": sv.kind}
            for n in sv.names
            for layer in layers
        ]

    def _notes(self, sv: Any, excluded: list[str]) -> list[str]:
        notes = [
            f"main items use alpha={_fmt(self.main_alpha)} (method param main_alpha, default the last alpha)",
            f"vectors: kind={sv.kind}, layers used={self.resolved.get('layers_used')}, "
            + ("fitted on the fly (audited questions held out of calibration)" if self.vectors_path is None
               else f"file {self.vectors_path}"),
            "prompts: " + ("neutral question, no persona" if self.prompt == "neutral" else "persona + question"),
            "entanglement: mean change of the direction-corrected expected answer (0..1, 1 = the positive pole: "
            "secular-rational, self-expression) on each axis's defining items, main alpha vs unsteered, neutral "
            "prompt; 95% bootstrap over items",
        ]
        return notes + excluded


def _split_row(sv: Any) -> dict[str, Any]:
    """The calibration split as one flat row (ids comma-joined so the report can wrap them)."""
    split = sv.meta.get("split", {})
    return {
        "seed": split.get("seed"), "fraction": split.get("fraction"), "bank_size": split.get("bank_size"),
        "n_calibration": len(sv.calibration), "n_fitted_on": len(split.get("fitted_on", [])),
        "calibration": ", ".join(sv.calibration), "fitted_on": ", ".join(split.get("fitted_on", [])),
        "holdout": ", ".join(split.get("holdout", [])),
    }  # fmt: skip


# --------------------------------------------------------------------- adapters
def _fingerprint(scorer: Any) -> str | None:
    """The loaded model's fingerprint, wherever the engine keeps it."""
    for obj in (scorer, getattr(scorer, "loaded", None)):
        fp = getattr(obj, "fingerprint", None)
        if isinstance(fp, str):
            return fp
    return None


def _persona_fn(country: Any) -> Any:
    from cvaudit.personas.persona import persona_text

    return lambda g: persona_text(g, country)


def _ground_truth_items(ctx: MethodContext, questions: Sequence[Question]) -> list[dict[str, Any]]:
    """Unsuppressed (group, question) cells with their human distribution, or [] without a survey."""
    gt = ctx.extra.get("ground_truth")
    if gt is None:
        if ctx.survey is None:
            return []
        from ..groundtruth import ground_truth

        gt = ground_truth(ctx.survey, list(ctx.groups), list(questions))
    by_label = {(g.attribute, g.label): g for g in ctx.groups}
    qmap = {q.id: q for q in questions}
    items = []
    for row in gt.itertuples(index=False):
        g = by_label.get((row.attribute, row.group))
        if g is None or row.question not in qmap or bool(row.suppressed) or row.human_dist is None:
            continue
        q = qmap[row.question]
        items.append({
            "group": g, "question": q, "human_dist": list(row.human_dist), "human_mode": list(row.human_mode),
        })
    return items


def _alignment(items: list[dict[str, Any]], scored: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """Mean item metrics over all groups and questions (cvaudit.metrics.item when installed)."""
    if not items:
        return {m: None for m in METRICS} | {"n_items": 0}
    try:
        from cvaudit.metrics.item import item_metrics as batch_item_metrics
    except ImportError:
        batch_item_metrics = None
    if batch_item_metrics is not None:
        import pandas as pd

        frame = pd.DataFrame([
            {"positions": list(it["question"].positions) if it["question"].positions else None,
             "model_dist": [float(x) for x in scored[(it["group"].id, it["question"].id)]],
             "human_dist": it["human_dist"], "human_mode": it["human_mode"]}
            for it in items
        ])
        im = batch_item_metrics(frame)
        return {m: (float(im[m].mean()) if m in im and im[m].notna().any() else None) for m in METRICS} | {
            "n_items": len(items)
        }
    vals: dict[str, list[float]] = {m: [] for m in METRICS}
    for it in items:
        for m, v in item_metrics(scored[(it["group"].id, it["question"].id)], it["human_dist"], it["human_mode"],
                                 it["question"].positions).items():
            if v is not None:
                vals[m].append(v)
    return {m: (sum(v) / len(v) if v else None) for m, v in vals.items()} | {"n_items": len(items)}


def item_metrics(model_dist: Sequence[float], human_dist: Sequence[float], human_mode: Sequence[int],
                 positions: Sequence[float] | None) -> dict[str, float | None]:
    """METHODS.md §3 for one cell; used only when cvaudit.metrics is not installed."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    m = np.asarray(model_dist, float)
    h = np.asarray(human_dist, float)
    choice = int(np.argmax(m))
    out: dict[str, float | None] = {
        "accuracy": float(choice in set(human_mode)),
        "similarity": float(1.0 - jensenshannon(m, h, base=2)),
        "nmae": None,
        "representativeness": None,
    }
    if positions is not None:
        pos = np.asarray(positions, float)
        span = float(pos.max() - pos.min())
        out["nmae"] = float(min(abs(pos[choice] - pos[k]) for k in human_mode) / span)
        out["representativeness"] = float(1.0 - wasserstein_distance(pos, pos, m, h) / span)
    return out


def _boot_mean_ci(x: Any, n_boot: int, seed: int, level: float = 0.95) -> tuple[float | None, float | None]:
    import numpy as np

    if len(x) == 0:
        return None, None
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(axis=1)
    q = (1 - level) / 2
    return float(np.quantile(means, q)), float(np.quantile(means, 1 - q))


def _boot_ratio_ci(num: Any, den: Any, n_boot: int, seed: int, level: float = 0.95) -> tuple[float | None, ...]:
    """off-axis / on-axis mean shift; items of the two axes are resampled independently in each replicate."""
    import numpy as np

    if len(num) == 0 or len(den) == 0 or den.mean() == 0:
        return None, None, None
    rng = np.random.default_rng(seed)
    a = num[rng.integers(0, len(num), size=(n_boot, len(num)))].mean(axis=1)
    b = den[rng.integers(0, len(den), size=(n_boot, len(den)))].mean(axis=1)
    ok = b != 0
    r = a[ok] / b[ok]
    q = (1 - level) / 2
    return float(num.mean() / den.mean()), float(np.quantile(r, q)), float(np.quantile(r, 1 - q))
