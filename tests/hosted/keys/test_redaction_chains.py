"""No piece of a key survives a cut, and none rides in a chained exception: a refused result URL,
a redirect elsewhere, a server's text and a header are cut only after their keys are out, no
key's first characters are left at the cut, and every exception a node raises carries no key in
any link of its chain (ComfyUI logs the whole chain)."""

from __future__ import annotations

import asyncio
import json
import traceback
from urllib.parse import quote

import pytest
from fakes.sinkin import picture
from hypothesis import given, settings
from hypothesis import strategies as st
from support.frontend import segmind_showing
from support.loopback import Answer, Loopback, json_answer
from support.nodecalls import run

from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http import addresses
from sdbridge.nodes.hosted.http.client import HttpClient
from sdbridge.nodes.hosted.keys import redaction
from sdbridge.nodes.hosted.provider_table import SINKIN
from sdbridge.nodes.hosted.providers.segmind import api as segmind_api
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes

CANARY = "sk-QZXJ/canary+0123456789&abcdef"
SPELLINGS = [CANARY, json.dumps(CANARY)[1:-1], quote(CANARY, safe=""), quote(CANARY)]
PUBLIC_BASE = "https://93.184.215.14"


def chain(error: BaseException) -> list[BaseException]:
    """Every exception linked to `error`, whether or not a traceback would print it."""
    found, pending = [], [error]
    while pending:
        current = pending.pop()
        if current not in found:
            found.append(current)
            pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return found


def pieces(text: str) -> list[str]:
    """Any spelling's first four characters, or any eight in a row of the key, found in `text`."""
    runs = [CANARY[i:i + 8] for i in range(len(CANARY) - 7)]
    return [p for p in [*(s[:redaction.SHORTEST_PIECE] for s in SPELLINGS), *runs] if p in text]


def assert_no_piece(error: BaseException) -> None:
    printed = "".join(traceback.format_exception(error))
    assert not pieces(printed), printed
    for linked in chain(error):
        assert not pieces(str(linked)) and not pieces(repr(linked.args)), (type(linked), str(linked))


@pytest.fixture
def canary_key(monkeypatch):
    monkeypatch.setenv(SINKIN.key_env, CANARY)


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("offset", range(-len(CANARY) * 3, 4))
def test_a_key_across_the_cut_leaves_no_first_characters(canary_key, spelling, offset):
    text = "x" * (40 + offset) + spelling + " tail"
    shown = redaction.cut(text, 40, "...")
    assert not pieces(shown) and len(shown) <= 40 + len("***...")


@settings(max_examples=60, deadline=None)
@given(before=st.text(max_size=50), after=st.text(max_size=20), limit=st.integers(1, 80))
def test_any_cut_of_a_text_holding_the_key_shows_none_of_it(before, after, limit):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SINKIN.key_env, CANARY)
        shown = redaction.cut(before + CANARY + after, limit)
        assert not [p for p in pieces(shown) if p not in before + after]


def _refused(url: str) -> ProviderError:
    async def main():
        return await HttpClient(SINKIN).download(url, base=PUBLIC_BASE)

    with pytest.raises(ProviderError, match="refused a result URL") as caught:
        asyncio.run(main())
    return caught.value


def _straddling(prefix: str, at: int = addresses.SHOWN) -> str:
    """`prefix`, padded so that the key starts just before the 120-character cut."""
    return prefix + "a" * (at - 10 - len(prefix)) + CANARY + "/x.png"


@pytest.mark.parametrize("url", [
    _straddling("http://exa mple/"),                       # not a URL: urllib3's error repeats it whole
    _straddling("ftp://images.example/"),                  # not http(s)
    _straddling("http://127.0.0.1\\@images.example/"),     # two parsers, two hosts
    "http://[::1/" + CANARY,                               # the parser's error quotes the host and the key
])
def test_a_refused_result_url_shows_no_piece_of_the_key_anywhere_in_the_chain(canary_key, url):
    assert_no_piece(_refused(url))


def test_a_refused_result_url_from_a_node_leaves_no_key_in_what_comfyui_logs(fake_sinkin, monkeypatch):
    monkeypatch.setenv(SINKIN.key_env, CANARY)
    fake_sinkin.key = CANARY
    url = _straddling("http://exa mple/")
    fake_sinkin.script.append(json_answer(200, {"error_code": 0, "images": [url], "credit_cost": 0.5,
                                                "inf_id": "inf1"}))
    with pytest.raises(ProviderError) as caught:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, prompt="x", seed=1)
    assert "refused a result URL" in str(caught.value)
    assert_no_piece(caught.value)


def test_a_redirect_elsewhere_shows_no_piece_of_a_key_in_its_target(canary_key):
    target = "http://" + "h" * 50 + ".example/" + CANARY
    with Loopback(lambda request: Answer(302, b"", {"location": target})) as server:
        async def main():
            return await HttpClient(SINKIN).request("GET", f"{server.url}/x")

        with pytest.raises(ProviderError, match="another host") as caught:
            asyncio.run(main())
    assert_no_piece(caught.value)
    # no host to name: the target itself is shown, cut
    with Loopback(lambda request: Answer(302, b"", {"location": "http:///" + CANARY * 3})) as server:
        async def other():
            return await HttpClient(SINKIN).request("GET", f"{server.url}/x")

        with pytest.raises(ProviderError) as caught:
            asyncio.run(other())
    assert_no_piece(caught.value)


@pytest.mark.parametrize("padding", [280, 285, 290, 295, 296])
def test_a_server_text_cut_at_its_limit_leaves_no_first_characters(canary_key, padding):
    body = json.dumps({"message": "y" * padding + CANARY + " and more"}).encode()
    with Loopback(lambda request: Answer(400, body, {"content-type": "application/json"})) as server:
        async def main():
            return await HttpClient(SINKIN).request("GET", f"{server.url}/x")

        with pytest.raises(ProviderError) as caught:
            asyncio.run(main())
    assert_no_piece(caught.value)


def test_a_chain_is_scrubbed_in_every_link_and_a_hidden_context_is_dropped(canary_key):
    try:
        try:
            try:
                raise OSError(f"connecting to http://h/?token={CANARY}")
            except OSError as inner:
                raise RuntimeError(f"wrapped {quote(CANARY)}") from inner
        except RuntimeError:
            raise ValueError("nothing to add") from None
    except ValueError as error:
        caught = error
    hidden = caught.__context__
    assert hidden is not None and pieces(str(hidden.__cause__))  # the chain carried the key
    redaction.scrub_chain(caught)
    assert caught.__context__ is None and not pieces(str(hidden)) and not pieces(str(hidden.__cause__))
    assert_no_piece(caught)


@pytest.fixture
def canary_segmind_v2(monkeypatch):
    with segmind_showing(monkeypatch, CANARY, "v2") as fake:
        yield fake


def test_a_job_status_cut_at_its_limit_leaves_no_first_characters(canary_segmind_v2):
    canary_segmind_v2.script += [json_answer(200, {"request_id": "req-1", "status": "QUEUED"}),
                                 json_answer(200, {"status": "Q" * 35 + CANARY})]  # the key straddles 40
    with pytest.raises(ProviderError, match="status SD Bridge does not know") as caught:
        run(segmind_nodes.SDBridgeSegmindRealisticVision, prompt="x", seed=1)
    assert_no_piece(caught.value)


def test_a_credits_header_cut_at_its_limit_leaves_no_first_characters(canary_segmind_v2, monkeypatch):
    monkeypatch.setenv(segmind_api.API_ENV, "v1")
    canary_segmind_v2.credits = 7
    canary_segmind_v2.script.append(Answer(200, picture(8, 8, 1), {"content-type": "image/png",
                                                                    "x-remaining-credits": "9" * 35 + CANARY}))
    run(segmind_nodes.SDBridgeSegmindRealisticVision, prompt="x", seed=1)
    shown = " ".join(canary_segmind_v2.frontend.sent)
    assert "credits left" in shown and not pieces(shown), shown
