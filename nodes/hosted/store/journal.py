"""The request journal: every job submitted to a queue API, kept until its result is fetched or
the provider forgets it, so that running the same node with the same inputs again (after an
interrupt, a lost answer, a ComfyUI restart) asks for that job instead of paying for a new one.

A job is found by the sha256 of its canonical request (provider, endpoint, JSON body with sorted
keys): the same inputs, the same fixed seed. No key is ever part of it. The file lives in the
pack's user folder; writers in several processes take a file lock, and each write replaces the
file atomically, so a crash mid-write leaves the previous journal.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ... import runtime, userdata
from ..keys import redaction

JOURNAL_FILE = "journal.json"
LOCK_TIMEOUT = 10.0  # seconds; a journal that cannot be locked is skipped, never waited on forever


def journal_file() -> Path:
    return userdata.pack_folder() / JOURNAL_FILE


def canonical_request(provider_id: str, endpoint: str, body: Any) -> str:
    """The sha256 that names one request: same provider, endpoint and body, same digest."""
    text = json.dumps([provider_id, endpoint, body], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("jobs") if isinstance(data, dict) else None
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(entries, dict) else {}


def _live(entries: dict[str, dict], now: float) -> dict[str, dict]:
    return {k: v for k, v in entries.items() if isinstance(v.get("expires_at"), (int, float)) and v["expires_at"] > now}


def _update(change) -> Any:
    """Apply `change(entries) -> result` under the lock and write the journal back (a journal
    that cannot be written costs only the resume)."""
    path = journal_file()

    def apply():
        entries = _live(_read(path), time.time())
        result = change(entries)
        userdata.write_json(path, {"jobs": entries})
        return result

    return userdata.under_lock(Path(str(path) + ".lock"), apply, timeout=LOCK_TIMEOUT,
                               failed=f"the request journal {path} could not be updated")


def find(digest: str) -> tuple[str, str, str] | None:
    """(request id, status URL, response URL) of the job already submitted for this request,
    while its provider still holds it."""
    entry = _live(_read(journal_file()), time.time()).get(digest)
    try:
        return (str(entry["request_id"]), str(entry["status_url"]), str(entry["response_url"])) if entry else None
    except KeyError:
        return None


def record(digest: str, provider_id: str, job: tuple[str, str, str], keep_for: float) -> None:
    """Remember a submitted job (request id, status URL, response URL) for `keep_for` seconds,
    the provider's result window."""
    now = time.time()
    request_id, status_url, response_url = job
    if any(redaction.redact(part) != part for part in job):  # a key never goes into a file
        runtime.log.warning("SD Bridge: a job's URLs carry a key; it is not written to the request journal")
        return
    entry = {"provider": provider_id, "request_id": request_id, "status_url": status_url,
             "response_url": response_url, "submitted_at": now, "expires_at": now + keep_for}
    _update(lambda entries: entries.__setitem__(digest, entry))


def forget(digest: str) -> None:
    """The job's result was fetched, or it failed or expired: nothing left to resume."""
    _update(lambda entries: entries.pop(digest, None))
