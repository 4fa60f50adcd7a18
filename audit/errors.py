"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class CVAuditError(Exception):
    """Bad input or environment (missing file, wrong column, unknown country, ...).

    The message must name the problem and, where possible, the fix, in one line.
    The CLI prints ``cvaudit: error: <message>`` and exits with ``exit_code``.
    """

    exit_code = 2


class DataError(CVAuditError):
    """The survey file or a survey-derived input is unusable."""


class ModelError(CVAuditError):
    """A model, tokenizer, adapter or checkpoint cannot be loaded or scored."""


class ConfigError(CVAuditError):
    """A command-line option, policy or method parameter is invalid."""
