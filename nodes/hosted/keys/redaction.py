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


SHORTEST_PIECE = 4  # a key's first characters this long, left at a cut, are taken out too


def cut(text: str, limit: int, ellipsis: str = "") -> str:
    """`text` redacted, then cut to `limit` characters (plus `ellipsis` when cut). A key that
    straddles the cut is no longer whole after it, so a tail of the cut text that starts any
    spelling of a key (SHORTEST_PIECE characters or more) is replaced by "***" as well."""
    text = redact(text)
    if len(text) <= limit:
        return text
    head = text[:limit]
    for form in key_forms():
        for size in range(min(len(form) - 1, len(head)), SHORTEST_PIECE - 1, -1):
            if head.endswith(form[:size]):
                head = head[:-size] + "***"
                break
    return head + ellipsis


def scrub_chain(error: BaseException) -> BaseException:
    """`error` and every exception chained to it (`__cause__`, `__context__`, as a traceback
    prints them) with keys taken out of their text, so a logged chain shows none. A context
    the raise said adds nothing (`raise ... from None`) is dropped, not only hidden."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in current.args)
        _scrub_notes(current)
        pending += [linked for linked in (current.__cause__, current.__context__) if linked is not None]
        if current.__suppress_context__ and current.__cause__ is None:
            current.__context__ = None
    return error


def _scrub_notes(error: BaseException) -> None:
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        error.__notes__ = [redact(note) if isinstance(note, str) else note for note in notes]


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
