"""Method parameters as users give them (``--method-param key=value`` strings, or Python values).

One parser for every method, so ``yes``/``on``/``1`` mean true everywhere and a bad
value gets the same one-line :class:`ConfigError` whichever method complains.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ConfigError

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def as_bool(value: Any, name: str, default: bool | None = None) -> bool:
    """true/false words (or a bool); ``None`` gives ``default`` when one is set."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ConfigError(f"method param {name} must be true or false, got {value!r}")


def as_number(value: Any, name: str, kind: type = float) -> Any:
    """``kind(value)`` for int or float; an int must be whole ("4" and "4.0" are 4, "4.5" is an error)."""
    try:
        out = kind(float(value)) if kind is int and not isinstance(value, bool) else kind(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"method param {name} must be a number, got {value!r}") from None
    if not math.isfinite(float(out)):
        raise ConfigError(f"method param {name} must be a finite number, got {value!r}")
    if kind is int and float(value) != out:
        raise ConfigError(f"method param {name} must be a whole number, got {value!r}")
    return out


def as_int(value: Any, name: str) -> int | None:
    """A whole number, or None when the value is unset (None or an empty string)."""
    if value is None or value == "":
        return None
    return as_number(value, name, int)


def as_floats(value: Any, name: str) -> list[float]:
    """A number, a list of numbers, or a comma list such as "0,2,4,8"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [as_number(value, name)]
    if isinstance(value, (list, tuple)):
        return [as_number(v, name) for v in value]
    try:
        out = [float(x) for x in str(value).split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"method param {name} must be a number or a comma list such as 0,2,4,8; got {value!r}") from None
    if not out:
        raise ConfigError(f"method param {name} is empty; give e.g. {name}=4")
    return [as_number(x, name) for x in out]
