"""Which addresses the pack may reach, and with what.

Result URLs come from a provider's answer, so a hostile or broken answer could aim the pack at
the user's own network. A result URL is read with the parser that connects (urllib3's), and one
that another parser reads as a different host is refused; its host is resolved once, every
address it resolves to must be public (or, when the API itself lives on a private address, be
the API's own address and port), and the download connects to exactly the address checked, so
a second lookup (DNS rebinding) cannot send it elsewhere. Keys go only to the API's own origin.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from ..keys.redaction import cut

DEFAULT_PORTS = {"http": 80, "https": 443}
SHOWN = 120  # characters of a refused URL its message shows (keys out first, and at the cut)


def _shown(url: str) -> str:
    return repr(cut(url, SHOWN))


class RefusedURL(ValueError):
    """A result URL the pack will not fetch; the message finishes "refused a result URL ..."."""


@dataclass(frozen=True)
class Target:
    """Where a checked result URL is fetched from."""

    address: str        # the IP address checked, connected to as it is
    hostname: str       # the name TLS checks the certificate against
    host_header: str    # the Host header the server expects


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))


# IPv6 ranges that carry an IPv4 address in their last 32 bits (IPv4-compatible, IPv4-mapped,
# IPv4-translated, NAT64's well-known prefix): a packet to one may reach that IPv4 address.
_LAST_32_BITS = tuple(ipaddress.ip_network(net) for net in ("::/96", "::ffff:0:0/96", "::ffff:0:0:0/96",
                                                             "64:ff9b::/96"))
# NAT64 prefixes a network picks itself (RFC 8215): any IPv4 address may sit anywhere in them.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (6to4, Teredo's server and client, and the
    ranges above); a packet to it may end up at any of them."""
    inside = [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)] if any(ip in net for net in _LAST_32_BITS) else []
    if ip.sixtofour is not None:
        inside.append(ip.sixtofour)
    if ip.teredo is not None:
        inside += list(ip.teredo)
    return inside


def _is_public(address: str) -> bool:
    """A public address, judged by what is inside it: an IPv6 address that carries a loopback or
    private IPv4 address is as private as that one."""
    ip = ipaddress.ip_address(address)
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        return ip not in _LOCAL_NAT64 and all(_is_public(str(inner)) for inner in _embedded_ipv4(ip))
    return True


def _parsed(url: str):
    """(scheme, host, port, parsed) as urllib3, which opens the connection, reads the URL."""
    try:
        parsed = parse_url(url)
    except (LocationParseError, ValueError):
        parsed = None
    if parsed is None:  # raised outside the handler: the parser's error repeats the whole URL
        raise RefusedURL(f"that is not a URL: {_shown(url)}")
    scheme = (parsed.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parsed.host:
        raise RefusedURL(f"that is not http(s): {_shown(url)}")
    return scheme, parsed.host.strip("[]").lower(), parsed.port or DEFAULT_PORTS[scheme], parsed


def private_allowed(base_url: str) -> frozenset[tuple[str, int]]:
    """The private (address, port) pairs result URLs may use: the API's own, when the API lives
    on a private address (a local proxy, a test fake); none when it is public or unresolvable."""
    try:
        _, host, port, _ = _parsed(base_url)
    except RefusedURL:
        return frozenset()
    addresses = _resolve(host, port)
    if not addresses or all(_is_public(address) for address in addresses):
        return frozenset()
    return frozenset((address, port) for address in addresses)


def result_target(url: str, base_url: str) -> Target:
    """The one address a result URL may be fetched from, or RefusedURL saying why not."""
    scheme, host, port, parsed = _parsed(url)
    try:
        other = (urlsplit(url).hostname or "").lower()
    except ValueError:
        other = ""
    if other != host:
        raise RefusedURL(f"that reads as two different hosts ({cut(host, SHOWN)!r} and {cut(other, SHOWN)!r}): {_shown(url)}")
    addresses = _resolve(host, port)
    allowed = private_allowed(base_url)
    if not addresses or any(not _is_public(a) and (a, port) not in allowed for a in addresses):
        raise RefusedURL(f"on a private, loopback or unresolvable address ({cut(host, SHOWN)})")
    netloc = parsed.host + (f":{parsed.port}" if parsed.port else "")
    return Target(addresses[0], host, netloc)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return ("", "", None)
    return (scheme, (parts.hostname or "").lower(), port)


def same_origin(url: str, other: str) -> bool:
    """True when both URLs name the same scheme, host and port (where a key may go)."""
    origin = _origin(url)
    return bool(origin[1]) and origin == _origin(other)
