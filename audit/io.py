"""Small I/O helpers: atomic writes, hashing and output-path confinement.

Every file cvaudit writes goes through :func:`atomic_write_bytes`, so an
interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unwritable(path: Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or type(exc).__name__
    return ConfigError(f"cannot write {os.fspath(path)}: {reason}; choose another output path or fix its permissions")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    An unwritable place (read-only, full, a file where a folder should be) is a
    ConfigError (one line, exit 2), and only a regular file is ever replaced: the
    rename would otherwise swap a device such as ``/dev/full`` for a plain file.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise ConfigError(f"cannot write {os.fspath(path)}: it is {kind}; give the path of a file to create")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise _unwritable(path, exc) from None
        raise
    return path


def remove_leftover_temps(folder: Path, names: Iterable[str]) -> None:
    """Delete the temporary files a killed :func:`atomic_write_bytes` left for ``names`` in ``folder``."""
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)


def remove_outputs(out: Path, names: Sequence[str]) -> None:
    """Remove earlier output files ``names`` in ``out`` and their leftover temporaries (a missing one is fine).

    Every command that writes an output folder calls it before writing (``run`` for all it writes,
    ``report`` and ``compare`` for theirs), so a folder never mixes two runs' files. Call it after
    anything that can fail is done, so a failure leaves the folder as it was. A file that cannot be
    removed is a one-line ConfigError; a folder under such a name is left for the write to refuse.
    """
    if not out.is_dir():
        return
    for name in names:
        path = out / name
        if not (path.is_file() or path.is_symlink()):
            continue
        try:
            path.unlink()
        except OSError as exc:
            raise ConfigError(f"cannot remove the earlier {os.fspath(path)} ({exc.strerror or type(exc).__name__}); "
                              "fix the folder's permissions or pass another --out") from None  # fmt: skip
    remove_leftover_temps(out, names)


LOCK_NAME = ".cvaudit.lock"


@contextmanager
def exclusive_output(out: Path) -> Iterator[None]:
    """Hold OUT for one run: a second run into the same folder is refused rather than interleaved.

    An advisory ``flock`` on ``OUT/.cvaudit.lock``, which the kernel releases when
    the process ends however it ends (a kill included); the file is removed at a
    normal exit. Where ``fcntl`` is missing (Windows) the folder is not locked.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    lock = out / LOCK_NAME
    while True:
        try:
            out.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as exc:
            raise ConfigError(f"cannot write to the output directory {os.fspath(out)!r} "
                              f"({exc.strerror or type(exc).__name__}); pass a writable --out") from None  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"another cvaudit run is writing to {os.fspath(out)!r}; wait for it to finish "
                              "or pass another --out") from None  # fmt: skip
        except OSError:  # a file system without locks (some network mounts): run unlocked, as on Windows
            os.close(fd)
            lock.unlink(missing_ok=True)
            fd = -1
            break
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    if fd < 0:
        yield
        return
    try:
        yield
    finally:
        try:
            lock.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths and dataclasses without importing numpy eagerly
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean_floats(obj: Any) -> Any:
    """Replace NaN/inf by None: JSON has no NaN, and a silent NaN is a wrong number."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_floats(v) for v in obj]
    return obj


def dumps_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, fixed indent, no NaN) so equal inputs give equal bytes."""
    obj = json.loads(json.dumps(obj, default=_json_default))
    return json.dumps(_clean_floats(obj), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, dumps_json(obj))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def confined(out_dir: str | os.PathLike, name: str) -> Path:
    """Resolve ``name`` inside ``out_dir``; refuse anything that would escape it (``..``, absolute paths)."""
    base = Path(out_dir).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise ConfigError(f"output path {name!r} escapes the output directory {os.fspath(out_dir)!r}")
    return target
