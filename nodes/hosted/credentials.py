"""API keys and base URLs, and keeping keys out of everything users see.

A key comes from the provider's env var, else from the key file in ComfyUI's user directory
(written by the settings route, owner-only). It is never a widget, so it never reaches a saved
workflow, PNG metadata or /history. `redact` scrubs every known key from text before it is
logged or raised.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit

from .. import runtime, userdata
from .providers import PROVIDERS, Provider

KEY_FILE_NAME = "keys.json"
MAX_KEY_LENGTH = 512
_KEY_SHAPE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces


class MissingKeyError(RuntimeError):
    """No key for a provider; the message says both ways to set one."""

    # ComfyUI titles its error card with the exception's module path: keep it short.
    __module__ = "sdbridge"


def key_file() -> Path:
    return userdata.pack_folder() / KEY_FILE_NAME


def _read_key_file() -> dict[str, str]:
    return userdata.read_strings(key_file())


def key_source(provider: Provider) -> str | None:
    """"environment", "file" or None: where the key in use comes from."""
    if os.environ.get(provider.key_env, "").strip():
        return "environment"
    if provider.id in _read_key_file():
        return "file"
    return None


def api_key(provider: Provider) -> str:
    """The provider's key, or MissingKeyError that says both ways to set one."""
    key = os.environ.get(provider.key_env, "").strip()
    if not key:
        key = _read_key_file().get(provider.id, "").strip()
    if not key:
        raise MissingKeyError(
            f"{provider.name}: no API key is set. Either set the environment variable "
            f"{provider.key_env} before starting ComfyUI, or paste the key in ComfyUI's Settings "
            f"> SD Bridge (stored in {key_file()}). Get a key at {provider.key_page}"
        )
    return key


def check_key_shape(value: str) -> str | None:
    """Why a pasted key cannot be right, or None."""
    if not value:
        return "the key is empty"
    if len(value) > MAX_KEY_LENGTH:
        return f"the key is longer than {MAX_KEY_LENGTH} characters"
    if not _KEY_SHAPE.fullmatch(value):
        return "the key may hold only printable characters without spaces"
    return None


def store_key(provider: Provider, value: str | None) -> None:
    """Write (or, with None/"", remove) a key in the key file, owner-only, atomically."""
    keys = _read_key_file()
    if value:
        problem = check_key_shape(value)
        if problem:
            raise ValueError(problem)
        keys[provider.id] = value
    else:
        keys.pop(provider.id, None)
    userdata.write_json(key_file(), keys)


def base_url(provider: Provider) -> str:
    """The API base URL (env override for proxies and tests), without a trailing slash."""
    value = os.environ.get(provider.base_env, "").strip() or provider.default_base
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuntimeError(
            f"{provider.name}: {provider.base_env}={value!r} is not an http(s) URL; "
            f"unset it to use {provider.default_base}"
        )
    return value.rstrip("/")


def known_keys() -> list[str]:
    keys = []
    file_keys = _read_key_file()
    for provider in PROVIDERS.values():
        for key in (os.environ.get(provider.key_env, ""), file_keys.get(provider.id, "")):
            key = key.strip()
            if len(key) >= 4:  # shorter strings would redact ordinary text
                keys.append(key)
    return keys


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
    for form in key_forms():
        if form in text:
            text = text.replace(form, "***")
    return text


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
for _name in LOGGERS:
    logging.getLogger(_name).addFilter(RedactingFilter())
runtime.set_redactor(redact)
