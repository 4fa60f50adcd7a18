"""Output folders hold one run's files: a command removes its earlier outputs before writing new ones.

``cvaudit run`` does this for everything it writes (audit/results.py, STALE_OUTPUTS);
``report`` and ``compare`` do it for theirs, so an HTML file from this run never sits
beside a PDF from an earlier one as if both described the same results.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cvaudit.audit.errors import ConfigError
from cvaudit.audit.io import remove_leftover_temps


def replace_outputs(out: Path, names: Sequence[str]) -> None:
    """Remove the earlier files ``names`` in ``out`` and their leftover temporaries (a missing one is fine).

    Call it after everything new is rendered in memory, so a failed render leaves the
    folder as it was. A name that cannot be removed is a one-line ConfigError; a folder
    under that name is left for the write to refuse.
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
