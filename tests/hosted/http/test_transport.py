"""The transport's decisions as plain functions (when to send again, what a status means, how a
size reads, where a key may go), and the request options providers build on."""

from __future__ import annotations

import asyncio

import pytest
from support.loopback import Answer, Loopback, json_answer

from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http.addresses import same_origin
from sdbridge.nodes.hosted.http.client import (
    RATE_LIMITED_BUDGET,
    TRANSIENT,
    HttpClient,
    RetryPolicy,
    classify,
    retry_delay,
)
from sdbridge.nodes.hosted.http.replies import size_text
from sdbridge.nodes.hosted.provider_table import SEGMIND

POLICY = RetryPolicy(transient_attempts=3, rate_limit_attempts=5, base_delay=1.0, max_delay=30.0,
                     max_retry_after=120.0)


@pytest.mark.parametrize(("status", "follow", "meaning"), [
    (200, True, "ok"), (204, True, "ok"), (302, False, "ok"), (302, True, "refused"), (429, True, RATE_LIMITED_BUDGET),
    (408, True, TRANSIENT), (500, True, TRANSIENT), (502, True, TRANSIENT), (503, True, TRANSIENT),
    (504, True, TRANSIENT), (400, True, "refused"), (401, True, "refused"), (404, True, "refused"),
    (406, True, "refused"), (422, True, "refused"), (501, True, "refused"), (101, True, "refused"),
])
def test_what_a_status_means(status, follow, meaning):
    assert classify(status, follow) == meaning


def test_backoff_doubles_with_jitter_up_to_the_cap_and_stops_at_the_budget():
    assert [retry_delay(POLICY, TRANSIENT, tries) for tries in (1, 2, 3)] == [1.0, 2.0, None]
    assert retry_delay(POLICY, TRANSIENT, 1, jitter=1.2) == pytest.approx(1.2)
    assert [retry_delay(POLICY, RATE_LIMITED_BUDGET, tries) for tries in (1, 4, 5)] == [1.0, 8.0, None]
    capped = RetryPolicy(rate_limit_attempts=20, max_delay=30.0)
    assert retry_delay(capped, RATE_LIMITED_BUDGET, 10) == 30.0


def test_retry_after_is_honoured_unless_it_is_too_long():
    assert retry_delay(POLICY, RATE_LIMITED_BUDGET, 1, retry_after=7.0) == 7.0
    assert retry_delay(POLICY, RATE_LIMITED_BUDGET, 1, retry_after=121.0) is None
    assert retry_delay(POLICY, RATE_LIMITED_BUDGET, 5, retry_after=1.0) is None  # the budget still counts


@pytest.mark.parametrize(("size", "text"), [
    (300, "300 bytes"), (1000, "1000 bytes"), (1024, "1 KiB"), (1536, "1.5 KiB"), (512 * 1024, "512 KiB"),
    (2**20, "1 MiB"), (20 * 2**20, "20 MiB"), (int(1.5 * 2**20), "1.5 MiB"),
])
def test_sizes_read_as_people_read_them(size, text):
    assert size_text(size) == text


@pytest.mark.parametrize(("url", "other", "same"), [
    ("https://api.segmind.com/v2/requests/1", "https://api.segmind.com/v2/sdxl", True),
    ("https://API.segmind.com:443/x", "https://api.segmind.com/y", True),
    ("http://127.0.0.1:8000/x", "http://127.0.0.1:8001/x", False),
    ("http://api.segmind.com/x", "https://api.segmind.com/x", False),
    ("https://api.segmind.com.evil.example/x", "https://api.segmind.com/x", False),
    ("https://api.segmind.com:99999/x", "https://api.segmind.com/x", False),
    ("not a url", "not a url", False),
])
def test_where_a_key_may_go(url, other, same):
    assert same_origin(url, other) is same


def test_a_request_can_carry_its_own_retry_policy_and_accepted_statuses():
    with Loopback(lambda request: json_answer(503, {"error": "busy"})) as server:
        client = HttpClient(SEGMIND, retry=RetryPolicy(base_delay=0.01))
        with pytest.raises(ProviderError, match=r"\(503\)"):
            asyncio.run(client.request("GET", server.url, retry=RetryPolicy(transient_attempts=1)))
        assert len(server.requests) == 1
        reply = asyncio.run(client.request("GET", server.url, accept=(503,)))
        assert reply.status == 503 and len(server.requests) == 2
        with pytest.raises(ProviderError, match=r"\(503, after 3 tries\)"):
            asyncio.run(client.request("GET", server.url))
        assert len(server.requests) == 5


def test_an_undecodable_body_is_a_clear_error_not_an_empty_answer():
    answer = Answer(200, b"not gzip at all", {"content-type": "application/json", "content-encoding": "gzip"})
    with Loopback(lambda request: answer) as server:
        with pytest.raises(ProviderError, match="could not be decoded"):
            asyncio.run(HttpClient(SEGMIND).request("GET", server.url))
        assert len(server.requests) == 1


def test_an_api_call_redirected_to_another_host_stops_and_the_key_stays_home():
    with Loopback(lambda request: Answer(200, b"{}")) as elsewhere:
        with Loopback(lambda request: Answer(307, b"", {"location": f"{elsewhere.url}/steal"})) as api:
            for method, extra in (("POST", {"json_body": {"prompt": "x"}}), ("GET", {})):
                with pytest.raises(ProviderError, match=r"redirected the request to another host \(127\.0\.0\.1:\d+\); "
                                                        r"SD Bridge sends your key only to 127\.0\.0\.1:\d+"):
                    asyncio.run(HttpClient(SEGMIND).request(method, f"{api.url}/v1/x", headers={"x-api-key": "k-1"},
                                                            **extra))
            assert elsewhere.requests == [] and len(api.requests) == 2


def test_a_redirect_on_the_same_origin_is_followed_with_the_key():
    def answer(request):
        if request.path == "/old":
            return Answer(307, b"", {"location": "/new"})
        if request.path == "/form":
            return Answer(302, b"", {"location": "/after"})
        return json_answer(200, {"path": request.path, "method": request.method})

    with Loopback(answer) as api:
        client = HttpClient(SEGMIND)
        reply = asyncio.run(client.request("POST", f"{api.url}/old", headers={"x-api-key": "k-1"}, json_body={"a": 1}))
        assert reply.json(SEGMIND) == {"path": "/new", "method": "POST"}
        assert [r.headers.get("x-api-key") for r in api.requests] == ["k-1", "k-1"] and api.requests[1].body == b'{"a": 1}'
        reply = asyncio.run(client.request("POST", f"{api.url}/form", json_body={"a": 1}))
        assert reply.json(SEGMIND) == {"path": "/after", "method": "GET"} and api.requests[-1].body == b""


def test_redirect_loops_and_empty_locations_stop():
    with Loopback(lambda request: Answer(302, b"", {"location": "/again"})) as api:
        with pytest.raises(ProviderError, match="redirected the request too often"):
            asyncio.run(HttpClient(SEGMIND).request("GET", f"{api.url}/a"))
        assert len(api.requests) == 4
    with Loopback(lambda request: Answer(301, b"")) as api:
        with pytest.raises(ProviderError, match="redirected the request nowhere"):
            asyncio.run(HttpClient(SEGMIND).request("GET", f"{api.url}/a"))
