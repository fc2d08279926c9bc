"""The files the pack keeps in ComfyUI's user directory (keys, the SinkIn catalog cache):
one folder, written atomically so a crash never leaves half a file, private to the user."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from . import runtime


def pack_folder() -> Path:
    # Beside, not inside, ComfyUI's per-user folders: its /userdata routes cannot serve it.
    return runtime.user_directory() / "sdbridge"


def write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, atomically; file 0600 and folder 0700 (on Windows the
    user's profile folder already keeps other users out)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # on Windows this only clears the read-only flag: harmless
    # mkstemp makes the file readable and writable by its owner only, on every platform; no
    # fchmod (Windows has none before Python 3.13).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        _replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def under_lock(lock: Path, change, *, timeout: float, failed: str, fallback: Any = None) -> Any:
    """`change()` while holding the file lock `lock`, shared by every ComfyUI process on this user
    folder. When the lock is not free within `timeout` seconds, or a file cannot be read or
    written, log `failed` with the reason and answer `fallback`: the pack's own bookkeeping (the
    journal, the ledger, the result cache) never fails a run."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=timeout):
            return change()
    except (OSError, TimeoutError) as exc:
        runtime.log.warning("SD Bridge: %s (%s)", failed, exc)
        return fallback


REPLACE_TRIES = 10  # about a second in all


def _replace(source: str, target: Path) -> None:
    """os.replace, waiting a moment while another process holds `target` open: Windows refuses
    to replace an open file (PermissionError) where macOS and Linux do not."""
    for attempt in range(REPLACE_TRIES):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == REPLACE_TRIES - 1:
                raise PermissionError(f"SD Bridge could not write {target}: another program keeps it open. Close "
                                      "it (or wait a moment) and try again.") from None
            time.sleep(0.02 * (attempt + 1))


def read_strings(path: Path) -> dict[str, str]:
    """The non-empty string entries of a JSON object file; {} when it is missing or damaged
    (the pack then behaves as if nothing was saved)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and v.strip()}
