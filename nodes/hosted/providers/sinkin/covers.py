"""SinkIn's cover pictures, for picking a model or LoRA by its picture in the editor.

The page never loads a cover from SinkIn's address: it asks the pack's route for a catalog id,
and only an id of the current catalog is looked up, so the page cannot aim the server at any
URL. The server fetches the entry's cover_img with the pinned safe download (http(s), public
addresses only, no key sent, an image content type, at most MAX_BYTES), decodes it within a
pixel bound and keeps only a THUMBNAIL-pixel JPEG re-encoded from the pixels (no metadata, no
script, nothing else of the original file). Thumbnails live in user/sdbridge/covers/, one file
per id and URL (a new cover URL is a new file), bounded by SDBRIDGE_SINKIN_COVERS_MB: the
thumbnails shown longest ago go first. Each cover is fetched once: requests for it while the
fetch is under way share it, and one that failed is not asked again for FAILED_FOR seconds; at
most AT_ONCE covers are fetched at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from pathlib import Path

from .... import images as imaging
from .... import pack_settings, userdata
from ....errors import InputError, ProviderError
from ...http.client import HttpClient
from ...http.policy import Limits, MiB, Policies, RetryPolicy
from ...keys import credentials
from ...keys.redaction import cut
from ...provider_table import SINKIN
from . import catalog as sinkin_catalog

ROUTE = "/sdbridge/sinkin/cover/"   # + a catalog id: the only address the page loads a cover from
SIZE_ENV = "SDBRIDGE_SINKIN_COVERS_MB"
DEFAULT_MB = 64
MB = 1024 * 1024
FOLDER = "covers"
SUFFIX = ".jpg"
MEDIA_TYPE = "image/jpeg"
THUMBNAIL = 128                     # pixels of the longer side of a thumbnail
MAX_BYTES = 2 * MiB                 # a cover file larger than this is not fetched whole
MAX_PIXELS = 4096 * 4096            # nor decoded
FAILED_FOR = 600.0                  # seconds a cover that could not be fetched is not asked again
LOCK_TIMEOUT = 10.0
AT_ONCE = 4  # covers fetched at the same time: a grid of them leaves the workers to the runs' downloads
# A picture for a picker: short waits and one retry; a cover that does not come shows the id alone.
POLICIES = Policies(retry=RetryPolicy(transient_attempts=2, rate_limit_attempts=1, max_delay=2.0),
                    downloads=Limits(connect_timeout=5.0, read_timeout=10.0, deadline=20.0, max_bytes=MAX_BYTES))

_fetching: dict[str, asyncio.Task] = {}   # file name -> the fetch under way
_failed: dict[str, float] = {}            # file name -> when its fetch failed (monotonic)
_gate: list = []                           # [the event loop, its semaphore of AT_ONCE]


def folder() -> Path:
    return userdata.pack_folder() / FOLDER


def _lock() -> Path:
    return userdata.pack_folder() / f"{FOLDER}.lock"  # beside the folder: never counted or evicted


def file_for(entry: sinkin_catalog.Entry) -> Path:
    """The thumbnail's file: named by a digest of id and URL (ids differ only by case on SinkIn,
    which Windows and macOS file names do not tell apart)."""
    digest = hashlib.sha256(f"{entry.id}\n{entry.cover}".encode()).hexdigest()[:40]
    return userdata.inside(folder() / f"{digest}{SUFFIX}")


def size_problem(text: str) -> str | None:
    """Why a typed size is not a whole number of megabytes ("" clears it)."""
    text = text.strip()
    if not text or (text.isdigit() and 0 < int(text) < 10**6):
        return None
    return f"write a whole number of megabytes above 0, such as {DEFAULT_MB}"


def limit_bytes() -> int:
    text = pack_settings.value(SIZE_ENV)
    return (int(text) if text and size_problem(text) is None else DEFAULT_MB) * MB


def thumbnail(data: bytes) -> bytes:
    """A small JPEG drawn from the picture's pixels alone; ImageDecodeError for what is not one."""
    image = imaging.decode_image(data, MAX_PIXELS)
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def entry_for(entry_id: str) -> sinkin_catalog.Entry:
    """The catalog entry whose cover the page asks for; InputError when there is none to show."""
    entry = sinkin_catalog.current_catalog().find(entry_id)
    if entry is None:
        raise InputError(f"{cut(entry_id, 64)!r} is not a model or LoRA of the SinkIn catalog; pick one from the "
                         "node's list (refresh it from the node's menu).")
    if not entry.cover:
        raise InputError(f"SinkIn gives no cover picture for {entry.id}; pick it by its title and id.")
    return entry


def _read(path: Path) -> bytes | None:
    """The stored thumbnail, marked as just used; None when there is none."""
    try:
        data = path.read_bytes()
        os.utime(path)  # the eviction goes by when a thumbnail was last shown
    except OSError:
        return None
    return data or None


def _store(path: Path, data: bytes) -> None:
    """Write the thumbnail, then remove the ones shown longest ago until the folder fits."""

    def change() -> None:
        userdata.write_bytes(path, data)
        _evict(path)

    userdata.under_lock(_lock(), change, timeout=LOCK_TIMEOUT, failed="a SinkIn cover could not be kept on disk")


def _evict(keep: Path) -> None:
    files = []
    for item in userdata.inside(folder()).iterdir():
        if item.suffix != SUFFIX or userdata.is_link(item):
            continue  # a crash's temporary file or a link: not the pack's thumbnail
        info = item.stat()
        files.append((info.st_mtime, item, info.st_size))
    total = sum(size for _, _, size in files)
    for _, item, size in sorted(files):
        if total <= limit_bytes():
            break
        if item != keep:
            userdata.inside(item).unlink(missing_ok=True)
            total -= size


async def cover(entry_id: str, policies: Policies = POLICIES) -> bytes:
    """The thumbnail of a catalog entry's cover (MEDIA_TYPE): from disk, else fetched once.
    InputError when the id has no cover to show; ProviderError when it could not be fetched."""
    entry = entry_for(entry_id)
    path = file_for(entry)
    stored = await asyncio.to_thread(_read, path)
    if stored is not None:
        return stored
    failed_at = _failed.get(path.name)
    if failed_at is not None and time.monotonic() - failed_at < FAILED_FOR:
        raise ProviderError(SINKIN, f"the cover of {entry.id} could not be fetched a moment ago; it is asked again "
                            f"{FAILED_FOR / 60:.0f} minutes after that. Pick it by its title and id meanwhile.")
    loop = asyncio.get_running_loop()
    task = _fetching.get(path.name)
    if task is None or task.done() or task.get_loop() is not loop:
        task = _fetching[path.name] = loop.create_task(_fetch(entry, path, policies))
        task.add_done_callback(lambda done: _finished(path.name, done))
    return await asyncio.shield(task)  # one caller giving up does not withdraw it from the others


def _finished(name: str, task: asyncio.Task) -> None:
    if _fetching.get(name) is task:
        del _fetching[name]
    if not task.cancelled() and task.exception() is not None:  # taken, so asyncio does not log it
        _failed[name] = time.monotonic()


def _gate_of(loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
    if not _gate or _gate[0] is not loop:
        _gate[:] = [loop, asyncio.Semaphore(AT_ONCE)]
    return _gate[1]


async def _fetch(entry: sinkin_catalog.Entry, path: Path, policies: Policies) -> bytes:
    client = HttpClient(SINKIN, retry=policies.retry, limits=policies.downloads, follows_interrupts=False)
    try:
        async with _gate_of(asyncio.get_running_loop()):
            reply = await client.download(entry.cover, base=credentials.base_url(SINKIN))
        picture = await asyncio.to_thread(thumbnail, reply.body)
    except imaging.ImageDecodeError as exc:
        raise ProviderError(SINKIN, f"the cover of {entry.id} is not a picture SD Bridge shows ({exc}).") from None
    except ProviderError as exc:
        raise ProviderError(SINKIN, f"the cover of {entry.id} could not be fetched ({exc}).", exc.status) from None
    await asyncio.to_thread(_store, path, picture)
    return picture


def forget() -> None:
    """Forget fetches under way and failures (a new process, or a test, starts clean)."""
    _fetching.clear()
    _failed.clear()
    _gate.clear()


# Settings > SD Bridge > SinkIn > Covers.
SETTINGS = (
    pack_settings.Setting(
        SIZE_ENV, "SinkIn cover pictures (MB)",
        "The most disk space the thumbnails of SinkIn's model and LoRA covers take (for picking a model "
        "by its picture); the ones shown longest ago go first.",
        size_problem, f"{DEFAULT_MB} MB", ("SinkIn", "Covers"), str(DEFAULT_MB), SINKIN.id),
)
