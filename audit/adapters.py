"""Checkpoints under audit: safety and integrity checks, fingerprints, and LoRA adapters on a base model.

A checkpoint is either a full model directory (``config.json`` + weights) or a PEFT
adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``). Everything
here is checked *before* any weight is loaded, so a missing, truncated or unsafe
checkpoint fails in a second with one :class:`ModelError` line instead of a traceback
from deep inside torch. Pickle weights (``.bin``/``.pt``) can run code when loaded and
are refused unless the user passes ``--allow-pickle``.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from .errors import ModelError

ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
SAFE_EXT = (".safetensors",)
PICKLE_EXT = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: config files that change what the weights mean; hashed with the weights
CONFIG_FILES = (MODEL_CONFIG, ADAPTER_CONFIG, "model.safetensors.index.json", "pytorch_model.bin.index.json")
#: the split and hyper-parameters `cvaudit finetune` saves next to its adapter
SPLIT_FILE = "cvaudit_finetune.json"
ALLOW_PICKLE_HINT = "re-run with --allow-pickle (method param allow_pickle=true) only if you trust its source"


def checkpoint_kind(path: str | os.PathLike) -> str:
    """"adapter" (PEFT adapter dir) or "model" (full model dir); ModelError for anything else."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"checkpoint {os.fspath(path)!r} does not exist; pass a model or adapter directory")
    if not p.is_dir():
        raise ModelError(f"checkpoint {os.fspath(path)!r} is a file; pass the directory that holds it and its config")
    if (p / ADAPTER_CONFIG).is_file():
        return "adapter"
    if (p / MODEL_CONFIG).is_file():
        return "model"
    raise ModelError(
        f"checkpoint {os.fspath(path)!r} has neither {ADAPTER_CONFIG} (LoRA adapter) nor {MODEL_CONFIG} "
        "(full model); is it the right directory or an incomplete copy?"
    )


def weight_files(path: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) directly in ``path``, sorted by name."""
    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file())
    return [f for f in files if f.suffix in SAFE_EXT], [f for f in files if f.suffix in PICKLE_EXT]


def check_safetensors(path: Path) -> dict[str, Any]:
    """Validate a safetensors file's header against its size (catches truncated copies); return the header."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("shorter than its 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n <= 0 or 8 + n > size:
                raise ValueError(f"header of {n} bytes does not fit in {size} bytes")
            header = json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not a valid safetensors file ({exc}); re-download or re-save it") from None
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            lo, hi = info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path} is not a valid safetensors file (tensor {name!r} has no offsets)") from None
        end = max(end, int(hi))
    if 8 + n + end != size:
        raise ModelError(
            f"{path} is truncated or corrupt: its header describes {8 + n + end} bytes but the file has {size}; "
            "re-download or re-save the checkpoint"
        )
    return header


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({type(exc).__name__}); the checkpoint is incomplete") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} should hold a JSON object; the checkpoint is corrupt")
    return data


def checked_weights(path: Path, allow_pickle: bool = False, what: str = "model") -> list[Path]:
    """The weight files to load from ``path`` (safetensors, else pickles if allowed), headers checked."""
    safe, pickled = weight_files(path)
    if not safe and not pickled:
        raise ModelError(f"{what} {os.fspath(path)!r} has no weight files (*.safetensors); the copy is incomplete")
    if not safe and not allow_pickle:
        names = ", ".join(f.name for f in pickled)
        raise ModelError(f"{what} {os.fspath(path)!r} has only pickle weights ({names}), which can run code; {ALLOW_PICKLE_HINT}")
    for f in safe:
        check_safetensors(f)
    return safe or pickled


def check_adapter_dir(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, Any]:
    """Validate a PEFT adapter directory without loading it; return its adapter_config."""
    p = Path(path)
    if checkpoint_kind(p) != "adapter":
        raise ModelError(f"{os.fspath(path)!r} is not a LoRA adapter directory (no {ADAPTER_CONFIG})")
    cfg = _read_json(p / ADAPTER_CONFIG)
    if not cfg.get("peft_type"):
        raise ModelError(f"{p / ADAPTER_CONFIG} names no peft_type; it was not written by PEFT")
    checked_weights(p, allow_pickle, "adapter")
    return cfg


def check_model_dir(path: str | os.PathLike, allow_pickle: bool = False) -> dict[str, Any]:
    """Validate a full model directory without loading it; return its config."""
    p = Path(path)
    if checkpoint_kind(p) != "model":
        raise ModelError(f"{os.fspath(path)!r} is an adapter, not a full model directory")
    cfg = _read_json(p / MODEL_CONFIG)
    if not cfg.get("model_type"):
        raise ModelError(f"{p / MODEL_CONFIG} names no model_type; it is not a transformers model config")
    checked_weights(p, allow_pickle, "model")
    return cfg


def checkpoint_fingerprint(path: str | os.PathLike) -> str:
    """The checkpoint's weights-and-config fingerprint (:func:`~cvaudit.audit.fingerprint.directory_fingerprint`)."""
    from .fingerprint import directory_fingerprint

    return directory_fingerprint(path)


def read_split(path: str | os.PathLike) -> dict[str, Any] | None:
    """The split record `cvaudit finetune` saved with a checkpoint, or None."""
    f = Path(path) / SPLIT_FILE
    return _read_json(f) if f.is_file() else None


def base_available(name: str | None) -> bool:
    """Whether a base model id can be loaded offline: the embedded alias, a local dir, or the HF cache."""
    if not name:
        return False
    from .embedded import EMBEDDED_ALIASES

    if name in EMBEDDED_ALIASES or Path(name).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, MODEL_CONFIG), str)
    except Exception:  # not a repo id, or no hub library: treat as unavailable
        return False


def _spec_fields(spec: Any) -> tuple[Path, bool]:
    if isinstance(spec, (str, os.PathLike)):
        return Path(spec), False
    adapter = getattr(spec, "adapter", None)
    if not adapter:
        raise ModelError("apply_adapter needs a spec with an adapter path")
    return Path(adapter), bool(getattr(spec, "allow_pickle", False))


def apply_adapter(model: Any, spec: Any) -> tuple[Any, dict[str, Any]]:
    """Wrap ``model`` with the LoRA adapter ``spec.adapter`` (a ModelSpec, or a path); return (model, info).

    The adapter stays unmerged (``PeftModel``): the base weights are untouched, so
    ``with model.disable_adapter():`` scores the base model exactly. Every tensor in the
    adapter file must load into the model with its saved shape; an adapter trained on
    another architecture is a ModelError, not a silently partial load.
    """
    path, allow_pickle = _spec_fields(spec)
    cfg = check_adapter_dir(path, allow_pickle)
    fingerprint = checkpoint_fingerprint(path)
    try:
        from peft import PeftModel
        from peft.utils import get_peft_model_state_dict
    except ImportError:
        raise ModelError("LoRA adapters need peft: pip install 'cvaudit[lora]'") from None
    expected = _adapter_shapes(path)
    try:
        wrapped = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (ValueError, RuntimeError, KeyError, TypeError, OSError) as exc:
        raise ModelError(
            f"adapter {os.fspath(path)!r} does not fit the base model ({_fit_reason(exc)}); "
            "pass the base it was trained on with --model"
        ) from None
    if expected is not None:
        loaded = {k: tuple(v.shape) for k, v in get_peft_model_state_dict(wrapped).items()}
        missing = sorted(set(expected) - set(loaded))
        wrong = sorted(k for k in set(expected) & set(loaded) if expected[k] != loaded[k])
        if missing or wrong:
            key = (missing or wrong)[0]
            raise ModelError(
                f"adapter {os.fspath(path)!r} does not fit the base model: tensor {key!r} "
                f"{'has no place in it' if missing else 'has another shape'}; pass the base it was trained on with --model"
            )
    wrapped.eval()
    info = {
        "adapter": os.fspath(path),
        "fingerprint": fingerprint,
        "peft_type": cfg.get("peft_type"),
        "r": cfg.get("r"),
        "lora_alpha": cfg.get("lora_alpha"),
        "target_modules": sorted(cfg["target_modules"]) if isinstance(cfg.get("target_modules"), list)
        else cfg.get("target_modules"),
        "adapter_base": cfg.get("base_model_name_or_path"),
        "merged": False,
    }
    return wrapped, info


def _fit_reason(exc: BaseException) -> str:
    """One short clause from PEFT/torch's load error: the first mismatched tensor and both shapes, whole."""
    import re

    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()] or [type(exc).__name__]
    first = next((ln for ln in lines if "size mismatch" in ln), lines[0])
    m = re.search(r"size mismatch for (\S+?):.*?shape torch\.Size\((\[[^\]]*\])\).*?shape in current model is "
                  r"torch\.Size\((\[[^\]]*\])\)", first)  # fmt: skip
    if m:
        name = m.group(1).removeprefix("base_model.model.")
        more = sum("size mismatch" in ln for ln in lines) - 1
        return (f"tensor {name} is {m.group(2)} in the adapter but {m.group(3)} in the model"
                + (f", and {more} more" if more > 0 else ""))
    return first if len(first) <= 240 else first[:240].rsplit(" ", 1)[0] + " ..."


def _adapter_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor name -> shape from the adapter's safetensors header (None for pickle weights)."""
    f = path / "adapter_model.safetensors"
    if not f.is_file():
        return None
    header = check_safetensors(f)
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
