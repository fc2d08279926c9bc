"""What a job's hosted runs cost: the pack's receipts of one prompt (GET /sdbridge/receipts) read
into the manifest's `hosted` list and `hosted_cost` totals. Pure: the lane asks, this reads.

A total is per provider, in that provider's own unit, as each receipt names it (never two units
added); `unpriced` counts the runs whose cost is unknown (the total is then a lower bound), and
`basis` is the weakest of what was added ("estimated" as soon as one cost was).
"""

from __future__ import annotations

import math

ROUTE = "/sdbridge/receipts"
LIMIT = 100                  # receipts asked for one prompt (a workflow has far fewer hosted nodes)
MAX_BYTES = 8 << 20          # a longer answer is not the pack's (a receipt is at most 16 KiB)
TEXT = 200                   # characters kept of each text the manifest copies


class Unreadable(ValueError):
    """The answer is not the pack's receipts: `str()` says what is wrong, in a few words."""


def _text(value, what: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise Unreadable(f"a receipt's {what} is not text")
    return value[:TEXT]


def _cost(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise Unreadable("a receipt's cost is not a number of credits")
    return value


def _seed(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value[:TEXT] if isinstance(value, str) else value
    raise Unreadable("a receipt's seed is not a number")


def entry(receipt) -> dict:
    """One receipt as the manifest lists it."""
    if not isinstance(receipt, dict):
        raise Unreadable("a receipt is not an object")
    ids = receipt.get("request_ids", [])
    if not isinstance(ids, list):
        raise Unreadable("a receipt's request ids are not a list")
    return {"node_id": _text(receipt.get("node_id"), "node id", optional=True),
            "provider": _text(receipt.get("provider"), "provider"),
            "model": _text(receipt.get("endpoint"), "endpoint"),
            "seed": _seed(receipt.get("seed")),
            "request_ids": [_text(i, "request id") for i in ids[:50]],
            "status": _text(receipt.get("status"), "status"),
            "cost": _cost(receipt.get("credits")),
            "basis": _text(receipt.get("basis"), "basis", optional=True),
            "unit": _text(receipt.get("unit"), "unit", optional=True)}


def _rank(basis: str | None) -> int:
    """How weak a basis is: a cached result, a measured cost, then anything else (an estimate)."""
    return {"cached": 0, "measured": 1}.get(basis, 2)


def totals(entries: list[dict]) -> dict:
    """Each provider's total in its own unit; a provider whose receipts name two units is unreadable."""
    found: dict[str, dict] = {}
    for item in entries:
        total = found.setdefault(item["provider"], {"total": 0.0, "unit": item["unit"], "basis": None,
                                                    "unpriced": 0})
        if total["unit"] != item["unit"]:
            raise Unreadable(f"{item['provider']}'s receipts name two units ({total['unit']}, {item['unit']})")
        if item["cost"] is None:
            total["unpriced"] += 1
            continue
        total["total"] = round(total["total"] + item["cost"], 9)  # no 0.30000000000000004 in the manifest
        if total["basis"] is None or _rank(item["basis"]) > _rank(total["basis"]):
            total["basis"] = item["basis"] or "unknown"
    return found


def read(answer, prompt_id: str) -> tuple[list[dict], dict]:
    """(the hosted runs of `prompt_id` in the order they ran, their totals), or Unreadable."""
    if not isinstance(answer, dict) or not isinstance(answer.get("receipts"), list):
        raise Unreadable("not an object with a receipts list")
    mine = []
    for receipt in reversed(answer["receipts"]):  # the route answers newest first
        if isinstance(receipt, dict) and receipt.get("prompt_id") != prompt_id:
            raise Unreadable("a receipt of another prompt (the server did not filter by prompt_id)")
        mine.append(entry(receipt))
    return mine, totals(mine)
