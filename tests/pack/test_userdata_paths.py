"""userdata.inside: the one check every write and delete under user/sdbridge/ goes through. A name
that leads out, or a link below the pack's folder, is refused; every writer of the folder uses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdbridge.nodes import pack_settings, userdata
from sdbridge.nodes.errors import UnsafePath
from sdbridge.nodes.hosted.keys import credentials
from sdbridge.nodes.hosted.money import ledger
from sdbridge.nodes.hosted.provider_table import SEGMIND
from sdbridge.nodes.hosted.providers.sinkin import catalog
from sdbridge.nodes.hosted.store import journal, result_cache


def _link(link: Path, target: Path, folder: bool = False) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.symlink(target, link, target_is_directory=folder)
    except (OSError, NotImplementedError) as exc:  # Windows without the right to make links
        pytest.skip(f"symlinks cannot be made here ({exc})")


def test_plain_paths_inside_are_accepted():
    folder = userdata.pack_folder()
    assert userdata.inside(folder / "keys.json") == Path(os.path.realpath(folder)) / "keys.json"
    assert userdata.inside(folder / "result_cache" / "entries" / ("a" * 64)).name == "a" * 64


@pytest.mark.parametrize("name", [os.path.join("..", "outside"), os.path.join("a", "..", "..", "outside"),
                                  os.path.abspath(os.sep + "outside")])
def test_names_that_lead_out_are_refused(name):
    with pytest.raises(UnsafePath, match="SD Bridge refused to touch"):
        userdata.inside(userdata.pack_folder() / name)


def test_a_linked_folder_or_a_dangling_link_below_is_refused(tmp_path):
    _link(userdata.pack_folder() / "result_cache", tmp_path, folder=True)
    with pytest.raises(UnsafePath, match="Delete the link"):
        userdata.inside(userdata.pack_folder() / "result_cache" / "index.json")
    _link(userdata.pack_folder() / "keys.json", tmp_path / "nothing-yet")
    with pytest.raises(UnsafePath):
        userdata.inside(userdata.pack_folder() / "keys.json")


def test_the_pack_folder_itself_may_be_a_link_the_user_made(tmp_path, monkeypatch):
    real = tmp_path / "elsewhere"
    real.mkdir()
    _link(tmp_path / "user" / "sdbridge", real, folder=True)
    credentials.store_key(SEGMIND, "sg-linked-folder")
    assert "sg-linked-folder" in (real / "keys.json").read_text()


WRITERS = {
    "keys.json": lambda: credentials.store_key(SEGMIND, "sg-123456"),
    "settings.json": lambda: pack_settings.store(result_cache.SWITCH_ENV, "off"),
    "journal.json": lambda: journal.record("b" * 64, "segmind", ("r", "https://a.example/s", "https://a.example/r"), 60),
    "spending.json": lambda: (ledger.record("segmind", 1.0), ledger.flush()),
    "sinkin_catalog.json": lambda: catalog._write_cache(catalog.bundled_catalog()),
    os.path.join("result_cache", "index.json"): lambda: result_cache.store("c" * 64, [b"image"], {}),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_writer_proves_its_file_and_its_lock_inside(monkeypatch, name):
    """The keys, settings, journal, ledger, catalog cache and result cache all write through the
    one check (and take their lock through it where they lock)."""
    checked = []
    real_inside = userdata.inside

    def spy(path):
        checked.append(Path(path))
        return real_inside(path)

    monkeypatch.setattr(userdata, "inside", spy)
    WRITERS[name]()
    target = userdata.pack_folder() / name
    assert target.is_file() and target in checked
    if name != "sinkin_catalog.json":  # the catalog is written whole by the route alone: no lock
        assert any(path.suffix == ".lock" and path.parent == target.parent for path in checked)
