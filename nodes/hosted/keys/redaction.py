"""Keeping keys out of everything users see: `redact` scrubs every known key, in every spelling,
from a text; `RedactingFilter` does it for every record of the loggers the pack and its libraries
write to (installed by `setup`, never at import)."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote, quote_plus

from .credentials import known_keys


def _spellings(key: str) -> list[str]:
    """The forms a key takes in text a server or a library wrote: as is, JSON-escaped (with or
    without escaped slashes), URL-encoded (path or form style). Longest first."""
    escaped = json.dumps(key)[1:-1]
    forms = {key, escaped, escaped.replace("/", "\\/"), quote(key, safe=""), quote(key), quote_plus(key)}
    return sorted(forms, key=len, reverse=True)


def key_forms() -> list[str]:
    """Every spelling of every known key: what `redact` removes, and what no file may hold."""
    return [form for key in known_keys() for form in _spellings(key)]


def redact(text: str) -> str:
    """`text` with every known key, in every spelling, replaced by "***". Redact the whole text
    before cutting it: a key cut in half would no longer be recognised."""
    return redactor()(text)


def redactor():
    """`redact` for many texts in a row: the keys are looked up once, when it is made."""
    forms = key_forms()

    def scrub(text: str) -> str:
        for form in forms:
            if form in text:
                text = text.replace(form, "***")
        return text

    return scrub


class RedactingFilter(logging.Filter):
    """Scrubs keys from every record of a logger, whatever the caller formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# The pack's own logger, and those of the libraries it drives (urllib3 logs every URL it opens
# at DEBUG level; a provider's result URL may carry a token).
LOGGERS = ("sdbridge", "urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.response",
           "urllib3.poolmanager", "urllib3.util.retry", "requests", "filelock")
