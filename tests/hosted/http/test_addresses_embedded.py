"""An IPv6 address that carries an IPv4 address (IPv4-compatible, IPv4-mapped, NAT64, 6to4,
Teredo) is judged by the address inside: one that carries a loopback or private IPv4 address is
refused like that address, wherever the URL names it or a name resolves to it."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdbridge.nodes.hosted.http import addresses
from sdbridge.nodes.hosted.http.addresses import RefusedURL, result_target

PUBLIC_BASE = "https://93.184.215.14"


def embeddings(v4: ipaddress.IPv4Address) -> dict[str, str]:
    """Every IPv6 spelling that carries `v4`, by the name of its form."""
    n = int(v4)
    high, low = n >> 16, n & 0xFFFF
    teredo_client = n ^ 0xFFFFFFFF  # Teredo stores its client address inverted
    return {
        "IPv4-compatible": f"::{v4}",
        "IPv4-mapped": f"::ffff:{v4}",
        "IPv4-translated": f"::ffff:0:{v4}",
        "NAT64": f"64:ff9b::{high:x}:{low:x}",
        "local NAT64": f"64:ff9b:1::{high:x}:{low:x}",
        "6to4": f"2002:{high:x}:{low:x}::1",
        "Teredo client": f"2001:0:5db8:1a03:0:0:{teredo_client >> 16:x}:{teredo_client & 0xFFFF:x}",
        "Teredo server": f"2001:0:{high:x}:{low:x}::1",
    }


@pytest.mark.parametrize("address", [
    "::127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1", "2001:0::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",      # Teredo, client 127.0.0.1
    "::10.0.0.7", "64:ff9b::a00:7", "2002:c0a8:101::1", "::ffff:0:192.168.1.1", "64:ff9b::a9fe:a9fe",
    "64:ff9b:1::808:808",
])
def test_an_ipv6_literal_carrying_a_private_ipv4_is_refused(address):
    with pytest.raises(RefusedURL, match="private, loopback"):
        result_target(f"http://[{address}]/a.png", PUBLIC_BASE)


@pytest.mark.parametrize("address, public", [
    ("64:ff9b::808:808", True),     # NAT64 to 8.8.8.8
    ("2002:808:808::1", True),      # 6to4 from 8.8.8.8
    ("2606:4700:4700::1111", True),
    ("2002:7f00:1::1", False),
    ("64:ff9b::7f00:1", False),
    ("::127.0.0.1", False),
    ("::ffff:127.0.0.1", False),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
])
def test_what_is_public_is_judged_by_the_address_inside(address, public):
    assert addresses._is_public(address) is public


def test_a_name_resolving_to_an_ipv6_form_of_loopback_is_refused(monkeypatch):
    def resolver(host, port, *args, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("64:ff9b::7f00:1", port, 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(RefusedURL, match="private, loopback"):
        result_target("http://images.example/a.png", PUBLIC_BASE)


@settings(max_examples=200, deadline=None)
@given(v4=st.ip_addresses(v=4))
def test_no_ipv6_form_makes_a_non_public_ipv4_address_public(v4):
    for form, address in embeddings(v4).items():
        if addresses._is_public(address):
            assert addresses._is_public(str(v4)), (form, address)
        assert ipaddress.ip_address(address).version == 6
