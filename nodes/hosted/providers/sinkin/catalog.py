"""SinkIn's model and LoRA catalog: the live list read from SinkIn, its cache in the user
directory, and the bundled list that keeps the combos valid offline. A choice shows a title and
carries the id ("Realistic Vision V6.0 (r2La2w2)"); a bare id works too."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .... import runtime, userdata
from ....errors import ProviderError
from ...http.policy import IDEMPOTENT, Policies
from ...keys import credentials, redaction
from ...provider_table import SINKIN
from . import api as sinkin_api

CATALOG_MAX_AGE = 7 * 24 * 3600   # older, and a key is set: the catalog route reads a fresh one
NO_LORA = "none"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID_IN_CHOICE = re.compile(r"\(([A-Za-z0-9_-]{1,64})\)\s*$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
TITLE_MAX = 48  # characters of a title a choice shows, so the id after it stays in view
# Not shown as themselves: controls, line and paragraph separators, and the invisible formatting
# characters (bidirectional overrides, zero-width marks) that make a text read unlike its bytes.
_BREAKS = {"Cc", "Zl", "Zp"}             # shown as a space
_INVISIBLE = {"Cf", "Cs", "Co", "Cn"}     # left out
# Markup: a menu that sets innerHTML would run a title's <img onerror=...>.
_MARKUP = str.maketrans({"<": None, ">": None, "(": "[", ")": "]"})
COVER_URL_MAX = 2048  # characters; a longer cover_img is not a picture's address


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    cover: str = ""   # SinkIn's cover_img, an http(s) URL; only the server fetches it (covers.py)

    @property
    def choice(self) -> str:
        """What the widget shows: readable, and still carrying the id."""
        return f"{self.title} ({self.id})" if self.title and self.title != self.id else self.id


def id_from_choice(value: str) -> str | None:
    """The id in a choice ("Realistic Vision (r2La2w2)") or a bare id ("r2La2w2"); else None."""
    value = value.strip()
    found = _ID_IN_CHOICE.search(value)
    if found:
        return found.group(1)
    return value if _ID.fullmatch(value) else None


def _shown(character: str) -> str:
    category = unicodedata.category(character)
    return " " if category in _BREAKS else "" if category in _INVISIBLE else character


def clean_title(title: Any) -> str:
    """A provider's title as plain text that shows what it says: no markup, no hidden or
    direction-changing characters, no parentheses (in a choice the only "(...)" is its real
    id, at the end), no key, and at most TITLE_MAX characters, so a long title cannot push
    the real id out of view while showing another."""
    if not isinstance(title, str):
        return ""
    visible = "".join(_shown(c) for c in title)
    return redaction.cut(" ".join(visible.translate(_MARKUP).split()), TITLE_MAX - 1, "…")


def clean_cover(url: Any) -> str:
    """A cover_img as an absolute http(s) URL with a host and nothing that is not printed
    (no space, no control character), else "": the entry stays, without a picture."""
    if not isinstance(url, str) or not 0 < len(url) <= COVER_URL_MAX or not url.isascii() or not url.isprintable():
        return ""
    if any(c.isspace() or c in '<>"\\' for c in url):
        return ""
    try:
        parts = urlsplit(url)
        has_host = bool(parts.hostname)
    except ValueError:
        return ""
    return url if parts.scheme.lower() in ("http", "https") and has_host else ""


def parse_entries(items: Any) -> tuple[Entry, ...]:
    """Catalog entries from an answer's list, tolerantly: `title` or `name`, `cover_img` when it
    is an http(s) URL, other fields ignored, entries without a usable id skipped, the first of
    duplicate ids kept."""
    if not isinstance(items, list):
        return ()
    entries: dict[str, Entry] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        entry_id = item.get("id")
        if isinstance(entry_id, int) and not isinstance(entry_id, bool):
            entry_id = str(entry_id)
        if not isinstance(entry_id, str) or not _ID.fullmatch(entry_id.strip()):
            continue
        entry_id = entry_id.strip()
        entries.setdefault(entry_id, Entry(entry_id, clean_title(item.get("title") or item.get("name")),
                                           clean_cover(item.get("cover_img"))))
    return tuple(entries.values())


@dataclass(frozen=True)
class Catalog:
    models: tuple[Entry, ...]
    loras: tuple[Entry, ...]
    fetched_at: float | None = None   # when it was read from SinkIn; None for the bundled list

    def model_choices(self) -> list[str]:
        return [entry.choice for entry in self.models]

    def lora_choices(self) -> list[str]:
        return [NO_LORA] + [entry.choice for entry in self.loras]

    def find(self, entry_id: str) -> Entry | None:
        """The model or LoRA with this id (ids are matched exactly, as SinkIn does)."""
        return next((e for e in (*self.models, *self.loras) if e.id == entry_id), None)

    def age(self) -> float | None:
        return None if self.fetched_at is None else max(0.0, time.time() - self.fetched_at)


@functools.cache
def bundled_catalog() -> Catalog:
    data = json.loads((Path(__file__).parent / "catalog.json").read_text(encoding="utf-8"))
    return Catalog(parse_entries(data["models"]), parse_entries(data["loras"]))


def cache_file() -> Path:
    return userdata.pack_folder() / "sinkin_catalog.json"


_memo: dict[tuple, Catalog] = {}


def current_catalog() -> Catalog:
    """The last catalog read from SinkIn (cached in the user directory), else the bundled one.
    Cheap: ComfyUI asks for it each time it lists the nodes' inputs."""
    path = cache_file()
    try:
        stat = path.stat()
    except OSError:
        return bundled_catalog()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _memo:
        _memo.clear()
        _memo[key] = _read_cache(path)
    return _memo[key]


def _read_cache(path: Path) -> Catalog:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fetched_at = float(data["fetched_at"])
        if not math.isfinite(fetched_at):
            raise ValueError("fetched_at is not a time")
        catalog = Catalog(parse_entries(data["models"]), parse_entries(data["loras"]), fetched_at)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        runtime.log.warning("SinkIn: the catalog cache %s is unreadable (%s); using the bundled model list. "
                            "Refresh the catalog to rewrite it.", path, type(exc).__name__)
        return bundled_catalog()
    if not catalog.models:
        runtime.log.warning("SinkIn: the catalog cache %s lists no models; using the bundled model list.", path)
        return bundled_catalog()
    return catalog


def _stored(entry: Entry) -> dict:
    """An entry as the cache keeps it (the fields SinkIn's answer names them by)."""
    return {"id": entry.id, "title": entry.title, **({"cover_img": entry.cover} if entry.cover else {})}


def _write_cache(catalog: Catalog) -> None:
    path = cache_file()
    data = {"fetched_at": catalog.fetched_at,
            "models": [_stored(e) for e in catalog.models],
            "loras": [_stored(e) for e in catalog.loras]}
    userdata.write_json(path, data)


_in_flight: asyncio.Task | None = None  # the read under way: refreshes asked meanwhile share it


async def refresh_catalog(policies: Policies = sinkin_api.POLICIES) -> Catalog:
    """Read the model and LoRA lists from SinkIn and cache them. Each read is a keyed call:
    refreshes asked while one is under way wait for its answer instead of sending their own
    (one caller giving up does not withdraw it from the others)."""
    global _in_flight
    loop = asyncio.get_running_loop()
    if _in_flight is None or _in_flight.done() or _in_flight.get_loop() is not loop:
        _in_flight = loop.create_task(_read_catalog(policies))
        _in_flight.add_done_callback(_retrieved)
    return await asyncio.shield(_in_flight)


def _retrieved(task: asyncio.Task) -> None:
    """Every waiter may have given up: the read's failure is still taken, so asyncio does not
    log it as never retrieved (the waiters, if any, get it themselves)."""
    if not task.cancelled():
        task.exception()


async def _read_catalog(policies: Policies) -> Catalog:
    data = await sinkin_api.post_form("/api/models", {}, None, "models", resend=IDEMPOTENT,  # a read
                                      policies=policies)
    catalog = Catalog(parse_entries(data.get("models")), parse_entries(data.get("loras")), time.time())
    if not catalog.models:
        raise ProviderError(SINKIN, "listed no usable models; keeping the current list. Try again later.")
    _write_cache(catalog)
    return catalog


def _pictures(entries: tuple[Entry, ...]) -> list[dict]:
    """What the picker shows of each entry: its id, its title (plain text), the choice it sets,
    and whether the server has a cover for it (never the cover's URL: the page asks the pack)."""
    return [{"id": e.id, "title": e.title, "choice": e.choice, "cover": bool(e.cover)} for e in entries]


async def catalog_for_web(refresh: bool = False, *, read_sinkin: bool = True,
                          policies: Policies = sinkin_api.POLICIES) -> dict:
    """What the web extension shows. Reads SinkIn when asked, or when the list is older than
    CATALOG_MAX_AGE and a key is set (never with `read_sinkin` off: the page is loading and
    must not wait); a failed read keeps the current list and says why."""
    catalog = current_catalog()
    error = None
    stale = catalog.fetched_at is None or catalog.age() > CATALOG_MAX_AGE
    if refresh or (read_sinkin and stale and credentials.key_source(SINKIN)):
        try:
            catalog = await refresh_catalog(policies)
        except Exception as exc:  # noqa: BLE001 - the route must answer with the list it has
            error = redaction.redact(str(exc))
            runtime.log.warning("%s", error)
    age = catalog.age()
    return {"models": catalog.model_choices(), "loras": catalog.lora_choices(),
            "pictures": {"models": _pictures(catalog.models), "loras": _pictures(catalog.loras)},
            "source": "bundled" if catalog.fetched_at is None else "sinkin",
            "fetched_at": catalog.fetched_at, "age_seconds": None if age is None else round(age),
            "error": error}
