"""Settings made in ComfyUI's Settings dialog (SD Bridge section), kept on the server in the pack's
user folder, so they hold for every browser and for queue-API scripts too. Each setting is
named after its environment variable, and the variable wins when both are set."""

from __future__ import annotations

import os
from pathlib import Path

from . import userdata

SETTINGS_FILE = "settings.json"


def settings_file() -> Path:
    return userdata.pack_folder() / SETTINGS_FILE


def _stored() -> dict[str, str]:
    return userdata.read_strings(settings_file())


def value(name: str) -> str:
    """The setting's text: its env var when set, else what Settings stored, else ""."""
    return os.environ.get(name, "").strip() or _stored().get(name, "").strip()


def source(name: str) -> str | None:
    """"environment", "file" or None."""
    if os.environ.get(name, "").strip():
        return "environment"
    return "file" if name in _stored() else None


def store(name: str, text: str | None) -> None:
    """Save (or, with None/"", remove) a setting."""
    stored = _stored()
    if text and text.strip():
        stored[name] = text.strip()
    else:
        stored.pop(name, None)
    userdata.write_json(settings_file(), stored)
