"""Steering hooks: exact restoration, exception safety, tensor and tuple layer outputs, padding independence."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cvaudit.audit.steering import add_to_output, collect_activations, decoder_layers, steering_hooks  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    return model, tok


def _ids(tok, text):
    return tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _vec(model, seed=1, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(model.config.hidden_size, generator=g) * scale


def test_logits_restored_exactly_after_hooks(tiny):
    model, tok = tiny
    ids = _ids(tok, "How important is family in your life?")
    before = _logits(model, ids)
    with steering_hooks(model, {0: _vec(model)}, alpha=2.0):
        steered = _logits(model, ids)
    after = _logits(model, ids)
    assert not torch.allclose(steered, before, atol=1e-3)  # steering did change the model
    assert torch.equal(after, before)
    assert all(len(layer._forward_hooks) == 0 for layer in decoder_layers(model))


def test_hooks_removed_on_exception(tiny):
    model, tok = tiny
    ids = _ids(tok, "Is it justifiable to cheat on taxes?")
    before = _logits(model, ids)
    with pytest.raises(RuntimeError, match="boom"):
        with steering_hooks(model, {1: _vec(model)}, alpha=4.0):
            _logits(model, ids)
            raise RuntimeError("boom")
    assert all(len(layer._forward_hooks) == 0 for layer in decoder_layers(model))
    assert torch.equal(_logits(model, ids), before)


def test_alpha_zero_equals_unsteered(tiny):
    model, tok = tiny
    ids = _ids(tok, "Generally speaking, can most people be trusted?")
    before = _logits(model, ids)
    with steering_hooks(model, {0: _vec(model), 1: _vec(model, seed=2)}, alpha=0.0):
        zero = _logits(model, ids)
    assert torch.allclose(zero, before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("layer", [0, 1])
def test_hook_matches_adding_to_the_next_stage_input(tiny, layer):
    """Independent route to the same maths: add the vector to the input of the stage after layer L."""
    model, tok = tiny
    ids = _ids(tok, "Would greater respect for authority be good or bad?")
    v = _vec(model, seed=3)
    with steering_hooks(model, {layer: v}, alpha=1.5):
        hooked = _logits(model, ids)
    nxt = model.model.layers[layer + 1] if layer + 1 < len(model.model.layers) else model.model.norm

    def pre(module, args, kwargs):
        if args:
            return (args[0] + 1.5 * v, *args[1:]), kwargs
        key = "hidden_states"
        kwargs = dict(kwargs)
        kwargs[key] = kwargs[key] + 1.5 * v
        return args, kwargs

    handle = nxt.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        manual = _logits(model, ids)
    finally:
        handle.remove()
    assert torch.allclose(hooked, manual, atol=1e-5, rtol=0)


class _Layer(torch.nn.Module):
    def __init__(self, as_tuple: bool):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.as_tuple = as_tuple

    def forward(self, h):
        out = torch.tanh(self.lin(h))
        return (out, "attn-weights") if self.as_tuple else out


class _Stack(torch.nn.Module):
    """Minimal decoder stack: older transformers layers return tuples, recent ones tensors."""

    def __init__(self, as_tuple: bool):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList([_Layer(as_tuple), _Layer(as_tuple)])

    def forward(self, h):
        for layer in self.layers:
            out = layer(h)
            h = out[0] if isinstance(out, tuple) else out
        return h


@pytest.mark.parametrize("as_tuple", [False, True])
def test_tuple_and_tensor_outputs(as_tuple):
    stack = _Stack(as_tuple)
    x = torch.randn(2, 3, 4)
    v = torch.tensor([1.0, -2.0, 0.5, 0.0])
    with torch.no_grad():
        plain = stack(x)
        with steering_hooks(stack, {0: v}, alpha=2.0):
            steered = stack(x)
        # hand-computed: layer 1 applied to (layer 0 output + 2 v)
        expected = torch.tanh(stack.layers[1].lin(torch.tanh(stack.layers[0].lin(x)) + 2.0 * v))
        assert torch.allclose(steered, expected, atol=1e-6)
        assert torch.equal(stack(x), plain)


def test_add_to_output_keeps_the_tuple_tail():
    h = torch.zeros(1, 2, 3)
    out = add_to_output((h, None, "x"), torch.ones(3))
    assert isinstance(out, tuple) and out[1:] == (None, "x") and torch.equal(out[0], torch.ones(1, 2, 3))
    assert torch.equal(add_to_output(h, torch.ones(3)), torch.ones(1, 2, 3))


def _last_logits_batched(model, tok, texts):
    rows = [_ids(tok, t)[0].tolist() for t in texts]
    width = max(map(len, rows))
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1, :]


def test_steered_results_independent_of_padding_and_batch(tiny):
    model, tok = tiny
    texts = ["Trust?", "How proud are you of your nationality, all things considered?", "Is divorce justifiable?"]
    v = _vec(model, seed=4)
    with steering_hooks(model, {0: v}, alpha=3.0):
        batched = _last_logits_batched(model, tok, texts)
        single = torch.cat([_last_logits_batched(model, tok, [t]) for t in texts])
    assert (batched - single).abs().max().item() < 1e-4


def test_collect_activations_batch_size_independent(tiny):
    model, tok = tiny
    prompts = [_ids(tok, t)[0].tolist() for t in ["a b c", "one two three four five six", "x"]]
    a1 = collect_activations(model, tok, prompts, [0, 1], batch_size=1)
    a3 = collect_activations(model, tok, prompts, [0, 1], batch_size=3)
    for layer in (0, 1):
        assert a1[layer].shape == (3, model.config.hidden_size)
        assert (a1[layer] - a3[layer]).abs().max().item() < 1e-4
    # layer 1's output is the last hidden state before the final norm: check it against output_hidden_states
    with torch.no_grad():
        hs = model(input_ids=torch.tensor([prompts[1]]), output_hidden_states=True).hidden_states
    assert torch.allclose(a1[0][1].float(), hs[1][0, -1], atol=1e-5)
