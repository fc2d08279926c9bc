"""The result cache cannot be turned against the user (#17.7): whatever its index.json says and
whatever links someone put in its folder, nothing outside user/sdbridge/ is written or deleted,
and the disk it takes (blocks, the index, entry.json: all of it) stays under its bound."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdbridge.nodes import userdata
from sdbridge.nodes.errors import UnsafePath
from sdbridge.nodes.hosted.store import result_cache

MB = 1024 * 1024


def _digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def _outside(tmp_path: Path) -> Path:
    """A folder beside the user directory, full of things to lose: two subfolders with a file each."""
    victim = tmp_path / "victim"
    for name in ("photos", "letters"):
        (victim / name).mkdir(parents=True, exist_ok=True)
        (victim / name / "keep.txt").write_text("mine")
    return victim


def _untouched(victim: Path) -> bool:
    return sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == [
        "letters", os.path.join("letters", "keep.txt"), "photos", os.path.join("photos", "keep.txt")]


def _disk(path: Path) -> int:
    """What `path` and everything below it take on disk, measured independently of the cache's
    own accounting: allocated blocks (st_blocks) where the system tells, else sizes rounded up
    to 4 KiB."""
    total = 0
    for item in [path, *path.rglob("*")]:
        info = os.lstat(item)
        blocks = getattr(info, "st_blocks", None)
        total += blocks * 512 if blocks is not None else max(1, math.ceil(info.st_size / 4096)) * 4096
    return total


def _bound(monkeypatch, megabytes: int = 1) -> None:
    monkeypatch.setenv(result_cache.SIZE_ENV, str(megabytes))


def _write_index(entries: dict) -> None:
    result_cache.folder().mkdir(parents=True, exist_ok=True)
    (result_cache.folder() / result_cache.INDEX_FILE).write_text(json.dumps({"entries": entries}))


def _symlink(link: Path, target: Path) -> None:
    try:
        os.symlink(target, link, target_is_directory=True)
    except (OSError, NotImplementedError) as exc:  # Windows without the right to make links
        pytest.skip(f"symlinks cannot be made here ({exc})")


@pytest.mark.parametrize("hostile", ["relative", "absolute"])
def test_an_index_entry_naming_a_folder_outside_is_never_deleted(tmp_path, monkeypatch, hostile):
    _bound(monkeypatch)
    victim = _outside(tmp_path)
    name = os.path.join("..", "..", "..", "..", "victim", "photos") if hostile == "relative" else str(victim / "photos")
    assert (result_cache.folder() / "entries" / name).resolve() == (victim / "photos").resolve()
    _write_index({name: {"bytes": 10 * MB, "used": 0.0}, _digest(1): {"bytes": 10 * MB, "used": 0.0}})
    assert result_cache.store(_digest(2), [b"image"], {"seed": 2})
    assert _untouched(victim)
    assert result_cache.clear()[0] >= 2 and _untouched(victim)
    assert result_cache.stats()["results"] == 0


def test_entries_as_a_link_elsewhere_is_neither_cleared_nor_written(tmp_path, monkeypatch):
    victim = _outside(tmp_path)
    result_cache.folder().mkdir(parents=True)
    _symlink(result_cache.folder() / "entries", victim)
    _write_index({"photos": {"bytes": 1, "used": 0.0}, "letters": {"bytes": 1, "used": 0.0}})
    assert result_cache.clear() == (0, 0)
    assert not result_cache.store(_digest(3), [b"image"], {"seed": 3})
    assert _untouched(victim)
    with pytest.raises(UnsafePath, match="a link that leads elsewhere"):
        userdata.inside(result_cache.folder() / "entries" / "photos")


def test_an_entry_that_is_a_link_is_removed_as_a_name_only(tmp_path, monkeypatch):
    victim = _outside(tmp_path)
    assert result_cache.store(_digest(4), [b"image"], {"seed": 4})
    _symlink(result_cache.folder() / "entries" / _digest(5), victim / "photos")
    _write_index({_digest(5): {"bytes": 1, "used": 0.0}})
    assert result_cache.store(_digest(6), [b"image"], {"seed": 6})  # the sweep meets the link
    assert result_cache.clear()[0] >= 1
    assert _untouched(victim) and list((result_cache.folder() / "entries").iterdir()) == []


def test_a_negative_size_in_the_index_does_not_hold_more_than_the_bound(monkeypatch):
    _bound(monkeypatch)
    big = result_cache.folder() / "entries" / _digest(7)
    big.mkdir(parents=True)
    data = os.urandom(2_400_000)
    (big / "0").write_bytes(data)
    (big / result_cache.ENTRY_FILE).write_text(json.dumps(
        {"info": {}, "images": [{"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}]}))
    _write_index({_digest(7): {"bytes": -len(data), "used": time.time() + 3600}})
    assert result_cache.store(_digest(8), [b"image"], {"seed": 8})
    assert _disk(result_cache.folder()) <= MB
    assert result_cache.lookup(_digest(8)) is not None


@pytest.mark.parametrize("count", [300, pytest.param(3000, marks=pytest.mark.slow)])
def test_thousands_of_tiny_results_stay_under_the_bound_on_disk(monkeypatch, count):
    """Tiny results under a 1 MB bound (300 already take 3.6 MB counted as the disk counts; the
    slow run stores 3,000): the disk holds at most 1 MB (blocks, index and entry.json counted,
    measured with st_blocks), and the newest results are the ones kept."""
    _bound(monkeypatch)
    started = time.monotonic()
    for n in range(count):
        assert result_cache.store(_digest(n), [b"tiny %d" % n], {"seed": n})
        assert time.monotonic() - started < 400, f"stored only {n} results in 400 s"
    used = _disk(result_cache.folder())
    assert used <= MB, f"{used} bytes on disk under a {MB} byte bound"
    kept = result_cache.stats()["results"]
    assert kept >= 20 and result_cache.lookup(_digest(count - 1)) is not None
    assert result_cache.lookup(_digest(0)) is None


NAMES = st.one_of(
    st.sampled_from(["..", ".", "", "/", "../victim", os.path.join("..", "..", "..", "..", "victim", "photos"),
                     "photos", ".tmp-x", "entries", "index.json", "C:\\victim", "\\\\server\\share"]),
    st.integers(0, 9).map(_digest),
    st.text(max_size=30),
)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                   st.text(max_size=8), st.lists(st.integers(), max_size=2))
ROWS = st.one_of(VALUES, st.fixed_dictionaries({"bytes": VALUES, "used": VALUES}, optional={"stored": VALUES}))
ENTRIES = st.dictionaries(NAMES, ROWS, max_size=6)
INDEXES = st.one_of(VALUES, st.fixed_dictionaries({"entries": st.one_of(VALUES, ENTRIES)}),
                    ENTRIES.map(lambda entries: {"entries": entries}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=INDEXES)
def test_fuzz_a_hostile_index_touches_nothing_outside(tmp_path, monkeypatch, index):
    """Any index.json at all; where it holds entries, one of them names a folder outside by its
    absolute path, as used long ago and far over the bound (the first thing eviction removes)."""
    started = time.monotonic()
    _bound(monkeypatch)
    victim = _outside(tmp_path)
    shutil.rmtree(result_cache.folder(), ignore_errors=True)
    if isinstance(index, dict) and isinstance(index.get("entries"), dict):
        index = {"entries": {**index["entries"], str(victim / "letters"): {"bytes": 5 * MB, "used": 0}}}
    result_cache.folder().mkdir(parents=True, exist_ok=True)
    (result_cache.folder() / result_cache.INDEX_FILE).write_text(json.dumps(index))
    result_cache.has(_digest(1))
    result_cache.lookup(_digest(1))
    result_cache.stats()
    assert result_cache.store(_digest(9), [b"image"], {"seed": 9})
    assert _untouched(victim) and _disk(result_cache.folder()) <= MB
    result_cache.clear()
    assert _untouched(victim)
    assert time.monotonic() - started < 10  # each example: far below, even on a loaded machine
