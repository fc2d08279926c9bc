"""The files the pack keeps in ComfyUI's user directory (keys, settings, the journal, the ledger,
the result cache, the SinkIn catalog cache): one folder, written atomically so a crash never
leaves half a file, private to the user.

Every path the pack writes or deletes there goes through `inside()` first: whatever a file in
the folder names, and whatever links someone put there, nothing outside it is ever written or
deleted. A file that cannot be read is kept aside (`keep_aside`), never silently overwritten.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

from . import runtime
from .errors import UnsafePath

UPDATE_TIMEOUT = 10.0  # seconds a settings or key change waits for another process's change


def pack_folder() -> Path:
    # Beside, not inside, ComfyUI's per-user folders: its /userdata routes cannot serve it.
    return runtime.user_directory() / "sdbridge"


def inside(path: Path) -> Path:
    """`path`, proven to lead to a place inside the pack's folder: no `..`, no absolute part, and
    no link (symlink, or junction on Windows) anywhere below the folder, however the path was
    made (a name read from a file included). UnsafePath otherwise. The folder itself may be
    wherever the user put it (a link to it is the user's choice); what lies below it is the
    pack's alone."""
    root = pack_folder()
    real_root = Path(os.path.realpath(root))
    path = Path(path)
    try:
        relative = path.relative_to(root)
    except ValueError:
        try:
            relative = path.relative_to(real_root)
        except ValueError:
            raise UnsafePath(f"SD Bridge refused to touch {path}: it is not inside its folder {root}.") from None
    if any(part in ("..", ".") for part in relative.parts) or relative.anchor:
        raise UnsafePath(f"SD Bridge refused to touch {path}: the name leads out of its folder {root}.")
    expected = real_root / relative
    # realpath follows every link and junction below the (real) root: any of them shows as a change.
    if os.path.normcase(os.path.realpath(expected)) != os.path.normcase(str(expected)):
        raise UnsafePath(f"SD Bridge refused to touch {path}: a part of it is a link that leads elsewhere "
                         f"({os.path.realpath(expected)}). Delete the link (what it points at is not "
                         f"touched) so SD Bridge can make a real folder or file there.")
    return expected


def is_link(path: Path) -> bool:
    """Whether `path` itself is a symlink, or a junction (or another reparse point) on Windows:
    one lstat, for walking a folder already proven `inside`."""
    info = os.lstat(path)
    return stat.S_ISLNK(info.st_mode) or bool(getattr(info, "st_file_attributes", 0)
                                              & stat.FILE_ATTRIBUTE_REPARSE_POINT)


def write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON, atomically; file 0600 and folder 0700 (on Windows the
    user's profile folder already keeps other users out)."""
    write_bytes(path, json.dumps(data).encode("utf-8"))  # one write, not one per token


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, atomically, as write_json does."""
    path = inside(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    inside(path.parent)  # made just now: still no link in the way
    os.chmod(path.parent, 0o700)  # on Windows this only clears the read-only flag: harmless
    # mkstemp makes the file readable and writable by its owner only, on every platform; no
    # fchmod (Windows has none before Python 3.13).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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
        lock = inside(lock)
        lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(lock), timeout=timeout):
            return change()
    except (OSError, TimeoutError) as exc:
        runtime.log.warning("SD Bridge: %s (%s)", failed, exc)
        return fallback


def update_strings(path: Path, change: Callable[[dict[str, str]], None]) -> None:
    """Read the string file `path` (see `read_strings`), `change` it and write it back, all under
    its file lock, so two processes saving at once both keep their change. A damaged file is
    kept aside first. Raises (OSError, a lock not free within UPDATE_TIMEOUT) instead of losing
    a change silently."""
    path = inside(path)
    lock = inside(path.with_name(path.name + ".lock"))
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock), timeout=UPDATE_TIMEOUT):
            if damaged(path):
                keep_aside(path)
            stored = read_strings(path)
            change(stored)
            write_json(path, stored)
    except LockTimeout:
        raise OSError(f"SD Bridge could not save {path}: another ComfyUI process kept it locked for "
                      f"{UPDATE_TIMEOUT:.0f} s. Try again in a moment.") from None


def damaged(path: Path) -> bool:
    """Whether `path` exists but does not hold a JSON object (cut short, garbage, emptied)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return path.is_file()
    try:
        return not isinstance(json.loads(text), dict)
    except ValueError:
        return True


DAMAGED_MARK = ".damaged-"  # journal.json -> journal.damaged-20261206T004438Z.json


def damaged_copies(path: Path) -> list[Path]:
    """The copies of `path` kept aside as damaged, oldest first."""
    return sorted(path.parent.glob(f"{path.stem}{DAMAGED_MARK}*{path.suffix}"))


def keep_aside(path: Path, consequence: str = "", *, after_name: bool = False, log: bool = True) -> Path:
    """Rename the damaged file `path` to <stem>.damaged-<UTC time><suffix> beside it (or, with
    `after_name`, <name>.damaged-<UTC time>) — never deleted: it may be the only record of
    something — and log it (unless the caller says it in its own words); the new name."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")

    def named(tail: str) -> Path:
        name = f"{path.name}{DAMAGED_MARK}{tail}" if after_name else f"{path.stem}{DAMAGED_MARK}{tail}{path.suffix}"
        return inside(path.with_name(name))

    aside = named(stamp)
    for count in range(2, 100):
        if not aside.exists():
            break
        aside = named(f"{stamp}-{count}")
    _replace(str(inside(path)), aside)
    if log:
        runtime.log.warning("SD Bridge: %s could not be read; it was kept aside as %s and a new one started.%s",
                            path, aside, f" {consequence}" if consequence else "")
    return aside


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
