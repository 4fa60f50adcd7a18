"""Activation steering (contrastive activation addition, seed 002): hooks, fitting, files.

A steering vector at decoder layer ``L`` is a difference of mean residual-stream
activations (the layer's output) at the answer position, i.e. the last prompt
token: persona prompts of a subgroup minus neutral prompts (kind ``subgroup``),
or the positive pole's prompts minus the negative pole's (kind ``axes``, the two
Inglehart-Welzel axes). Steering adds ``alpha * vector`` to that layer's output
at every position. Vectors are fitted only on a seeded calibration split of the
question bank that the audit then never evaluates, so the audit does not leak.

Files: ``VECTORS.safetensors`` (one tensor per name and layer) plus
``VECTORS.json`` beside it (model fingerprint, kind, layers, split, norms, the
sha256 of the tensor file); loading checks both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ModelError
from .io import atomic_write_bytes, atomic_write_json, sha256_text

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .types import Group, Question

FORMAT = "cvaudit-steering/1"
KINDS = ("subgroup", "axes")


# --------------------------------------------------------------------------- axes
@dataclass(frozen=True)
class AxisItem:
    """A WVS item that defines an axis, and which answers lean to the axis's positive pole.

    Ordinal items: ``sign`` is ``+1`` when a higher raw WVS answer code leans to the
    positive pole (secular-rational, self-expression) and ``-1`` when it leans to
    the negative pole. Nominal items (the materialism pair) name the raw codes of
    the positive pole's answers in ``positive_codes`` instead.
    """

    id: str
    sign: int = 1
    positive_codes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Axis:
    """One Inglehart-Welzel axis: its defining WVS items and the pole personas used to fit it."""

    name: str
    negative_pole: str
    positive_pole: str
    items: tuple[AxisItem, ...]
    negative_persona: str
    positive_persona: str

    @property
    def item_ids(self) -> list[str]:
        return [item.id for item in self.items]


AXES: dict[str, Axis] = {
    "traditional_secular": Axis(
        name="traditional_secular",
        negative_pole="traditional",
        positive_pole="secular-rational",
        # Q164 God important (10 = very); Q17 obedience, Q15 religious faith (1 = mentioned,
        # traditional); Q8 independence, Q14 determination (1 = mentioned, secular);
        # Q184 abortion (10 = always justifiable); Q254 national pride (1 = very proud);
        # Q45 more respect for authority (1 = good)
        items=(
            AxisItem("Q164", -1), AxisItem("Q17", 1), AxisItem("Q8", -1), AxisItem("Q14", -1),
            AxisItem("Q15", 1), AxisItem("Q184", 1), AxisItem("Q254", 1), AxisItem("Q45", 1),
        ),
        negative_persona=(
            "You hold traditional values. God is very important in your life. Children should above all "
            "learn obedience and religious faith at home. Greater respect for authority would be a good "
            "thing, you are very proud of your nationality, and you believe abortion is never justifiable."
        ),
        positive_persona=(
            "You hold secular-rational values. God is not important in your life. Children should above all "
            "learn independence and determination at home, not obedience or religious faith. Greater respect "
            "for authority would be a bad thing, national pride means little to you, and you believe "
            "abortion can be justifiable."
        ),
    ),
    "survival_self_expression": Axis(
        name="survival_self_expression",
        negative_pole="survival",
        positive_pole="self-expression",
        # Q182 homosexuality (10 = always justifiable); Q209 signed a petition (1 = have done);
        # Q57 most people can be trusted (1); Q46 happiness (1 = very happy);
        # Q154/Q155 aims of the country, first/second choice: 2 "more say", 4 "free speech"
        # are the post-materialist answers.
        items=(
            AxisItem("Q182", 1), AxisItem("Q209", -1), AxisItem("Q57", -1), AxisItem("Q46", -1),
            AxisItem("Q154", positive_codes=(2, 4)), AxisItem("Q155", positive_codes=(2, 4)),
        ),
        negative_persona=(
            "Your priority is economic and physical security. You feel you need to be very careful in "
            "dealing with people, you are not very happy with your life, you would never sign a petition, "
            "and you believe homosexuality is never justifiable. Maintaining order and fighting rising "
            "prices matter more to you than giving people more say or protecting freedom of speech."
        ),
        positive_persona=(
            "Your priority is self-expression and quality of life. You believe most people can be trusted, "
            "you are very happy with your life, you have signed petitions, and you believe homosexuality "
            "is justifiable. Giving people more say and protecting freedom of speech matter more to you "
            "than maintaining order or fighting rising prices."
        ),
    ),
}


def axis_item_score(question: Question, dist: Sequence[float], item: AxisItem) -> float:
    """Direction-corrected expected answer in [0, 1]: 1 = fully at the axis's positive pole.

    Works in raw WVS code space (mean code of each option), so it does not depend
    on how the bank orders the options. Nominal items score the probability of
    the positive pole's answers.
    """
    total = float(sum(dist))
    if item.positive_codes is not None:
        pos = set(item.positive_codes)
        return sum(float(p) for p, c in zip(dist, question.codes) if set(c) <= pos) / total
    values = [sum(c) / len(c) for c in question.codes]
    lo, hi = min(values), max(values)
    if hi == lo:
        raise ConfigError(f"axis item {question.id} has a single answer code; remove it from the axis")
    expected = sum(float(p) * v for p, v in zip(dist, values)) / total
    score = (expected - lo) / (hi - lo)
    return score if item.sign > 0 else 1.0 - score


# -------------------------------------------------------------------------- split
def _split_ranked(ids: Sequence[str], seed: int) -> list[str]:
    """``ids`` in seeded-rank order: by ``sha256("cvaudit-split:{seed}:{id}")``."""
    return sorted(ids, key=lambda q: sha256_text(f"cvaudit-split:{seed}:{q}"))


def calibration_split(
    question_ids: Sequence[str], fraction: float, seed: int = 0, holdout: Collection[str] = ()
) -> tuple[list[str], list[str]]:
    """Deterministic seeded split into (calibration, evaluable) ids, both in bank order.

    Each id is ranked by ``sha256("cvaudit-split:{seed}:{id}")``, so an id's side
    does not depend on the bank's order. ``holdout`` ids (e.g. the audit's
    question set) never go to calibration; ``fraction`` applies to the rest.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"calibration fraction must lie strictly between 0 and 1, got {fraction}")
    held = set(holdout)
    eligible = [q for q in question_ids if q not in held]
    n_cal = min(max(1, round(fraction * len(eligible))), len(eligible))
    ranked = _split_ranked(eligible, seed)
    chosen = set(ranked[:n_cal])
    calibration = [q for q in question_ids if q in chosen]
    evaluable = [q for q in question_ids if q not in chosen]
    if not calibration:
        raise ConfigError("no question is left for the calibration split; lower the holdout or use a larger bank")
    return calibration, evaluable


# ------------------------------------------------------------------------- layers
_LAYER_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen, Gemma ...
    "base_model.model.model.layers",  # PEFT-wrapped causal LM
    "model.model.layers",
    "transformer.h",  # GPT-2, Falcon
    "gpt_neox.layers",
    "model.decoder.layers",  # OPT
    "layers",
)


def decoder_layers(model: Any) -> Any:
    """The model's list of decoder layers (their outputs are the residual stream)."""
    for path in _LAYER_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
            return obj
    raise ModelError(f"cannot find the decoder layers of {type(model).__name__}; steering supports Llama-style models")


def default_layer(model: Any) -> int:
    """A middle layer: CAA works best around the middle of the stack."""
    return len(decoder_layers(model)) // 2


def check_layers(model: Any, layers: Sequence[int]) -> list[int]:
    n = len(decoder_layers(model))
    out = []
    for layer in layers:
        if not -n <= int(layer) < n:
            raise ConfigError(f"layer {layer} is out of range: the model has {n} decoder layers (0..{n - 1})")
        out.append(int(layer) % n)
    return sorted(set(out))


def check_width(model: Any, vec: Any, what: str) -> None:
    """Refuse a vector whose length is not the model's hidden size (vectors of another model)."""
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    n = _as_tensor(vec).numel()
    if hidden is not None and n != hidden:
        raise ConfigError(f"{what} has {n} values but the model's hidden size is {hidden}; fit the vectors on this model")


def parse_int_list(text: str | int | Sequence[int] | None) -> list[int] | None:
    """``"8,12"`` -> [8, 12]; None or "" -> None."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return [text]
    if not isinstance(text, str):
        return [int(x) for x in text]
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated layer numbers such as 8,12, got {text!r}") from None


# -------------------------------------------------------------------------- hooks
def add_to_output(output: Any, delta: torch.Tensor) -> Any:
    """Add ``delta`` to a decoder layer's hidden states, whether it returns a tensor or a tuple."""
    if isinstance(output, (tuple, list)):
        hidden = output[0]
        steered = hidden + delta.to(device=hidden.device, dtype=hidden.dtype)
        return type(output)([steered, *output[1:]]) if isinstance(output, list) else (steered, *output[1:])
    return output + delta.to(device=output.device, dtype=output.dtype)


def _as_tensor(vec: Any) -> torch.Tensor:
    import torch

    return vec.detach().clone() if isinstance(vec, torch.Tensor) else torch.as_tensor(vec)


@contextmanager
def steering_hooks(model: Any, additions: Mapping[int, Any], alpha: float = 1.0) -> Iterator[None]:
    """Add ``alpha * additions[L]`` to the output of decoder layer ``L`` at every position.

    Padding positions are steered too: they are masked out of attention, so no
    real token sees them and results do not depend on padding or batch size.
    The hooks are removed when the block exits, also on exceptions, and the
    model's outputs return exactly to the unsteered values.
    """
    layers = decoder_layers(model)
    handles = []
    try:
        for layer, vec in additions.items():
            index = check_layers(model, [layer])[0]
            check_width(model, vec, f"steering vector for layer {layer}")
            delta = _as_tensor(vec).flatten() * float(alpha)
            cache: dict[tuple[Any, Any], torch.Tensor] = {}

            def hook(module: Any, args: Any, output: Any, _delta: torch.Tensor = delta, _cache: dict = cache) -> Any:
                hs = output[0] if isinstance(output, (tuple, list)) else output
                key = (hs.device, hs.dtype)
                if key not in _cache:
                    _cache[key] = _delta.to(device=hs.device, dtype=hs.dtype)
                return add_to_output(output, _cache[key])

            handles.append(layers[index].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


class _StopForward(Exception):
    """Raised by the capture hook after the deepest needed layer: the rest of the pass is wasted work."""


# ---------------------------------------------------------------------- prompts
def render_ids(tokenizer: Any, question: Question, system: str | None) -> list[int]:
    """Token ids of the prompt the engine scores for (system, question), canonical option order.

    Uses the engine's ``render_prompt`` so vectors are fitted on exactly the
    prompts the audit scores; falls back to a plain chat-template rendering
    while the engine is not installed.
    """
    from .methods.base import PromptSpec

    spec = PromptSpec(question=question, system=system)
    try:
        from .prompts import render_prompt
    except ImportError:
        render_prompt = None
    if render_prompt is not None:
        rendered = render_prompt(tokenizer, spec)
        for attr in ("input_ids", "ids", "token_ids"):
            ids = getattr(rendered, attr, None)
            if ids is not None:
                return [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        text = getattr(rendered, "text", None)
        if text is not None:
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        raise ModelError("render_prompt returned neither token ids nor text")
    return _fallback_ids(tokenizer, question, system)


def _fallback_ids(tokenizer: Any, question: Question, system: str | None) -> list[int]:
    lines = [question.text, ""]
    lines += [f"{i + 1}. {opt}" for i, opt in enumerate(question.options)]
    lines += ["", "Answer with the number of one option only."]
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "\n".join(lines)}]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = ((system + "\n\n") if system else "") + "\n".join(lines) + "\nAnswer:"
    return list(tokenizer(text + "Answer: ", add_special_tokens=False)["input_ids"])


# ------------------------------------------------------------------- activations
def collect_activations(
    model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], layers: Sequence[int], batch_size: int = 8
) -> dict[int, torch.Tensor]:
    """Residual stream (output of each decoder layer in ``layers``) at each prompt's last token.

    Prompts are left-padded with explicit position ids, so every prompt reads the
    same activations whatever it is batched with. Returns float64 ``[n, hidden]``
    per layer. The forward pass stops after the deepest requested layer.
    """
    import torch

    layers = check_layers(model, layers)
    blocks = decoder_layers(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    current: dict[int, torch.Tensor] = {}
    deepest = max(layers)

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            hs = output[0] if isinstance(output, (tuple, list)) else output
            current[layer] = hs[:, -1, :].detach().to("cpu", torch.float64)
            if layer == deepest:
                raise _StopForward

        return hook

    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in layers]
    try:
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                chunk = [list(p) for p in prompts[start : start + batch_size]]
                width = max(len(p) for p in chunk)
                ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                current.clear()
                try:
                    model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
                except _StopForward:
                    pass
                for layer in layers:
                    out[layer].append(current[layer])
    finally:
        for handle in handles:
            handle.remove()
    return {layer: torch.cat(rows) for layer, rows in out.items()}


# ------------------------------------------------------------------------ vectors
@dataclass(frozen=True, eq=False)
class SteeringVectors:
    """Named steering vectors per layer plus the description written beside them."""

    kind: str
    layers: tuple[int, ...]
    vectors: Mapping[str, Mapping[int, Any]]  # name -> layer -> float32 tensor [hidden]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return list(self.vectors)

    def norms(self) -> dict[str, dict[str, float]]:
        return {n: {str(layer): float(v.double().norm()) for layer, v in per.items()} for n, per in self.vectors.items()}

    def additions(self, name: str, layers: Sequence[int] | None = None) -> dict[int, Any]:
        """The ``{layer: vector}`` map to pass to :func:`steering_hooks` for one name."""
        if name not in self.vectors:
            raise ConfigError(f"no steering vector named {name!r} in the file; it has: {', '.join(self.vectors)}")
        chosen = list(self.layers) if layers is None else list(layers)
        missing = [layer for layer in chosen if layer not in self.vectors[name]]
        if missing:
            raise ConfigError(
                f"the vectors were fitted at layers {list(self.layers)}, not {missing}; pick one of those or re-fit with --layers"
            )
        return {layer: self.vectors[name][layer] for layer in chosen}

    @property
    def calibration(self) -> list[str]:
        return list(self.meta.get("split", {}).get("calibration", []))


def _mean_difference(pos: Mapping[int, torch.Tensor], neg: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    import torch

    return {layer: (pos[layer].mean(0) - neg[layer].mean(0)).to(torch.float32) for layer in pos}


def fit_subgroup_vectors(
    model: Any,
    tokenizer: Any,
    questions: Sequence[Question],
    groups: Sequence[Group],
    persona: Callable[[Group], str | None],
    layers: Sequence[int],
    batch_size: int = 8,
) -> dict[str, dict[int, torch.Tensor]]:
    """Per group: mean activation over its persona prompts minus over neutral prompts (same questions)."""
    neutral = collect_activations(model, tokenizer, [render_ids(tokenizer, q, None) for q in questions], layers, batch_size)
    out = {}
    for group in groups:
        text = persona(group)
        if not text:
            raise ConfigError(f"group {group.id} has no persona text, so it has no steering direction; drop it with --attributes")
        acts = collect_activations(model, tokenizer, [render_ids(tokenizer, q, text) for q in questions], layers, batch_size)
        out[group.id] = _mean_difference(acts, neutral)
    return out


def fit_axis_vectors(
    model: Any, tokenizer: Any, questions: Sequence[Question], layers: Sequence[int], batch_size: int = 8,
    axes: Sequence[str] | None = None,
) -> dict[str, dict[int, torch.Tensor]]:
    """Per axis: mean activation over positive-pole persona prompts minus negative-pole ones."""
    out = {}
    for name in axes or list(AXES):
        axis = AXES[name]
        pos = collect_activations(model, tokenizer, [render_ids(tokenizer, q, axis.positive_persona) for q in questions], layers, batch_size)
        neg = collect_activations(model, tokenizer, [render_ids(tokenizer, q, axis.negative_persona) for q in questions], layers, batch_size)
        out[name] = _mean_difference(pos, neg)
    return out


# --------------------------------------------------------------------------- files
def description_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _tensor_key(index: int, layer: int) -> str:
    return f"v{index}.layer{layer}"


def save_vectors(sv: SteeringVectors, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (safetensors) then its JSON description; the JSON holds the tensor file's sha256."""
    from safetensors.torch import save

    from cvaudit import __version__

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"steering vectors are written as .safetensors, got {path.name!r}; use e.g. vectors.safetensors")
    tensors = {}
    for i, name in enumerate(sv.vectors):
        for layer in sv.layers:
            tensors[_tensor_key(i, layer)] = _as_tensor(sv.vectors[name][layer]).float().contiguous()
    blob = save(tensors, metadata={"format": FORMAT})
    meta = dict(sv.meta)
    meta.update(
        format=FORMAT,
        kind=sv.kind,
        layers=list(sv.layers),
        names=list(sv.vectors),
        norms=sv.norms(),
        tool={"name": "cvaudit", "version": __version__},
        vectors_sha256=hashlib.sha256(blob).hexdigest(),
    )
    atomic_write_bytes(path, blob)
    desc = atomic_write_json(description_path(path), meta)
    return path, desc


def load_vectors(path: str | Path, fingerprint: str | None = None, force: bool = False) -> SteeringVectors:
    """Read vectors and their description; refuse another model's vectors unless ``force``."""
    from safetensors.torch import load

    path = Path(path)
    desc = description_path(path)
    if not path.is_file():
        raise ConfigError(f"steering vectors {path} not found; fit them with: cvaudit steer fit --out {path}")
    if not desc.is_file():
        raise ConfigError(f"{desc.name} (the description of {path.name}) is missing; re-run cvaudit steer fit")
    blob = path.read_bytes()
    try:
        meta = json.loads(desc.read_text(encoding="utf-8"))
    except ValueError as exc:  # UnicodeDecodeError too
        raise ConfigError(f"{desc} is not valid JSON ({exc}); re-run cvaudit steer fit") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{desc} is not a cvaudit steering description (a JSON object); re-run cvaudit steer fit")
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{desc} is not a cvaudit steering description (format {meta.get('format')!r})")
    if meta.get("vectors_sha256") != hashlib.sha256(blob).hexdigest():
        raise ConfigError(f"{path.name} does not match its description {desc.name} (sha256 differs); re-run cvaudit steer fit")
    want = meta.get("model", {}).get("fingerprint")
    if fingerprint is not None and want != fingerprint and not force:
        raise ConfigError(
            f"{path.name} was fitted on model fingerprint {want}, not this model's {fingerprint}; "
            "re-fit on this model or pass --force (method param force=true)"
        )
    tensors = load(blob)
    try:
        layers = tuple(int(x) for x in meta["layers"])
        names = [str(n) for n in meta["names"]]
        kind = meta["kind"]
        vectors = {name: {layer: tensors[_tensor_key(i, layer)] for layer in layers} for i, name in enumerate(names)}
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{desc.name} does not describe {path.name} (bad or missing {exc}); "
                          "re-run cvaudit steer fit") from None  # fmt: skip
    if kind not in KINDS:
        raise ConfigError(f"{desc.name} names an unknown kind {kind!r}; re-run cvaudit steer fit")
    if kind == "axes" and not set(names) <= set(AXES):
        raise ConfigError(f"{desc.name} says kind axes but names {sorted(set(names) - set(AXES))[0]!r}, not a value "
                          f"axis ({', '.join(AXES)}); re-run cvaudit steer fit")  # fmt: skip
    extra = sorted(set(tensors) - {_tensor_key(i, layer) for i in range(len(names)) for layer in layers})
    if extra:
        raise ConfigError(f"{path.name} holds tensors its description {desc.name} does not name ({extra[0]}); "
                          "re-run cvaudit steer fit")  # fmt: skip
    return SteeringVectors(kind=kind, layers=layers, vectors=vectors, meta=meta)


# ---------------------------------------------------------------------- one call
def vectors_digest(vectors: Mapping[str, Mapping[int, Any]]) -> str:
    """sha256 of the vectors' safetensors bytes: the identity used in cache tags."""
    from safetensors.torch import save

    tensors = {
        _tensor_key(i, layer): _as_tensor(per[layer]).float().contiguous()
        for i, per in enumerate(vectors.values())
        for layer in sorted(per)
    }
    names = json.dumps(list(vectors))
    return hashlib.sha256(save(tensors, metadata={"names": names})).hexdigest()


def fit_steering(
    model: Any,
    tokenizer: Any,
    *,
    kind: str,
    bank: Mapping[str, Question],
    layers: Sequence[int] | None = None,
    groups: Sequence[Group] = (),
    persona: Callable[[Group], str | None] | None = None,
    fraction: float = 0.3,
    seed: int = 0,
    holdout: Collection[str] = (),
    max_calibration: int | None = None,
    batch_size: int = 8,
    model_meta: Mapping[str, Any] | None = None,
    country: Any = None,
) -> SteeringVectors:
    """Split the bank, fit ``kind`` vectors on the calibration questions, describe everything.

    ``max_calibration`` caps how many calibration questions are used for fitting
    (the first ones in seeded-rank order) to bound the cost; the whole
    calibration split stays excluded from the audit either way.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown steering kind {kind!r}; use one of: {', '.join(KINDS)}")
    layers = check_layers(model, layers if layers else [default_layer(model)])
    ids = list(bank)
    calibration, _ = calibration_split(ids, fraction, seed, holdout)
    ranked = _split_ranked(calibration, seed)
    chosen = set(ranked[:max_calibration] if max_calibration else ranked)
    used = [q for q in calibration if q in chosen]
    questions = [bank[q] for q in used]
    meta: dict[str, Any] = {
        "model": dict(model_meta or {}),
        "split": {
            "rule": "rank ids by sha256('cvaudit-split:{seed}:{id}'); the first round(fraction * eligible) are calibration",
            "seed": seed,
            "fraction": fraction,
            "bank_size": len(ids),
            "holdout": sorted(set(holdout) & set(ids)),
            "calibration": calibration,
            "fitted_on": used,
        },
        "answer_position": "last prompt token (canonical option order)",
        "reads": "decoder layer output (residual stream)",
    }
    if country is not None:
        meta["country"] = getattr(country, "alpha2", str(country))
    if kind == "subgroup":
        if not groups or persona is None:
            raise ConfigError("subgroup steering needs groups and their persona texts; pass --attributes")
        vectors = fit_subgroup_vectors(model, tokenizer, questions, groups, persona, layers, batch_size)
        meta["groups"] = [
            {"id": g.id, "attribute": g.attribute, "group": g.label, "n": g.n, "persona": persona(g)} for g in groups
        ]
        meta["construction"] = "mean(persona prompt) - mean(neutral prompt, no system text) over the fitted questions"
        meta["n_prompts"] = len(questions) * (len(groups) + 1)
    else:
        vectors = fit_axis_vectors(model, tokenizer, questions, layers, batch_size)
        meta["axes"] = {
            name: {
                "negative_pole": a.negative_pole,
                "positive_pole": a.positive_pole,
                "items": [item.id for item in a.items],
                "negative_persona": a.negative_persona,
                "positive_persona": a.positive_persona,
            }
            for name, a in AXES.items()
        }
        meta["construction"] = "mean(positive-pole persona prompt) - mean(negative-pole persona prompt) over the fitted questions"
        meta["n_prompts"] = len(questions) * 2 * len(AXES)
    return SteeringVectors(kind=kind, layers=tuple(layers), vectors=vectors, meta=meta)
