"""One HTTP exchange on a worker thread: connect and read timeouts, an overall deadline, the body
read in bounded chunks, a cancel seen between chunks, and (for result downloads) a connection
pinned to the one address that was checked. Raises instead of returning half an answer."""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import requests.adapters
import urllib3

from ... import runtime
from .addresses import Target
from .policy import Limits
from .replies import Reply

_CHUNK = 256 * 1024


class ExchangeFailed(Exception):
    """Connection failure, timeout or reset: the answer never came whole. `sent` is False only
    when the request certainly never reached the server (no connection was made)."""

    def __init__(self, text: str, sent: bool = True):
        super().__init__(text)
        self.sent = sent


# The exchange's own failures: internal to the HTTP layer. HttpClient.request catches each and
# raises the ProviderError (or MaybeCharged) the user sees; none escapes it.

class ResponseTooLarge(Exception):
    """The response body passed `limit` bytes."""

    def __init__(self, limit: int):
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class ResponseUndecodable(Exception):
    """The body's content-encoding could not be undone."""


class Cancelled(Exception):
    """The request was withdrawn (ComfyUI's interrupt, or its batch failed) before its answer came."""


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Connects to one checked address, whatever its name resolves to by then; TLS still checks
    the certificate against the host name."""

    def __init__(self, target: Target):
        self.target = target
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_params = {**host_params, "host": self.target.address}
        if host_params.get("scheme") == "https":
            pool_kwargs = {**pool_kwargs, "server_hostname": self.target.hostname,
                           "assert_hostname": self.target.hostname}
        return host_params, pool_kwargs


def _pinned_session(target: Target) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = "sdbridge (ComfyUI node pack)"
    adapter = _PinnedAdapter(target)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
_local = threading.local()


@functools.cache
def executor() -> ThreadPoolExecutor:
    """The worker threads exchanges run on, made on first use (importing the pack starts none)."""
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="sdbridge-http")


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = "sdbridge (ComfyUI node pack)"
        _local.session = session
    return session


def _never_sent(exc: Exception) -> bool:
    """True when the request cannot have reached the server: no connection was made."""
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.NewConnectionError))


def exchange(method: str, url: str, kwargs: dict, limits: Limits, cancel: threading.Event,
              deadline: float, follow_redirects: bool, run: int | None, pin: Target | None = None,
              follows_interrupts: bool = True) -> Reply:
    """One HTTP exchange, body read in bounded chunks; raises instead of returning half an answer.
    With `pin`, the connection goes to exactly that checked address."""
    if cancel.is_set() or (follows_interrupts and runtime.interrupted(run)):  # cancelled while queued: never sent
        raise Cancelled()
    started = time.monotonic()
    session = _session()
    if pin is not None:
        session = _pinned_session(pin)
        kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), "Host": pin.host_header}}
    try:
        response = session.request(
            method, url, timeout=(limits.connect_timeout, limits.read_timeout),
            stream=True, allow_redirects=False, **kwargs,  # each hop is checked by the caller
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ExchangeFailed(_transport_text(exc), sent=not _never_sent(exc)) from None
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise ResponseTooLarge(limits.max_bytes)
        chunks, size = [], 0
        for chunk in response.iter_content(_CHUNK):
            if cancel.is_set():
                raise Cancelled()
            size += len(chunk)
            if size > limits.max_bytes:
                raise ResponseTooLarge(limits.max_bytes)
            if time.monotonic() > deadline:
                raise ExchangeFailed("the answer took longer than the deadline")
            chunks.append(chunk)
        return Reply(response.status_code, response.headers, b"".join(chunks), response.url or url,
                     time.monotonic() - started)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise ExchangeFailed(_transport_text(exc)) from None
    except requests.exceptions.ContentDecodingError:
        raise ResponseUndecodable() from None
    finally:
        response.close()
        if pin is not None:
            session.close()


def _transport_text(exc: Exception) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "could not connect in time"
    if isinstance(exc, requests.ReadTimeout):
        return "no answer in time"
    text = str(exc)
    if "Connection refused" in text:
        return "the connection was refused"
    if "Name or service not known" in text or "getaddrinfo" in text:
        return "the host name could not be resolved"
    if "reset" in text.lower() or "aborted" in text.lower() or "RemoteDisconnected" in text:
        return "the connection was dropped"
    return "the connection failed"
