"""How a question is put to the model, and which tokens are its answer options.

Format (docs/engine.md): the tokenizer's chat template with the persona as the
system message (when given) and one user message (templates that reject a system
role get the persona as a preamble of the user message instead, see
:func:`persona_role`)::

    <question text>

    1. <option>
    2. <option>

    Answer with the number of one option only (1-4).

then the generation prompt. Markers are digits for K <= 9 when "1".."K" are
distinct single tokens, letters "A".. otherwise. The answer token is the marker in
the form the model would emit right after the prompt (with or without a leading
space, whichever tokenises as one token after the prompt's own last token).
``reverse=True`` lists the options last-to-first with markers re-numbered 1..K in
display order; ``order`` maps display positions back to canonical options.
"""

from __future__ import annotations

import string
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ModelError
from .methods.base import PromptSpec

DIGITS = tuple(str(i) for i in range(1, 10))
LETTERS = tuple(string.ascii_uppercase)
PLAIN_ANSWER_CUE = "Answer:"


@dataclass(frozen=True)
class OptionMarkers:
    style: str  # "digits" | "letters"
    labels: tuple[str, ...]  # what the prompt prints, display order
    token_ids: tuple[int, ...]  # the answer token of each label, display order
    leading_space: bool  # whether the answer token carries a leading space
    prompt_suffix: str = ""  # appended to the prompt when the space is a token of its own (" 1" = " ", "1")


@dataclass(frozen=True)
class RenderedPrompt:
    """One prompt ready to score.

    ``prefix_len`` tokens are shared by both option orders of the same
    (system, question) (system + question stem); ``persona_len`` tokens are
    shared by every question asked with the same system text. The engine
    computes those prefixes' key/value states once.
    """

    text: str
    input_ids: tuple[int, ...]
    option_token_ids: tuple[int, ...]  # display order
    order: tuple[int, ...]  # display position -> canonical option index
    markers: tuple[str, ...]
    prefix_len: int
    persona_len: int

    def to_canonical(self, values_display: np.ndarray) -> np.ndarray:
        """Reorder per-option values from display order into ``Question.options`` order."""
        out = np.empty(len(self.order), dtype=np.asarray(values_display).dtype)
        out[list(self.order)] = values_display
        return out


# --------------------------------------------------------------------- template
def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def user_message(question_text: str, options: Sequence[str], markers: Sequence[str], style: str) -> str:
    lines = [question_text.strip(), ""]
    lines += [f"{m}. {opt}" for m, opt in zip(markers, options)]
    what = "number" if style == "digits" else "letter"
    lines += ["", f"Answer with the {what} of one option only ({markers[0]}-{markers[-1]})."]
    return "\n".join(lines)


SYSTEM_ROLE = "system"  # the persona is the template's system message
USER_PREAMBLE = "user-preamble"  # the template rejects a system role: persona, blank line, question in the user turn
PLAIN_PREAMBLE = "plain-preamble"  # no chat template: persona, blank line, question in plain text
_PROBE = [{"role": "system", "content": "cvaudit probe"}, {"role": "user", "content": "cvaudit probe"}]


def _accepts_system_role(tokenizer: Any) -> bool:
    """Whether the chat template renders a system message (Gemma, early Mistral raise "System role not supported")."""
    from jinja2 import TemplateError

    try:
        tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True)
    except TemplateError:
        return False
    return True


def persona_role(tokenizer: Any) -> str:
    """Where this tokenizer's prompts put the persona; probed once per (tokenizer, template) and cached.

    Recorded in results.json "model" so a run says how its persona was sent.
    """
    if not has_chat_template(tokenizer):
        return PLAIN_PREAMBLE
    memo = _memo(tokenizer)  # the per-tokenizer memo the option tokens use too
    key = ("persona_role", str(tokenizer.chat_template))
    if key not in memo:
        memo[key] = SYSTEM_ROLE if _accepts_system_role(tokenizer) else USER_PREAMBLE
    return memo[key]


def _messages(tokenizer: Any, system: str | None, user: str) -> list[dict[str, str]]:
    if not system:
        return [{"role": "user", "content": user}]
    if persona_role(tokenizer) == USER_PREAMBLE:
        return [{"role": "user", "content": f"{system.strip()}\n\n{user}"}]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_text(tokenizer: Any, system: str | None, user: str) -> str:
    """Chat template with the generation prompt, or the plain-text fallback ending in "Answer:"."""
    if has_chat_template(tokenizer):
        messages = _messages(tokenizer, system, user)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = f"{system.strip()}\n\n" if system else ""
    return f"{head}{user}\n{PLAIN_ANSWER_CUE}"


def encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Tokenise rendered prompts in one call (fast tokenizers parallelise it).

    Chat-template text already carries its special tokens; the plain fallback gets
    the tokenizer's own (e.g. BOS).
    """
    if not texts:
        return []
    special = not has_chat_template(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers: skip transformers' per-text conversion
    if backend is not None and getattr(tokenizer, "is_fast", False):
        return [enc.ids for enc in backend.encode_batch(list(texts), add_special_tokens=special)]
    return [list(x) for x in tokenizer(list(texts), add_special_tokens=special)["input_ids"]]


# ----------------------------------------------------------------- option tokens
_MARKERS: weakref.WeakKeyDictionary | dict = weakref.WeakKeyDictionary()


def _memo(tokenizer: Any) -> dict:
    try:
        return _MARKERS.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable
        return {}


def _single_tokens(tokenizer: Any, prompt_ids: list[int], prompt: str, labels: Sequence[str], space: bool) -> list[int] | None:
    """The token each label adds after ``prompt``, or None when any label is not exactly one new token."""
    texts = [prompt + (" " if space else "") + lab for lab in labels]
    out = []
    for ids in encode(tokenizer, texts):
        if len(ids) != len(prompt_ids) + 1 or ids[: len(prompt_ids)] != prompt_ids:
            return None
        out.append(ids[-1])
    return out if len(set(out)) == len(out) else None


def option_markers(tokenizer: Any, k: int) -> OptionMarkers:
    """Resolve the answer tokens for ``k`` options on this tokenizer (cached per tokenizer)."""
    memo = _memo(tokenizer)
    if k in memo:
        return memo[k]
    if k < 2 or k > len(LETTERS):
        raise ModelError(f"questions need 2 to {len(LETTERS)} options, got {k}")
    probe = render_text(tokenizer, None, "Which option?")
    probe_ids = encode(tokenizer, [probe])[0]
    # the form the model emits next: no space after whitespace (chat templates end in "\n"); after
    # "Answer:" a " 1" token, or, where the space is a token of its own, "1" after a prompt ending in " "
    forms = [(False, "")] if probe[-1:].isspace() else [(True, ""), (False, " "), (False, "")]
    styles = (("digits", DIGITS), ("letters", LETTERS)) if k <= len(DIGITS) else (("letters", LETTERS),)
    for style, alphabet in styles:
        labels = alphabet[:k]
        for space, suffix in forms:
            base = probe + suffix
            base_ids = encode(tokenizer, [base])[0] if suffix else probe_ids
            ids = _single_tokens(tokenizer, base_ids, base, labels, space)
            if ids is not None:
                memo[k] = OptionMarkers(style, tuple(labels), tuple(ids), space, suffix)
                return memo[k]
    raise ModelError(f"tokenizer has no single-token option markers for {k} options")


# ---------------------------------------------------------------------- render
def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _order(k: int, reverse: bool) -> tuple[int, ...]:
    return tuple(range(k - 1, -1, -1)) if reverse else tuple(range(k))


USER_SLOT = "\x00cvaudit-user-message\x00"


class _Renderer:
    """``render_text`` for many prompts, applying the chat template once per system text, not per prompt.

    The template is rendered with a placeholder user message and split around
    it; a prompt is then head + user message + tail. Jinja rendering was ~70% of
    rendering and tokenising 19,890 prompts (2.75 s on 2 CPU cores, all
    Singapore groups x all questions x 2 orders): time the GPU would wait. It is
    trusted only where it is exact: each distinct system text and each distinct
    user message is checked once against the real template (a template that
    transforms or truncates the content fails the check), and a system text
    whose check fails is rendered prompt by prompt.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.templated = has_chat_template(tokenizer)
        self._split: dict[str | None, tuple[str, str] | None] = {}
        self._systems_checked: set[str | None] = set()
        self._users_checked: set[str] = set()

    def __call__(self, system: str | None, user: str) -> str:
        if not self.templated:
            return render_text(self.tokenizer, system, user)
        if system not in self._split:
            parts = render_text(self.tokenizer, system, USER_SLOT).split(USER_SLOT)
            self._split[system] = (parts[0], parts[1]) if len(parts) == 2 else None
        split = self._split[system]
        if split is None:
            return render_text(self.tokenizer, system, user)
        text = split[0] + user + split[1]
        if system in self._systems_checked and user in self._users_checked:
            return text
        real = render_text(self.tokenizer, system, user)
        if real != text:  # this template does not insert the content verbatim: render this system's prompts in full
            self._split[system] = None
            return real
        self._systems_checked.add(system)
        self._users_checked.add(user)
        return text


def _text(render: _Renderer, spec: PromptSpec, markers: OptionMarkers, reverse: bool) -> str:
    q = spec.question
    order = _order(q.k, reverse)
    user = user_message(q.text, [q.options[i] for i in order], markers.labels, markers.style)
    return render(spec.system, user) + markers.prompt_suffix


def render_prompts(tokenizer: Any, specs: Sequence[PromptSpec]) -> list[RenderedPrompt]:
    """Render and tokenise many prompts with one tokenizer call (the engine's path)."""
    markers = [option_markers(tokenizer, s.question.k) for s in specs]
    render = _Renderer(tokenizer)
    texts: dict[str, int] = {}
    rendered: dict[tuple[str | None, Any, bool], int] = {}  # both orders of a spec are asked for twice

    def slot(text: str) -> int:
        return texts.setdefault(text, len(texts))

    def text_slot(s: PromptSpec, m: OptionMarkers, reverse: bool) -> int:
        key = (s.system, s.question, reverse)
        if key not in rendered:
            rendered[key] = slot(_text(render, s, m, reverse))
        return rendered[key]

    own, other = [], []
    for s, m in zip(specs, markers):
        own.append(text_slot(s, m, s.reverse))
        other.append(text_slot(s, m, not s.reverse))
    # persona probes: the same system with two user messages that differ at their first character
    probes: dict[str | None, tuple[int, int]] = {}
    for s in specs:
        if s.system not in probes:
            probes[s.system] = (slot(render_text(tokenizer, s.system, "\x01")), slot(render_text(tokenizer, s.system, "0")))
    ids = encode(tokenizer, list(texts))
    text_of = list(texts)
    out = []
    for s, m, a, b in zip(specs, markers, own, other):
        mine = ids[a]
        n = len(mine)
        prefix = min(_lcp(mine, ids[b]), n - 1)
        pa, pb = probes[s.system]
        persona = min(_lcp(mine, ids[pa]), _lcp(mine, ids[pb]), prefix)
        out.append(
            RenderedPrompt(
                text=text_of[a],
                input_ids=tuple(mine),
                option_token_ids=m.token_ids,
                order=_order(s.question.k, s.reverse),
                markers=m.labels,
                prefix_len=prefix,
                persona_len=persona,
            )
        )
    return out


def render_prompt(tokenizer: Any, spec: PromptSpec) -> RenderedPrompt:
    """Render one prompt; see :func:`render_prompts`."""
    return render_prompts(tokenizer, [spec])[0]
