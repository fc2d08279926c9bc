"""Receipts: one record per hosted run, whatever its end (done, from the result cache, failed, may
have been charged, cancelled): when, which provider and endpoint, which node of which prompt,
the inputs as sent (images by sha256, never bytes, never a key), the seed really used, every
request id, the status and the message shown, the cost and its basis, and the digests of the
images returned.

Receipts are JSON Lines under user/sdbridge/receipts/, one file per day (`YYYY-MM-DD.jsonl`).
A receipt is appended as one whole line under a file lock (two ComfyUI processes may share the
folder) and fsynced, so a crash mid-write can only tear the last line, which a read skips;
lines already written are never rewritten. Files older than SDBRIDGE_RECEIPTS_DAYS (default 30)
are removed. A receipt above MAX_RECEIPT_BYTES has its longest texts cut, with CUT_MARKER, and
is kept. A file that cannot be read is skipped with one log line and left where it is.

Writes go through one background thread (as the spending ledger's do), so a node returns its
images without waiting for the disk; `read` waits for what this process wrote before it.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from ... import pack_settings, runtime, userdata
from ..keys import redaction
from ..provider_table import PROVIDERS

FOLDER = "receipts"
DAYS_ENV = "SDBRIDGE_RECEIPTS_DAYS"   # how many days of receipts are kept (or its setting)
DEFAULT_DAYS = 30
MAX_DAYS = 3650
LOCK_TIMEOUT = 10.0          # seconds; receipts that cannot be locked are skipped, never waited on forever
MAX_RECEIPT_BYTES = 16 * 1024  # one line at most; longer texts are cut
CUT_MARKER = "[...cut by SD Bridge]"
MAX_LINE_READ = 4 * MAX_RECEIPT_BYTES  # a longer line was not written by the pack: skipped
MAX_LIMIT = 500              # receipts one read answers at most
STATUSES = ("done", "cached", "failed", "maybe_charged", "cancelled")
BASES = ("measured", "estimated", "unknown", "cached")
_DAY_FILE = re.compile(r"^\d{4}-\d{2}-\d{2}\.jsonl$")


def folder() -> Path:
    return userdata.pack_folder() / FOLDER


def days_problem(text: str) -> str | None:
    """Why a typed days setting is not a number of days ("" clears it)."""
    text = text.strip()
    if not text or (text.isdigit() and 0 < int(text) <= MAX_DAYS):
        return None
    return f"write a whole number of days from 1 to {MAX_DAYS}, such as 30"


def keep_days() -> int:
    text = pack_settings.value(DAYS_ENV)
    return int(text) if text and days_problem(text) is None else DEFAULT_DAYS


# ---------------------------------------------------------------- the record

def _plain(value: Any, scrub=None, depth: int = 0) -> Any:
    """`value` as plain JSON (images, anything with a shape, become their description; other
    objects their type name), each text passed through `scrub` when given."""
    if isinstance(value, str):
        return scrub(value) if scrub else value
    if value is None or isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > 6:
        return CUT_MARKER
    if isinstance(value, dict):
        return {_plain(str(k), scrub)[:200]: _plain(v, scrub, depth + 1) for k, v in list(value.items())[:200]}
    if isinstance(value, (list, tuple)):
        return [_plain(v, scrub, depth + 1) for v in list(value)[:200]]
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<image {'x'.join(str(int(n)) for n in shape)}>"
    return f"<{type(value).__name__}>"


def _without_keys(record: dict) -> dict:
    """`record` as plain JSON with every known key, in every spelling, replaced in every text."""
    return _plain(record, redaction.redactor())


def make(*, provider: str, endpoint: str, node_id: str | None, title: str | None, prompt_id: str | None,
         inputs: dict, image_digests: list[str], seed: Any, request_ids: list[str], status: str, message: str,
         credits: float | None, basis: str, returned: list[str], seconds: float | None = None,
         remaining: Any = None) -> dict:
    """One receipt, as it is written, served and put into PNGs: plain JSON, no key anywhere."""
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provider": provider, "endpoint": endpoint, "node_id": node_id, "title": title, "prompt_id": prompt_id,
        "inputs": inputs, "input_images": image_digests, "seed": seed,
        "request_ids": list(dict.fromkeys(str(r) for r in request_ids if r not in (None, ""))),
        "status": status if status in STATUSES else "failed", "message": message,
        "credits": credits, "unit": unit_of(provider), "basis": basis if basis in BASES else "unknown",
        "images": returned, "seconds": seconds, "remaining_credits": remaining,
    }
    return bounded(_without_keys(record))


def unit_of(provider: Any) -> str | None:
    """What `provider`'s credits count in (the table's), None for a provider the table lacks."""
    entry = PROVIDERS.get(provider) if isinstance(provider, str) else None
    return entry.credit_unit if entry else None


def with_unit(record: dict) -> dict:
    """`record` with its cost's unit: receipts written before they carried one get the table's."""
    return record if "unit" in record else {**record, "unit": unit_of(record.get("provider"))}


def bounded(record: dict) -> dict:
    """The record within MAX_RECEIPT_BYTES: its longest texts are cut (marked) until it fits;
    what never fits keeps only its identifying fields, marked as cut."""
    for _ in range(40):
        size = len(json.dumps(record).encode())  # ASCII-escaped: the longest way it is ever written
        if size <= MAX_RECEIPT_BYTES:
            return record
        path, text = _longest_text(record)
        if path is None or len(text) <= 64:
            break
        keep = max(32, len(text) - (size - MAX_RECEIPT_BYTES) - len(CUT_MARKER) * 2)
        _set(record, path, text[:min(keep, len(text) // 2)] + CUT_MARKER)
    short = {k: record.get(k) for k in ("time", "provider", "endpoint", "node_id", "prompt_id", "seed", "status",
                                        "credits", "unit", "basis", "remaining_credits")}
    return {**short, "request_ids": record.get("request_ids", [])[:20], "cut": CUT_MARKER}


def _longest_text(value: Any, path: tuple = ()) -> tuple[tuple | None, str]:
    best: tuple[tuple | None, str] = (None, "")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = (path + (key,), item) if isinstance(item, str) else _longest_text(item, path + (key,))
        if found[0] is not None and len(found[1]) > len(best[1]):
            best = found
    return best


def _set(value: Any, path: tuple, text: str) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = text


def last_balances(records: list[dict]) -> dict[str, Any]:
    """Each provider's remaining credits as the newest of `records` (newest first) that told it."""
    found: dict[str, Any] = {}
    for record in records:
        remaining = record.get("remaining_credits")
        if remaining not in (None, "") and isinstance(record.get("provider"), str):
            found.setdefault(record["provider"], remaining)
    return found


# ---------------------------------------------------------------- runs in flight

# The runs of this process that have begun and not ended (what a reloaded page shows as running).
_in_flight: dict[int, dict] = {}
_flight_lock = threading.Lock()
_tokens = itertools.count(1)


def begin(identity: dict) -> int:
    """A run began (its provider, endpoint, node and prompt); its token for `end`."""
    entry = {**_without_keys(identity), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with _flight_lock:
        token = next(_tokens)
        _in_flight[token] = entry
    return token


def end(token: int) -> None:
    with _flight_lock:
        _in_flight.pop(token, None)


def in_flight() -> list[dict]:
    """The runs still going in this process, oldest first."""
    with _flight_lock:
        return [dict(entry) for entry in _in_flight.values()]


# ---------------------------------------------------------------- writing

@functools.cache
def _writer() -> ThreadPoolExecutor:
    """The one writer thread, made on the first receipt (importing the pack starts none)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdbridge-receipts")


_pending: list[Future] = []
_pending_lock = threading.Lock()
_pruned_on: dict[Path, str] = {}  # folder -> the day its old files were last removed


def flush(timeout: float = LOCK_TIMEOUT + 5) -> None:
    """Wait for the receipts written so far to reach the disk."""
    with _pending_lock:
        pending, _pending[:] = list(_pending), []
    futures_wait(pending, timeout=timeout)


def write(record: dict) -> None:
    """Append `record` (see `make`) to today's file, off the caller's path."""
    future = _writer().submit(_append, folder(), date.today().isoformat(), record)  # the folder of now
    with _pending_lock:
        _pending[:] = [f for f in _pending if not f.done()] + [future]


def _append(where: Path, day: str, record: dict) -> None:
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if redaction.redact(line) != line:  # `make` removed every key; the last guard before a file
        runtime.log.warning("SD Bridge: a receipt held an API key; it was not written")
        return

    def append():
        path = userdata.inside(where / f"{day}.jsonl")  # never through a link out of the folder
        with open(path, "ab") as handle:
            if handle.tell() > 0 and not _ends_with_newline(path):
                handle.write(b"\n")  # a torn last line (a crash mid-write) stays torn, alone on its line
            handle.write(line.encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        if _pruned_on.get(where) != day:
            _prune(where)
            _pruned_on[where] = day

    userdata.under_lock(where / "receipts.lock", append, timeout=LOCK_TIMEOUT,
                        failed="a receipt could not be written")


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _prune(where: Path) -> None:
    """Remove the day files older than the setting allows."""
    cutoff = date.fromordinal(date.today().toordinal() - keep_days() + 1).isoformat()
    for path in where.iterdir():
        if _DAY_FILE.match(path.name) and path.name[:10] < cutoff:
            try:
                userdata.inside(path).unlink()
            except OSError as exc:
                runtime.log.warning("SD Bridge: an old receipts file %s could not be removed (%s)", path.name, exc)


# ---------------------------------------------------------------- reading

def read(limit: int = 50, prompt_id: str | None = None) -> list[dict]:
    """The newest `limit` receipts (of `prompt_id` only, when given), newest first. Torn or
    damaged lines are skipped; a file that cannot be read is skipped with one log line."""
    flush()
    limit = max(0, min(int(limit), MAX_LIMIT))
    found: list[dict] = []
    try:
        names = sorted((p for p in folder().iterdir() if _DAY_FILE.match(p.name) and not userdata.is_link(p)),
                       reverse=True)  # a link is not the pack's file: not read
    except OSError:
        return []
    for path in names:
        if len(found) >= limit:
            break
        records = _read_file(path)
        for record in reversed(records):
            if prompt_id is None or record.get("prompt_id") == prompt_id:
                found.append(record)
                if len(found) >= limit:
                    break
    return found


def _read_file(path: Path) -> list[dict]:
    records, bad = [], 0
    try:
        with open(path, "rb") as handle:
            for raw in _lines(handle):
                record = _parse(raw)
                if record is None:
                    bad += 1
                else:
                    records.append(record)
    except OSError as exc:
        runtime.log.warning("SD Bridge: the receipts file %s could not be read (%s); it was skipped and kept",
                            path.name, exc)
        return []
    if bad > 1 or (bad == 1 and not _torn_tail(path)):
        runtime.log.warning("SD Bridge: %d damaged line(s) in the receipts file %s were skipped; the file is kept "
                            "for inspection", bad, path.name)
    return records


def _lines(handle):
    """Each line, at most MAX_LINE_READ bytes (a longer one is read past and answered empty)."""
    while True:
        raw = handle.readline(MAX_LINE_READ + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_READ and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = handle.readline(MAX_LINE_READ + 1)
            yield b""
            continue
        yield raw


def _torn_tail(path: Path) -> bool:
    """A file whose last line has no newline: the one damage a crash mid-write leaves."""
    try:
        return not _ends_with_newline(path)
    except OSError:
        return False


def _parse(raw: bytes) -> dict | None:
    if not raw.endswith(b"\n"):
        return None  # torn by a crash mid-write
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("time"), str):
        return None
    if record.get("status") not in STATUSES:
        return None
    return record


# Settings > SD Bridge > Receipts.
SETTINGS = (
    pack_settings.Setting(
        DAYS_ENV, "Receipts kept (days)",
        "How many days of receipts (what each hosted run sent, its request ids, seed and cost) are kept in "
        "user/sdbridge/receipts; older day files are removed.",
        days_problem, f"{DEFAULT_DAYS} days", ("Receipts", "Days"), "30"),
)
