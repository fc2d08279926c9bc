"""Result downloads reach only the addresses the configuration allows: the URL is read by the
parser that connects, resolved once, and fetched from exactly the address checked."""

from __future__ import annotations

import asyncio
import socket

import pytest
from fakes.sinkin import picture
from hypothesis import given, settings
from hypothesis import strategies as st
from support.loopback import Answer, Loopback

from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http import addresses
from sdbridge.nodes.hosted.http.addresses import RefusedURL, result_target
from sdbridge.nodes.hosted.http.client import HttpClient
from sdbridge.nodes.hosted.provider_table import SINKIN

PUBLIC_BASE = "https://93.184.215.14"


def _image_server():
    return Loopback(lambda request: Answer(200, picture(8, 8, 1), {"content-type": "image/png"}))


@pytest.mark.parametrize("url", [
    "http://127.0.0.1\\@images.example/x.png",       # urlsplit: images.example; urllib3 connects to 127.0.0.1
    "http://images.example\\@127.0.0.1:8000/x.png",  # and the other way round
    "http://images.example:80\\@127.0.0.1/x.png",
])
def test_a_url_two_parsers_read_differently_is_refused(url):
    with pytest.raises(RefusedURL, match="two different hosts"):
        result_target(url, PUBLIC_BASE)


def test_a_name_resolving_to_any_private_address_is_refused(monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host == "mixed.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(RefusedURL, match="private, loopback or unresolvable address"):
        result_target("http://mixed.test/a.png", PUBLIC_BASE)


def test_a_private_api_allows_only_its_own_address_and_port():
    with _image_server() as api, _image_server() as other:
        assert result_target(f"{api.url}/a.png", api.url).address == "127.0.0.1"
        with pytest.raises(RefusedURL, match="private, loopback"):
            result_target(f"{other.url}/a.png", api.url)  # another port on the same machine
        with pytest.raises(RefusedURL, match="private, loopback"):
            result_target(f"http://127.0.0.2:{api.url.rsplit(':', 1)[1]}/a.png", api.url)


def test_the_download_connects_to_the_address_checked_not_a_second_lookup(monkeypatch):
    """DNS rebinding: the name answers 127.0.0.1 when checked, 127.0.0.2 afterwards. The download
    goes to the address checked, and the name is looked up once."""
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.test":
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with _image_server() as api:
        port = api.url.rsplit(":", 1)[1]
        reply = asyncio.run(HttpClient(SINKIN).download(f"http://rebind.test:{port}/a.png", base=api.url))
        assert reply.content_type == "image/png" and lookups == ["rebind.test"]
        assert api.requests[0].headers["host"] == f"rebind.test:{port}"  # the server still sees its name


def test_a_redirect_hop_is_checked_like_the_first_url():
    with _image_server() as elsewhere:
        hop = Loopback(lambda request: Answer(302, b"", {"location": f"{elsewhere.url}/a.png"}))
        with hop:
            with pytest.raises(ProviderError, match="private, loopback"):
                asyncio.run(HttpClient(SINKIN).download(f"{hop.url}/start", base=hop.url))
        assert elsewhere.requests == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="htps:/\\@[]%.:0123456789abcdeflocalhost-_?#", max_size=40))
def test_any_url_is_refused_or_pinned_to_an_allowed_address(tail):
    """A resolver stub answers every name with a loopback address: with a public API, no URL
    whatever its spelling may reach it."""
    url = "http://" + tail

    def loopback_only(host, port, *args, **kwargs):
        address = host if host == "93.184.215.14" else "127.0.0.1"  # the API itself stays public
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 80))]

    original = socket.getaddrinfo
    socket.getaddrinfo = loopback_only
    try:
        with pytest.raises(RefusedURL):
            result_target(url, PUBLIC_BASE)
    finally:
        socket.getaddrinfo = original


def test_public_base_allows_no_private_address():
    assert addresses.private_allowed(PUBLIC_BASE) == frozenset()
    assert addresses.private_allowed("not a url") == frozenset()
