"""Model loading: tiny random Llama directories, broken directories, offline hub ids."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cvaudit.audit.adapters import checkpoint_fingerprint
from cvaudit.audit.errors import ModelError
from cvaudit.audit.fingerprint import sidecar_path
from cvaudit.audit.models import LoadedModel, ModelSpec, load_model


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    sidecar_path(dst).unlink(missing_ok=True)
    return dst


def test_load_local_dir(tiny_llama_dir, tmp_path):
    d = _copy(tiny_llama_dir, tmp_path / "m")
    lm = load_model(ModelSpec(id=str(d)))
    assert isinstance(lm, LoadedModel)
    assert not lm.model.training
    assert lm.tokenizer.padding_side == "left"
    assert lm.tokenizer.pad_token_id is not None
    assert lm.device == "cpu"
    # fingerprint: sha256 over "name<TAB>sha256(file)" lines of weights and config, computed here independently
    files = sorted([*d.glob("*.safetensors"), d / "config.json"], key=lambda f: f.name)
    lines = "".join(f"{f.name}\t{hashlib.sha256(f.read_bytes()).hexdigest()}\n" for f in files)
    assert lm.fingerprint == "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), "pt") as fh:
        n_params = sum(fh.get_tensor(k).numel() for k in fh.keys())
    assert lm.info == {
        "id": str(d), "revision": None, "fingerprint": lm.fingerprint, "dtype": "float32",
        "n_parameters": n_params, "embedded": False, "device": "cpu", "persona_role": "system",
    }  # fmt: skip


def test_fingerprint_cached_by_size_and_mtime(tiny_llama_dir, tmp_path):
    d = _copy(tiny_llama_dir, tmp_path / "m")
    first = load_model(ModelSpec(id=str(d))).fingerprint
    assert not any(p.name.startswith(".cvaudit") for p in d.iterdir()), "nothing written into the model folder"
    side = json.loads(sidecar_path(d).read_text())
    assert "sha256:" + side["sha256"] == first
    # a matching stamp is trusted (no re-hash) ...
    side["sha256"] = "0" * 64
    sidecar_path(d).write_text(json.dumps(side))
    assert load_model(ModelSpec(id=str(d))).fingerprint == "sha256:" + "0" * 64
    # ... a changed file is re-hashed
    side["files"]["model.safetensors"][1] += 1
    sidecar_path(d).write_text(json.dumps(side))
    assert load_model(ModelSpec(id=str(d))).fingerprint == first


def test_one_fingerprint_for_model_and_checkpoint(tiny_llama_dir, tmp_path):
    """--model DIR and --checkpoint DIR name the same weights the same way; a config edit changes both."""
    d = _copy(tiny_llama_dir, tmp_path / "m")
    fp = load_model(ModelSpec(id=str(d))).fingerprint
    assert fp == "sha256:" + checkpoint_fingerprint(d)
    (d / "tokenizer_config.json").write_text((d / "tokenizer_config.json").read_text() + " ")
    assert load_model(ModelSpec(id=str(d))).fingerprint == fp, "tokenizer files are not part of it"
    cfg = json.loads((d / "config.json").read_text())
    cfg["rope_theta"] = float(cfg.get("rope_theta", 10000.0)) * 2
    (d / "config.json").write_text(json.dumps(cfg))
    changed = load_model(ModelSpec(id=str(d))).fingerprint
    assert changed != fp and changed == "sha256:" + checkpoint_fingerprint(d)


def test_old_cached_digest_is_not_trusted(tiny_llama_dir, tmp_path):
    """A digest cached under the previous definition (no version) is recomputed, not reused."""
    d = _copy(tiny_llama_dir, tmp_path / "m")
    first = load_model(ModelSpec(id=str(d))).fingerprint
    side = json.loads(sidecar_path(d).read_text())
    side.pop("version")
    side["sha256"] = "0" * 64
    sidecar_path(d).write_text(json.dumps(side))
    assert load_model(ModelSpec(id=str(d))).fingerprint == first


def test_dtype_option(tiny_llama_dir):
    import torch

    lm = load_model(ModelSpec(id=str(tiny_llama_dir), dtype="bfloat16"))
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert lm.info["dtype"] == "bfloat16"
    with pytest.raises(ModelError, match="unknown dtype"):
        load_model(ModelSpec(id=str(tiny_llama_dir), dtype="float8"))


def test_missing_dir():
    with pytest.raises(ModelError, match="does not exist"):
        load_model(ModelSpec(id="./no/such/model"))


def test_missing_config(tiny_llama_dir, tmp_path):
    d = _copy(tiny_llama_dir, tmp_path / "m")
    (d / "config.json").unlink()
    with pytest.raises(ModelError, match="config.json"):
        load_model(ModelSpec(id=str(d)))


def test_corrupt_config(tiny_llama_dir, tmp_path):
    d = _copy(tiny_llama_dir, tmp_path / "m")
    (d / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="config.json"):
        load_model(ModelSpec(id=str(d)))


def test_truncated_weights(tiny_llama_dir, tmp_path):
    d = _copy(tiny_llama_dir, tmp_path / "m")
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelError, match="model.safetensors") as err:
        load_model(ModelSpec(id=str(d)))
    assert "\n" not in str(err.value)


def test_missing_weights_and_pickle_refused(tiny_llama_dir, tmp_path):
    d = _copy(tiny_llama_dir, tmp_path / "m")
    (d / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no weight files"):
        load_model(ModelSpec(id=str(d)))
    (d / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelError, match="pickle"):
        load_model(ModelSpec(id=str(d)))


def test_hub_id_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelError) as err:
        load_model(ModelSpec(id="some-org/not-a-cached-model"))
    msg = str(err.value)
    assert "cannot load model some-org/not-a-cached-model: not found locally and the hub is unreachable/offline" in msg
    assert "\n" not in msg


def test_hub_id_without_dns_tries_only_the_cache(monkeypatch, tmp_path):
    """No DNS and no HF_HUB_OFFLINE: the cache is asked once (local_files_only), not the hub with ~25 s of retries."""
    import socket

    import cvaudit.audit.models as models
    import transformers.utils

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))

    def no_dns(host, *a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    asked = []

    def cached_file(repo, name, revision=None, local_files_only=False, **k):
        asked.append(local_files_only)
        raise OSError("not cached")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(transformers.utils, "cached_file", cached_file)
    assert models.hub_resolvable() is False
    with pytest.raises(ModelError, match="not found locally and the hub is unreachable/offline"):
        load_model(ModelSpec(id="some-org/not-a-cached-model"))
    assert asked == [True]
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")  # the proxy resolves names, not us
    assert models.hub_resolvable() is True


@pytest.mark.parametrize("drop", ["model.layers.1.mlp.up_proj.weight", "model.norm.weight"])
def test_missing_tensors_are_refused_not_randomised(tiny_llama_dir, tmp_path, drop, capsys):
    """transformers initialises missing weights at random and carries on; an audit of that would score noise."""
    from safetensors.torch import load_file, save_file

    d = _copy(tiny_llama_dir, tmp_path / "m")
    state = load_file(str(d / "model.safetensors"))
    assert drop in state
    state.pop(drop)
    save_file(state, str(d / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelError, match=rf"has no weights for 1 tensor\(s\) \({drop}\); they would be random"):
        load_model(ModelSpec(id=str(d)))
    assert "MISSING" not in capsys.readouterr().err, "no multi-line load report from transformers"
