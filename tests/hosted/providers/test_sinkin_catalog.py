"""SinkIn's model catalog: tolerant parsing, the bundled fallback, the cache in the user
directory (age, refresh, corruption), and the /sdbridge/sinkin/catalog route."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from fakes.sinkin import KEY, FakeSinkIn, failure

from sdbridge.nodes import routes
from sdbridge.nodes.hosted.http.client import RetryPolicy
from sdbridge.nodes.hosted.providers.sinkin import api as sinkin_api
from sdbridge.nodes.hosted.providers.sinkin import catalog as sinkin_catalog
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.hosted.providers.sinkin.catalog import Entry, id_from_choice, parse_entries

NODE_IDS = [node.__name__ for node in sinkin_nodes.NODES]

DOCUMENTED = {"r2La2w2": "Realistic Vision", "yBG2r9O": "majicMIX realistic", "mGYMaD5": "AbsoluteReality",
              "4zdwGOB": "DreamShaper", "K6KkkKl": "Deliberate", "RR6lMmw": "MeinaHentai", "mG9Pvko": "Babes",
              "gLv9zeq": "RealCartoon3D", "qGdxrYG": "NeverEnding Dream", "76EmEaz": "Hassaku", "vln8Nwr": "MeinaMix"}




def ask(query: str = "") -> dict:
    """The route's JSON, through the handler with a real aiohttp request object."""
    request = make_mocked_request("GET", "/sdbridge/sinkin/catalog" + query)
    response = asyncio.run(routes.sinkin_models(request))
    assert response.status == 200 and response.content_type == "application/json"
    return json.loads(response.text)


def write_cache(data) -> None:
    path = sinkin_catalog.cache_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def model_choices() -> list[str]:
    return sinkin_nodes.SDBridgeSinkInTxt2Img.INPUT_TYPES()["required"]["model_id"][0]


# ---------------------------------------------------------------- parsing

def test_entries_are_parsed_tolerantly():
    items = [
        {"id": "aaa111", "title": "Title Model", "cover_img": "x", "link": "y"},
        {"id": "bbb222", "name": "Named Model", "tags": ["a"], "civitai_model_id": 1},
        {"id": "ccc333"},                                        # no title: the id alone
        {"id": 4444, "title": "Numeric id"},
        {"id": " ddd444 ", "title": "  Spaced\n\tout\x00 title  "},
        {"id": "aaa111", "title": "A duplicate, ignored"},
        {"id": "has space", "title": "bad id"}, {"id": "", "title": "empty id"}, {"id": True, "title": "bool"},
        {"id": None}, {"title": "no id"}, {"id": ["x"]}, {"id": "x" * 65}, {"id": "../etc"},
        "a string", 42, None, ["list"],
        {"id": "eee555", "title": "T" * 200},
    ]
    assert parse_entries(items) == (
        Entry("aaa111", "Title Model"), Entry("bbb222", "Named Model"), Entry("ccc333", ""),
        Entry("4444", "Numeric id"), Entry("ddd444", "Spaced out title"), Entry("eee555", "T" * (sinkin_catalog.TITLE_MAX - 1) + "…"))
    for junk in (None, {}, "models", 3):
        assert parse_entries(junk) == ()


@pytest.mark.parametrize(("choice", "expected"), [
    ("Realistic Vision (r2La2w2)", "r2La2w2"), ("r2La2w2", "r2La2w2"), ("  r2La2w2  ", "r2La2w2"),
    ("Model (v5.1) (abc_12-X)", "abc_12-X"), ("Realistic Vision", None), ("(unclosed", None), ("", None),
    ("a (b c)", None),
])
def test_the_id_is_read_back_from_a_choice_or_a_bare_id(choice, expected):
    assert id_from_choice(choice) == expected


def test_each_choice_shows_the_title_and_carries_the_id():
    assert Entry("r2La2w2", "Realistic Vision").choice == "Realistic Vision (r2La2w2)"
    assert Entry("r2La2w2", "").choice == "r2La2w2" and Entry("r2La2w2", "r2La2w2").choice == "r2La2w2"
    for entry in parse_entries([{"id": "x1", "title": "Ends (in) parens (yes)"}]):
        assert id_from_choice(entry.choice) == "x1"


# ---------------------------------------------------------------- bundled and cached lists

def test_a_fresh_install_offers_the_documented_models_offline():
    bundled = sinkin_catalog.bundled_catalog()
    assert {e.id: e.title for e in bundled.models} == DOCUMENTED
    assert bundled.fetched_at is None and bundled.lora_choices() == ["none"]
    assert model_choices()[:5] == ["Realistic Vision (r2La2w2)", "majicMIX realistic (yBG2r9O)",
                                   "AbsoluteReality (mGYMaD5)", "DreamShaper (4zdwGOB)", "Deliberate (K6KkkKl)"]
    assert ask() == {"models": model_choices(), "loras": ["none"], "source": "bundled", "fetched_at": None,
                     "age_seconds": None, "error": None,
                     "nodes": {node: {"model_id": "models", "lora": "loras"} for node in NODE_IDS},
                     "pictures": {"models": [{"id": e.id, "title": e.title, "choice": e.choice, "cover": False}
                                             for e in bundled.models], "loras": []},
                     "cover_route": "/sdbridge/sinkin/cover/"}


def test_cached_answers_from_disk_without_reading_sinkin(fake_sinkin):
    """While the page loads, the route must not wait for SinkIn, even with a stale list."""
    assert ask("?cached=1")["source"] == "bundled" and fake_sinkin.requests == []
    assert ask()["source"] == "sinkin" and len(fake_sinkin.requests) == 1


def test_refresh_reads_the_live_list_into_the_cache_and_the_node_inputs(fake_sinkin):
    answer = ask("?refresh=1")
    assert answer["models"] == ["Realistic Vision V6.0 (r2La2w2)", "majicMIX realistic (yBG2r9O)",
                                "DreamShaper (4zdwGOB)", "A Model Added Today (newModel1)"]
    assert answer["loras"] == ["none", "Detail Tweaker (lora01)", "Film Grain (lora02)"]
    assert answer["source"] == "sinkin" and answer["age_seconds"] == 0 and answer["error"] is None
    [form] = fake_sinkin.forms("/api/models")
    assert form == {"access_token": KEY}
    cached = json.loads(sinkin_catalog.cache_file().read_text())
    assert abs(cached["fetched_at"] - time.time()) < 60 and KEY not in sinkin_catalog.cache_file().read_text()
    spec = sinkin_nodes.SDBridgeSinkInImg2Img.INPUT_TYPES()["required"]
    assert spec["model_id"][0] == answer["models"] and spec["lora"][0] == answer["loras"]
    assert spec["model_id"][1]["default"] == "Realistic Vision V6.0 (r2La2w2)"  # the same model, renamed
    assert spec["lora"][1]["default"] == "none"


def test_the_default_falls_back_to_the_first_model_when_its_id_is_gone(fake_sinkin):
    fake_sinkin.catalog = {"error_code": 0, "models": [{"id": "only1", "title": "Only"}], "loras": []}
    ask("?refresh=1")
    assert sinkin_nodes.SDBridgeSinkInTxt2Img.INPUT_TYPES()["required"]["model_id"][1]["default"] == "Only (only1)"


def test_the_cache_reports_its_age_and_is_not_reread_while_fresh(fake_sinkin):
    write_cache({"fetched_at": time.time() - 3600, "models": [{"id": "abc1", "title": "Cached"}], "loras": []})
    answer = ask()
    assert answer["models"] == ["Cached (abc1)"] and answer["source"] == "sinkin"
    assert 3590 <= answer["age_seconds"] <= 3700
    assert fake_sinkin.requests == []


def test_a_stale_cache_is_reread_when_a_key_is_set(fake_sinkin):
    week_ago = time.time() - sinkin_catalog.CATALOG_MAX_AGE - 60
    write_cache({"fetched_at": week_ago, "models": [{"id": "abc1", "title": "Cached"}], "loras": []})
    assert ask()["models"][0] == "Realistic Vision V6.0 (r2La2w2)" and len(fake_sinkin.requests) == 1


def test_without_a_key_the_bundled_or_stale_list_is_served_as_is(fake_sinkin, monkeypatch):
    monkeypatch.delenv("SINKIN_API_KEY")
    assert ask()["source"] == "bundled"
    write_cache({"fetched_at": 0, "models": [{"id": "abc1", "title": "Old"}], "loras": []})
    answer = ask()
    assert answer["models"] == ["Old (abc1)"] and answer["error"] is None and fake_sinkin.requests == []
    answer = ask("?refresh=1")  # asked for explicitly: say why it cannot
    assert answer["models"] == ["Old (abc1)"] and "SINKIN_API_KEY" in answer["error"]


@pytest.mark.parametrize("content", [
    "{not json", "[]", json.dumps({"models": [{"id": "a1"}], "loras": []}),
    json.dumps({"fetched_at": "yesterday", "models": [], "loras": []}),
    '{"fetched_at": NaN, "models": [{"id": "a1"}], "loras": []}',
    json.dumps({"fetched_at": 1.0, "models": [{"id": "bad id"}, 3], "loras": []}),
    json.dumps({"fetched_at": 1.0, "models": "r2La2w2", "loras": []}),
])
def test_a_corrupt_cache_falls_back_to_the_bundled_list_and_a_refresh_rewrites_it(fake_sinkin, pack_log, content):
    write_cache(content)
    assert model_choices() == sinkin_catalog.bundled_catalog().model_choices()
    assert "catalog cache" in pack_log.text
    assert ask()["source"] == "sinkin"  # no usable date counts as stale: read again
    assert json.loads(sinkin_catalog.cache_file().read_text())["models"][0]["id"] == "r2La2w2"


def test_the_cache_file_is_reread_when_it_changes():
    write_cache({"fetched_at": 1.0, "models": [{"id": "one1"}], "loras": []})
    assert model_choices() == ["one1"]
    write_cache({"fetched_at": 2.0, "models": [{"id": "two2"}, {"id": "three3"}], "loras": []})
    assert model_choices() == ["two2", "three3"]


@pytest.mark.parametrize(("answer", "problem"), [
    (failure("Invalid access token"), 'refused the request: "Invalid access token"'),
    (None, "listed no usable models"),
])
def test_a_failed_refresh_keeps_the_current_list_and_says_why(fake_sinkin, answer, problem):
    write_cache({"fetched_at": time.time(), "models": [{"id": "keep1", "title": "Kept"}], "loras": []})
    before = sinkin_catalog.cache_file().read_text()
    if answer is None:
        fake_sinkin.catalog = {"error_code": 0, "models": [{"id": "bad id"}], "loras": []}
    else:
        fake_sinkin.script.append(answer)
    result = ask("?refresh=1")
    assert result["models"] == ["Kept (keep1)"] and problem in result["error"]
    assert result["error"].startswith("SinkIn: ")
    assert sinkin_catalog.cache_file().read_text() == before


def test_an_unreachable_api_is_reported_without_the_token(monkeypatch):
    canary = "CANARY-catalog-token-8c2d"
    monkeypatch.setenv("SINKIN_API_KEY", canary)
    once = replace(sinkin_api.POLICIES, retry=RetryPolicy(transient_attempts=1))
    with FakeSinkIn(key=canary) as server:
        monkeypatch.setenv("SINKIN_API_BASE", server.url)
        server.script.append(failure(f"token {canary} is disabled"))
        assert "token *** is disabled" in ask("?refresh=1")["error"]
    monkeypatch.setenv("SINKIN_API_BASE", "http://127.0.0.1:9")  # nothing listens there
    result = asyncio.run(sinkin_catalog.catalog_for_web(refresh=True, policies=once))  # what the route answers
    assert "connection was refused" in result["error"] and canary not in json.dumps(result)


# ---------------------------------------------------------------- routes

def test_routes_register_the_catalog_under_sdbridge():
    table = web.RouteTableDef()
    routes.register(table)
    assert ("GET", "/sdbridge/sinkin/catalog", routes.sinkin_models) in [(r.method, r.path, r.handler)
                                                                          for r in table]
    assert routes.install() is False  # outside ComfyUI there is no server to add them to


def test_the_route_works_in_a_real_aiohttp_app_on_loopback(fake_sinkin):
    async def main():
        app = web.Application()
        table = web.RouteTableDef()
        routes.register(table)
        app.add_routes(table)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            import aiohttp

            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/sdbridge/sinkin/catalog?refresh=1") as response:
                    return response.status, await response.json()
        finally:
            await runner.cleanup()

    status, answer = asyncio.run(main())
    assert status == 200 and answer["loras"][1] == "Detail Tweaker (lora01)"


def test_refreshes_on_request_are_rate_limited(fake_sinkin):
    """Each refresh is a keyed call to SinkIn: a second one within seconds answers the list read."""
    assert ask("?refresh=1")["source"] == "sinkin" and len(fake_sinkin.requests) == 1
    assert ask("?refresh=1")["source"] == "sinkin" and len(fake_sinkin.requests) == 1
