"""Settings made in ComfyUI's Settings dialog (SD Bridge section), kept on the server in the pack's
user folder, so they hold for every browser and for queue-API scripts too. Each setting is
named after its environment variable, and the variable wins when both are set.

Every setting is listed once, in `declared()`: its name (declared by the module that reads
it), label, help, the check of a typed value and what applies when it is unset. The routes
serve and save them from that table and the web extension draws one row per entry, so neither
keeps a list of its own.
"""

from __future__ import annotations

import functools
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


@functools.cache
def declared() -> tuple[Setting, ...]:
    """Every server-side setting, in the order Settings shows them. The names and checks live
    with the modules that read them (read on first use: they import this module)."""
    from .hosted import budget, rate_limit, result_cache
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
        Setting(result_cache.SWITCH_ENV, "Result cache",
                "on: a run that repeats a request already paid for (same node, inputs and fixed seed) returns "
                "the stored images without asking the provider; off: every run asks.",
                result_cache.switch_problem, "on", ("Result cache", "Cache"), "off"),
        Setting(result_cache.SIZE_ENV, "Result cache size (MB)",
                "The most disk space the result cache takes; the results used longest ago go first.",
                result_cache.size_problem, f"{result_cache.DEFAULT_MB} MB", ("Result cache", "Size"), "2048"),
        Setting(budget.RUN_CAP, "Most credits per run",
                "A prompt whose hosted nodes are estimated above this stops before any request; a node that "
                "would pass it sends nothing.",
                budget.cap_problem, "no cap", ("Spending", "Per run"), "25"),
        Setting(budget.DAY_CAP, "Most credits per day",
                "Hosted nodes stop before asking once what was spent today, plus their estimate, would pass "
                "this.",
                budget.cap_problem, "no cap", ("Spending", "Per day"), "200"),
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
