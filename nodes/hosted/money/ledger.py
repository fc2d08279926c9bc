"""What this account has actually spent, kept in the pack's user folder: the credits each kind of
request cost when it was measured (the ground truth for estimates), and the credits spent each
day (for the daily cap).

Measured means: SinkIn's `credit_cost` in its answer, or for Segmind the drop in
`x-remaining-credits` from one answer to the next while no other Segmind request of this process
was in flight (the first answer only tells the balance). Writers in several processes take a
file lock, and each write replaces the file atomically. No key is ever part of the file.

While a cap is set, a request about to be sent first holds its estimate in the file (`hold`),
under the lock, so the day cap of every ComfyUI process on this user folder sees it; the spend
that follows replaces the hold in one write. A damaged file is renamed aside, never deleted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import date
from pathlib import Path
from typing import Any

from ... import runtime, userdata

LEDGER_FILE = "spending.json"
LOCK_TIMEOUT = 10.0   # seconds; a ledger that cannot be locked is skipped, never waited on forever
KEEP_DAYS = 62        # daily totals kept: the most recent days, so a clock jump never drops today's
KEEP_SIGNATURES = 32  # exact measurements kept per kind of request
HOLD_SECONDS = 30 * 60  # a hold older than this was left by a process that died (a request ends sooner)


class LedgerUnavailable(Exception):
    """The ledger could not be locked in time: what other processes hold is not known."""


def ledger_file() -> Path:
    return userdata.pack_folder() / LEDGER_FILE


def _lock_file(path: Path) -> Path:
    return Path(str(path) + ".lock")


def today() -> str:
    return date.today().isoformat()


def _empty() -> dict[str, Any]:
    return {"kinds": {}, "days": {}, "holds": {}}


def _credits(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and 0 <= value < 1e9 else None


def _load(path: Path) -> tuple[dict[str, Any], str | None]:
    """The ledger and, when the file is damaged, what is wrong with it (the data is then what
    could be kept of it). A missing file is an empty ledger, not a damaged one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _empty(), None
    except OSError:
        return _empty(), None  # unreadable now (another program has it open): not damage
    try:
        data = json.loads(text)
    except ValueError:
        return _empty(), "it is not complete JSON (cut short?)"
    if not isinstance(data, dict):
        return _empty(), "it is not a JSON object"
    found, problems = _empty(), []
    for part in ("kinds", "days", "holds"):
        value = data.get(part, {})
        if isinstance(value, dict):
            found[part] = value
        else:
            problems.append(f'"{part}" is not an object')
    for day, entry in list(found["days"].items()):
        if not isinstance(entry, dict) or any(_credits(v) is None for v in entry.values()):
            problems.append(f"the day {str(day)[:12]} is not a list of spends by provider")
            found["days"].pop(day)
    found["holds"] = {token: hold for token, hold in found["holds"].items() if _hold_credits(hold) is not None}
    if isinstance(data.get("damaged"), dict):
        found["damaged"] = data["damaged"]
    return found, "; ".join(problems) or None


def _hold_credits(hold: Any) -> float | None:
    if not isinstance(hold, dict) or not isinstance(hold.get("provider"), str):
        return None
    if not isinstance(hold.get("at"), (int, float)) or time.time() - hold["at"] > HOLD_SECONDS:
        return None
    return _credits(hold.get("credits"))


_told: set[str] = set()  # damaged files already logged by this process


def _set_aside(path: Path, data: dict[str, Any], problem: str) -> dict[str, Any]:
    """Keep a damaged ledger aside (renamed, never deleted), note it in the new one, log once.
    Called with the lock held."""
    kept = userdata.keep_aside(path, after_name=True, log=False)  # logged below, with what it means here
    data = {**data, "damaged": {"day": today(), "kept_as": kept.name, "problem": problem}}
    userdata.write_json(path, data)
    if str(kept) not in _told:
        _told.add(str(kept))
        runtime.log.warning("SD Bridge: the spending ledger %s was damaged (%s); it was kept as %s and a new "
                            "one started. Today's spend before it is not known: while a day cap is set, hosted "
                            "nodes stop until tomorrow (see README, Costs and caps).", path, problem, kept.name)
    return data


def _checked(path: Path) -> dict[str, Any]:
    """The ledger, with a damaged file set aside first (with the lock held)."""
    data, problem = _load(path)
    return _set_aside(path, data, problem) if problem else data


def _read(path: Path) -> dict[str, Any]:
    data, problem = _load(path)
    if not problem:
        return data
    return userdata.under_lock(_lock_file(path), lambda: _checked(path), timeout=LOCK_TIMEOUT,
                               failed=f"the damaged spending ledger {path} could not be set aside",
                               fallback=data)


def read() -> dict[str, Any]:
    """The whole ledger: {"kinds": {kind: {...}}, "days": {"YYYY-MM-DD": {provider: credits}},
    "holds": {token: {...}}, "damaged"?: {...}}, with every record this process made before it."""
    flush()
    return _read(ledger_file())


# Records are written by one background thread, so a node returns its images without waiting for
# the lock and the file; a read in this process waits for the records made before it.
@functools.cache
def _writer() -> ThreadPoolExecutor:
    """The one writer thread, made on first record (importing the pack starts none)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdbridge-ledger")


_pending: list[Future] = []
_pending_lock = threading.Lock()


def flush(timeout: float = LOCK_TIMEOUT + 5) -> None:
    """Wait for the records made so far to be written."""
    with _pending_lock:
        pending, _pending[:] = list(_pending), []
    futures_wait(pending, timeout=timeout)


def _prune(data: dict[str, Any]) -> None:
    """Keep the KEEP_DAYS most recent days (by date, not by the clock: a clock set 100 days ahead
    and back again finds today's record still there) and the holds still in force."""
    days = data["days"]
    data["days"] = {day: days[day] for day in sorted(days)[-KEEP_DAYS:]}
    data["holds"] = {t: h for t, h in data["holds"].items() if _hold_credits(h) is not None}


def _update(change, path: Path) -> None:
    """Apply `change(data)` under the lock and write the ledger back (losing one record costs an
    estimate, never a run)."""

    def apply():
        data = _checked(path)
        change(data)
        _prune(data)
        userdata.write_json(path, data)

    userdata.under_lock(_lock_file(path), apply, timeout=LOCK_TIMEOUT,
                        failed=f"the spending ledger {path} could not be updated")


def _submit(change) -> None:
    future = _writer().submit(_update, change, ledger_file())  # the folder of now, not of when it is written
    with _pending_lock:
        _pending[:] = [f for f in _pending if not f.done()] + [future]


def record(provider_id: str, credits: float, *, kind: str | None = None, signature: str | None = None,
           units: float | None = None, described: str = "", release: str | None = None) -> None:
    """Add `credits` to today's spend for the provider (and drop the hold `release`, in the same
    write, so other processes never see neither); when it was measured for a kind of request
    (`kind`, its exact `signature` and its size in `units`), remember it for estimates."""
    credits = _credits(credits)
    if credits is None:
        if release:
            release_hold(release)
        return

    def change(data: dict) -> None:
        if release:
            data["holds"].pop(release, None)
        day = data["days"].setdefault(today(), {})
        day[provider_id] = round(float(day.get(provider_id, 0.0)) + credits, 6)
        if kind is None or not units or units <= 0:
            return
        entry = data["kinds"].get(kind)
        entry = entry if isinstance(entry, dict) else {}
        exact = entry.get("exact") if isinstance(entry.get("exact"), dict) else {}
        if signature:
            exact.pop(signature, None)
            exact[signature] = credits
            while len(exact) > KEEP_SIGNATURES:
                exact.pop(next(iter(exact)))
        data["kinds"][kind] = {"per_unit": credits / units, "credits": credits, "described": described,
                               "at": time.time(), "exact": exact}

    _submit(change)


def release_hold(token: str) -> None:
    """A request ended having cost nothing that can be counted: drop its hold."""
    _submit(lambda data: data["holds"].pop(token, None))


def hold(provider_id: str, credits: float, check) -> str:
    """Under the lock every process shares: `check(spent_and_held_today, damaged)` (raising to
    refuse), then hold `credits` of today for a request about to be sent, so other processes
    count it. Returns the hold's token, for `record(release=...)` or `release_hold`. Raises
    LedgerUnavailable when the lock cannot be had."""
    flush()  # this process's own records first
    path = ledger_file()
    token = uuid.uuid4().hex

    def apply():
        data = _checked(path)
        check(_today(data).get(provider_id, 0.0), _damaged_today(data))
        data["holds"][token] = {"provider": provider_id, "credits": _credits(credits) or 0.0, "at": time.time(),
                                "pid": os.getpid()}
        _prune(data)
        userdata.write_json(path, data)
        return token

    found = userdata.under_lock(_lock_file(path), apply, timeout=LOCK_TIMEOUT,
                                failed=f"the spending ledger {path} could not be locked to check the day cap")
    if found is None:
        raise LedgerUnavailable(str(path))
    return found


def _spent(data: dict[str, Any], day: str) -> dict[str, float]:
    entry = data["days"].get(day)
    if not isinstance(entry, dict):
        return {}
    return {p: round(c, 6) for p, c in ((p, _credits(v)) for p, v in entry.items()) if c is not None}


def _held(data: dict[str, Any]) -> dict[str, float]:
    held: dict[str, float] = {}
    for entry in data["holds"].values():
        credits = _hold_credits(entry)
        if credits is not None:
            held[entry["provider"]] = round(held.get(entry["provider"], 0.0) + credits, 6)
    return held


def _today(data: dict[str, Any]) -> dict[str, float]:
    spent, held = _spent(data, today()), _held(data)
    return {p: round(spent.get(p, 0.0) + held.get(p, 0.0), 6) for p in {*spent, *held}}


def _damaged_today(data: dict[str, Any]) -> str | None:
    note = data.get("damaged")
    if isinstance(note, dict) and note.get("day") == today():
        return str(note.get("kept_as", ""))[:120] or "a damaged file"
    return None


# ---- what the caps, the estimate route and the receipts panel read (each provider in its own unit)

def spent_on(provider_id: str, day: str | None = None) -> float:
    """What `provider_id` was recorded as spending on `day` (default today), in its own unit."""
    return _spent(read(), day or today()).get(provider_id, 0.0)


def spent_today() -> dict[str, float]:
    """{provider: what it spent today}, each in its own unit (never added together)."""
    return _spent(read(), today())


def held_today() -> dict[str, float]:
    """{provider: what requests under way (in any process) hold}, each in its own unit."""
    return _held(read())


def counted_today() -> dict[str, float]:
    """{provider: spent today + held by requests under way}: what the day cap compares."""
    return _today(read())


def damaged_today() -> str | None:
    """The name the damaged ledger was kept under, when that happened today (else None)."""
    return _damaged_today(read())


class BalanceWatch:
    """Turns a provider's remaining-credits header into the cost of one request: the drop from
    the previous answer, when this request was the only one in flight since then."""

    def __init__(self):
        self._lock = threading.Lock()
        self._balance: float | None = None
        self._in_flight = 0
        self._overlapped = False

    def start(self) -> None:
        with self._lock:
            self._in_flight += 1
            if self._in_flight > 1:
                self._overlapped = True

    def finish(self, remaining: Any) -> float | None:
        """The request ended with `remaining` credits left (None when it failed or the header
        was missing: the balance is then unknown). Its cost, or None when it cannot be told."""
        try:
            balance = _credits(float(remaining)) if remaining not in (None, "") else None
        except (TypeError, ValueError):
            balance = None
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            drop = None
            if balance is not None and self._balance is not None and not self._overlapped:
                drop = round(self._balance - balance, 6)
                if drop < 0:  # a top-up in between: the cost cannot be told
                    drop = None
            self._balance = balance
            self._overlapped = self._in_flight > 0
            return drop
_watches: dict[tuple[str, str], BalanceWatch] = {}
_watches_lock = threading.Lock()


def balance_watch(provider_id: str, key: str) -> BalanceWatch:
    """The watch of one account (known by a digest of its key, kept in memory only)."""
    account = (provider_id, hashlib.sha256(key.encode()).hexdigest())
    with _watches_lock:
        return _watches.setdefault(account, BalanceWatch())


def forget_balances() -> None:
    """Forget every balance seen (tests; a new account)."""
    with _watches_lock:
        _watches.clear()
