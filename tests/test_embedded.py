"""The embedded model's cached conversion: loadable by every supported transformers, rebuilt when stale."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from cvaudit.audit.embedded import _current, _untied_state, _weights_current, embedded_model_dir


def _header(path):
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(n))


def test_tied_embedding_saved_once_under_the_input_name(tiny_llama_dir, tmp_path):
    """As save_pretrained does: transformers 4.x and 5.x both re-tie lm_head to model.embed_tokens.weight."""
    from safetensors.torch import save_file, save_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    state = _untied_state(model)
    assert "model.embed_tokens.weight" in state and "lm_head.weight" not in state
    assert len(state) == len({t.data_ptr() for t in model.state_dict().values()})
    out = tmp_path / "m"
    model.config.save_pretrained(out)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    assert _weights_current(out / "model.safetensors")
    back = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 200, 7]])
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)
    # what safetensors' save_model writes (the old conversion) is not current: lm_head name, no "format"
    save_model(model, str(tmp_path / "old.safetensors"))
    assert "lm_head.weight" in _header(tmp_path / "old.safetensors") and not _weights_current(tmp_path / "old.safetensors")
    assert not _weights_current(tmp_path / "missing.safetensors")


@pytest.mark.slow
def test_stale_conversion_is_rebuilt(tmp_path, monkeypatch, tiny_llama_dir):
    """A cache written by the old conversion is converted again (once), atomically, with nothing left over."""
    import shutil

    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("CVAUDIT_CACHE", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m-instruct"
    target.mkdir(parents=True)
    shutil.copy(tiny_llama_dir / "config.json", target / "config.json")
    save_model(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), str(target / "model.safetensors"))
    assert embedded_model_dir() == target
    assert _current(target) and (target / "tokenizer.json").is_file()
    assert json.loads((target / "config.json").read_text())["hidden_size"] == 576  # the real model, not the stale one
    assert sorted(p.name for p in target.parent.iterdir()) == ["smollm2-135m-instruct"]
    mtime = (target / "model.safetensors").stat().st_mtime_ns
    assert embedded_model_dir() == target and (target / "model.safetensors").stat().st_mtime_ns == mtime  # no second conversion


def test_damaged_json_in_the_cached_conversion_is_rebuilt(tmp_path, monkeypatch, smollm2_dir):
    """The converted model is a cache: a truncated config.json is converted again, not reported as a broken model."""
    import shutil

    monkeypatch.setenv("CVAUDIT_CACHE", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m-instruct"
    shutil.copytree(smollm2_dir, target)
    assert _current(target)
    good = (target / "config.json").read_text()
    (target / "config.json").write_text(good[: len(good) // 2])
    assert not _current(target)
    assert embedded_model_dir() == target and json.loads((target / "config.json").read_text()) == json.loads(good)
