"""The result cache: images already paid for, kept on disk, so that a run repeating a request
(same provider, endpoint, every parameter after defaults, same input image bytes, same fixed
seed) returns them without asking the provider again, across restarts and for every workflow
on this machine.

An entry is named by the sha256 of its canonical request (see `key_for`); no key is ever part
of it or of any file. Each entry is a folder `entries/<digest>/` holding the provider's image
bytes as received (no re-encoding) and `entry.json` (the info, and each image's size and
sha256, so a damaged entry is seen and removed). An entry's folder is written in full under a
temporary name and renamed into place, so a crash never leaves half an entry that a lookup
returns. `index.json` records each entry's size and when it was last used; it is changed only
under a file lock (with a timeout: a cache that cannot be locked, read or written is skipped
with a log line, never fails a run), so two ComfyUI processes can share one user directory.
The cache is bounded by SDBRIDGE_RESULT_CACHE_MB (default 2048): the entries used longest ago
are removed first. The bound counts what the disk holds, not only the images: each file and
folder of an entry takes whole blocks (its allocated blocks where the system tells, st_blocks,
and at least its size rounded up to 4 KiB, a common cluster size, where it does not), and
index.json, the cache's folders and its lock file count too. Sizes are measured on disk at
every store, so an index that says otherwise (a negative or shrunken size) changes nothing.

Nothing a file says is trusted with a path: an entry name must be a sha256 digest, and every
folder written or removed goes through `userdata.inside` (no link followed out of the pack's
folder, `entries/` itself included).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ... import errors, pack_settings, runtime, userdata
from ...params import ValidationError, normalize_all
from ..keys import credentials, redaction

SWITCH_ENV = "SDBRIDGE_RESULT_CACHE"       # "off" switches the cache off (or its setting)
SIZE_ENV = "SDBRIDGE_RESULT_CACHE_MB"      # its bound in megabytes (or its setting)
DEFAULT_MB = 2048
FOLDER = "result_cache"
INDEX_FILE = "index.json"
ENTRY_FILE = "entry.json"
LOCK_TIMEOUT = 10.0    # seconds; never waited on forever
STALE_TEMP = 3600.0    # seconds after which a temporary folder left by a crash is removed
MB = 1024 * 1024
KEY_VERSION = 1        # part of every key: a change to what a key holds starts a new cache
BLOCK = 4096           # bytes: the least a file or folder is counted for where st_blocks is unknown
_DIGEST = re.compile(r"[0-9a-f]{64}")  # the only entry name there is (see key_for)


def folder() -> Path:
    return userdata.pack_folder() / FOLDER


def _entries() -> Path:
    return userdata.inside(folder() / "entries")


def _entry_folder(name: str) -> Path:
    if not _DIGEST.fullmatch(name):
        raise errors.UnsafePath(f"SD Bridge refused a result cache entry named {name[:80]!r}: not a sha256 digest.")
    return userdata.inside(_entries() / name)


def _disk_bytes(path: Path) -> int:
    """What one file or folder takes on disk (not following links)."""
    info = os.lstat(path)
    rounded = max(1, math.ceil(info.st_size / BLOCK)) * BLOCK  # an empty file still takes a block's entry
    return max(rounded, getattr(info, "st_blocks", 0) * 512)  # st_blocks is missing on Windows


def _folder_bytes(path: Path) -> int:
    """What an entry's folder and its files take on disk."""
    return _disk_bytes(path) + sum(_disk_bytes(item) for item in path.iterdir())


def _overhead() -> int:
    """What the cache's own folders and lock file take (a folder that once held many entries
    keeps its grown size on most file systems)."""
    total = 0
    for path in (folder(), folder() / "entries", folder() / "index.lock"):
        try:
            total += _disk_bytes(path)
        except OSError:
            total += BLOCK  # not made yet: it will be
    return total


def _index_bytes(entries: dict[str, dict]) -> int:
    """What index.json will take on disk with these entries."""
    return max(1, math.ceil(len(json.dumps({"entries": entries})) / BLOCK)) * BLOCK


def enabled() -> bool:
    """Off when SDBRIDGE_RESULT_CACHE (or its setting) says off."""
    return not pack_settings.is_off(SWITCH_ENV)


def limit_bytes() -> int:
    text = pack_settings.value(SIZE_ENV)
    megabytes = int(text) if size_problem(text) is None and text else DEFAULT_MB
    return megabytes * MB


def switch_problem(text: str) -> str | None:
    """Why a typed switch setting is not one ("" clears it)."""
    return None if text.strip().lower() in ("", "on", "off") else "write on or off"


def size_problem(text: str) -> str | None:
    """Why a typed size setting is not a size in megabytes ("" clears it)."""
    text = text.strip()
    if not text or (text.isdigit() and 0 < int(text) < 10**9):
        return None
    return "write a whole number of megabytes above 0, such as 2048"


def image_digests(inputs: dict[str, list[bytes]]) -> list[str]:
    """One "name:sha256" per input image, of the bytes exactly as they are sent."""
    return [f"{name}:{hashlib.sha256(data).hexdigest()}" for name in sorted(inputs) for data in inputs[name]]


def key_for(node_cls, values: dict, image_digests: list[str] | None = None) -> str | None:
    """The cache key of a run of `node_cls` with `values` (widget values or the node's
    normalized values; defaults apply to what is missing): the sha256 of the provider, its API
    base URL, the node's endpoint, every value normalized and the input images' digests, in
    canonical JSON. None when the run is not cacheable: the cache is off, the seed is not fixed
    (-1, or an Any Model body without an integer seed >= 0), a value is invalid, or an image
    input is connected (or required) and `image_digests` (see `image_digests()`) is not given."""
    if not enabled():
        return None
    images = [p for p in node_cls.PARAMS if p.kind == "IMAGE"]
    needs_images = any(not p.optional or values.get(p.name) is not None for p in images)
    if needs_images and image_digests is None:
        return None
    plain = [p for p in node_cls.PARAMS if p.kind != "IMAGE"]
    given = {p.name: values[p.name] for p in plain if p.name in values}
    defaults = {p.name: p.default for p in plain if p.name not in given and p.default is not None}
    try:
        normalized = normalize_all(plain, {**defaults, **given})
        plan = node_cls.plan(normalized, images=False)  # from widget values alone: no image is read
        base = credentials.base_url(node_cls.PROVIDER)
    except (ValidationError, ValueError, RuntimeError):
        return None
    if plan.seed is None:
        return None
    request = [KEY_VERSION, node_cls.PROVIDER.id, base, plan.endpoint, dict(plan.cache_values),
               list(image_digests or [])]
    try:
        text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _read_index() -> dict[str, dict]:
    try:
        data = json.loads((folder() / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return {}
    return {k: v for k, v in entries.items() if isinstance(k, str) and _DIGEST.fullmatch(k) and _sane(v)}


def _sane(entry: Any) -> bool:
    """An index row with a size and a time that are numbers in range (the size is measured again
    at every store; this keeps a hostile file from breaking the arithmetic)."""
    if not isinstance(entry, dict):
        return False
    size, used = entry.get("bytes"), entry.get("used")
    return (type(size) is int and 0 <= size < 2**53 and isinstance(used, (int, float))
            and not isinstance(used, bool) and math.isfinite(used))


def _write_index(entries: dict[str, dict]) -> None:
    userdata.write_json(folder() / INDEX_FILE, {"entries": entries})


def _locked(what: str, change, fallback=None):
    """Run `change()` under the cache's file lock; on a lock timeout or a file error, log and
    answer `fallback` (the run goes on without the cache)."""
    return userdata.under_lock(folder() / "index.lock", change, timeout=LOCK_TIMEOUT, fallback=fallback,
                               failed=f"the result cache could not {what}; going on without it")


def _remove_folder(path: Path) -> tuple[int, int]:
    """Delete an entry's folder (proven inside the pack's folder first); (files, bytes on disk)
    removed, counted as the bound counts them."""
    path = userdata.inside(path)
    files = size = 0
    if path.is_dir():
        try:
            size = _disk_bytes(path)
        except OSError:
            pass
        for item in path.iterdir():
            try:
                size += _disk_bytes(item)
                files += 1
            except OSError:
                pass
        shutil.rmtree(path, ignore_errors=True)
    return files, size


def has(key: str | None) -> bool:
    """Whether a result is stored under `key` (the index only: cheap, no lock)."""
    return bool(key) and enabled() and key in _read_index()


def cached_inputs(node_cls, inputs) -> bool:
    """Whether a run of `node_cls` with these API-prompt inputs is stored, for the cost estimate
    (budget's `cached`: a stored run costs nothing). An input that comes from another node (a
    [node, output] pair, or listed in `inputs.linked`) is known only at run time: not cached."""
    linked = set(getattr(inputs, "linked", ())) | {k for k, v in dict(inputs).items() if isinstance(v, list)}
    if any(p.name in linked for p in node_cls.PARAMS):
        return False
    return has(key_for(node_cls, dict(inputs), None))


def lookup(key: str | None) -> tuple[list[bytes], dict] | None:
    """The stored image bytes and info for `key`, marking the entry as just used; None on a
    miss. A damaged entry is a miss, and is removed."""
    if not key or not enabled() or key not in _read_index():
        return None

    def read():
        entries = _read_index()
        if key not in entries:
            return None
        found = _read_entry(_entry_folder(key))
        if found is None:
            runtime.log.warning("SD Bridge: a damaged result cache entry was removed")
            _remove_folder(_entry_folder(key))
            entries.pop(key)
        else:
            entries[key]["used"] = time.time()
        _write_index(entries)
        return found

    return _locked("be read", read)


def _read_entry(path: Path) -> tuple[list[bytes], dict] | None:
    try:
        entry = json.loads(userdata.inside(path / ENTRY_FILE).read_text(encoding="utf-8"))
        info, images = entry["info"], entry["images"]
        pictures = []
        for index, meta in enumerate(images):
            data = userdata.inside(path / str(index)).read_bytes()  # a link is a damaged entry
            if len(data) != meta["bytes"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
                return None
            pictures.append(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(info, dict) or not pictures:
        return None
    return pictures, info


def _holds_a_key(images: list[bytes], info_text: str) -> bool:
    if redaction.redact(info_text) != info_text:
        return True
    forms = {form.encode() for form in redaction.key_forms()}
    return any(form in data for form in forms for data in images)


def store(key: str | None, images: list[bytes], info: dict) -> bool:
    """Keep `images` (the provider's bytes, as received) and `info` under `key`, then remove the
    entries used longest ago while the cache is over its bound. True when stored."""
    if not key or not images or not enabled():
        return False
    try:
        info_text = json.dumps(info)
    except (TypeError, ValueError):
        return False
    if _holds_a_key(images, info_text):
        runtime.log.warning("SD Bridge: a result holds an API key; it is not written to the result cache")
        return False
    if not _DIGEST.fullmatch(key):
        return False
    limit = limit_bytes()
    temp = None
    try:
        entries_folder = _entries()
        entries_folder.mkdir(parents=True, exist_ok=True)
        temp = userdata.inside(Path(tempfile.mkdtemp(dir=userdata.inside(entries_folder), prefix=".tmp-")))
        for index, data in enumerate(images):
            (temp / str(index)).write_bytes(data)
        entry = {"info": info, "images": [{"bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for d in images]}
        (temp / ENTRY_FILE).write_text(json.dumps(entry), encoding="utf-8")
        size = _folder_bytes(temp)
    except OSError as exc:
        runtime.log.warning("SD Bridge: the result cache could not be written (%s)", exc)
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        return False
    if size + _overhead() + _index_bytes({key: {"bytes": size, "used": 0.0, "stored": 0.0}}) > limit:
        shutil.rmtree(temp, ignore_errors=True)
        return False

    def place():
        entries = _read_index()
        target = _entry_folder(key)
        if key in entries or target.exists():
            _remove_folder(target)  # stored again (a damaged or unindexed copy): this one wins
        os.replace(temp, target)
        now = time.time()
        entries[key] = {"bytes": size, "used": now, "stored": now}
        _sweep(entries)
        _evict(entries, limit, keep=key)
        _write_index(entries)
        return True

    stored = _locked("be written", place, False)
    if not stored:
        shutil.rmtree(temp, ignore_errors=True)
    return stored


def _evict(entries: dict[str, dict], limit: int, keep: str) -> None:
    """Remove the entries used longest ago until the entries, the index and the folders fit."""
    total = sum(entry["bytes"] for entry in entries.values()) + _overhead()
    index_text = len(json.dumps({"entries": entries}))
    for name in sorted(entries, key=lambda k: entries[k]["used"]):
        if total + max(1, math.ceil(index_text / BLOCK)) * BLOCK <= limit:
            break
        if name == keep:
            continue
        _remove_folder(_entry_folder(name))
        index_text -= len(json.dumps({name: entries[name]})) + 1  # its row and a separator
        total -= entries.pop(name)["bytes"]


def _sweep(entries: dict[str, dict]) -> None:
    """Measure every entry on disk (the index's sizes are not trusted) and remove what a crash
    left: entry folders the index does not know, index rows without a folder, old temporary
    folders. Anything else found there (a link, a stray file) is removed as a name, never followed."""
    now = time.time()
    seen = set()
    for path in _entries().iterdir():  # proven inside; each child is checked for a link below
        try:
            if userdata.is_link(path) or not path.is_dir():
                path.unlink()  # a link or a file: the name goes, what a link points at stays
            elif path.name.startswith(".tmp-"):
                if now - path.stat().st_mtime > STALE_TEMP:
                    _remove_folder(path)
            elif path.name in entries:
                entries[path.name]["bytes"] = _folder_bytes(path)
                seen.add(path.name)
            else:
                _remove_folder(path)
        except OSError:
            continue
    for name in set(entries) - seen:
        entries.pop(name)


def clear() -> tuple[int, int]:
    """Remove every stored result; (files, bytes) removed."""

    def wipe():
        files = size = 0
        if _entries().is_dir():
            for path in _entries().iterdir():
                if userdata.is_link(path) or not path.is_dir():
                    path.unlink()  # the link itself, never what it points at
                    continue
                removed = _remove_folder(path)
                files, size = files + removed[0], size + removed[1]
        _write_index({})
        return files, size

    return _locked("be cleared", wipe, (0, 0))


def stats() -> dict[str, Any]:
    """What the cache holds, its bound and whether it is on."""
    entries = _read_index()
    return {"enabled": enabled(), "results": len(entries), "bytes": sum(e["bytes"] for e in entries.values()),
            "limit_bytes": limit_bytes()}


# Settings > SD Bridge > Result cache.
SETTINGS = (
    pack_settings.Setting(
        SWITCH_ENV, "Result cache",
        "on: a run that repeats a request already paid for (same node, inputs and fixed seed) returns "
        "the stored images without asking the provider; off: every run asks.",
        switch_problem, "on", ("Result cache", "Cache"), "off"),
    pack_settings.Setting(
        SIZE_ENV, "Result cache size (MB)",
        "The most disk space the result cache takes; the results used longest ago go first.",
        size_problem, f"{DEFAULT_MB} MB", ("Result cache", "Size"), "2048"),
)
