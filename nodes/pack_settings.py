"""Settings made in ComfyUI's Settings dialog (SD Bridge section), kept on the server in the pack's
user folder, so they hold for every browser and for queue-API scripts too. Each setting is
named after its environment variable, and the variable wins when both are set.

Every setting is a `Setting`, declared in the `SETTINGS` of the module that reads it: its name,
label, help, the check of a typed value and what applies when it is unset. `declared_settings`
gathers them; the routes serve and save them from there and the web extension draws one row
per entry, so neither keeps a list of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import userdata

SETTINGS_FILE = "settings.json"

OFF_WORDS = ("off", "0", "false", "no")


@dataclass(frozen=True)
class Setting:
    name: str                                # the environment variable, and the setting's id
    label: str                               # the row's name in Settings > SD Bridge
    help: str                                # its tooltip
    check: Callable[[str], str | None]       # typed text -> what is wrong with it, or None
    default: str                             # what applies while it is unset, in words
    section: tuple[str, ...]                 # where the row goes below "SD Bridge"
    example: str                             # a good value, for placeholders and error messages
    provider: str = ""                       # the provider the setting belongs to, if any

    def for_web(self) -> dict:
        """The entry as the routes serve it, with its current value and where it comes from."""
        return {"name": self.name, "label": self.label, "help": self.help, "default": self.default,
                "section": list(self.section), "example": self.example, "provider": self.provider,
                "value": value(self.name), "source": source(self.name)}


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


def is_off(name: str) -> bool:
    """True when an on/off setting says off."""
    return value(name).lower() in OFF_WORDS


def store(name: str, text: str | None) -> None:
    """Save (or, with None/"", remove) a setting; read and written under the file's lock, so a
    setting saved at the same time by another process stays."""

    def change(stored: dict[str, str]) -> None:
        if text and text.strip():
            stored[name] = text.strip()
        else:
            stored.pop(name, None)

    userdata.update_strings(settings_file(), change)
