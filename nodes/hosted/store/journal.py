"""The request journal: every job submitted to a queue API, kept until its result is fetched or
the provider forgets it, so that running the same node with the same inputs again (after an
interrupt, a lost answer, a ComfyUI restart) asks for that job instead of paying for a new one.

A job is found by the sha256 of its canonical request (provider, endpoint, JSON body with sorted
keys): the same inputs, the same fixed seed. No key is ever part of it. The file lives in the
pack's user folder; writers in several processes take a file lock, and each write replaces the
file atomically, so a crash mid-write leaves the previous journal.

A journal that cannot be read is never taken for an empty one (that would pay for its requests
again): it is kept aside as journal.damaged-<UTC time>.json, logged once, and for a day any
request it lists (every request, when it lists none it can tell) is refused with `MaybeSent`
until the user has checked the provider's history and deleted that file.

Only what resuming needs is kept: the request id and the job's URLs without credentials (no
`user:password@`, no token or signature in the query; the configured base URL supplies its own
again when the job is asked for). Older journals that kept them still read, and lose them on
the next write.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ... import runtime, userdata
from ...errors import MaybeSent
from ..keys import redaction

JOURNAL_FILE = "journal.json"
LOCK_TIMEOUT = 10.0  # seconds; a journal that cannot be locked is skipped, never waited on forever
DAMAGED_HOLDS = 24 * 3600.0  # seconds a damaged journal holds its requests back (providers keep ~1 h)
_DIGEST = re.compile(r"[0-9a-f]{64}")
# Query parameters that carry a credential rather than say which job: never written.
_SECRET_PARAM = re.compile(r"token|sig|key|secret|password|passwd|auth|credential|session", re.IGNORECASE)


def journal_file() -> Path:
    return userdata.pack_folder() / JOURNAL_FILE


def canonical_request(provider_id: str, endpoint: str, body: Any) -> str:
    """The sha256 that names one request: same provider, endpoint and body, same digest."""
    text = json.dumps([provider_id, endpoint, body], sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _lock() -> Path:
    return Path(str(journal_file()) + ".lock")


def _load(path: Path) -> dict[str, dict] | None:
    """The journal's jobs; {} when there is no journal, None when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    entries = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return None
    return {k: v for k, v in entries.items() if isinstance(v, dict)}


def _read(path: Path) -> dict[str, dict]:
    """The journal's jobs, after keeping a damaged journal aside (so it is never overwritten)."""
    entries = _load(path)
    if entries is None:
        _keep_aside(path)
        return {}
    return entries


def _keep_aside(path: Path) -> None:
    """Under the lock (another process may have done it already): rename it, log it once."""
    if _load(path) is None and path.exists():
        userdata.keep_aside(path, "A request it held may already have been sent and paid for: SD Bridge will not "
                                  "send such a request again until that file is deleted.")


def without_credentials(url: str) -> str:
    """`url` with no user:password@ and no query parameter that carries a credential."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not _SECRET_PARAM.search(k)])
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def _live(entries: dict[str, dict], now: float) -> dict[str, dict]:
    return {k: v for k, v in entries.items() if isinstance(v.get("expires_at"), (int, float)) and v["expires_at"] > now}


def _update(change) -> Any:
    """Apply `change(entries) -> result` under the lock and write the journal back (a journal
    that cannot be written costs only the resume)."""
    path = journal_file()

    def apply():
        entries = _live(_read(path), time.time())
        result = change(entries)
        for entry in entries.values():  # an older journal kept credentials: not any more
            for field in ("status_url", "response_url"):
                if isinstance(entry.get(field), str):
                    entry[field] = without_credentials(entry[field])
        userdata.write_json(path, {"jobs": entries})
        return result

    return userdata.under_lock(_lock(), apply, timeout=LOCK_TIMEOUT,
                               failed=f"the request journal {path} could not be updated")


def find(digest: str) -> tuple[str, str, str] | None:
    """(request id, status URL, response URL) of the job already submitted for this request,
    while its provider still holds it. MaybeSent when the journal could not be read and this
    request may be one it held."""
    path = journal_file()
    entries = _load(path)
    if entries is None:
        userdata.under_lock(_lock(), lambda: _keep_aside(path), timeout=LOCK_TIMEOUT,
                            failed=f"the damaged request journal {path} could not be kept aside")
        entries = {}
    _refuse_if_maybe_sent(path, digest)
    entry = _live(entries, time.time()).get(digest)
    try:
        return (str(entry["request_id"]), without_credentials(str(entry["status_url"])),
                without_credentials(str(entry["response_url"]))) if entry else None
    except KeyError:
        return None


def _refuse_if_maybe_sent(path: Path, digest: str) -> None:
    """MaybeSent when a journal kept aside as damaged in the last DAMAGED_HOLDS seconds lists
    this request, or lists no request it can tell (then any request may be one of them)."""
    for copy in userdata.damaged_copies(path):
        try:
            if time.time() - copy.stat().st_mtime > DAMAGED_HOLDS:
                continue
            text = copy.read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        if digest in text or not _DIGEST.search(text):
            listed = "lists this request" if digest in text else "cannot tell which requests it held"
            raise MaybeSent(
                f"SD Bridge did not send this request: the request journal could not be read, was kept aside as "
                f"{copy}, and {listed}, so it may already have been sent and paid for. Look for it in your "
                f"provider's request history; to send it anyway, delete {copy} (or change the seed) and run again.")


def record(digest: str, provider_id: str, job: tuple[str, str, str], keep_for: float) -> None:
    """Remember a submitted job (request id, status URL, response URL) for `keep_for` seconds,
    the provider's result window."""
    now = time.time()
    request_id, status_url, response_url = job
    if any(redaction.redact(part) != part for part in job):  # a key never goes into a file
        runtime.log.warning("SD Bridge: a job's URLs carry a key; it is not written to the request journal")
        return
    entry = {"provider": provider_id, "request_id": request_id, "status_url": without_credentials(status_url),
             "response_url": without_credentials(response_url), "submitted_at": now, "expires_at": now + keep_for}
    _update(lambda entries: entries.__setitem__(digest, entry))


def forget(digest: str) -> None:
    """The job's result was fetched, or it failed or expired: nothing left to resume."""
    _update(lambda entries: entries.pop(digest, None))
