"""Settings made in ComfyUI's Settings dialog (SD Bridge section), kept on the server in the pack's
user folder, so they hold for every browser and for queue-API scripts too. Each setting is
named after its environment variable, and the variable wins when both are set.

Every setting is declared once, in `declared()`: its name, label, help, the check of a typed
value and what applies when it is unset. The routes serve and save them from that table and
the web extension draws one row per entry, so neither keeps a list of its own.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import userdata

SETTINGS_FILE = "settings.json"

RESULT_CACHE = "SDBRIDGE_RESULT_CACHE"             # "off" switches the result cache off
RESULT_CACHE_MB = "SDBRIDGE_RESULT_CACHE_MB"       # its size bound in MB
RESULT_CACHE_DEFAULT_MB = 2048
MAX_CREDITS_PER_RUN = "SDBRIDGE_MAX_CREDITS_PER_RUN"
MAX_CREDITS_PER_DAY = "SDBRIDGE_MAX_CREDITS_PER_DAY"
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


def check_on_off(text: str) -> str | None:
    return None if text.strip().lower() in ("", "on", "off") else "write on or off"


def check_positive_integer(text: str) -> str | None:
    text = text.strip()
    if not text or (text.isdigit() and 0 < int(text) < 10**9):
        return None
    return "write a whole number of megabytes above 0, such as 2048"


def check_credits(text: str) -> str | None:
    """A cap: empty (no cap) or a non-negative number of credits."""
    if not text.strip() or credits_number(text) is not None:
        return None
    return "write a number of credits (0 or more, such as 25 or 2.5), or leave it empty for no cap"


def credits_number(text: str) -> float | None:
    """The number of credits a cap's text holds, or None (empty or not a number >= 0)."""
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


@functools.cache
def declared() -> tuple[Setting, ...]:
    """Every server-side setting, in the order Settings shows them."""
    from .hosted import rate_limit  # imports this module: read on first use
    from .hosted.providers import PROVIDERS

    paces = tuple(
        Setting(p.rate_env, f"{p.name} requests allowed",
                f"How many generation requests your {p.name} plan allows per so many seconds, shared by every "
                f"node ({p.rate_limits or 'no documented limit'}).",
                rate_limit.setting_problem,
                f"the default {'/'.join(f'{n:g}' for n in p.rate_plan)}" if p.rate_plan
                else "no pace until the provider answers 429",
                ("Rate limits", p.name), "5/60", p.id)
        for p in PROVIDERS.values() if p.rate_env)
    return paces + (
        Setting(RESULT_CACHE, "Result cache",
                "on: a run that repeats a request already paid for (same node, inputs and fixed seed) returns "
                "the stored images without asking the provider; off: every run asks.",
                check_on_off, "on", ("Result cache", "Cache"), "off"),
        Setting(RESULT_CACHE_MB, "Result cache size (MB)",
                "The most disk space the result cache takes; the results used longest ago go first.",
                check_positive_integer, f"{RESULT_CACHE_DEFAULT_MB} MB", ("Result cache", "Size"), "2048"),
        Setting(MAX_CREDITS_PER_RUN, "Most credits per run",
                "A hosted node that would spend more credits than this in one run stops before asking.",
                check_credits, "no cap", ("Spending", "Per run"), "25"),
        Setting(MAX_CREDITS_PER_DAY, "Most credits per day",
                "Hosted nodes stop before asking once this many credits were spent today.",
                check_credits, "no cap", ("Spending", "Per day"), "200"),
    )


def find(name: str) -> Setting | None:
    return next((s for s in declared() if s.name == name), None)


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
    """Save (or, with None/"", remove) a setting."""
    stored = _stored()
    if text and text.strip():
        stored[name] = text.strip()
    else:
        stored.pop(name, None)
    userdata.write_json(settings_file(), stored)
