"""The one rule of the spending caps: may a prompt (or one request) go ahead, and if not, why.

Pure: it is handed every figure, each provider's in its own unit (Segmind counts US dollars,
SinkIn its credits: never added together), and decides. The check before each request
(budget.py) and the estimate route (what the page shows by the Run button) both ask it; the page
only shows the verdict. Each cap applies to each provider separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .caps import DAY_CAP, RUN_CAP
from .prices import rounded

PROMPT, REQUEST = "prompt", "request"  # before anything is sent / before one node's request


@dataclass(frozen=True)
class Figures:
    """One provider's figures, in its own unit."""
    provider: str          # its name, as users read it
    unit: str              # what it counts in: "credits", "credits (US$)"
    estimate: float = 0.0  # the known estimate of what is about to be sent (a prompt, or one request)
    unknown: int = 0       # how many of those have no estimate (a request: 1 when its own is unknown)
    run: float = 0.0       # what this run spent, plus what its requests under way hold
    today: float = 0.0     # what was spent today, plus what requests under way hold (every process)
    damaged: str | None = None  # today's ledger was damaged and kept under this name


@dataclass(frozen=True)
class Verdict:
    go: bool
    reason: str = ""          # what users read when it may not go
    cap: str | None = None    # the setting that stops it
    provider: str | None = None

    def as_dict(self) -> dict:
        return {"go": self.go, "reason": self.reason, "cap": self.cap, "provider": self.provider}


GO = Verdict(True)


def _fmt(credits: float) -> str:
    return f"{rounded(credits):g}"


def _fix(name: str) -> str:
    return (f"raise or clear {name} in Settings > SD Bridge (or in the environment, which wins), "
            "or ask for fewer or smaller images")


def decide(figures: Sequence[Figures], run_cap: float | None, day_cap: float | None, stage: str) -> Verdict:
    """The first provider whose figures pass a cap stops it; else GO."""
    for one in figures:
        verdict = (_prompt if stage == PROMPT else _request)(one, run_cap, day_cap)
        if not verdict.go:
            return verdict
    return GO


def _damaged(f: Figures, day_cap: float | None) -> Verdict:
    return Verdict(False, (
        f"SD Bridge: the spending ledger was damaged today and was kept aside as {f.damaged}, so today's spend "
        f"is not known and {DAY_CAP} cannot be kept. Nothing was sent. Hosted nodes go on tomorrow; to go on "
        f"today, look at that file, then clear {DAY_CAP} in Settings > SD Bridge (or delete the \"damaged\" "
        "entry of spending.json)."), DAY_CAP, f.provider)


def _prompt(f: Figures, run_cap: float | None, day_cap: float | None) -> Verdict:
    more = f", plus {f.unknown} node{'s' if f.unknown != 1 else ''} with no estimate" if f.unknown else ""
    said = f"this prompt's {f.provider} nodes are estimated at {_fmt(f.estimate)} {f.unit}{more}"
    if run_cap is not None and f.estimate > run_cap:
        return Verdict(False, f"SD Bridge: {said}, above the cap of {_fmt(run_cap)} per run ({RUN_CAP}). Nothing "
                       f"was sent. To run it, {_fix(RUN_CAP)}.", RUN_CAP, f.provider)
    if day_cap is not None and f.damaged:
        return _damaged(f, day_cap)
    if day_cap is not None and f.today + f.estimate > day_cap:
        return Verdict(False, f"SD Bridge: {said}; with the {_fmt(f.today)} spent today that passes the cap of "
                       f"{_fmt(day_cap)} per day ({DAY_CAP}). Nothing was sent. To run it, {_fix(DAY_CAP)}.",
                       DAY_CAP, f.provider)
    return GO


def _request(f: Figures, run_cap: float | None, day_cap: float | None) -> Verdict:
    # A request of unknown cost goes only while the spend is under the cap (see README).
    own = f"{_fmt(f.estimate)} {f.unit}" if not f.unknown else "cost unknown"
    if run_cap is not None and (f.run >= run_cap or f.run + f.estimate > run_cap):
        return Verdict(False, f"SD Bridge: this run has spent {_fmt(f.run)} {f.unit} on {f.provider}; this node "
                       f"({own}) would pass the cap of {_fmt(run_cap)} per run ({RUN_CAP}). Its request was not "
                       f"sent. To go on, {_fix(RUN_CAP)}.", RUN_CAP, f.provider)
    if day_cap is not None and f.damaged:
        return _damaged(f, day_cap)
    if day_cap is not None and (f.today >= day_cap or f.today + f.estimate > day_cap):
        return Verdict(False, f"SD Bridge: {_fmt(f.today)} {f.unit} were spent today on {f.provider}; this node "
                       f"({own}) would pass the cap of {_fmt(day_cap)} per day ({DAY_CAP}). Its request was not "
                       f"sent. To go on, {_fix(DAY_CAP)}.", DAY_CAP, f.provider)
    return GO
