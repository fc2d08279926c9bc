"""Every server-side setting, in the order Settings > SD Bridge shows them, gathered from the
modules that own them (each declares its `SETTINGS`; see pack_settings.Setting)."""

from __future__ import annotations

from .hosted.http import rate_limit
from .hosted.money import caps
from .hosted.providers.sinkin import covers
from .hosted.store import receipts, result_cache
from .pack_settings import Setting

OWNERS = (rate_limit, result_cache, receipts, caps, covers)  # each module that reads settings, in the order shown


def declared() -> tuple[Setting, ...]:
    return tuple(setting for owner in OWNERS for setting in owner.SETTINGS)


def find(name: str) -> Setting | None:
    return next((s for s in declared() if s.name == name), None)
