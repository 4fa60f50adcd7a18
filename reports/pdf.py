"""PDF from the report's own HTML through WeasyPrint (the same page, print CSS applies).

WeasyPrint is an optional dependency (extra "pdf"); without it the PDF is refused
with a one-line fix instead of a traceback.
"""

from __future__ import annotations

import logging

from cvaudit.audit.errors import ConfigError


def _weasyprint():
    try:
        import weasyprint
    except (ImportError, OSError):  # OSError: installed, but its system libraries (Pango) are missing
        raise ConfigError("PDF output needs WeasyPrint (and its Pango libraries): pip install 'cvaudit[pdf]', "
                          "or use --format html") from None  # fmt: skip
    return weasyprint


def require_pdf(formats: tuple[str, ...] | list[str]) -> None:
    """Fail now, before any slow work or any file is written, when a PDF is asked for and cannot be made."""
    if "pdf" in formats:
        _weasyprint()


def html_to_pdf_bytes(html: str) -> bytes:
    weasyprint = _weasyprint()
    # WeasyPrint logs every unsupported CSS property at WARNING; the report's CSS is known, keep the CLI quiet
    for name in ("weasyprint", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    document = weasyprint.HTML(string=html, base_url=None)
    try:  # a tagged PDF (structure tree): screen readers and accessibility checks can read the report
        return document.write_pdf(pdf_tags=True)
    except TypeError:  # a WeasyPrint without the option
        return document.write_pdf()
