"""What this account has actually spent, kept in the pack's user folder: the credits each kind of
request cost when it was measured (the ground truth for estimates), and the credits spent each
day (for the daily cap).

Measured means: SinkIn's `credit_cost` in its answer, or for Segmind the drop in
`x-remaining-credits` from one answer to the next while no other Segmind request of this process
was in flight (the first answer only tells the balance). Writers in several processes take a
file lock, and each write replaces the file atomically. No key is ever part of the file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import date
from pathlib import Path
from typing import Any

from ... import userdata

LEDGER_FILE = "spending.json"
LOCK_TIMEOUT = 10.0   # seconds; a ledger that cannot be locked is skipped, never waited on forever
KEEP_DAYS = 62        # daily totals older than this are dropped
KEEP_SIGNATURES = 32  # exact measurements kept per kind of request


def ledger_file() -> Path:
    return userdata.pack_folder() / LEDGER_FILE


def today() -> str:
    return date.today().isoformat()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"kinds": {}, "days": {}}
    if not isinstance(data, dict):
        return {"kinds": {}, "days": {}}
    kinds = data.get("kinds") if isinstance(data.get("kinds"), dict) else {}
    days = data.get("days") if isinstance(data.get("days"), dict) else {}
    return {"kinds": kinds, "days": days}


def read() -> dict[str, Any]:
    """The whole ledger: {"kinds": {kind: {...}}, "days": {"YYYY-MM-DD": {provider: credits}}},
    with every record this process made before it."""
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


def _update(change, path: Path) -> None:
    """Apply `change(data)` under the lock and write the ledger back (losing one record costs an
    estimate, never a run)."""

    def apply():
        data = _read(path)
        change(data)
        cutoff = date.fromordinal(date.today().toordinal() - KEEP_DAYS).isoformat()
        data["days"] = {day: spent for day, spent in data["days"].items() if day >= cutoff}
        userdata.write_json(path, data)

    userdata.under_lock(Path(str(path) + ".lock"), apply, timeout=LOCK_TIMEOUT,
                        failed=f"the spending ledger {path} could not be updated")


def _credits(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and 0 <= value < 1e9 else None


def record(provider_id: str, credits: float, *, kind: str | None = None, signature: str | None = None,
           units: float | None = None, described: str = "") -> None:
    """Add `credits` to today's spend for the provider; when it was measured for a kind of
    request (`kind`, its exact `signature` and its size in `units`), remember it for estimates."""
    credits = _credits(credits)
    if credits is None:
        return

    def change(data: dict) -> None:
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

    future = _writer().submit(_update, change, ledger_file())  # the folder of now, not of when it is written
    with _pending_lock:
        _pending[:] = [f for f in _pending if not f.done()] + [future]


def spent_on(day: str | None = None) -> float:
    """Credits spent on `day` (default today), every provider together."""
    entry = read()["days"].get(day or today())
    if not isinstance(entry, dict):
        return 0.0
    return round(sum(v for v in (_credits(x) for x in entry.values()) if v is not None), 6)


def spent_by_provider(day: str | None = None) -> dict[str, float]:
    """Credits spent on `day` (default today) by each provider: the figures the caps use."""
    entry = read()["days"].get(day or today())
    if not isinstance(entry, dict):
        return {}
    return {str(k): v for k, v in ((k, _credits(x)) for k, x in entry.items()) if v is not None}


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
