"""``disca`` (seed 000/001): disagreement-informed logit correction from a WVS-grounded persona panel.

For each target group a panel (personas/panel.py) of ``panel_size`` personas is
built from the group's own respondents. The base prompt (no persona: DISCA's
base is the model's own answer) and every panel prompt are scored in both
option orders in one ``ctx.scorer.logprobs`` call; audit/disca_math.py turns the
panel's disagreement into a bounded correction. Each item's random draws come
from its own SeedSequence(seed, hash(group id, question id)), so results do not
depend on question order or batching. The panel's disagreement per item lands
in ``ItemPrediction.extra`` and a summary in ``ctx.extra["method_report"]``.
See docs/methods-disca.md.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from ..disca_math import (
    ANCHORS,
    Correction,
    DiscaParams,
    anchor_dist,
    correct_item,
    correction_size,
    softmax,
    total_variation,
)  # fmt: skip
from ..errors import ConfigError
from ..types import ItemPrediction, Question
from .base import Method, MethodContext, PromptSpec, register_method
from .params import as_bool, as_number

INT_PARAMS = ("panel_size", "samples", "panel_min_size")
FLOAT_PARAMS = ("alpha", "beta", "kappa", "lam", "eta", "temperature", "output_temperature", "sigma_floor", "ess_min",
                "agreement_scale")  # fmt: skip
PARAMS = (*INT_PARAMS, "panel_split", *FLOAT_PARAMS, "anchor", "country_prior", "whole_persona", "on_overlap")
OVERLAP = ("exclude", "keep", "error")
SPLITS = ("age", "sex", "ethnicity", "religion", "education", "income", "marital", "settlement", "employment")
# the public code's running country prior (EXP-09): EMA rate, warm-up items, annealing time constant
PRIOR_EMA, PRIOR_WARMUP, PRIOR_TAU = 0.1, 50, 100.0
TOP_ITEMS = 10
MAX_SAMPLES, MAX_PANEL = 100_000, 64  # beyond these one item's draws no longer fit in memory


def item_seed(seed: int, group_id: str, question_id: str) -> np.random.SeedSequence:
    """The item's own random stream: independent of item order, batching and PYTHONHASHSEED."""
    digest = hashlib.sha256(f"{group_id}\x1f{question_id}".encode()).digest()
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


@register_method("disca")
class DiscaMethod(Method):
    per_group = True

    def __init__(
        self,
        panel_size: Any = 4,
        panel_split: str = "age",
        panel_min_size: Any = 30,
        samples: Any = 64,
        alpha: Any = 0.88,
        beta: Any = 0.88,
        kappa: Any = 2.25,
        lam: Any = 0.7,
        eta: Any = 0.5,
        temperature: Any = 1.5,
        output_temperature: Any = 0.5,
        sigma_floor: Any = 0.3,
        ess_min: Any = 0.1,
        agreement_scale: Any = 0.04,
        anchor: str = "paper",
        country_prior: Any = False,
        whole_persona: str = "wvs",
        on_overlap: str = "exclude",
        **unknown: Any,
    ) -> None:
        from cvaudit.personas.panel import WHOLE_MODES, check_panel_size

        if unknown:
            raise ConfigError(f"unknown disca parameter(s) {', '.join(sorted(unknown))}; valid: {', '.join(PARAMS)}")
        ints = {n: as_number(v, n, int) for n, v in
                (("panel_size", panel_size), ("panel_min_size", panel_min_size), ("samples", samples))}  # fmt: skip
        floats = {n: as_number(v, n, float) for n, v in zip(FLOAT_PARAMS, (
            alpha, beta, kappa, lam, eta, temperature, output_temperature, sigma_floor, ess_min, agreement_scale))}  # fmt: skip
        if ints["panel_size"] < 1 or ints["samples"] < 2 or ints["panel_min_size"] < 1:
            raise ConfigError("method params panel_size and panel_min_size must be >= 1 and samples >= 2")
        check_panel_size(ints["panel_size"])  # the panel's own rule, refused before any scoring
        if ints["samples"] > MAX_SAMPLES or ints["panel_size"] > MAX_PANEL:
            raise ConfigError(f"method params samples must be <= {MAX_SAMPLES} (the paper uses 64) and panel_size "
                              f"<= {MAX_PANEL}; each item draws samples x panel_size numbers")  # fmt: skip
        positive = ("eta", "temperature", "output_temperature", "sigma_floor", "agreement_scale", "kappa", "alpha", "beta")
        bad = [n for n in positive if not floats[n] > 0]
        if bad:
            raise ConfigError(f"method param(s) {', '.join(bad)} must be > 0")
        if not 0 <= floats["lam"] <= 1 or not 0 <= floats["ess_min"] <= 1:
            raise ConfigError("method params lam and ess_min must lie in [0, 1]")
        if anchor not in ANCHORS:
            raise ConfigError(f"method param anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
        split = str(panel_split).strip().lower()
        if split not in SPLITS:
            raise ConfigError(f"method param panel_split must be one of {', '.join(SPLITS)}, got {panel_split!r}")
        if whole_persona not in WHOLE_MODES:  # the panel's own modes, refused before any scoring
            raise ConfigError(f"method param whole_persona must be one of {', '.join(WHOLE_MODES)}, got {whole_persona!r}")
        if on_overlap not in OVERLAP:
            raise ConfigError(f"method param on_overlap must be one of {', '.join(OVERLAP)}, got {on_overlap!r}")
        self.on_overlap = on_overlap
        self.math = DiscaParams(samples=ints["samples"], anchor=anchor, **floats)
        self.panel_size = ints["panel_size"]
        self.panel_min_size = ints["panel_min_size"]
        self.panel_split = split
        self.country_prior = as_bool(country_prior, "country_prior")
        self.whole_persona = whole_persona
        recorded = {"panel_size": self.panel_size, "panel_split": split, "panel_min_size": self.panel_min_size,
                    **asdict(self.math), "country_prior": self.country_prior, "whole_persona": whole_persona,
                    "on_overlap": on_overlap, "base_prompt": "none"}  # fmt: skip
        if self.country_prior:
            recorded["country_prior_settings"] = {"ema": PRIOR_EMA, "warmup_items": PRIOR_WARMUP, "tau": PRIOR_TAU}
        super().__init__(**recorded)
        self.panels: dict[str, Any] = {}

    # ------------------------------------------------------------- questions
    def filter_questions(self, questions: Sequence[Question]) -> tuple[list[Question], list[str]]:
        """Hold out the questions the panel's value sentences are computed from; returns (kept, notes).

        A panel member's text states the target group's own answers to these items
        ("You feel little pride in your nationality" from Q254), so scoring DISCA on them
        against the same respondents would leak the answer into the prompt.
        """
        from cvaudit.personas.panel import dimension_question_ids

        if self.panel_size == 1 and self.whole_persona == "persona":
            return list(questions), []  # the panel is the plain persona alone: no value sentences
        used = set(dimension_question_ids())
        overlap = [q.id for q in questions if q.id in used]
        if not overlap:
            return list(questions), []
        listed = ", ".join(overlap)
        if self.on_overlap == "error":
            raise ConfigError(
                f"questions {listed} are the DISCA panel's value items (its personas state the group's answers to "
                "them); drop them from --questions or set --method-param on_overlap=exclude"
            )
        if self.on_overlap == "keep":
            return list(questions), [
                f"disca: {len(overlap)} audited question(s) are the panel's value items, so the personas state the "
                f"group's own answers to them and their figures are optimistic: {listed}"
            ]
        kept = [q for q in questions if q.id not in used]
        if not kept:
            raise ConfigError("every selected question is a DISCA panel value item; choose other --questions")
        return kept, [
            f"disca: {len(overlap)} question(s) held out because the panel's personas are built from the group's "
            f"answers to them: {listed}"
        ]

    # ------------------------------------------------------------------ predict
    def predict(self, ctx: MethodContext) -> dict[tuple[str, str], ItemPrediction]:
        from cvaudit.personas.panel import build_panel

        if ctx.survey is None:
            raise ConfigError("method disca needs the survey respondents (ctx.survey) to build its persona panels")
        if self.country_prior:
            warnings.warn(
                "disca country_prior=true: each item is blended with a running prior over the items before it, "
                "so results depend on question order", stacklevel=2,
            )  # fmt: skip
        for g in ctx.groups:
            self.panels[g.id] = build_panel(
                ctx.survey, g, ctx.country, size=self.panel_size, split=self.panel_split,
                min_size=self.panel_min_size, whole=self.whole_persona,
            )  # fmt: skip

        # one batched call: base + every member, both orders; identical prompts asked once
        slots: dict[tuple[str | None, str, bool], int] = {}
        specs: list[PromptSpec] = []

        def slot(system: str | None, q: Any, reverse: bool) -> int:
            key = (system, q.id, reverse)
            if key not in slots:
                slots[key] = len(specs)
                specs.append(PromptSpec(question=q, system=system, reverse=reverse))
            return slots[key]

        plan: list[tuple[Any, Any, tuple[int, int], list[tuple[int, int]]]] = []
        for g in ctx.groups:
            members = self.panels[g.id].members
            for q in ctx.questions:
                base = (slot(None, q, False), slot(None, q, True))
                mem = [(slot(m.text, q, False), slot(m.text, q, True)) for m in members]
                plan.append((g, q, base, mem))
        lps = ctx.scorer.logprobs(specs)
        base_dists: dict[tuple[str, int], np.ndarray] = {}  # the model's own debiased answer (engine's combine_orders)

        out: dict[tuple[str, str], ItemPrediction] = {}
        rows: list[dict[str, Any]] = []
        priors: dict[str, dict[str, float]] = {}
        for g, q, (bf, br), mem in plan:
            c = correct_item((lps[bf], lps[br]), [(lps[f], lps[r]) for f, r in mem], item_seed(ctx.seed, g.id, q.id),
                             self.math)  # fmt: skip
            dist = c.dist
            prior_note = None
            if self.country_prior and q.k == 2:
                dist, prior_note = self._apply_prior(priors.setdefault(g.id, {"delta": 0.0, "step": 0}), c)
            key = (q.id, bf)
            if key not in base_dists:
                base_dists[key] = softmax((np.asarray(lps[bf]) + np.asarray(lps[br])) / 2.0)
            extra = self._extra(c, dist, base_dists[key], len(mem))
            if prior_note is not None:
                extra["prior_weight"] = prior_note
            out[(g.id, q.id)] = ItemPrediction(dist=tuple(float(x) for x in dist), extra=extra)
            rows.append({"attribute": g.attribute, "group": g.label, "question": q.id, "short": q.short or q.text[:60],
                         "k": q.k, **extra})  # fmt: skip
        ctx.extra["method_report"] = self._report(ctx, rows)
        return out

    # ------------------------------------------------------------------ pieces
    def _apply_prior(self, state: dict[str, float], c: Correction) -> tuple[np.ndarray, float]:
        """The public code's running country prior (binary items only); opt-in because it is order dependent."""
        from ..disca_math import sigmoid

        step = state["step"]
        a_h = 0.0 if step < PRIOR_WARMUP else 1.0 - float(np.exp(-(step - PRIOR_WARMUP) / PRIOR_TAU))
        final = a_h * state["delta"] + (1.0 - a_h) * float(c.final)
        state["delta"] = (1.0 - PRIOR_EMA) * state["delta"] + PRIOR_EMA * float(c.final)
        state["step"] = step + 1
        p1 = sigmoid(final / self.math.output_temperature)
        return np.array([1.0 - p1, p1]), _r(a_h)

    def _extra(self, c: Correction, dist: np.ndarray, base_dist: np.ndarray, n_members: int) -> dict[str, Any]:
        return {
            "panel_size": n_members,
            "disagreement": _r(c.disagreement),
            "sigma": _r(c.sigma),
            "ess1": _r(c.ess1),
            "ess2": _r(c.ess2),
            "agreement": _r(c.agreement),
            "correction": _r(correction_size(c)),
            "anchor_weight": _r(c.anchor_weight),
            "gated": bool(c.gated),
            "tv_from_base": _r(total_variation(base_dist, dist)),
            "tv_from_anchor": _r(total_variation(anchor_dist(c, self.math), dist)),
            "flipped": bool(int(np.argmax(base_dist)) != int(np.argmax(dist))),
        }

    def _report(self, ctx: MethodContext, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import pandas as pd

        df = pd.DataFrame(rows)
        stats = {"disagreement": "mean", "sigma": "mean", "ess1": "mean", "ess2": "mean", "agreement": "mean",
                 "correction": "mean", "tv_from_base": "mean", "tv_from_anchor": "mean", "gated": "mean",
                 "flipped": "mean"}  # fmt: skip

        def table(by: list[str]) -> list[dict[str, Any]]:
            agg = df.groupby(by, sort=False).agg({**stats, "question": "count"}).reset_index()
            agg = agg.rename(columns={"question": "items", "gated": "share_gated", "flipped": "share_flipped"})
            return [{k: (_r(v) if isinstance(v, float) else v) for k, v in rec.items()} for rec in agg.to_dict("records")]

        top = df.sort_values(["disagreement", "attribute", "group", "question"], ascending=[False, True, True, True])
        top_rows = [
            {"attribute": r.attribute, "group": r.group, "question": r.question, "short": r.short,
             "disagreement": r.disagreement, "correction": r.correction, "agreement": r.agreement,
             "tv_from_base": r.tv_from_base}
            for r in top.head(TOP_ITEMS).itertuples()
        ]  # fmt: skip
        from cvaudit.personas.panel import dimensions

        dim_keys = [d["key"] for d in dimensions()["dimensions"]]  # same columns in every row
        panels, texts, profiles = [], [], []
        for g in ctx.groups:
            panel = self.panels[g.id]
            for m in panel.members:
                panels.append({"attribute": g.attribute, "group": g.label, "member": m.label, "kind": m.kind,
                               "split": panel.split or "none", "n": m.n, "n_eff": _r(m.n_eff, 1)})  # fmt: skip
                texts.append({"attribute": g.attribute, "group": g.label, "member": m.label, "persona": m.text or ""})
                have = {d.key: f"{d.descriptor} ({d.score:.2f})" for d in m.profile}
                profiles.append({"group": g.id, "member": m.label, **{k: have.get(k, "") for k in dim_keys}})
        notes = [{"group": gid, "note": n} for gid, p in self.panels.items() for n in p.notes]
        if self.country_prior:
            notes.append({"group": "all", "note": "country_prior=true: binary items blended with a running prior; "
                                                  "results depend on question order"})  # fmt: skip
        report: dict[str, Any] = {
            "DISCA disagreement by attribute": table(["attribute"]),
            "DISCA disagreement by group": table(["attribute", "group"]),
            f"DISCA most divisive items (top {TOP_ITEMS})": top_rows,
            "DISCA panels": panels,
            "DISCA value profiles": profiles,
            "DISCA persona texts": texts,
        }
        if notes:
            report["DISCA panel notes"] = notes
        return report

