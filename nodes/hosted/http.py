"""One HTTP client for every provider.

- Requests run on a worker thread, so ComfyUI's event loop stays free and independent hosted
  nodes in one graph wait at the same time. Each worker thread keeps its own pooled session.
- Connect and read timeouts; an overall deadline; bodies are read in chunks up to a byte limit.
- Bounded retries with backoff: 429 (honouring Retry-After) has its own budget; 408, 5xx,
  timeouts and dropped connections share another; every other status fails at once.
- While waiting, the node shows what is happening, and an interrupt from ComfyUI returns
  within a fraction of a second (the worker gives up at its next chunk or timeout).
- Every failure becomes one ProviderError naming the provider, the status and the remedy,
  with keys scrubbed from any text the server sent back.
- `download` fetches result URLs safely: http(s) only, few redirects, no private addresses
  unless the API itself lives on one, content-type and size checks.
"""

from __future__ import annotations

import asyncio
import email.utils
import html
import ipaddress
import json
import random
import re
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .. import runtime
from .credentials import redact
from .providers import Provider

MiB = 1024 * 1024
TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
RATE_LIMITED = 429
_CHUNK = 256 * 1024

_STATUS_TEXT: dict[int, tuple[str, str]] = {
    400: ("rejected the request as invalid", "Check the node's inputs."),
    401: ("did not accept the API key", "Set a valid key in {key_env} or in Settings > SD Bridge; get one at {key_page}"),
    402: ("says payment is required", "Top up at {billing_page}"),
    403: ("refused access", "Your key or plan may not include this model; check {key_page}"),
    404: ("does not know this model or endpoint", "Check the model name or slug."),
    405: ("does not allow this request method", "Check {base_env}: it must point at the API root."),
    406: ("says there are not enough credits", "Top up at {billing_page}"),
    408: ("timed out waiting for the request", "Try again."),
    413: ("says the request is too large", "Use a smaller input image."),
    422: ("rejected the request as invalid", "Check the node's inputs."),
    429: ("is rate limiting requests", "Wait a minute and run again (free Segmind accounts allow 5 requests a minute)."),
    500: ("had a server error", "Try again later."),
    502: ("is temporarily unavailable (bad gateway)", "Try again in a minute."),
    503: ("is temporarily unavailable", "Try again in a minute."),
    504: ("timed out on its side", "Try again, or ask for fewer steps or a smaller image."),
}


class ProviderError(RuntimeError):
    """A failed provider call. `str()` is the whole message a user sees on the node."""

    # ComfyUI titles its error card with the exception's module path: keep it short.
    __module__ = "sdbridge"

    def __init__(self, provider: Provider, message: str, status: int | None = None):
        self.provider = provider
        self.status = status
        super().__init__(redact(f"{provider.name}: {message}"))


@dataclass(frozen=True)
class RetryPolicy:
    transient_attempts: int = 3      # tries in all for 408/5xx/timeouts/dropped connections
    rate_limit_attempts: int = 5     # tries in all for 429
    base_delay: float = 1.0          # first backoff; doubles each retry, with jitter
    max_delay: float = 30.0
    max_retry_after: float = 120.0   # a longer Retry-After fails at once and says how long


@dataclass(frozen=True)
class Limits:
    connect_timeout: float = 10.0
    read_timeout: float = 300.0      # longest silence between bytes (generation happens here)
    deadline: float = 900.0          # whole call, retries included
    max_bytes: int = 64 * MiB        # per answer body


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    seconds: float

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self, provider: Provider) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ProviderError(
                provider,
                f"answered with something that is not JSON ({describe_body(self)}). "
                "The service may be down or the API base URL wrong; try again later.",
                self.status,
            ) from None


class _Cancelled(Exception):
    pass


class _Transport(Exception):
    """Connection failure, timeout or reset: worth a retry."""


# ---------------------------------------------------------------- worker threads

_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sdbridge-http")
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = "sdbridge (ComfyUI node pack)"
        session.max_redirects = 3
        _local.session = session
    return session


def _exchange(method: str, url: str, kwargs: dict, limits: Limits, cancel: threading.Event,
              deadline: float, allow_redirects: bool) -> Reply:
    """One HTTP exchange on a worker thread, body read in bounded chunks."""
    started = time.monotonic()
    try:
        response = _session().request(
            method, url, timeout=(limits.connect_timeout, limits.read_timeout),
            stream=True, allow_redirects=allow_redirects, **kwargs,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Transport(_transport_text(exc)) from None
    except requests.TooManyRedirects:
        raise _Transport("too many redirects") from None
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            return _oversize(response, url, started, limits)
        chunks, size = [], 0
        for chunk in response.iter_content(_CHUNK):
            if cancel.is_set():
                raise _Cancelled()
            size += len(chunk)
            if size > limits.max_bytes:
                return _oversize(response, url, started, limits)
            if time.monotonic() > deadline:
                raise _Transport("the answer took longer than the deadline")
            chunks.append(chunk)
        return Reply(response.status_code, response.headers, b"".join(chunks), response.url or url,
                     time.monotonic() - started)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise _Transport(_transport_text(exc)) from None
    except requests.exceptions.ContentDecodingError:
        return Reply(response.status_code, {"content-type": "application/x-undecodable"}, b"",
                     url, time.monotonic() - started)
    finally:
        response.close()


def _oversize(response, url, started, limits) -> Reply:
    # Status 0 with a marker header: the caller turns it into a clear "too large" error.
    return Reply(0, {"x-sdbridge-oversize": str(limits.max_bytes), "content-type": ""}, b"",
                 url, time.monotonic() - started)


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


# ---------------------------------------------------------------- bodies and errors

def describe_body(reply: Reply) -> str:
    """A short, safe description of an unexpected body for error messages."""
    kind = reply.content_type or "no content type"
    if not reply.body:
        return f"{kind}, empty body"
    return f"{kind}, {len(reply.body):,} bytes"


def server_message(reply: Reply) -> str:
    """The provider's own explanation in an error body, cleaned and shortened."""
    text = ""
    try:
        data = json.loads(reply.body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "html-message", "detail", "msg"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                text = value
                break
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                text = value["message"]
                break
    elif data is None and reply.body:
        raw = reply.body[:4096].decode("utf-8", "replace")
        raw = re.sub(r"(?is)<(script|style).*?</\1>", " ", raw)
        text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()
    if len(text) > 300:
        text = text[:297] + "..."
    return text


def error_for_status(provider: Provider, reply: Reply, attempts: int = 1) -> ProviderError:
    what, remedy = _STATUS_TEXT.get(
        reply.status,
        ("answered with an error" if reply.status >= 400 else "answered unexpectedly", "Try again later."),
    )
    tries = f", after {attempts} tries" if attempts > 1 else ""
    said = server_message(reply)
    said = f' It said: "{said}".' if said else ""
    remedy = remedy.format(**provider.__dict__)
    return ProviderError(provider, f"{what} ({reply.status}{tries}).{said} {remedy}", reply.status)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


# ---------------------------------------------------------------- addresses

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


# ---------------------------------------------------------------- the client

@dataclass
class HttpClient:
    provider: Provider
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)

    async def request(self, method: str, url: str, *, node_id: str | None = None, label: str = "",
                      headers: Mapping[str, str] | None = None, json_body: Any = None,
                      data: Any = None, files: Any = None, allow_redirects: bool = True) -> Reply:
        """Send a request with retries; a non-2xx answer raises ProviderError (a 3xx is
        returned only when `allow_redirects` is off, for `download` to check each hop)."""
        kwargs: dict[str, Any] = {"headers": dict(headers or {})}
        if json_body is not None:
            kwargs["json"] = json_body
        if data is not None:
            kwargs["data"] = data
        if files is not None:
            kwargs["files"] = files
        label = label or urlsplit(url).path
        deadline = time.monotonic() + self.limits.deadline
        transient_tries = rate_tries = 0
        while True:
            runtime.raise_if_interrupted()
            try:
                reply = await self._exchange(method, url, kwargs, deadline, allow_redirects, node_id, label)
            except _Transport as exc:
                transient_tries += 1
                if transient_tries >= self.retry.transient_attempts or time.monotonic() > deadline:
                    raise ProviderError(
                        self.provider,
                        f"{exc} at {urlsplit(url).netloc} (after {transient_tries} tries). Check the "
                        f"network, or {self.provider.base_env} if you set it; then run again.",
                    ) from None
                await self._backoff(transient_tries, None, f"{exc}", node_id, label)
                continue
            if reply.status == 0:
                raise ProviderError(
                    self.provider,
                    f"the answer is larger than the {self.limits.max_bytes // MiB} MiB limit; "
                    "ask for fewer or smaller images.",
                )
            if reply.status == RATE_LIMITED:
                rate_tries += 1
                wait = retry_after_seconds(reply.headers.get("retry-after"))
                if wait is not None and wait > self.retry.max_retry_after:
                    raise ProviderError(
                        self.provider,
                        f"is rate limiting requests (429) and asks to wait {wait:.0f} s. Run again then.",
                        429,
                    )
                if rate_tries >= self.retry.rate_limit_attempts:
                    raise error_for_status(self.provider, reply, rate_tries)
                await self._backoff(rate_tries, wait, "rate limited (429)", node_id, label)
                continue
            if reply.status in TRANSIENT_STATUSES:
                transient_tries += 1
                if transient_tries >= self.retry.transient_attempts:
                    raise error_for_status(self.provider, reply, transient_tries)
                await self._backoff(transient_tries, None, f"server error ({reply.status})", node_id, label)
                continue
            if reply.status >= 400 or reply.status < 200 or (reply.status >= 300 and allow_redirects):
                raise error_for_status(self.provider, reply, transient_tries + rate_tries + 1)
            return reply

    async def download(self, url: str, *, allow_private: bool, accept: str = "image/",
                       node_id: str | None = None, max_redirects: int = 3) -> Reply:
        """GET a result URL the provider gave us, refusing anything unsafe or unexpected."""
        for _ in range(max_redirects + 1):
            self._check_url(url, allow_private)
            try:
                reply = await self.request("GET", url, node_id=node_id, label="download",
                                           allow_redirects=False)
            except ProviderError as exc:
                if exc.status is None or exc.status in TRANSIENT_STATUSES or exc.status == RATE_LIMITED:
                    raise
                # The API's wording ("unknown model", "bad key") would mislead for a result URL.
                raise ProviderError(
                    self.provider, f"a result image could not be downloaded ({exc.status}); the link may "
                    "have expired. Run the node again.", exc.status) from None
            if reply.status in (301, 302, 303, 307, 308):
                location = reply.headers.get("location")
                if not location:
                    raise ProviderError(self.provider, f"a result download redirected nowhere ({reply.status}).")
                url = urljoin(url, location)
                continue
            if not reply.content_type.startswith(accept):
                raise ProviderError(
                    self.provider,
                    f"a result URL did not hold an image ({describe_body(reply)}). Try again; "
                    "if it keeps happening the provider may be having trouble.",
                    reply.status,
                )
            return reply
        raise ProviderError(self.provider, f"a result download redirected more than {max_redirects} times.")

    def _check_url(self, url: str, allow_private: bool) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderError(self.provider, f"refused a result URL that is not http(s): {url[:120]!r}.")
        if not allow_private and not is_public_host(parts.hostname):
            raise ProviderError(
                self.provider,
                f"refused a result URL on a private, loopback or unresolvable address ({parts.hostname}).",
            )

    async def _exchange(self, method, url, kwargs, deadline, allow_redirects, node_id, label) -> Reply:
        """Run one exchange on a worker thread; poll for interrupts while it waits."""
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        future = loop.run_in_executor(
            _executor, _exchange, method, url, kwargs, self.limits, cancel, deadline, allow_redirects
        )
        started = time.monotonic()
        shown = 0
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.1)
                if done:
                    break
                if runtime.interrupted():
                    cancel.set()
                    runtime.show_text(node_id, f"{self.provider.name} {label}: cancelled")
                    runtime.raise_if_interrupted()
                waited = int(time.monotonic() - started)
                if waited > shown:  # a status line each second, as ComfyUI's API nodes do
                    shown = waited
                    runtime.show_text(node_id, f"{self.provider.name} {label}: waiting {waited} s",
                                      log_line=False)
        finally:
            if not future.done():
                cancel.set()
        try:
            return future.result()
        except _Cancelled:
            runtime.raise_if_interrupted()
            raise

    async def _backoff(self, attempt: int, retry_after: float | None, why: str,
                       node_id: str | None, label: str) -> None:
        if retry_after is None:
            delay = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
            delay *= random.uniform(0.8, 1.2)
        else:
            delay = retry_after
        runtime.show_text(node_id, f"{self.provider.name} {label}: {why}; retrying in {delay:.1f} s")
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0:  # short slices, so an interrupt is seen
            runtime.raise_if_interrupted()
            await asyncio.sleep(min(0.1, left))
        runtime.raise_if_interrupted()
