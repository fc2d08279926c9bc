"""A key never leaves in any text: not in errors, node text, events, logs (the pack's and the
libraries'), info, or files; in any spelling a server or a library may give it (as is,
JSON-escaped, URL-encoded), and not in part where a message is cut short."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
from fakes.sinkin import CATALOG
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.frontend import segmind_showing
from support.loopback import Answer, json_answer
from support.nodecalls import run

from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.keys import redaction
from sdbridge.nodes.hosted.provider_table import SEGMIND, SINKIN
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import catalog as sinkin_catalog

CANARY = 'sg-CAN/ARY"0123+4567&89-xyz'
SPELLINGS = {"as is": CANARY, "JSON-escaped": json.dumps(CANARY)[1:-1],
             "JSON-escaped slashes": json.dumps(CANARY)[1:-1].replace("/", "\\/"),
             "URL-encoded": quote(CANARY, safe=""), "URL path": quote(CANARY)}


def leaks(text: str) -> list[str]:
    """Every spelling of the canary, or a long piece of it, found in `text`."""
    pieces = [CANARY[i:i + 8] for i in range(len(CANARY) - 8)]
    return [p for p in [*SPELLINGS.values(), *pieces] if p in text]


@pytest.fixture
def canary_segmind(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, the libraries' included
    with segmind_showing(monkeypatch, CANARY, "v1") as fake:
        yield fake


def test_every_spelling_is_redacted(monkeypatch):
    monkeypatch.setenv(SEGMIND.key_env, CANARY)
    for name, spelling in SPELLINGS.items():
        assert redaction.redact(f"before {spelling} after") == "before *** after", name


@pytest.mark.parametrize("spelling", SPELLINGS, ids=str)
def test_an_error_echoing_the_key_shows_no_part_of_it(canary_segmind, spelling):
    canary_segmind.script.append(json_answer(400, {"error": f"bad key {SPELLINGS[spelling]}"}))
    with pytest.raises(ProviderError) as caught:
        run(segmind_nodes.SDBridgeSegmindRealisticVision, prompt="x", seed=1)
    assert "***" in str(caught.value) and not leaks(str(caught.value))


def test_a_key_across_the_cut_of_a_long_message_leaves_no_piece(canary_segmind):
    body = {"error": "x" * 285 + CANARY + " and more"}  # the key straddles the 300-character cut
    canary_segmind.script.append(json_answer(400, body))
    with pytest.raises(ProviderError) as caught:
        run(segmind_nodes.SDBridgeSegmindRealisticVision, prompt="x", seed=1)
    assert not leaks(str(caught.value))


def test_a_header_shown_on_the_node_and_sent_to_the_page_is_redacted(canary_segmind):
    canary_segmind.credits = 7
    canary_segmind.script.append(json_answer(200, {"image": []}, {"x-remaining-credits": CANARY}))
    with pytest.raises(ProviderError):
        run(segmind_nodes.SDBridgeSegmindRealisticVision, prompt="x", seed=1, samples=2)
    frontend = canary_segmind.frontend
    assert frontend.texts and not leaks(" ".join(frontend.texts)) and not leaks(" ".join(frontend.events))


def test_library_debug_logs_of_a_url_with_a_token_are_redacted(canary_segmind, caplog):
    url = f"{canary_segmind.url}/results/3_64x64.jpg?token={quote(CANARY, safe='')}"
    canary_segmind.script.append(json_answer(200, {"image": [url]}))
    images, info = run(segmind_nodes.SDBridgeSegmindRealisticVision, prompt="x", seed=1, samples=2)
    assert images.shape[0] == 1
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # urllib3 did log the request
    assert not leaks(caplog.text) and not leaks(info)


def test_an_echo_in_any_model_info_is_redacted_before_it_is_cut(canary_segmind):
    text = ("y" * 4090 + CANARY).encode()
    canary_segmind.script.append(json_answer(200, {"caption": "ok", "echo": CANARY}))
    canary_segmind.script.append(json_answer(200, {"caption": "ok"}))
    _, info = run(segmind_nodes.SDBridgeSegmindAnyModel, slug="custom-model", parameters='{"prompt": "x"}')
    assert not leaks(info)
    canary_segmind.script.append(Answer(200, text, {"content-type": "text/plain"}))
    _, info = run(segmind_nodes.SDBridgeSegmindAnyModel, slug="custom-model", parameters='{"prompt": "x"}')
    assert not leaks(info)


def test_catalog_titles_carrying_a_key_are_redacted_on_screen_and_on_disk(fake_sinkin, monkeypatch):
    monkeypatch.setenv(SINKIN.key_env, CANARY)
    fake_sinkin.key = CANARY
    fake_sinkin.catalog = {**CATALOG, "models": [{"id": "m1", "title": f"Model {CANARY}"}]}
    import asyncio

    answer = asyncio.run(sinkin_catalog.catalog_for_web(refresh=True))
    assert answer["error"] is None and answer["models"] == ["Model *** (m1)"]
    assert not leaks(sinkin_catalog.cache_file().read_text())


# ---------------------------------------------------------------- fuzz: answers carrying the key

BODY_TYPES = ["application/json", "text/html", "text/plain", "image/jpeg", ""]


@st.composite
def hostile_answers(draw):
    """An answer of any status and type whose body and headers carry the key in some spelling,
    at some place, possibly cut off by the message limits."""
    spelling = SPELLINGS[draw(st.sampled_from(list(SPELLINGS)))]
    padding = draw(st.integers(0, 400))
    text = draw(st.sampled_from(['{"error": "%s"}', '{"message": {"message": "%s"}}', "<p>%s</p>", "%s",
                                 '{"image": ["%s"]}', '{"detail": "x%s"}']))
    body = (text % ("." * padding + spelling)).encode("utf-8", "replace")
    status = draw(st.sampled_from([200, 400, 401, 403, 404, 406, 422, 500, 502]))
    headers = {"content-type": draw(st.sampled_from(BODY_TYPES))}
    if draw(st.booleans()):
        headers["x-remaining-credits"] = spelling
    return Answer(status, body, headers)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=hostile_answers())
def test_no_answer_however_hostile_gets_the_key_out(canary_segmind, caplog, answer):
    canary_segmind.script[:] = [answer]
    frontend = canary_segmind.frontend
    frontend.texts.clear(), frontend.events.clear()
    caplog.clear()
    try:
        _, info = run(segmind_nodes.SDBridgeSegmindRealisticVision, prompt="x", seed=1)
        out = info
    except ProviderError as exc:  # the only failure a provider's answer may cause
        out = str(exc)
    assert not leaks(out) and not leaks(" ".join(frontend.texts)) and not leaks(" ".join(frontend.events))
    assert not leaks(caplog.text)
