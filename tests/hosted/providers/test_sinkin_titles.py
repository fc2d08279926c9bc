"""Titles from SinkIn are untrusted text: no markup reaches a menu that sets innerHTML, no
hidden or direction-changing character makes a title read unlike its bytes, and the real id
ends every choice, in view however long or cunning the title."""

from __future__ import annotations

import asyncio
import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.nodecalls import run

from sdbridge.nodes.hosted.providers.sinkin import catalog as sinkin_catalog
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.hosted.providers.sinkin.catalog import TITLE_MAX, id_from_choice, parse_entries

HOSTILE = [
    '<img src=x onerror="fetch(`/sdbridge/keys`)">',
    "<script>alert(1)</script>Realistic Vision",
    "Realistic Vision V6.0 (r2La2w2)" + " " * 200 + "padding",
    "Realistic Vision V6.0 (r2La2w2)" + "\u2800" * 80,
    "Realistic\u202e2wLa2r( V6.0\u202c",          # right-to-left override
    "Real\u200bistic\u2066 Vision\u2069\ufeff",     # zero-width space, isolates, BOM
    "line\u2028break\u2029para\x00\x1b[31m",
    "\U000e0041\U000e0042 tag characters",
]
INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def check_title(title: str, entry_id: str = "EVIL666") -> None:
    [entry] = parse_entries([{"id": entry_id, "title": title}])
    assert not set("<>()") & set(entry.title), entry.title
    assert not [c for c in entry.title if unicodedata.category(c) in INVISIBLE], ascii(entry.title)
    assert len(entry.title) <= TITLE_MAX
    assert entry.choice.endswith(f"({entry_id})") or entry.choice == entry_id  # no title: the bare id
    assert id_from_choice(entry.choice) == entry_id
    assert entry.choice.count("(") <= 1  # the only parenthesis a choice has is its real id's


@pytest.mark.parametrize("title", HOSTILE)
def test_a_hostile_title_is_plain_visible_text_and_the_choice_ends_with_the_real_id(title):
    check_title(title)


def test_markup_is_neutralised_and_ordinary_titles_read_as_before():
    entries = parse_entries([{"id": "a1", "title": '<img src=x onerror=alert(1)>'},
                             {"id": "b2", "title": "Realistic Vision V6.0"},
                             {"id": "c3", "title": "Model (v5.1) — “photo” & art ✨"}])
    assert [e.choice for e in entries] == ["img src=x onerror=alert[1] (a1)", "Realistic Vision V6.0 (b2)",
                                           "Model [v5.1] — “photo” & art ✨ (c3)"]


def test_a_long_title_cannot_show_one_id_while_the_choice_runs_another():
    [entry] = parse_entries([{"id": "EVIL666", "title": "Realistic Vision V6.0 (r2La2w2)" + "x" * 300}])
    assert entry.choice.endswith("… (EVIL666)") and "(r2La2w2)" not in entry.choice
    assert len(entry.choice) <= TITLE_MAX + len(" (EVIL666)")


@settings(max_examples=150, deadline=None)
@given(title=st.text(max_size=300), entry_id=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
def test_any_title_makes_a_choice_that_ends_with_its_id(title, entry_id):
    check_title(title, entry_id)


def test_the_live_list_and_its_cache_carry_only_clean_titles_and_the_node_runs_the_real_id(fake_sinkin):
    fake_sinkin.catalog = {"error_code": 0, "loras": [],
                           "models": [{"id": "EVIL666", "title": HOSTILE[2]}, {"id": "r2La2w2", "title": HOSTILE[0]}]}
    answer = asyncio.run(sinkin_catalog.catalog_for_web(refresh=True))
    assert answer["error"] is None
    on_disk = json.loads(sinkin_catalog.cache_file().read_text(encoding="utf-8"))
    for title in [*answer["models"], *(m["title"] for m in on_disk["models"])]:
        assert "<" not in title and "(r2La2w2)" not in title.removesuffix("(r2La2w2)")
    choice = answer["models"][0]
    assert choice.endswith("(EVIL666)")
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, model_id=choice, prompt="x", seed=1)
    assert fake_sinkin.forms()[-1]["model_id"] == "EVIL666"
