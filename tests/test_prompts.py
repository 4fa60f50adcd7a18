"""Prompt rendering and option-token resolution on SmolLM2's tokenizer (and a template-less one)."""

from __future__ import annotations

import pytest
from cvaudit.audit.errors import ModelError
from cvaudit.audit.methods.base import PromptSpec
from cvaudit.audit.prompts import option_markers, render_prompt, render_prompts
from cvaudit.audit.types import Question


def _q(k: int, qid: str = "Q1", text: str = "How important is family in your life?") -> Question:
    return Question(id=qid, text=text, options=tuple(f"Option {chr(97 + i)}" for i in range(k)),
                    codes=tuple((i + 1,) for i in range(k)), ordinal=True, category="Test")  # fmt: skip


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.mark.parametrize("k", range(2, 12))
def test_option_tokens(tok, k):
    m = option_markers(tok, k)
    expected = [str(i) for i in range(1, k + 1)] if k <= 9 else [chr(65 + i) for i in range(k)]
    assert list(m.labels) == expected
    # "10" is two tokens with this tokenizer, so 10 and 11 options must use letters
    assert len(tok.encode("10", add_special_tokens=False)) == 2
    r = render_prompt(tok, PromptSpec(_q(k)))
    assert list(r.markers) == expected
    for label, tid in zip(expected, r.option_token_ids):
        assert f"\n{label}. Option" in r.text
        # the model's next token after the prompt: prompt text + label tokenises to prompt ids + [tid]
        ids = tok(r.text + label, add_special_tokens=False)["input_ids"]
        assert ids == list(r.input_ids) + [tid]
    assert len(set(r.option_token_ids)) == k


def test_chat_template_and_persona(tok):
    r = render_prompt(tok, PromptSpec(_q(4), system="You are a 30 year old woman living in Singapore."))
    assert r.text.startswith("<|im_start|>system\nYou are a 30 year old woman living in Singapore.<|im_end|>")
    assert "Answer with the number of one option only (1-4)." in r.text
    assert r.text.endswith("<|im_start|>assistant\n")
    assert list(r.input_ids) == tok(r.text, add_special_tokens=False)["input_ids"]


def test_reverse_order_mapping(tok):
    q = _q(5)
    fwd, rev = render_prompts(tok, [PromptSpec(q), PromptSpec(q, reverse=True)])
    assert fwd.order == (0, 1, 2, 3, 4) and rev.order == (4, 3, 2, 1, 0)
    # the line "m. text" at display position i shows the canonical option order[i]
    for r in (fwd, rev):
        for i, m in enumerate(r.markers):
            assert f"\n{m}. {q.options[r.order[i]]}\n" in r.text
    import numpy as np

    assert rev.to_canonical(np.array([10.0, 11, 12, 13, 14])).tolist() == [14, 13, 12, 11, 10]


def test_shared_prefix_lengths(tok):
    sys_text = "You are a retired Chinese man living in Singapore."
    a, b = _q(4, "Q1"), _q(4, "Q2", "Is work important to you?")
    r1, r1r, r2 = render_prompts(tok, [PromptSpec(a, sys_text), PromptSpec(a, sys_text, True), PromptSpec(b, sys_text)])
    # both orders share exactly prefix_len tokens (independent tokenisation of both texts)
    x = tok(r1.text, add_special_tokens=False)["input_ids"]
    y = tok(r1r.text, add_special_tokens=False)["input_ids"]
    assert r1.prefix_len == r1r.prefix_len
    assert x[: r1.prefix_len] == y[: r1.prefix_len] and x[r1.prefix_len] != y[r1.prefix_len]
    assert "How important is family" in tok.decode(x[: r1.prefix_len])
    # the persona prefix is common to both questions and ends before the question text
    assert r1.persona_len == r2.persona_len
    assert r1.input_ids[: r1.persona_len] == r2.input_ids[: r2.persona_len]
    head = tok.decode(x[: r1.persona_len])
    assert sys_text in head and head.endswith("user\n")
    assert 0 < r1.persona_len < r1.prefix_len < len(r1.input_ids)


def test_plain_fallback_without_template(tok, smollm2_dir):
    from transformers import AutoTokenizer

    plain = AutoTokenizer.from_pretrained(smollm2_dir)
    plain.chat_template = None
    r = render_prompt(plain, PromptSpec(_q(3), system="You are a farmer."))
    assert r.text.startswith("You are a farmer.\n\nHow important")
    # SmolLM2 writes " 1" as " " + "1": the prompt ends in "Answer: " and the answer token is "1"
    assert plain.encode(" 1", add_special_tokens=False) == [216, 33]
    assert r.text.endswith("\nAnswer: ")
    assert list(r.option_token_ids) == [plain.convert_tokens_to_ids(str(i)) for i in (1, 2, 3)]
    for label, tid in zip("123", r.option_token_ids):
        assert plain(r.text + label)["input_ids"] == list(r.input_ids) + [tid]


def test_no_single_token_markers():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "Answer": 2}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]")
    with pytest.raises(ModelError, match="tokenizer has no single-token option markers for 4 options"):
        option_markers(tok, 4)


def _one_by_one(tok, specs):
    """Reference: every prompt through the chat template and the tokenizer on its own."""
    from cvaudit.audit.prompts import _order, render_text, user_message

    out = []
    for s in specs:
        m = option_markers(tok, s.question.k)
        order = _order(s.question.k, s.reverse)
        user = user_message(s.question.text, [s.question.options[i] for i in order], m.labels, m.style)
        text = render_text(tok, s.system, user) + m.prompt_suffix
        out.append((text, tuple(tok(text, add_special_tokens=False)["input_ids"])))
    return out


def _audit_specs():
    from cvaudit.audit.questions import select_questions

    systems = [None, "You are a man living in Singapore.", "You are a woman aged 30-49 living in Singapore."]
    return [PromptSpec(q, s, r) for s in systems for q in select_questions("core")[:12] for r in (False, True)]


def test_template_applied_once_per_system_and_message(tok, monkeypatch):
    """Many prompts: the same texts and tokens as one by one, with far fewer chat-template renders."""
    specs = _audit_specs()
    ref = _one_by_one(tok, specs)
    calls = []
    original = tok.apply_chat_template
    monkeypatch.setattr(tok, "apply_chat_template", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    got = render_prompts(tok, specs)
    assert [(r.text, r.input_ids) for r in got] == ref
    distinct_users = 12 * 2  # questions x orders
    assert len(calls) <= 3 * 3 + distinct_users + 3 < len(specs)  # per system: slot + 2 probes (+1 check); per message: 1


@pytest.mark.parametrize("content", ["{{ m['content'] | upper }}", "{{ m['content'][:60] }}", "{{ m['content'] ~ m['content'] }}"])
def test_templates_that_change_the_content_are_rendered_in_full(tok, content, monkeypatch):
    """A template that transforms, truncates or repeats the message cannot be split: results equal one by one."""
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n" + content + "<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip
    monkeypatch.setattr(tok, "chat_template", template)
    specs = _audit_specs()[:30]
    got = render_prompts(tok, specs)
    assert [(r.text, r.input_ids) for r in got] == _one_by_one(tok, specs)


GEMMA2_STYLE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def _fresh_tok(smollm2_dir, template=None):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(smollm2_dir)
    if template is not None:
        t.chat_template = template
    return t


def test_template_without_system_role_gets_persona_preamble(smollm2_dir):
    """Gemma-2 style templates raise on a system message: the persona opens the user turn instead."""
    from cvaudit.audit.prompts import persona_role

    gemma = _fresh_tok(smollm2_dir, GEMMA2_STYLE)
    persona = "You are a 30 year old woman living in Singapore."
    specs = [PromptSpec(q, persona, r) for q in (_q(4), _q(3, "Q2", "Is work important?")) for r in (False, True)]
    rendered = render_prompts(gemma, specs)  # raised TemplateError before the fix
    assert persona_role(gemma) == "user-preamble"
    for s, r in zip(specs, rendered):
        assert r.text.count(persona) == 1 and "system" not in r.text
        user_turn = r.text.split("<start_of_turn>user\n", 1)[1]
        assert user_turn.startswith(f"{persona}\n\n{s.question.text}\n\n")
        assert list(r.input_ids) == gemma(r.text, add_special_tokens=False)["input_ids"]
    # the shared persona prefix is a true token prefix of every prompt of the group and holds the persona
    head = rendered[0].input_ids[: rendered[0].persona_len]
    assert all(r.input_ids[: r.persona_len] == head for r in rendered)
    assert persona in gemma.decode(head) and 0 < rendered[0].persona_len < rendered[0].prefix_len
    # without a persona there is nothing to move
    assert render_prompt(gemma, PromptSpec(_q(4))).text.split("<start_of_turn>user\n", 1)[1].startswith("How important")


def test_template_with_system_role_keeps_it(smollm2_dir):
    from cvaudit.audit.prompts import persona_role

    tok = _fresh_tok(smollm2_dir)
    r = render_prompt(tok, PromptSpec(_q(4), system="You are a farmer."))
    assert persona_role(tok) == "system"
    assert r.text.startswith("<|im_start|>system\nYou are a farmer.<|im_end|>\n<|im_start|>user\nHow important")
    tok.chat_template = GEMMA2_STYLE  # the answer is cached per template, not per tokenizer only
    assert persona_role(tok) == "user-preamble"
    tok.chat_template = None
    assert persona_role(tok) == "plain-preamble"


def test_persona_role_probed_once(smollm2_dir, monkeypatch):
    from cvaudit.audit.prompts import persona_role

    gemma = _fresh_tok(smollm2_dir, GEMMA2_STYLE)
    calls = []
    original = gemma.apply_chat_template
    monkeypatch.setattr(gemma, "apply_chat_template", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    assert [persona_role(gemma) for _ in range(3)] == ["user-preamble"] * 3
    assert len(calls) == 1
