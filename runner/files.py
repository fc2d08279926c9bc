"""The images on disk: safe, free names in the output folder, and whole downloads only.

A name from the server is reduced to a plain file name (no folder, never "" or "."), kept within
255 bytes with its temporary ".part" suffix, and never one already taken: an earlier run's image,
or the manifest. A download goes to a ".part" file renamed when whole; on any failure every file
of that prompt is removed. One image may be at most MAX_IMAGE_BYTES (1 GiB).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .server import Server

MAX_IMAGE_BYTES = 1 << 30
NAME_BYTES = 255              # the longest file name Windows, macOS and Linux file systems all take
PART = ".part"
_UNSAFE = re.compile(r'[<>:"|?*\x00-\x1f]')  # not allowed in Windows file names


def plain_name(filename: str, fallback: str = "output") -> str:
    """The last part of `filename` as a name allowed on every system; `fallback` for "", "." or ".."."""
    name = _UNSAFE.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip().rstrip(".")
    return name if name.strip(".") else fallback


def fit(name: str, limit: int = NAME_BYTES) -> str:
    """`name` shortened (its stem, not its extension) to at most `limit` bytes in UTF-8."""
    if len(name.encode("utf-8")) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix.encode("utf-8")) > 16:
        stem, suffix = name, ""
    else:
        suffix = "." + suffix
    room = limit - len(suffix.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore") + suffix


def part(target: Path) -> Path:
    """Where `target` is written until it is whole."""
    return target.with_name(fit(target.name, NAME_BYTES - len(PART)) + PART)


def _key(path: Path) -> str:
    return os.path.normcase(str(path.resolve()))


def free_name(folder: Path, name: str, reserved: set[str] = frozenset()) -> Path:
    """`folder/name`, or `name-2.png`, `name-3.png`, ... when that name is taken (by a file, a
    download under way, or one of the `reserved` paths, e.g. the manifest)."""
    stem, suffix = Path(name).stem, Path(name).suffix
    for number in range(1, 10000):
        candidate = folder / fit(name if number == 1 else f"{stem}-{number}{suffix}")
        if not candidate.exists() and not part(candidate).exists() and _key(candidate) not in reserved:
            return candidate
    raise FileExistsError(f"{folder / name}: too many files of that name")


def reserve(*paths: Path) -> set[str]:
    return {_key(path) for path in paths}


def save_all(server: Server, images: tuple[dict, ...], folder: Path, prefix: str, reserved: set[str],
             stopping=lambda: False) -> list[Path]:
    """Every image of one prompt into `folder`, named `prefix` + its name; all or none."""
    saved: list[Path] = []
    partial: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for image in images:
            if stopping():
                raise InterruptedError("stopped")
            target = free_name(folder, prefix + plain_name(image.get("filename", "")), reserved)
            partial = part(target)
            server.save_image(image, partial, MAX_IMAGE_BYTES)
            partial.replace(target)
            saved.append(target)
            partial = None
    except BaseException:
        for path in [*saved, partial]:
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return saved
