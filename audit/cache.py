"""Persistent score cache: an interrupted or repeated audit never recomputes a scored prompt.

SQLite in WAL mode, one row per scored prompt: key = sha256 of (model
fingerprint, modifier tag, prompt token ids, option token ids) -> float32
log-probabilities in display order. The engine commits after every batch, so a
kill loses at most the batch in flight. Several processes (``accelerate
launch``) may share one file: WAL plus a busy timeout serialises their writes.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import ConfigError

SCHEMA = "CREATE TABLE IF NOT EXISTS scores (key BLOB PRIMARY KEY, lp BLOB NOT NULL) WITHOUT ROWID"


def default_cache_path() -> Path:
    from .embedded import cache_root

    return cache_root() / "scores.sqlite"


def score_key(model_key: str, tag: str | None, input_ids: Sequence[int] | np.ndarray, option_ids: Sequence[int]) -> bytes:
    """The cache key of one prompt; changes with the weights, the model modification, the tokens or the options."""
    h = hashlib.sha256()
    h.update(model_key.encode() + b"\0")
    h.update((tag or "").encode() + b"\0")
    h.update(np.asarray(input_ids, dtype=np.int64).tobytes() + b"\0")
    h.update(np.asarray(option_ids, dtype=np.int64).tobytes())
    return h.digest()


class ScoreCache:
    """Key -> float32 vector store. Thread-safe within a process, process-safe through SQLite."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False)
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = [r[1] for r in self._conn.execute("PRAGMA table_info(scores)")]
            if (tables and tables != {"scores"}) or (columns and columns != ["key", "lp"]):
                self._conn.close()
                raise ConfigError(f"{self.path} is another program's SQLite database, not a cvaudit score cache; "
                                  "pass another --cache path")  # fmt: skip
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(SCHEMA)
            self._conn.commit()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the score cache {self.path}: {exc}; pass another --cache path") from None
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        keys = list(dict.fromkeys(keys))
        found: dict[bytes, np.ndarray] = {}
        with self._lock, self._errors("read"):
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT key, lp FROM scores WHERE key IN ({marks})", chunk).fetchall()
                for key, blob in rows:
                    found[bytes(key)] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """A full disk or a damaged file under the cache is the user's to fix: one line, exit 2."""
        try:
            yield
        except sqlite3.Error as exc:
            try:
                self._conn.rollback()
            except sqlite3.Error:
                pass
            raise ConfigError(f"cannot {what} the score cache {self.path}: {exc}; free space there or pass "
                              "another --cache path (scores stored so far are kept)") from None  # fmt: skip

    def put_many(self, items: Mapping[bytes, np.ndarray]) -> None:
        """Store and commit at once: what is here survives a kill."""
        rows = [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        if not rows:
            return
        with self._lock, self._errors("write to"):
            self._conn.executemany("INSERT OR REPLACE INTO scores (key, lp) VALUES (?, ?)", rows)
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ScoreCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
