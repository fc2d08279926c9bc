"""One HTTP transport for every provider: request, submit-then-poll, and safe downloads.

- Requests run on a worker thread, so ComfyUI's event loop stays free and independent hosted
  nodes in one graph wait at the same time. Each worker thread keeps its own pooled session.
- Connect and read timeouts; an overall deadline; bodies are read in chunks up to a byte limit.
- Whether to send again is decided by pure functions: `classify` / `classify_lost` say what a
  failure means for this kind of request (`Resend`), and `retry_delay` how long to wait under a
  `RetryPolicy`: 429 has its own budget (honouring Retry-After); 408, 5xx, timeouts and dropped
  connections share another; every other status fails at once.
- A request that makes (and bills) an image is never sent again once it may have reached the
  provider: a lost answer, or a status that may come after the work, fails with a message that
  says the provider may have charged it. Only "not started" (never connected, 429, 503) is
  worth another try.
- While waiting, the node shows what is happening, and an interrupt from ComfyUI returns within
  a fraction of a second (the worker gives up at its next chunk or timeout); every request of
  the interrupted prompt sees it, and a request still queued for a worker is never sent.
  `all_or_nothing` runs a batch so that its first failure withdraws the rest.
- Every failure is raised as one ProviderError naming the provider, the status and the remedy;
  nothing is returned as a sentinel.
- `submit_and_poll` is the operation for queue APIs (Segmind v2, fal, Replicate): submit once,
  then ask a status URL with growing pauses, showing queued / processing and the seconds
  waited, and fetch the result. The key goes only to the submit's own origin.
- An API call follows a redirect only on its own origin; a redirect anywhere else stops it, so no
  key or token (a header, or SinkIn's form field) ever reaches another host.
- `download` fetches result URLs safely: http(s) only, few redirects, no private addresses
  unless the API itself lives on one, content-type and size checks.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3

from .. import runtime
from . import journal
from .addresses import RefusedURL, Target, result_target, same_origin
from .providers import Provider
from .rate_limit import RateLimiter
from .replies import ProviderError, Reply, describe_body, error_for_status, size_text, what_happened

MiB = 1024 * 1024
TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
RATE_LIMITED = 429
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3
_CHUNK = 256 * 1024


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


@dataclass(frozen=True)
class PollPolicy:
    first_interval: float = 1.0      # the first pause between status requests
    max_interval: float = 5.0        # pauses grow to this
    growth: float = 1.5
    timeout: float = 600.0           # give up waiting (the provider may still finish; say so)


# ---------------------------------------------------------------- the retry decision

TRANSIENT = "transient"          # the answer never came whole, or 408/5xx
RATE_LIMITED_BUDGET = "rate limited"
MAYBE_DONE = "maybe done"        # the provider may have done (and billed) the work: never resend


@dataclass(frozen=True)
class Resend:
    """When a request may be sent again: after its answer was lost (it may have been delivered),
    and after which failing statuses."""

    after_lost_answer: bool
    statuses: frozenset


IDEMPOTENT = Resend(True, TRANSIENT_STATUSES | {RATE_LIMITED})     # reads, polls, downloads
# A request that makes an image, or submits a job that will: only 429 and 503 say the work did
# not start. A gateway's 502/504 or a 500 may come after the provider took the request.
GENERATION = Resend(False, frozenset({RATE_LIMITED, 503}))


def classify(status: int, follow_redirects: bool = True, resend: Resend = IDEMPOTENT) -> str:
    """What a status means for the caller: "ok", TRANSIENT, RATE_LIMITED_BUDGET, MAYBE_DONE or
    "refused"."""
    if 200 <= status < 300 or (status in REDIRECTS and not follow_redirects):
        return "ok"
    if status != RATE_LIMITED and status not in TRANSIENT_STATUSES:
        return "refused"
    if status not in resend.statuses:
        return MAYBE_DONE
    return RATE_LIMITED_BUDGET if status == RATE_LIMITED else TRANSIENT


def classify_lost(sent: bool, resend: Resend = IDEMPOTENT) -> str:
    """What a lost answer means: TRANSIENT when the request never left (or may go twice),
    MAYBE_DONE when it may have reached the provider."""
    return TRANSIENT if not sent or resend.after_lost_answer else MAYBE_DONE


def retry_delay(policy: RetryPolicy, budget: str, tries: int, retry_after: float | None = None,
                jitter: float = 1.0) -> float | None:
    """Seconds to wait before sending again after `tries` failures in `budget`, or None to
    stop. Pure: the caller draws `jitter` (0.8-1.2) and reads Retry-After."""
    limit = policy.rate_limit_attempts if budget == RATE_LIMITED_BUDGET else policy.transient_attempts
    if tries >= limit:
        return None
    if retry_after is not None:
        return None if retry_after > policy.max_retry_after else retry_after
    return min(policy.max_delay, policy.base_delay * 2 ** (tries - 1)) * jitter


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


# ---------------------------------------------------------------- one exchange, on a worker thread

class ExchangeFailed(Exception):
    """Connection failure, timeout or reset: the answer never came whole. `sent` is False only
    when the request certainly never reached the server (no connection was made)."""

    def __init__(self, text: str, sent: bool = True):
        super().__init__(text)
        self.sent = sent


class AnswerTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class AnswerUndecodable(Exception):
    """The body's content-encoding could not be undone."""


class _Cancelled(Exception):
    pass


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


_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sdbridge-http")
_local = threading.local()


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


def _exchange(method: str, url: str, kwargs: dict, limits: Limits, cancel: threading.Event,
              deadline: float, follow_redirects: bool, run: int | None, pin: Target | None = None) -> Reply:
    """One HTTP exchange, body read in bounded chunks; raises instead of returning half an answer.
    With `pin`, the connection goes to exactly that checked address."""
    if cancel.is_set() or runtime.interrupted(run):  # queued for a worker, then cancelled: never sent
        raise _Cancelled()
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
            raise AnswerTooLarge(limits.max_bytes)
        chunks, size = [], 0
        for chunk in response.iter_content(_CHUNK):
            if cancel.is_set():
                raise _Cancelled()
            size += len(chunk)
            if size > limits.max_bytes:
                raise AnswerTooLarge(limits.max_bytes)
            if time.monotonic() > deadline:
                raise ExchangeFailed("the answer took longer than the deadline")
            chunks.append(chunk)
        return Reply(response.status_code, response.headers, b"".join(chunks), response.url or url,
                     time.monotonic() - started)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise ExchangeFailed(_transport_text(exc)) from None
    except requests.exceptions.ContentDecodingError:
        raise AnswerUndecodable() from None
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


# ---------------------------------------------------------------- batches

async def all_or_nothing(coroutines) -> list:
    """Run the coroutines together and return their results in order. The first failure (or a
    cancel) withdraws the rest at once: their waits stop and nothing more of theirs is sent."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# ---------------------------------------------------------------- queue jobs

@dataclass(frozen=True)
class Job:
    """A request a provider accepted into its queue: where to ask about it and fetch it."""

    id: str
    status_url: str
    result_url: str


QUEUED, PROCESSING, COMPLETED, FAILED = "queued", "processing", "completed", "failed"


@dataclass(frozen=True)
class JobState:
    state: str          # QUEUED, PROCESSING, COMPLETED or FAILED
    error: str = ""     # the provider's reason, when FAILED


# ---------------------------------------------------------------- the client

@dataclass
class HttpClient:
    provider: Provider
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)

    async def request(self, method: str, url: str, *, node_id: str | None = None, label: str = "",
                      headers: Mapping[str, str] | None = None, json_body: Any = None,
                      data: Any = None, files: Any = None, follow_redirects: bool = True,
                      accept: Collection[int] = (), retry: RetryPolicy | None = None,
                      resend: Resend = IDEMPOTENT, limiter: RateLimiter | None = None,
                      pin: Target | None = None) -> Reply:
        """Send a request, retrying as `retry` (default the client's) decides, within what
        `resend` allows for this kind of request (GENERATION for one that makes an image).
        Returns a 2xx answer, or one whose status is in `accept`; a 3xx only when
        `follow_redirects` is off (for `download` to check each hop). Anything else raises
        ProviderError. With a `limiter` (the key's), each try first takes a slot of its pace."""
        policy = retry or self.retry
        kwargs: dict[str, Any] = {"headers": dict(headers or {})}
        for name, value in (("json", json_body), ("data", data), ("files", files)):
            if value is not None:
                kwargs[name] = value
        label = label or urlsplit(url).path
        deadline = time.monotonic() + self.limits.deadline
        tries = {TRANSIENT: 0, RATE_LIMITED_BUDGET: 0}
        hops = 0
        while True:
            runtime.raise_if_interrupted()
            if limiter is not None:
                await self._take_slot(limiter, node_id, label)
            reply, retry_after = None, None
            try:
                reply = await self._exchange(method, url, kwargs, deadline, follow_redirects, node_id, label, pin)
            except ExchangeFailed as exc:
                budget, why = classify_lost(exc.sent, resend), str(exc)
            except AnswerTooLarge as exc:
                raise ProviderError(self.provider, f"the answer is larger than the {size_text(exc.limit)} limit; "
                                    "ask for fewer or smaller images.") from None
            except AnswerUndecodable:
                raise ProviderError(self.provider, "answered with a body that could not be decoded. Try again "
                                    "later; if it keeps happening, check the API base URL or your proxy.") from None
            else:
                retry_after = retry_after_seconds(reply.headers.get("retry-after"))
                if limiter is not None:
                    limiter.observe(reply.status, reply.headers, retry_after)
                if reply.status in REDIRECTS and follow_redirects and reply.status not in accept:
                    method, url = self._redirect(method, url, reply, hops, kwargs)
                    hops += 1
                    continue
                budget = "ok" if reply.status in accept else classify(reply.status, follow_redirects, resend)
                if budget == "ok":
                    return reply
                if budget == "refused":
                    raise error_for_status(self.provider, reply, sum(tries.values()) + 1)
                why = "rate limited (429)" if budget == RATE_LIMITED_BUDGET else f"server error ({reply.status})"
            if budget == MAYBE_DONE:
                raise self._maybe_charged(url, reply, why)
            tries[budget] += 1
            if budget != RATE_LIMITED_BUDGET:
                retry_after = None  # only a 429's Retry-After is honoured
            wait = retry_delay(policy, budget, tries[budget], retry_after, jitter=random.uniform(0.8, 1.2))
            if wait is None or (reply is None and time.monotonic() > deadline):
                raise self._gave_up(url, reply, why, tries[budget], retry_after, policy)
            await self._pause(wait, f"{why}; retrying in {wait:.1f} s", node_id, label)

    def _redirect(self, method: str, url: str, reply: Reply, hops: int, kwargs: dict) -> tuple[str, str]:
        """The next hop of a redirected API call: only on the same origin, where the key may go;
        anywhere else the call stops, so no key or token follows a redirect to another host."""
        location = reply.headers.get("location")
        if not location or hops >= MAX_REDIRECTS:
            raise ProviderError(self.provider, f"redirected the request {'nowhere' if not location else 'too often'} "
                                f"({reply.status}). Check {self.provider.base_env} if you set it.", reply.status)
        target = urljoin(url, location)
        if not same_origin(target, url):
            raise ProviderError(
                self.provider, f"redirected the request to another host ({urlsplit(target).netloc or repr(target[:60])}); "
                f"SD Bridge sends your key only to {urlsplit(url).netloc}. Check {self.provider.base_env} if you set "
                "it; nothing was sent there.", reply.status)
        if reply.status == 303 or (reply.status in (301, 302) and method == "POST"):
            for name in ("json", "data", "files"):  # as HTTP says: the body does not follow
                kwargs.pop(name, None)
            method = "GET"
        return method, target

    def _maybe_charged(self, url: str, reply: Reply | None, why: str) -> ProviderError:
        what = f"{why} at {urlsplit(url).netloc} after the request was sent." if reply is None else what_happened(reply)
        return ProviderError(
            self.provider,
            f"{what} {self.provider.name} may have made the image and charged for it, so SD Bridge did not send "
            f"the request again. Check your usage at {self.provider.billing_page} before running the node again.",
            None if reply is None else reply.status)

    def _gave_up(self, url: str, reply: Reply | None, why: str, tries: int, retry_after: float | None,
                 policy: RetryPolicy) -> ProviderError:
        if reply is None:
            return ProviderError(
                self.provider,
                f"{why} at {urlsplit(url).netloc} (after {tries} tries). Check the network, or "
                f"{self.provider.base_env} if you set it; then run again.")
        if retry_after is not None and retry_after > policy.max_retry_after:
            return ProviderError(self.provider, f"is rate limiting requests (429) and asks to wait {retry_after:.0f} s. "
                                 "Run again then.", RATE_LIMITED)
        return error_for_status(self.provider, reply, tries)

    async def submit_and_poll(self, url: str, *, read_job: Callable[[Reply], Job],
                              read_state: Callable[[Reply], JobState], headers: Mapping[str, str],
                              node_id: str | None = None, label: str = "", json_body: Any = None,
                              poll: PollPolicy | None = None, state_statuses: Collection[int] = (422,),
                              keep_for: float | None = None, limiter: RateLimiter | None = None) -> Reply:
        """POST a job to a queue API once, ask its status URL until it completes, and return the
        result URL's answer. `read_job` reads the submit's answer, `read_state` a status answer
        (`state_statuses` are statuses a status answer may carry and still be read, such as a
        422 with FAILED). The key (in `headers`) goes only to `url`'s origin.

        With `keep_for` (the provider's result window, in seconds) the job goes into the request
        journal: the same request run again while the provider holds it asks for that job
        instead of submitting (and paying for) a new one. A failure at submit carries
        `stage == "submit"`."""
        poll = poll or PollPolicy()
        label = label or urlsplit(url).path
        digest = journal.canonical_request(self.provider.id, url, json_body) if keep_for else None
        found = journal.find(digest) if digest else None
        if found is not None:
            job = Job(*found)
            runtime.show_text(node_id, f"{self.provider.name} {label}: asking for request {job.id}, sent before")
            try:
                return await self._follow(job, url, read_state, headers, node_id, label, poll, state_statuses, digest)
            except ProviderError as exc:
                if exc.status not in (404, 410):
                    raise
                journal.forget(digest)  # the provider no longer holds it: submit anew
        try:
            submitted = await self.request("POST", url, node_id=node_id, label=label, headers=headers,
                                           json_body=json_body, resend=GENERATION, limiter=limiter)
        except ProviderError as exc:
            exc.stage = "submit"
            raise
        job = read_job(submitted)
        if digest:
            journal.record(digest, self.provider.id, (job.id, job.status_url, job.result_url), keep_for)
        return await self._follow(job, url, read_state, headers, node_id, label, poll, state_statuses, digest)

    async def _follow(self, job: Job, url: str, read_state, headers, node_id, label, poll: PollPolicy,
                      state_statuses, digest: str | None) -> Reply:
        """Ask about a submitted job until it ends; its result's answer."""
        for where in (job.status_url, job.result_url):
            if not same_origin(where, url):
                raise ProviderError(self.provider, f"answered with a job URL on another host "
                                    f"({urlsplit(where).netloc or where[:60]!r}); SD Bridge sends your key only to "
                                    f"{urlsplit(url).netloc}. Check {self.provider.base_env} if you set it.")
        started = time.monotonic()
        interval = poll.first_interval
        while True:
            answer = await self.request("GET", job.status_url, node_id=node_id, label=f"{label} status",
                                        headers=headers, accept=state_statuses)
            state = read_state(answer)
            waited = time.monotonic() - started
            if state.state == COMPLETED:
                break
            if state.state == FAILED:
                if digest:
                    journal.forget(digest)
                said = f': "{state.error}"' if state.error else " without giving a reason"
                raise ProviderError(self.provider, f"could not finish request {job.id}{said}. Check the node's "
                                    "inputs and run again.", answer.status)
            if waited + interval > poll.timeout:
                keep = " Running the node again with the same inputs asks for it again." if digest else ""
                raise ProviderError(self.provider, f"request {job.id} is still {state.state} after {waited:.0f} s; "
                                    f"it may still finish on the provider's side.{keep}")
            await self._pause(interval, f"{state.state}, {waited:.0f} s", node_id, label, log_line=False)
            interval = min(interval * poll.growth, poll.max_interval)
        result = await self.request("GET", job.result_url, node_id=node_id, label=f"{label} result", headers=headers)
        if digest:
            journal.forget(digest)
        return result

    async def download(self, url: str, *, base: str, accept: str = "image/", node_id: str | None = None,
                       max_redirects: int = 3) -> Reply:
        """GET a result URL the provider gave us (`base` is the API's base URL: it says which
        private address, if any, results may come from), refusing anything unsafe or unexpected.
        Each hop is checked and fetched from exactly the address checked."""
        for _ in range(max_redirects + 1):
            try:
                target = result_target(url, base)
            except RefusedURL as exc:
                raise ProviderError(self.provider, f"refused a result URL {exc}.") from None
            try:
                reply = await self.request("GET", url, node_id=node_id, label="download", follow_redirects=False,
                                           pin=target)
            except ProviderError as exc:
                if exc.status is None or exc.status in TRANSIENT_STATUSES or exc.status == RATE_LIMITED:
                    raise
                # The API's wording ("unknown model", "bad key") would mislead for a result URL.
                raise ProviderError(
                    self.provider, f"a result image could not be downloaded ({exc.status}); the link may "
                    "have expired. Run the node again.", exc.status) from None
            if reply.status in REDIRECTS:
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

    async def _exchange(self, method, url, kwargs, deadline, follow_redirects, node_id, label, pin=None) -> Reply:
        """Run one exchange on a worker thread; poll for interrupts while it waits."""
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        future = loop.run_in_executor(
            _executor, _exchange, method, url, kwargs, self.limits, cancel, deadline, follow_redirects,
            runtime.current_run(), pin,
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

    async def _pause(self, seconds: float, why: str, node_id: str | None, label: str, log_line: bool = True) -> None:
        """Wait `seconds` in short slices, so an interrupt is seen within 0.1 s."""
        runtime.show_text(node_id, f"{self.provider.name} {label}: {why}", log_line=log_line)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            runtime.raise_if_interrupted()
            await asyncio.sleep(min(0.1, left))
        runtime.raise_if_interrupted()

    async def _take_slot(self, limiter: RateLimiter, node_id: str | None, label: str) -> None:
        """Wait until the key's pace lets this request start; the node says so."""
        waited = 0.0
        while (wait := limiter.try_acquire()) > 0:
            step = min(wait, 0.25)
            why = f"waiting for a free request slot ({self.provider.name}'s rate limit), {wait:.0f} s"
            await self._pause(step, why, node_id, label, log_line=waited == 0.0)
            waited += step
