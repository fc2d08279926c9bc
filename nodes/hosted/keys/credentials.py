"""API keys and base URLs, and keeping keys out of everything users see.

A key comes from the provider's env var, else from the key file in ComfyUI's user directory
(written by the settings route, owner-only). It is never a widget, so it never reaches a saved
workflow, PNG metadata or /history.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from ... import userdata
from ...errors import MissingKeyError
from ..provider_table import PROVIDERS, Provider

KEY_FILE_NAME = "keys.json"
MAX_KEY_LENGTH = 512
_KEY_SHAPE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces


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
            provider, f"{provider.name}: no API key is set. Either set the environment variable "
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
    """Write (or, with None/"", remove) a key in the key file, owner-only, atomically; read and
    written under the file's lock, so a key saved at the same time by another process stays."""
    if value:
        problem = check_key_shape(value)
        if problem:
            raise ValueError(problem)

    def change(keys: dict[str, str]) -> None:
        if value:
            keys[provider.id] = value
        else:
            keys.pop(provider.id, None)

    userdata.update_strings(key_file(), change)


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
