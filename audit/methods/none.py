"""``none``: the question alone, no persona (METHODS.md §6).

Every group is compared with the same model answer, so the audit shows whose
values the bare model already reflects. Each question is scored once (both
option orders, debiased by the engine) however many groups there are.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..types import ItemPrediction
from .base import Method, MethodContext, PromptSpec, register_method


@register_method("none")
class NoneMethod(Method):
    per_group = False

    def __init__(self, **params: object) -> None:
        if params:
            names = ", ".join(sorted(params))
            raise ConfigError(f"method 'none' takes no parameters (got {names}); drop --method-param")
        super().__init__()

    def predict(self, ctx: MethodContext) -> dict[tuple[str, str], ItemPrediction]:
        specs = [PromptSpec(question=q) for q in ctx.questions]
        dists = ctx.scorer.distributions(specs)
        out: dict[tuple[str, str], ItemPrediction] = {}
        for q, d in zip(ctx.questions, dists):
            pred = ItemPrediction(dist=tuple(float(x) for x in d))
            for g in ctx.groups:
                out[(g.id, q.id)] = pred
        return out

