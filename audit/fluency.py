"""Fluency cost of a model change: perplexity on a short, value-neutral text.

Steering that moves answers but wrecks the language model is not alignment; the
alpha sweep reports this perplexity next to the alignment metrics (seed 002 does
the same). The text is our own, deliberately free of opinions, religion, politics
or demographics, so steering toward a value pole should not make it likelier.
"""

from __future__ import annotations

from typing import Any

NEUTRAL_TEXT = """\
The kettle takes about three minutes to boil when it is filled to the line. While it heats, \
the cups are set out on the counter and a spoon is placed beside each one. Tea leaves go into \
the pot, one spoonful for every cup, and the hot water is poured over them slowly. After four \
minutes the tea is ready to pour.

A bicycle chain needs a little oil every few weeks. First the chain is wiped with a dry cloth \
to remove dust. Then one drop of oil is placed on each link while the pedals turn backwards. \
Any extra oil is wiped away, because it collects dirt from the road.

The train to the coast leaves the main station at ten past nine. It stops at four towns on the \
way and arrives a little before noon. Tickets can be bought at the machines in the hall or from \
the office next to the platform. The carriages near the front are usually quieter.

To plant tomato seeds, fill a small tray with soil and press two seeds into each cell. Cover \
them lightly, water gently and keep the tray in a warm place with plenty of light. The first \
leaves appear after about a week. When the plants are as tall as a hand, they can be moved into \
larger pots.

A map shows north at the top. The scale in the corner tells how far one centimetre on the paper \
is on the ground. Rivers are drawn in blue, roads in red or yellow, and forests in green. \
Contour lines join points of the same height, so lines that lie close together mark a steep slope.
"""


def perplexity(model: Any, tokenizer: Any, text: str | None = None, max_tokens: int = 512) -> float:
    """exp(mean next-token negative log-likelihood) of ``text`` (default :data:`NEUTRAL_TEXT`).

    One forward pass over at most ``max_tokens`` tokens; any steering hooks that
    are active on ``model`` apply, which is the point.
    """
    import torch

    ids = tokenizer(text if text is not None else NEUTRAL_TEXT, add_special_tokens=False)["input_ids"][:max_tokens]
    if len(ids) < 2:
        raise ValueError("perplexity needs at least two tokens of text")
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    with torch.inference_mode():
        logits = model(input_ids=x, use_cache=False).logits[0, :-1].double()
    nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="mean")
    return float(torch.exp(nll))
