"""SinkIn's cover pictures: cover_img kept only as an http(s) URL (and in the catalog cache, old
caches still read), fetched by the server alone through the pinned download, once per cover,
kept as a small re-encoded thumbnail in a bounded folder, and served only for catalog ids."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from dataclasses import replace

import pytest
from aiohttp.test_utils import make_mocked_request
from fakes.sinkin import COVER_SIZE, KEY
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from support.loopback import Answer, Loopback
from support.nodecalls import FAST_RETRIES

from sdbridge.nodes import declared_settings, routes, runtime, userdata
from sdbridge.nodes.errors import InputError, ProviderError
from sdbridge.nodes.hosted.providers.sinkin import catalog as sinkin_catalog
from sdbridge.nodes.hosted.providers.sinkin import covers
from sdbridge.nodes.hosted.providers.sinkin.catalog import Catalog, Entry, clean_cover, parse_entries

FAST = replace(covers.POLICIES, retry=FAST_RETRIES)


def get_cover(entry_id: str):
    request = make_mocked_request("GET", covers.ROUTE + entry_id, match_info={"entry_id": entry_id})
    return asyncio.run(routes.sinkin_cover(request))


def catalog_with_covers(fake) -> None:
    """SinkIn's list, read through the catalog route, with covers on the fake."""
    fake.with_covers()
    asyncio.run(sinkin_catalog.refresh_catalog())
    assert sinkin_catalog.current_catalog().find("r2La2w2").cover.startswith(fake.url)


def no_key_in(response) -> None:
    assert KEY.encode() not in response.body and KEY not in json.dumps(dict(response.headers))


# ---------------------------------------------------------------- the catalog keeps covers

@pytest.mark.parametrize(("url", "kept"), [
    ("https://cdn.sinkin.ai/covers/a.jpg", True), ("http://x.example/c.png?w=1", True),
    ("HTTPS://X.EXAMPLE/C.JPG", True),
    ("javascript:alert(1)", False), ("data:image/png;base64,AAAA", False), ("ftp://x.example/c.jpg", False),
    ("//x.example/c.jpg", False), ("/covers/c.jpg", False), ("https:///c.jpg", False),
    ("https://x.example/a b.jpg", False), ("https://x.example/\nc.jpg", False), ('https://x.example/"c', False),
    ("https://x.example/" + "a" * 3000, False), ("https://bücher.example/c.jpg", False), ("https://[::1/c", False),
    (None, False), (42, False), (["https://x.example/c.jpg"], False), ("", False),
])
def test_a_cover_is_kept_only_as_an_http_url_and_the_entry_stays_either_way(url, kept):
    (entry,) = parse_entries([{"id": "abc123", "title": "A", "cover_img": url}])
    assert entry.id == "abc123" and entry.cover == (url if kept else "")


def test_the_cache_keeps_covers_and_an_old_cache_without_them_still_reads():
    fresh = Catalog((Entry("m1", "One", "https://x.example/1.jpg"), Entry("m2", "Two")),
                    (Entry("l1", "Lora", "https://x.example/l.jpg"),), time.time())
    sinkin_catalog._write_cache(fresh)
    stored = json.loads(sinkin_catalog.cache_file().read_text())
    assert stored["models"][0]["cover_img"] == "https://x.example/1.jpg" and "cover_img" not in stored["models"][1]
    assert sinkin_catalog.current_catalog() == fresh
    # A cache written before covers existed: the same lists, no pictures.
    old = {"fetched_at": time.time(), "models": [{"id": "m1", "title": "One"}], "loras": [{"id": "l1", "title": "L"}]}
    sinkin_catalog.cache_file().write_text(json.dumps(old))
    os.utime(sinkin_catalog.cache_file(), ns=(1, 1))  # another stat: the memo reads it again
    assert sinkin_catalog.current_catalog().models == (Entry("m1", "One"),)
    answer = asyncio.run(sinkin_catalog.catalog_for_web(read_sinkin=False))
    assert answer["pictures"]["models"] == [{"id": "m1", "title": "One", "choice": "One (m1)", "cover": False}]


ENTRY = st.fixed_dictionaries({"id": st.one_of(st.text(max_size=8), st.integers(0, 10**6))}, optional={
    "title": st.one_of(st.text(max_size=60), st.none(), st.integers()),
    "cover_img": st.one_of(st.text(max_size=80), st.none(), st.integers(), st.lists(st.text(max_size=5)),
                           st.builds(lambda scheme, rest: f"{scheme}://{rest}",
                                     st.sampled_from(["http", "https", "HTTP", "javascript", "file", "data"]),
                                     st.text(max_size=60)))})


@settings(max_examples=150, deadline=500)
@given(st.lists(ENTRY, max_size=6))
def test_fuzzed_entries_keep_only_printable_http_covers_and_survive_the_cache(items):
    entries = parse_entries(items)
    for entry in entries:
        assert entry.cover == "" or (entry.cover.lower().startswith(("http://", "https://"))
                                     and entry.cover.isascii() and entry.cover.isprintable()
                                     and not any(c.isspace() for c in entry.cover)
                                     and len(entry.cover) <= sinkin_catalog.COVER_URL_MAX)
        assert clean_cover(entry.cover) == entry.cover  # stable: the cache reads back what it wrote
    round_trip = parse_entries([sinkin_catalog._stored(e) for e in entries])
    assert round_trip == entries


# ---------------------------------------------------------------- the route

def test_a_cover_is_fetched_once_re_encoded_small_and_served_from_disk_after(fake_sinkin):
    catalog_with_covers(fake_sinkin)
    first, second = get_cover("r2La2w2"), get_cover("r2La2w2")
    assert first.status == second.status == 200 and first.content_type == "image/jpeg"
    assert first.body == second.body and first.headers["X-Content-Type-Options"] == "nosniff"
    assert fake_sinkin.cover_requests() == ["/covers/good.png"]  # one fetch for both
    picture = Image.open(io.BytesIO(first.body))
    assert picture.format == "JPEG" and max(picture.size) == covers.THUMBNAIL
    assert picture.size == (covers.THUMBNAIL, covers.THUMBNAIL * COVER_SIZE[1] // COVER_SIZE[0])
    assert b"script" not in first.body  # the original's text chunk did not come along
    no_key_in(first)
    cover_fetch = next(r for r in fake_sinkin.requests if r.path.startswith("/covers/"))
    assert KEY not in json.dumps(cover_fetch.headers) and not cover_fetch.body  # no key goes with a cover
    stored = list(covers.folder().iterdir())
    assert [f.read_bytes() for f in stored] == [first.body]


def test_covers_asked_at_the_same_time_share_one_fetch(fake_sinkin):
    catalog_with_covers(fake_sinkin)
    fake_sinkin.cover_delay = 0.4

    async def many():
        return await asyncio.gather(*(covers.cover("lora02", FAST) for _ in range(8)))

    pictures = asyncio.run(many())
    assert len(set(pictures)) == 1 and fake_sinkin.cover_requests() == ["/covers/slow.png"]


def test_at_most_a_few_covers_are_fetched_at_once(fake_sinkin):
    """A grid of covers must not take every HTTP worker a run's downloads need."""
    fake_sinkin.cover_delay = 0.3
    many = tuple(Entry(f"m{i}", f"Model {i}", f"{fake_sinkin.url}/covers/slow.png?n={i}") for i in range(8))
    sinkin_catalog._write_cache(Catalog(many, (), time.time()))

    async def all_of_them():
        return await asyncio.gather(*(covers.cover(entry.id, FAST) for entry in many))

    assert len(set(asyncio.run(all_of_them()))) == 1
    arrivals = sorted(fake_sinkin.cover_arrivals)
    assert len(arrivals) == 8 and arrivals[covers.AT_ONCE] - arrivals[0] >= 0.25  # the fifth waited for a free one


def test_an_interrupt_of_the_prompt_neither_stops_a_cover_nor_is_taken_by_it(fake_sinkin):
    catalog_with_covers(fake_sinkin)
    runtime.request_interrupt(True)  # the user cancelled the running prompt while the grid loads
    assert get_cover("r2La2w2").status == 200 and fake_sinkin.cover_requests() == ["/covers/good.png"]
    assert runtime.interrupted()  # still there for the prompt it was meant for


@pytest.mark.parametrize("entry_id", ["unknown1", "../keys", "r2la2w2", "https:%2F%2Fevil.example%2Fx.png", "", "a" * 300])
def test_an_id_outside_the_catalog_is_refused_and_nothing_is_fetched(fake_sinkin, entry_id):
    catalog_with_covers(fake_sinkin)
    before = len(fake_sinkin.requests)
    response = get_cover(entry_id)
    assert response.status == 404 and "not a model or LoRA of the SinkIn catalog" in json.loads(response.text)["error"]
    assert len(fake_sinkin.requests) == before and not covers.folder().exists()


def test_an_entry_without_a_cover_is_a_404_that_says_so(fake_sinkin):
    response = get_cover("r2La2w2")  # the bundled list: no covers
    assert response.status == 404 and "no cover picture" in json.loads(response.text)["error"]
    assert fake_sinkin.requests == []


@pytest.mark.parametrize(("entry_id", "said"), [
    ("yBG2r9O", "larger than the 2 MiB limit"), ("4zdwGOB", "did not hold an image"),
    ("newModel1", "is not a picture SD Bridge shows"),
])
def test_a_bad_cover_is_refused_once_and_not_asked_again_soon(fake_sinkin, entry_id, said):
    catalog_with_covers(fake_sinkin)
    first = get_cover(entry_id)
    assert first.status == 502 and said in json.loads(first.text)["error"]
    again = get_cover(entry_id)
    assert again.status == 502 and "a moment ago" in json.loads(again.text)["error"]
    assert len(fake_sinkin.cover_requests()) == 1  # the failure is remembered, not fetched again
    no_key_in(first)
    assert not covers.folder().exists() or list(covers.folder().iterdir()) == []


def test_a_cover_redirected_to_a_private_address_is_never_fetched_there(fake_sinkin):
    with Loopback(lambda request: Answer(200, b"private", {"content-type": "image/png"})) as private:
        catalog_with_covers(fake_sinkin)
        fake_sinkin.cover_redirect = private.url + "/admin.png"  # loopback, another port than the API's
        response = get_cover("lora01")
        assert response.status == 502 and "private, loopback or unresolvable" in json.loads(response.text)["error"]
        assert private.requests == [] and fake_sinkin.cover_requests() == ["/covers/redirect.png"]


def test_a_slow_cover_gives_up_within_its_deadline(fake_sinkin):
    catalog_with_covers(fake_sinkin)
    fake_sinkin.cover_delay = 3.0
    quick = replace(FAST, retry=replace(FAST_RETRIES, transient_attempts=1),
                    downloads=replace(covers.POLICIES.downloads, read_timeout=0.3, deadline=0.6))
    started = time.monotonic()
    with pytest.raises(ProviderError, match="the cover of lora02 could not be fetched"):
        asyncio.run(covers.cover("lora02", quick))
    assert time.monotonic() - started < 2.5 and fake_sinkin.cover_requests() == ["/covers/slow.png"]


def test_the_folder_stays_within_its_bound_the_thumbnails_shown_longest_ago_going_first(fake_sinkin, monkeypatch):
    monkeypatch.setenv(covers.SIZE_ENV, "1")
    catalog_with_covers(fake_sinkin)
    folder = covers.folder()
    folder.mkdir(parents=True)
    for index in range(3):  # three old thumbnails of 400 KB: 1.2 MB, over the 1 MB bound with a new one
        old = folder / f"{index:040d}.jpg"
        old.write_bytes(b"\0" * 400 * 1024)
        os.utime(old, (1000 + index, 1000 + index))
    os.utime(folder / f"{0:040d}.jpg")  # the oldest file was shown just now: it stays
    (folder / ".covers-tmp").write_bytes(b"\0" * 10)  # not a thumbnail: never removed
    assert get_cover("r2La2w2").status == 200
    left = sorted(f.name for f in folder.iterdir())
    assert left == sorted([".covers-tmp", f"{0:040d}.jpg", f"{2:040d}.jpg", covers.file_for(
        sinkin_catalog.current_catalog().find("r2La2w2")).name])
    assert sum(f.stat().st_size for f in folder.glob("*.jpg")) <= covers.MB


def test_every_cover_file_is_written_and_locked_through_inside(fake_sinkin, monkeypatch):
    catalog_with_covers(fake_sinkin)
    checked = []
    real_inside = userdata.inside
    monkeypatch.setattr(userdata, "inside", lambda path: checked.append(path) or real_inside(path))
    assert get_cover("r2La2w2").status == 200
    written = next(covers.folder().iterdir())
    assert written in checked and covers._lock() in checked


def test_the_size_setting_is_declared_and_checked():
    setting = declared_settings.find(covers.SIZE_ENV)
    assert setting is not None and setting.provider == "sinkin"
    assert setting.check("64") is None and setting.check("") is None
    assert "whole number of megabytes" in setting.check("lots") and setting.check("0")
    assert covers.limit_bytes() == covers.DEFAULT_MB * covers.MB


def test_entry_for_names_the_problem_and_the_fix():
    with pytest.raises(InputError, match="refresh it from the node's menu"):
        covers.entry_for("nothing1")
