"""The spending caps: their settings (SDBRIDGE_MAX_CREDITS_PER_RUN, ..._PER_DAY, or Settings > SD
Bridge; the environment wins) and what a cap's text must be. Each cap applies to each provider
separately, in that provider's unit (rule.py)."""

from __future__ import annotations

import math

from ... import pack_settings
from ...errors import BudgetExceeded
from ..provider_table import PROVIDERS

RUN_CAP = "SDBRIDGE_MAX_CREDITS_PER_RUN"
DAY_CAP = "SDBRIDGE_MAX_CREDITS_PER_DAY"


def cap_problem(text: str) -> str | None:
    """Why a cap setting's text is not a cap ("" clears it)."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        return f"{text.strip()[:40]!r} is not a number of credits; write one such as 5 or 0.25, or leave it empty"
    if not math.isfinite(value) or value < 0:
        return "a cap is a number of credits, 0 or more; leave it empty for no cap"
    return None


def cap(name: str) -> float | None:
    """The cap set by env var or setting, or None (no cap; an unreadable value is reported)."""
    text = pack_settings.value(name)
    if not text:
        return None
    problem = cap_problem(text)
    if problem:
        raise BudgetExceeded(f"SD Bridge: {name} is set to {text[:40]!r}, which is not a cap: {problem}. "
                             "Fix it in Settings > SD Bridge or in the environment.")
    return float(text)


# Settings > SD Bridge > Spending.
SETTINGS = (
    pack_settings.Setting(
        RUN_CAP, "Most credits per run",
        "Per provider, in its own unit (Segmind: US dollars, SinkIn: credits). A prompt whose nodes "
        "of one provider are estimated above this stops before any request; a node that would pass it "
        "sends nothing.",
        cap_problem, "no cap", ("Spending", "Per run"), "25"),
    pack_settings.Setting(
        DAY_CAP, "Most credits per day",
        "Per provider, in its own unit (Segmind: US dollars, SinkIn: credits). Hosted nodes stop before "
        "asking once what was spent today on their provider, plus their estimate, would pass this.",
        cap_problem, "no cap", ("Spending", "Per day"), "200"),
)


def per_provider() -> dict[str, dict]:
    """{provider: {"unit", "per_run", "per_day"}}: each cap as it applies to each provider, in
    that provider's unit (raises BudgetExceeded, with the fix, for a cap that is not a number)."""
    run_cap, day_cap = cap(RUN_CAP), cap(DAY_CAP)
    return {p.id: {"unit": p.credit_unit, "per_run": run_cap, "per_day": day_cap} for p in PROVIDERS.values()}
