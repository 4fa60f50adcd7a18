"""Where the project's shared reference files are: ``../shared`` beside the checkout (CI's layout)."""

from __future__ import annotations

from pathlib import Path

_CANDIDATES = (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared"))
SHARED = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])
WVS7 = SHARED / "reference" / "wvs7"
