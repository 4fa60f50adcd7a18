"""``persona`` (seed 003): a system text describing the subgroup, then the question.

The text is built from the group's own attributes only by
:func:`cvaudit.personas.persona.persona_text`; see docs/methods-persona.md.
All questions of all groups go to the engine in one call so it can batch them and
reuse each persona's key/value prefix across that group's questions.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..types import ItemPrediction
from .base import Method, MethodContext, PromptSpec, register_method

PARAMS = ("template",)


@register_method("persona")
class PersonaMethod(Method):
    per_group = True

    def __init__(self, template: str | None = None, **params: Any) -> None:
        if params:
            raise ConfigError(
                f"unknown persona parameter(s) {', '.join(sorted(params))}; valid: {', '.join(PARAMS)}"
            )
        from cvaudit.personas.persona import load_template

        if template is not None:
            load_template(str(template))  # fail now, before the model loads
            super().__init__(template=str(template))
        else:
            super().__init__()
        self.template = None if template is None else str(template)
        self.personas: dict[str, str | None] = {}

    def params(self) -> dict[str, Any]:
        out = super().params()
        if self.template is not None:
            # the file's words change the output, not its path
            from cvaudit.personas.persona import load_template

            out["template_text"] = load_template(self.template)
        return out

    def predict(self, ctx: MethodContext) -> dict[tuple[str, str], ItemPrediction]:
        from cvaudit.personas.persona import persona_text

        specs: list[PromptSpec] = []
        keys: list[tuple[str, str]] = []
        for g in ctx.groups:
            text = persona_text(g, ctx.country, self.template)
            self.personas[g.id] = text
            for q in ctx.questions:
                specs.append(PromptSpec(question=q, system=text))
                keys.append((g.id, q.id))
        dists = ctx.scorer.distributions(specs)
        # auditors want to read the exact prompts: one table of persona texts in the report
        ctx.extra["method_report"] = {
            "Persona texts": [
                {"attribute": g.attribute, "group": g.label, "persona": self.personas.get(g.id) or ""}
                for g in ctx.groups
            ]
        }
        return {k: ItemPrediction(dist=tuple(float(x) for x in d)) for k, d in zip(keys, dists)}
