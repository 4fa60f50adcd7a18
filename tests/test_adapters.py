"""Checkpoint checks, fingerprints and LoRA adapter loading (tiny random Llama, plain transformers forwards)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from cvaudit.audit.adapters import (
    apply_adapter,
    base_available,
    check_adapter_dir,
    check_model_dir,
    checkpoint_fingerprint,
    checkpoint_kind,
)
from cvaudit.audit.errors import ModelError

IDS = torch.tensor([[1, 17, 230, 4, 5, 99, 12]])


def _model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _save_lora(base: Path, out: Path, targets=("q_proj", "v_proj"), seed: int = 1) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    # init_lora_weights=False: B is random too, so the adapter changes the outputs from the start
    pm = get_peft_model(_model(base), LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                 init_lora_weights=False))
    pm.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, tiny_llama_dir) -> Path:
    return _save_lora(tiny_llama_dir, tmp_path_factory.mktemp("lora") / "adapter")


@pytest.fixture(scope="module")
def base_logits(tiny_llama_dir):
    with torch.no_grad():
        return _model(tiny_llama_dir)(IDS).logits


def test_adapter_changes_logits_and_disabling_restores_them(tiny_llama_dir, lora_dir, base_logits):
    model, info = apply_adapter(_model(tiny_llama_dir), str(lora_dir))
    with torch.no_grad():
        adapted = model(IDS).logits
        with model.disable_adapter():
            disabled = model(IDS).logits
    assert (adapted - base_logits).abs().max().item() > 1e-2
    torch.testing.assert_close(disabled, base_logits, rtol=0, atol=1e-5)
    # a fresh base model without the adapter gives the base logits again
    with torch.no_grad():
        torch.testing.assert_close(_model(tiny_llama_dir)(IDS).logits, base_logits, rtol=0, atol=0)
    assert info["peft_type"] == "LORA" and info["r"] == 4 and info["target_modules"] == ["q_proj", "v_proj"]
    assert info["fingerprint"] == checkpoint_fingerprint(lora_dir)


def test_adapter_equals_manual_lora_delta(tiny_llama_dir, lora_dir):
    """The loaded adapter is W + (alpha/r) B A on the targeted layers, checked from the saved tensors."""
    from safetensors.torch import load_file

    tensors = load_file(str(lora_dir / "adapter_model.safetensors"))
    manual = _model(tiny_llama_dir)
    scale = 8 / 4
    with torch.no_grad():
        for name, module in manual.named_modules():
            key = f"base_model.model.{name}.lora_A.weight"
            if key in tensors:
                b = tensors[key.replace("lora_A", "lora_B")]
                module.weight += scale * b @ tensors[key]
        want = manual(IDS).logits
        got = apply_adapter(_model(tiny_llama_dir), lora_dir)[0](IDS).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_fingerprint_is_sha256_of_weights_and_config(lora_dir, tmp_path):
    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    files = sorted(["adapter_config.json", "adapter_model.safetensors"])
    expected = hashlib.sha256("".join(f"{f}\t{sha(lora_dir / f)}\n" for f in files).encode()).hexdigest()
    assert checkpoint_fingerprint(lora_dir) == expected
    copy = shutil.copytree(lora_dir, tmp_path / "copy")
    (copy / "README.md").write_text("notes do not change the weights")
    assert checkpoint_fingerprint(copy) == expected
    cfg = json.loads((copy / "adapter_config.json").read_text())
    cfg["lora_alpha"] = 16
    (copy / "adapter_config.json").write_text(json.dumps(cfg))
    assert checkpoint_fingerprint(copy) != expected


def test_missing_and_incomplete_checkpoints(tmp_path, lora_dir, tiny_llama_dir):
    with pytest.raises(ModelError, match="does not exist"):
        checkpoint_kind(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="neither adapter_config.json"):
        checkpoint_kind(empty)
    no_weights = shutil.copytree(lora_dir, tmp_path / "noweights")
    (no_weights / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match="no weight files"):
        check_adapter_dir(no_weights)
    bad_cfg = shutil.copytree(lora_dir, tmp_path / "badcfg")
    (bad_cfg / "adapter_config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        apply_adapter(_model(tiny_llama_dir), bad_cfg)
    assert checkpoint_kind(tiny_llama_dir) == "model"
    assert check_model_dir(tiny_llama_dir)["model_type"] == "llama"


def test_truncated_safetensors_is_refused(tmp_path, lora_dir, tiny_llama_dir):
    for src, name, check in ((lora_dir, "adapter_model.safetensors", check_adapter_dir),
                             (tiny_llama_dir, "model.safetensors", check_model_dir)):
        cut = shutil.copytree(src, tmp_path / f"cut-{src.name}")
        data = (cut / name).read_bytes()
        (cut / name).write_bytes(data[: len(data) - 100])
        with pytest.raises(ModelError, match="truncated or corrupt"):
            check(cut)
        (cut / name).write_bytes(b"\x05\x00")
        with pytest.raises(ModelError, match="not a valid safetensors"):
            check(cut)


def test_adapter_for_another_shape_or_architecture(tmp_path, tiny_llama_dir, smollm2_dir):
    from conftest import make_tiny_llama

    wider = make_tiny_llama(tmp_path / "wide", smollm2_dir, hidden_size=96)
    other = _save_lora(wider, tmp_path / "wide-lora")
    with pytest.raises(ModelError, match="does not fit the base model") as err:
        apply_adapter(_model(tiny_llama_dir), other)
    # the first mismatched tensor and both shapes, whole, on one line
    assert re.search(r"tensor \S+lora_\S+ is \[[\d, ]+\] in the adapter but \[[\d, ]+\] in the model", str(err.value))
    assert "\n" not in str(err.value) and "torch.Size" not in str(err.value)
    # an adapter whose target layers the base does not have (another architecture's names)
    gpt_like = shutil.copytree(other, tmp_path / "gpt-lora")
    cfg = json.loads((gpt_like / "adapter_config.json").read_text())
    cfg["target_modules"] = ["c_attn"]
    (gpt_like / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="does not fit the base model"):
        apply_adapter(_model(tiny_llama_dir), gpt_like)
    # a deeper base: the adapter's tensors for layer 2 have no place in a 2-layer model
    deep = make_tiny_llama(tmp_path / "deep", smollm2_dir, num_hidden_layers=3)
    deep_lora = _save_lora(deep, tmp_path / "deep-lora")
    with pytest.raises(ModelError, match="has no place in it"):
        apply_adapter(_model(tiny_llama_dir), deep_lora)


def test_pickle_weights_need_allow_pickle(tmp_path, lora_dir, tiny_llama_dir, base_logits):
    from safetensors.torch import load_file

    pickled = shutil.copytree(lora_dir, tmp_path / "pickled")
    tensors = load_file(str(pickled / "adapter_model.safetensors"))
    torch.save(tensors, pickled / "adapter_model.bin")
    (pickled / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match="--allow-pickle"):
        check_adapter_dir(pickled)

    class Spec:
        adapter = str(pickled)
        allow_pickle = False

    with pytest.raises(ModelError, match="--allow-pickle"):
        apply_adapter(_model(tiny_llama_dir), Spec())
    Spec.allow_pickle = True
    model, _ = apply_adapter(_model(tiny_llama_dir), Spec())
    with torch.no_grad():
        assert (model(IDS).logits - base_logits).abs().max().item() > 1e-2
    # a full model with only pickle weights
    model_dir = shutil.copytree(tiny_llama_dir, tmp_path / "pickled-model")
    torch.save(load_file(str(model_dir / "model.safetensors")), model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="--allow-pickle"):
        check_model_dir(model_dir)
    assert check_model_dir(model_dir, allow_pickle=True)["model_type"] == "llama"


def test_base_available(tiny_llama_dir):
    assert base_available("smollm2-135m")
    assert base_available(str(tiny_llama_dir))
    assert not base_available("no-such-org/no-such-model-xyz")
    assert not base_available(None)


def test_load_model_applies_adapter(tiny_llama_dir, lora_dir, base_logits):
    models = pytest.importorskip("cvaudit.audit.models")
    base = models.load_model(models.ModelSpec(id=str(tiny_llama_dir), device="cpu", dtype="float32"))
    adapted = models.load_model(models.ModelSpec(id=str(tiny_llama_dir), device="cpu", dtype="float32",
                                                 adapter=str(lora_dir)))
    assert adapted.fingerprint != base.fingerprint
    assert adapted.info["adapter"]["fingerprint"] == checkpoint_fingerprint(lora_dir)
    with torch.no_grad():
        assert (adapted.model(IDS).logits - base_logits).abs().max().item() > 1e-2
        torch.testing.assert_close(base.model(IDS).logits, base_logits, rtol=0, atol=1e-5)
