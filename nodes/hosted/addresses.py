"""Which addresses the pack may reach, and with what.

Result URLs come from a provider's answer, so a hostile or broken answer could aim the pack at
the user's own network: they must resolve to public addresses unless the API itself lives on a
private one. Keys go only to the API's own origin.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def is_public_host(host: str) -> bool:
    """True when every address the host resolves to is a public unicast address."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            return False
    return bool(infos)


def private_results_allowed(base_url: str) -> bool:
    """Result URLs may point at private or loopback addresses only when the API itself lives
    on one (a local proxy, a test fake): a hostile answer cannot aim us at the user's network."""
    host = urlsplit(base_url).hostname or ""
    try:
        socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    return not is_public_host(host)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is not a number
        return ("", "", None)
    return (scheme, (parts.hostname or "").lower(), port)


def same_origin(url: str, other: str) -> bool:
    """True when both URLs name the same scheme, host and port (where a key may go)."""
    origin = _origin(url)
    return bool(origin[1]) and origin == _origin(other)
