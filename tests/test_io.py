"""Atomic writes: content, permissions from the umask, no temporary files left, confinement."""

from __future__ import annotations

import os
import stat

import pytest
from cvaudit.audit.io import atomic_write_json, atomic_write_text, confined, dumps_json


def test_atomic_write_uses_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a" / "report.html", "<p>x</p>")
    finally:
        os.umask(old)
    assert p.read_text() == "<p>x</p>"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert [f.name for f in p.parent.iterdir()] == ["report.html"]


def test_atomic_write_replaces_and_leaves_no_temp_on_error(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert target.read_text() == dumps_json({"a": 1})
    assert [f.name for f in tmp_path.iterdir()] == ["results.json"]


def test_json_is_deterministic_and_has_no_nan():
    a = dumps_json({"b": float("nan"), "a": [1.0, float("inf")]})
    assert a == dumps_json({"a": [1.0, float("inf")], "b": float("nan")})
    assert "NaN" not in a and "Infinity" not in a and '"b": null' in a


def test_confined(tmp_path):
    assert confined(tmp_path, "x/y.json") == (tmp_path / "x" / "y.json").resolve()
    from cvaudit.audit.errors import ConfigError

    with pytest.raises(ConfigError):
        confined(tmp_path, "../x.json")


def test_unwritable_places_are_config_errors(tmp_path):
    """A file where a folder should be, a directory or a device as the target: one line (exit 2), nothing replaced."""
    from cvaudit.audit.errors import ConfigError

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match=r"cannot write .*afile/sub/r.json: Not a directory"):
        atomic_write_text(afile / "sub" / "r.json", "{}")
    with pytest.raises(ConfigError, match="it is a directory"):
        atomic_write_text(tmp_path, "{}")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        atomic_write_text(fifo, "{}")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the special file is left as it was"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "fifo"]
