"""One fingerprint for a model or adapter directory: what its weights and configs are, not where they lie.

The score cache, results.json and the steering-vector check all key on it, so a model
directory passed as ``--model`` and the same directory passed as ``--checkpoint`` must
get the same value, and a change to ``config.json`` (rope scaling, vocabulary) must
change it as surely as a change to the weights. Definition: sha256 over the lines
``name<TAB>sha256(file)\\n`` of the weight files and :data:`~cvaudit.audit.adapters.CONFIG_FILES`,
sorted by name. Tokenizer files and READMEs are left out: they do not change the weights.

Hashing 16 GB takes about a minute, so the digest is cached on disk under cvaudit's
cache (never inside the user's folder) and trusted while every file's name, size and
mtime are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import ModelError
from .io import atomic_write_json, sha256_file

#: bumped when the definition changes, so an older cached digest is not trusted
_VERSION = 2


def sidecar_path(directory: str | os.PathLike) -> Path:
    """Where the cached digest of ``directory`` lives: under cvaudit's cache, never inside the folder."""
    from .embedded import cache_root

    tag = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:24]
    return cache_root() / "fingerprints" / f"{tag}.json"


def fingerprint_files(directory: str | os.PathLike) -> list[Path]:
    """The files the fingerprint covers: weights (safetensors and pickles) and configs, sorted by name."""
    from .adapters import CONFIG_FILES, weight_files

    p = Path(directory)
    safe, pickled = weight_files(p)
    configs = [p / n for n in CONFIG_FILES if (p / n).is_file()]
    return sorted(set(safe + pickled + configs), key=lambda f: f.name)


def directory_fingerprint(directory: str | os.PathLike) -> str:
    """The hex sha256 fingerprint of ``directory`` (see the module docstring); cached by (name, size, mtime)."""
    p = Path(directory).resolve()
    files = fingerprint_files(p)
    if not files:
        raise ModelError(f"{os.fspath(directory)!r} has no weight or config files to fingerprint")
    stamp = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}
    side = sidecar_path(p)
    try:
        cached = json.loads(side.read_text())
        if (
            cached.get("version") == _VERSION
            and cached.get("files") == stamp
            and isinstance(cached.get("sha256"), str)
        ):
            return cached["sha256"]
    except (OSError, ValueError, AttributeError):
        pass  # none yet, unreadable or not a dict: hash again
    lines = "".join(f"{f.name}\t{sha256_file(f, 1 << 22)}\n" for f in files)
    digest = hashlib.sha256(lines.encode()).hexdigest()
    try:
        atomic_write_json(side, {"version": _VERSION, "files": stamp, "sha256": digest})
    except OSError:
        pass  # a read-only cache: hash again next time
    return digest
