"""The whole prompt's estimate, and the spending caps kept while requests run.

`estimate_prompt` prices an API-format prompt (what /prompt takes) node by node, with a total per
provider in its own unit; the estimate route and the caps both use it. The caps
(SDBRIDGE_MAX_CREDITS_PER_RUN, ..._PER_DAY, or Settings > SD Bridge; the environment wins) apply
to each provider separately, and `rule.decide` says whether something may go:

- the first hosted node of a run asks it for the whole prompt, so a refused prompt sends nothing;
- every node asks it for its own request (`reserve`), then holds its estimate (in this run, and
  for the day cap in the ledger every process shares) until `settle` replaces it with the spend;
- a request of unknown cost waits while another of its provider (in this process) is under way,
  then is priced again: the first one's measured cost often prices it.

No cap set means no check, no hold and no wait.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import runtime
from ...errors import BudgetExceeded
from ...params import ValidationError, normalize_all
from ..provider_table import PROVIDERS
from . import ledger as spending
from . import prices as costs
from . import rule
from .caps import DAY_CAP, RUN_CAP, cap

SKIPPED_MODES = {2: "muted", 4: "bypassed"}  # the workflow format's node modes that never run
KEEP_RUNS = 64  # runs remembered for their spend (a run is one queued prompt)


class LinkedInput(Exception):
    """A cost-relevant input comes from another node: its value is known only at run time."""


class _Inputs(dict):
    """A node's literal inputs; reading one that is linked raises LinkedInput."""

    def __init__(self, values: Mapping[str, Any], linked: set[str]):
        super().__init__(values)
        self.linked = linked

    def __getitem__(self, name):
        if name in self.linked:
            raise LinkedInput(name)
        return super().__getitem__(name)

    def get(self, name, default=None):
        if name in self.linked:
            raise LinkedInput(name)
        return super().get(name, default)


def estimate_node(cls, inputs: Mapping[str, Any], ledger: dict, cached=None) -> costs.Estimate:
    """The estimate of one API-format node of hosted class `cls` ({"inputs": ...} values)."""
    linked = {name for name, value in inputs.items() if isinstance(value, list)}
    literal = {name: value for name, value in inputs.items() if name not in linked}
    try:
        values = normalize_all(cls.PARAMS, literal, partial=True)
    except ValidationError as exc:
        return costs.Estimate(None, f"unknown: an input is not valid ({str(exc)[:120]})")
    for param in cls.PARAMS:
        if param.name not in values and param.name not in linked and param.kind != "IMAGE":
            values[param.name] = param.default
    probe = _Inputs(values, linked)
    try:
        if cached is not None and cached(cls, probe):
            return costs.Estimate(0.0, "cached result: no request")
        shape = cls.plan(probe, images=False).cost
    except LinkedInput as linked_name:
        return costs.Estimate(None, f"unknown: {linked_name} comes from another node")
    except (ValidationError, ValueError) as exc:
        return costs.Estimate(None, f"unknown: {str(exc)[:120]}")
    found = costs.estimate(shape, ledger)
    if any(p.kind == "IMAGE" and not p.optional for p in cls.PARAMS):
        return costs.Estimate(found.credits, f"{found.basis} (per input image)")
    return found


def estimate_prompt(prompt: Mapping[str, Any], classes: Mapping[str, type], cached=None) -> dict:
    """{"total", "nodes": {id: {"provider", "credits", "basis"}}, "unknown": [ids],
    "providers": {provider: {"name", "unit", "total" (None: none known), "unknown": [ids]}}} for an
    API-format prompt, whose hosted node classes are `classes` (by id). Only hosted nodes are priced; muted and bypassed ones (a "mode" of 2 or 4,
    as the workflow format spells it) cost nothing."""
    ledger = spending.read()
    nodes: dict[str, dict] = {}
    skipped_ids: set[str] = set()
    for node_id, node in prompt.items():
        if not isinstance(node, Mapping) or node.get("class_type") not in classes:
            continue
        cls = classes[node["class_type"]]
        mode = node.get("mode")
        skipped = SKIPPED_MODES.get(mode) if isinstance(mode, int) else None
        inputs = node.get("inputs") if isinstance(node.get("inputs"), Mapping) else {}
        found = (costs.Estimate(0.0, f"{skipped}: does not run") if skipped
                 else estimate_node(cls, inputs, ledger, cached))
        nodes[str(node_id)] = found.as_dict(cls.PROVIDER.id)
        if skipped:
            skipped_ids.add(str(node_id))
    unknown = [node_id for node_id, entry in nodes.items() if entry["credits"] is None]
    by_provider: dict[str, dict] = {}
    for node_id, entry in nodes.items():
        if node_id in skipped_ids:
            continue  # it does not run: no provider total of its own
        provider = entry["provider"]
        name = PROVIDERS[provider].name if provider in PROVIDERS else provider
        mine = by_provider.setdefault(provider, {"name": name, "unit": _unit(provider), "total": None, "unknown": []})
        if entry["credits"] is None:
            mine["unknown"].append(node_id)
        else:
            mine["total"] = costs.rounded((mine["total"] or 0.0) + entry["credits"])
    for mine in by_provider.values():
        if mine["total"] is None and not mine["unknown"]:
            mine["total"] = 0.0
    # "total" adds figures of one unit only: with two providers it is None (see "providers").
    known = [entry["credits"] for entry in nodes.values() if entry["credits"] is not None]
    total = costs.rounded(sum(known)) if (known or not unknown) and len(by_provider) <= 1 else None
    return {"total": total, "nodes": nodes, "unknown": unknown, "providers": by_provider}


@dataclass
class Run:
    estimate: dict | None = None       # estimate_prompt of the run's prompt, made once
    spent: dict[str, float] = field(default_factory=dict)     # per provider: what the run's nodes spent
    reserved: dict[str, float] = field(default_factory=dict)  # per provider: estimates of requests under way
    lock: threading.Lock = field(default_factory=threading.Lock)
_runs: OrderedDict[str, Run] = OrderedDict()
_runs_lock = threading.Lock()


def run_for(prompt: Mapping | None) -> Run:
    """The run this node belongs to: ComfyUI's prompt id, else the prompt object itself (a node
    called with neither is a run of its own)."""
    run_id = runtime.current_prompt_id() or (f"prompt-{id(prompt)}" if prompt is not None else None)
    if run_id is None:
        return Run()
    with _runs_lock:
        run = _runs.get(run_id)
        if run is None:
            run = _runs[run_id] = Run()
            while len(_runs) > KEEP_RUNS:
                _runs.popitem(last=False)
        return run


def prompt_figures(estimate: Mapping, counted_today: Mapping[str, float], damaged: str | None) -> list[rule.Figures]:
    """Each provider's figures for a whole prompt's estimate (as `estimate_prompt` made it)."""
    return [rule.Figures(entry["name"], entry["unit"], entry["total"] or 0.0, len(entry["unknown"]),
                         today=counted_today.get(p, 0.0), damaged=damaged)
            for p, entry in estimate["providers"].items()]


def prompt_verdict(estimate: Mapping) -> rule.Verdict:
    """Whether the prompt of `estimate` may run now, as the first node will decide it (the
    estimate route's answer; an unreadable cap is a refusal that names the fix)."""
    try:
        run_cap, day_cap = cap(RUN_CAP), cap(DAY_CAP)
    except BudgetExceeded as exc:
        return rule.Verdict(False, str(exc), None, None)
    if run_cap is None and day_cap is None:
        return rule.GO
    figures = prompt_figures(estimate, spending.counted_today(), spending.damaged_today())
    return rule.decide(figures, run_cap, day_cap, rule.PROMPT)


def _unit(provider_id: str) -> str:
    provider = PROVIDERS.get(provider_id)
    return provider.credit_unit if provider is not None else "credits"


@dataclass
class Hold:
    """What a request about to be sent holds toward the caps, until `settle`."""
    provider: str
    estimate: costs.Estimate   # its own estimate, made when it was allowed to go
    credits: float = 0.0       # held in the run (its known estimate)
    token: str | None = None   # its hold in the ledger (the day cap), until recorded or released
    slot: bool = False         # it is its provider's one request of unknown cost under way


_unknown_busy: set[str] = set()  # providers with a request of unknown cost under way (this process)
_unknown_lock = threading.Lock()
UNKNOWN_WAIT = 0.05  # seconds between two looks while another request of unknown cost runs


def _take_slot(provider_id: str) -> bool:
    with _unknown_lock:
        if provider_id in _unknown_busy:
            return False
        _unknown_busy.add(provider_id)
        return True


def _free_slot(provider_id: str) -> None:
    with _unknown_lock:
        _unknown_busy.discard(provider_id)


async def reserve(run: Run, prompt: Mapping | None, shape: costs.CostShape, classes: Mapping[str, type],
                  cached=None) -> Hold:
    """Raise BudgetExceeded when this request would pass a cap; else hold its estimate (nodes of
    one run, and other processes, may send at the same time) and return the Hold for `settle`."""
    run_cap, day_cap = cap(RUN_CAP), cap(DAY_CAP)
    if run_cap is None and day_cap is None:
        return Hold(shape.provider, costs.estimate(shape))
    own = costs.estimate(shape)
    slot = False
    while own.credits is None and not (slot := _take_slot(shape.provider)):
        # Another request of unknown cost of this provider is under way: its measured cost may
        # price this one, and two unknowns sent at once could both pass the cap.
        runtime.raise_if_interrupted()
        await asyncio.sleep(UNKNOWN_WAIT)
        own = costs.estimate(shape)
    if slot and own.credits is not None:
        _free_slot(shape.provider)
        slot = False
    hold = Hold(shape.provider, own, own.credits or 0.0, None, slot)
    try:
        _check_run(run, prompt, hold, classes, cached, run_cap, day_cap)
        if day_cap is not None:
            hold.token = await asyncio.to_thread(_hold_today, hold, run_cap, day_cap)
    except BaseException:
        settle(run, hold, None)
        raise
    return hold


def _figures(provider_id: str, hold: Hold, run: Run, today: float = 0.0, damaged: str | None = None) -> rule.Figures:
    name = PROVIDERS[provider_id].name if provider_id in PROVIDERS else provider_id
    return rule.Figures(name, _unit(provider_id), hold.credits, 0 if hold.estimate.credits is not None else 1,
                        run=run.spent.get(provider_id, 0.0) + run.reserved.get(provider_id, 0.0),
                        today=today, damaged=damaged)


def _check_run(run: Run, prompt, hold: Hold, classes, cached, run_cap, day_cap) -> None:
    """The whole prompt (first node of the run) and this request against the run cap; on GO the
    request's estimate is held in the run."""
    with run.lock:
        if run.estimate is None:
            run.estimate = estimate_prompt(prompt or {}, classes, cached)
            figures = prompt_figures(run.estimate, spending.counted_today(), spending.damaged_today())
            verdict = rule.decide(figures, run_cap, day_cap, rule.PROMPT)
            if not verdict.go:
                raise BudgetExceeded(verdict.reason)
        verdict = rule.decide([_figures(hold.provider, hold, run)], run_cap, None, rule.REQUEST)
        if not verdict.go:
            raise BudgetExceeded(verdict.reason)
        run.reserved[hold.provider] = run.reserved.get(hold.provider, 0.0) + hold.credits


def _hold_today(hold: Hold, run_cap, day_cap) -> str:
    """This request against the day cap, under the lock every process shares; on GO its
    estimate is held in the ledger."""
    def check(today: float, damaged: str | None) -> None:
        verdict = rule.decide([_figures(hold.provider, hold, Run(), today, damaged)], None, day_cap, rule.REQUEST)
        if not verdict.go:
            raise BudgetExceeded(verdict.reason)

    try:
        return spending.hold(hold.provider, hold.credits, check)
    except spending.LedgerUnavailable as exc:
        raise BudgetExceeded(
            f"SD Bridge: the spending ledger {exc} could not be locked within {spending.LOCK_TIMEOUT:g} s (another "
            f"ComfyUI process holds it), so {DAY_CAP} cannot be kept. Its request was not sent. Run it again in a "
            f"moment, or clear {DAY_CAP} in Settings > SD Bridge.") from None


def settle(run: Run, hold: Hold, counted: float | None) -> None:
    """The request ended: its hold in the run gives way to what it counted (None: nothing), its
    slot is freed, and a ledger hold not yet replaced by a record is released."""
    with run.lock:
        run.reserved[hold.provider] = max(0.0, run.reserved.get(hold.provider, 0.0) - hold.credits)
        run.spent[hold.provider] = run.spent.get(hold.provider, 0.0) + (counted or 0.0)
    if hold.token is not None:
        spending.release_hold(hold.token)
        hold.token = None
    if hold.slot:
        _free_slot(hold.provider)
        hold.slot = False


def count(shape: costs.CostShape, hold: Hold, credits: float, *, measured: bool) -> None:
    """Record what a request spent (measured: also remember it for estimates), replacing its
    ledger hold in the same write."""
    if measured:
        costs.record_measured(shape, credits, release=hold.token)
    else:
        spending.record(shape.provider, credits, release=hold.token)
    hold.token = None
