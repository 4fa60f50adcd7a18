"""Model loading: a Hugging Face id, a local directory or the embedded SmolLM2.

Everything the audit needs to know about the model afterwards travels in
:class:`LoadedModel`: the model in eval mode, a left-padding tokenizer with a pad
token, a fingerprint that identifies the exact weights (part of every cached
score's key, so a changed checkpoint never reuses old scores) and ``info`` for
results.json. Problems the user can fix raise :class:`ModelError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapters import check_model_dir, checked_weights, weight_files
from .errors import ModelError
from .fingerprint import directory_fingerprint

DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class ModelSpec:
    """What to load. ``id`` is an embedded alias, a local directory or a hub id."""

    id: str = "smollm2-135m"
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    device_map: str | dict | None = None
    trust_remote_code: bool = False
    adapter: str | None = None
    allow_pickle: bool = False


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> this process's GPU (``cuda:LOCAL_RANK`` under accelerate/torchrun) or ``cpu``."""
    import torch

    from .config import DEVICES, is_device_name

    if not is_device_name(device):
        raise ModelError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}, cuda:N or mps")
    if device == "cpu":
        return "cpu"
    if str(device).startswith("mps"):
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ModelError(f"device {device!r} requested but Apple MPS is not available; use --device cpu")
        return str(device)
    if not torch.cuda.is_available():
        if device == "auto":
            return "cpu"
        raise ModelError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if device == "auto" or device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto``: bfloat16 on GPUs that support it (else float16), float32 on CPU (bf16 matmuls are slow there)."""
    import torch

    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


# ------------------------------------------------------------------ local checks
def _local_weights(directory: Path, allow_pickle: bool) -> list[Path]:
    """Config, pickle policy and safetensors headers checked (adapters.check_model_dir); the files to load."""
    if not (directory / "config.json").is_file() and not (directory / "adapter_config.json").is_file():
        raise ModelError(f"model directory {os.fspath(directory)!r} has no config.json; point --model at a saved "
                         "model (config.json, tokenizer files and *.safetensors)")  # fmt: skip
    check_model_dir(directory, allow_pickle)
    safe, pickled = weight_files(directory)
    return safe or pickled


# ------------------------------------------------------------------ fingerprints
def weights_fingerprint(directory: Path) -> str:
    """``sha256:<hex>`` of a model directory (:func:`~cvaudit.audit.fingerprint.directory_fingerprint`)."""
    return "sha256:" + directory_fingerprint(directory)


def _check_loading(model_id: str, loading: dict[str, Any]) -> None:
    """Refuse a checkpoint whose weights do not cover the model: transformers would fill the gap with
    random numbers and the audit would score noise as if it were the model."""
    missing = sorted(map(str, loading.get("missing_keys") or ()))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in loading.get("mismatched_keys") or ())
    for what, keys in (("has no weights for", missing), ("has weights of the wrong shape for", mismatched)):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise ModelError(f"model {model_id} {what} {len(keys)} tensor(s) ({shown}); they would be random: "
                             "the checkpoint is incomplete or for another architecture")  # fmt: skip


def hub_resolvable() -> bool:
    """False when the hub's host name does not resolve (no network): then only the local cache is tried.

    huggingface_hub retries a failed lookup five times with backoff (~25 s) before giving up;
    a machine without DNS gets the one-line error at once instead. Behind a proxy the local
    lookup proves nothing, so the hub is tried as usual.
    """
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                       "all_proxy")):  # fmt: skip
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _hub_snapshot(model_id: str, revision: str | None, local_only: bool) -> tuple[Path, str | None]:
    """Resolve a hub id to its local snapshot folder (and commit sha) or fail with the offline message."""
    from transformers.utils import cached_file

    try:
        cfg = cached_file(model_id, "config.json", revision=revision, local_files_only=local_only)
    except Exception:  # OSError, EnvironmentError, HTTP errors: all mean "cannot get it"
        cfg = None
    if cfg is None:
        raise ModelError(
            f"cannot load model {model_id}: not found locally and the hub is unreachable/offline "
            "(check the id and revision, or download it first)"
        )
    folder = Path(cfg).parent
    sha = folder.name if folder.parent.name == "snapshots" else None
    return folder, sha


# ------------------------------------------------------------------------ loading
def load_model(spec: ModelSpec | None = None) -> LoadedModel:
    """Load model and tokenizer for scoring; see :class:`ModelSpec`."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .embedded import EMBEDDED_ALIASES, embedded_model_dir
    from .prompts import persona_role

    spec = spec or ModelSpec()
    transformers.utils.logging.disable_progress_bar()  # keep stderr to our own one-line messages
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    embedded = spec.id.lower() in EMBEDDED_ALIASES
    offline = hub_offline()
    if embedded:
        source: Path | str = embedded_model_dir()
        files = _local_weights(Path(source), spec.allow_pickle)
        fingerprint = weights_fingerprint(Path(source))
        is_local = True
    elif Path(spec.id).expanduser().exists():
        source = Path(spec.id).expanduser().resolve()
        files = _local_weights(source, spec.allow_pickle)
        fingerprint = weights_fingerprint(source)
        is_local = True
    else:
        if spec.id.startswith((".", "/", "~")) or os.sep + os.sep in spec.id:
            raise ModelError(f"model directory {spec.id} does not exist")
        offline = offline or not hub_resolvable()  # no DNS: the cache only, at once, for every file below
        folder, sha = _hub_snapshot(spec.id, spec.revision, offline)
        source = spec.id
        if sha:
            fingerprint = f"hub:{spec.id}@{sha}"
        else:
            checked_weights(folder, spec.allow_pickle)
            fingerprint = weights_fingerprint(folder)
        is_local = False

    # always explicit: left unset, transformers asks on stdin whether to run a repo's custom code
    common: dict[str, Any] = {"trust_remote_code": bool(spec.trust_remote_code)}
    if not is_local:
        common.update(revision=spec.revision, local_files_only=offline)
    dtype_kw = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    kwargs: dict[str, Any] = dict(common, **{dtype_kw: dtype})
    if not spec.allow_pickle:
        kwargs["use_safetensors"] = True
    if spec.device_map is not None:
        kwargs["device_map"] = spec.device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), **common)
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer of {spec.id}: {type(exc).__name__}: {_first_line(exc)}") from None
    previous = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()  # its load report would be a second, third... stderr line
    try:
        model, loading = AutoModelForCausalLM.from_pretrained(str(source), output_loading_info=True, **kwargs)
    except ModelError:
        raise
    except Exception as exc:
        where = f" ({', '.join(f.name for f in files)})" if is_local else ""
        raise ModelError(f"cannot load model {spec.id}{where}: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        transformers.utils.logging.set_verbosity(previous)
    _check_loading(spec.id, loading)
    if spec.device_map is None:
        model = model.to(device)
    else:
        device = str(model.get_input_embeddings().weight.device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"

    info: dict[str, Any] = {
        "id": spec.id,
        "revision": spec.revision,
        "fingerprint": fingerprint,
        "dtype": str(dtype).replace("torch.", ""),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "embedded": embedded,
        "device": device,
        "persona_role": persona_role(tokenizer),  # how the prompts send the persona (audit/prompts.py)
    }
    if spec.adapter:
        from cvaudit.audit.adapters import apply_adapter  # owned by the checkpoint engineer

        model, adapter_info = apply_adapter(model, spec)
        model.eval()
        info["adapter"] = adapter_info
        tag = adapter_info.get("fingerprint") if isinstance(adapter_info, dict) else None
        tag = tag or hashlib.sha256(json.dumps(adapter_info, sort_keys=True, default=str).encode()).hexdigest()
        fingerprint = f"{fingerprint}+adapter:{tag}"
        info["fingerprint"] = fingerprint
    return LoadedModel(model=model, tokenizer=tokenizer, fingerprint=fingerprint, info=info, device=device)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""
