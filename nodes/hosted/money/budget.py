"""Spending caps, and the estimate of a whole prompt.

`estimate_prompt` prices an API-format prompt (what /prompt takes) node by node; the estimate
route and the caps both use it. The caps (SDBRIDGE_MAX_CREDITS_PER_RUN, ..._PER_DAY, or
Settings > SD Bridge; the environment wins) are checked by every hosted node before its first
request:

- the first hosted node of a run refuses when the run's known estimate is above the run cap, or
  would take today's spend past the day cap, so a refused prompt sends nothing;
- every node refuses once what the run (or the day) actually spent, plus its own known
  estimate, would pass a cap: nodes with unknown estimates run only while the spend stays under.

No cap set means no check at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import runtime
from ...errors import BudgetExceeded
from ...params import ValidationError, normalize_all
from . import ledger as spending
from . import prices as costs
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
    """{"total", "nodes": {id: {"provider", "credits", "basis"}}, "unknown": [ids]} for an
    API-format prompt, whose hosted node classes are `classes` (by id). Only hosted nodes are priced; muted and bypassed ones (a "mode" of 2 or 4,
    as the workflow format spells it) cost nothing."""
    ledger = spending.read()
    nodes: dict[str, dict] = {}
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
    unknown = [node_id for node_id, entry in nodes.items() if entry["credits"] is None]
    known = [entry["credits"] for entry in nodes.values() if entry["credits"] is not None]
    total = costs.rounded(sum(known)) if known or not unknown else None
    return {"total": total, "nodes": nodes, "unknown": unknown}


@dataclass
class Run:
    estimate: dict | None = None       # estimate_prompt of the run's prompt, made once
    spent: float = 0.0                 # what the run's nodes spent (measured, else estimated)
    reserved: float = 0.0              # estimates of requests under way, not yet settled
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


def _fmt(credits: float) -> str:
    return f"{costs.rounded(credits):g}"


def _fix(name: str) -> str:
    return (f"raise or clear {name} in Settings > SD Bridge (or in the environment, which wins), "
            "or ask for fewer or smaller images")


def check_before_request(run: Run, prompt: Mapping | None, own: costs.Estimate, classes: Mapping[str, type],
                         cached=None) -> float:
    """Raise BudgetExceeded when this node's request would pass a cap; else reserve its known
    estimate (nodes of one run may send at the same time) and return it, for `settle`."""
    run_cap, day_cap = cap(RUN_CAP), cap(DAY_CAP)
    if run_cap is None and day_cap is None:
        return 0.0
    with run.lock:
        if run.estimate is None:
            run.estimate = estimate_prompt(prompt or {}, classes, cached)
            total = run.estimate["total"] or 0.0
            unknown = len(run.estimate["unknown"])
            more = f", plus {unknown} node{'s' if unknown != 1 else ''} with no estimate" if unknown else ""
            if run_cap is not None and total > run_cap:
                raise BudgetExceeded(
                    f"SD Bridge: this prompt is estimated at {_fmt(total)} credits{more}, above the cap of "
                    f"{_fmt(run_cap)} per run ({RUN_CAP}). Nothing was sent. To run it, {_fix(RUN_CAP)}.")
            today = spending.spent_on()
            if day_cap is not None and today + total > day_cap:
                raise BudgetExceeded(
                    f"SD Bridge: this prompt is estimated at {_fmt(total)} credits{more}; with the {_fmt(today)} "
                    f"spent today that passes the cap of {_fmt(day_cap)} per day ({DAY_CAP}). Nothing was sent. "
                    f"To run it, {_fix(DAY_CAP)}.")
        next_cost = own.credits or 0.0
        spent = run.spent + run.reserved
        if run_cap is not None and (spent >= run_cap or spent + next_cost > run_cap):
            raise BudgetExceeded(
                f"SD Bridge: this run has spent {_fmt(spent)} credits; this node "
                f"({_fmt(next_cost) if own.credits is not None else 'cost unknown'}) would pass the cap of "
                f"{_fmt(run_cap)} per run ({RUN_CAP}). Its request was not sent. To go on, {_fix(RUN_CAP)}.")
        today = spending.spent_on() + run.reserved
        if day_cap is not None and (today >= day_cap or today + next_cost > day_cap):
            raise BudgetExceeded(
                f"SD Bridge: {_fmt(today)} credits were spent today; this node "
                f"({_fmt(next_cost) if own.credits is not None else 'cost unknown'}) would pass the cap of "
                f"{_fmt(day_cap)} per day ({DAY_CAP}). Its request was not sent. To go on, {_fix(DAY_CAP)}.")
        run.reserved += next_cost
        return next_cost


def settle(run: Run, reserved: float, credits: float | None) -> None:
    """The request ended: its reservation gives way to what it spent (None: nothing known)."""
    with run.lock:
        run.reserved = max(0.0, run.reserved - reserved)
        run.spent += credits or 0.0
