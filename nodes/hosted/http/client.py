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
import contextlib
import contextvars
import dataclasses
import random
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from ... import runtime
from ...errors import MaybeCharged, ProviderError
from ..keys.redaction import cut
from ..provider_table import Provider
from . import exchange
from .addresses import RefusedURL, Target, result_target, same_origin
from .exchange import ExchangeFailed, ResponseTooLarge, ResponseUndecodable
from .policy import (
    IDEMPOTENT,
    MAX_REDIRECTS,
    MAYBE_DONE,
    RATE_LIMITED,
    RATE_LIMITED_BUDGET,
    REDIRECTS,
    TRANSIENT,
    TRANSIENT_STATUSES,
    Limits,
    Resend,
    RetryPolicy,
    classify,
    classify_lost,
    retry_after_seconds,
    retry_delay,
)
from .rate_limit import LONGEST_WAIT, RateLimiter
from .replies import Reply, describe_body, error_for_status, size_text, what_happened

# The requests that make (and bill) an image sent so far by the run whose context this is: a run
# cancelled after one left may still be billed, and node.py counts it toward the caps.
_generations_sent: contextvars.ContextVar[list | None] = contextvars.ContextVar("sdbridge_generations_sent",
                                                                                default=None)


@contextlib.contextmanager
def counting_generations():
    """A list that each generation request sent within the block (its tasks included) adds to."""
    sent: list[str] = []
    token = _generations_sent.set(sent)
    try:
        yield sent
    finally:
        _generations_sent.reset(token)


@dataclass
class HttpClient:
    provider: Provider
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)
    # Off for a read a route makes for the page (a cover): no part of a prompt, so ComfyUI's
    # interrupt neither stops it nor is taken by it from the prompt it was meant for.
    follows_interrupts: bool = True

    async def request(self, method: str, url: str, *, node_id: str | None = None, label: str = "",
                      headers: Mapping[str, str] | None = None, json_body: Any = None,
                      data: Any = None, files: Any = None, follow_redirects: bool = True,
                      accept: Collection[int] = (), retry: RetryPolicy | None = None,
                      resend: Resend = IDEMPOTENT, limiter: RateLimiter | None = None,
                      pin: Target | None = None, stage: str = "", request_id: str | None = None) -> Reply:
        """Send a request, retrying as `retry` (default the client's) decides, within what
        `resend` allows for this kind of request (GENERATION for one that makes an image).
        Returns a 2xx answer, or one whose status is in `accept`; a 3xx only when
        `follow_redirects` is off (for `download` to check each hop). Anything else raises
        ProviderError. With a `limiter` (the key's), each try first takes a slot of its pace.
        `stage` names the step ("submit" for a queue API's job) and `request_id` the provider's id
        of the request, when known: every error raised here carries both from its construction,
        and so does the answer returned (for the errors its reading raises)."""
        policy = retry or self.retry
        kwargs: dict[str, Any] = {"headers": dict(headers or {})}
        for name, value in (("json", json_body), ("data", data), ("files", files)):
            if value is not None:
                kwargs[name] = value
        label = label or urlsplit(url).path
        deadline = time.monotonic() + self.limits.deadline
        tries = {TRANSIENT: 0, RATE_LIMITED_BUDGET: 0}
        about = {"stage": stage, "request_id": request_id}  # what every error of this request carries
        hops = 0
        while True:
            self._stop_if_interrupted()
            if limiter is not None:
                await self._take_slot(limiter, node_id, label)
            reply, retry_after = None, None
            sent = _generations_sent.get()
            if sent is not None and not resend.after_lost_answer:
                sent.append(url)  # from here on the provider may make, and bill, the image
            try:
                reply = await self._exchange(method, url, kwargs, deadline, follow_redirects, node_id, label, pin)
            except ExchangeFailed as exc:
                budget, why = classify_lost(exc.sent, resend), str(exc)
            except ResponseTooLarge as exc:
                raise ProviderError(self.provider, f"the answer is larger than the {size_text(exc.limit)} limit; "
                                    "ask for fewer or smaller images.", **about) from None
            except ResponseUndecodable:
                raise ProviderError(self.provider, "answered with a body that could not be decoded. Try again "
                                    "later; if it keeps happening, check the API base URL or your proxy.",
                                    **about) from None
            else:
                retry_after = retry_after_seconds(reply.headers.get("retry-after"))
                if limiter is not None:
                    limiter.observe(reply.status, reply.headers, retry_after)
                    if reply.status == RATE_LIMITED and retry_after is not None and retry_after > LONGEST_WAIT:
                        runtime.show_text(node_id, f"{self.provider.name} {label}: {_too_long(retry_after)}; SD Bridge "
                                          f"holds this key's requests for at most {LONGEST_WAIT / 3600:g} hour, then "
                                          "tries again")
                if reply.status in REDIRECTS and follow_redirects and reply.status not in accept:
                    method, url = self._redirect(method, url, reply, hops, kwargs, about)
                    hops += 1
                    continue
                budget = "ok" if reply.status in accept else classify(reply.status, follow_redirects, resend)
                if budget == "ok":
                    return dataclasses.replace(reply, **about)
                if budget == "refused":
                    raise error_for_status(self.provider, reply, sum(tries.values()) + 1, **about)
                why = "rate limited (429)" if budget == RATE_LIMITED_BUDGET else f"server error ({reply.status})"
            if budget == MAYBE_DONE:
                raise self._maybe_charged(url, reply, why, about)
            tries[budget] += 1
            if budget != RATE_LIMITED_BUDGET:
                retry_after = None  # only a 429's Retry-After is honoured
            wait = retry_delay(policy, budget, tries[budget], retry_after, jitter=random.uniform(0.8, 1.2))
            if wait is None or (reply is None and time.monotonic() > deadline):
                raise self._gave_up(url, reply, why, tries[budget], retry_after, policy, about)
            await self.pause(wait, f"{why}; retrying in {wait:.1f} s", node_id, label)

    def _redirect(self, method: str, url: str, reply: Reply, hops: int, kwargs: dict,
                  about: dict) -> tuple[str, str]:
        """The next hop of a redirected API call: only on the same origin, where the key may go;
        anywhere else the call stops, so no key or token follows a redirect to another host."""
        location = reply.headers.get("location")
        if not location or hops >= MAX_REDIRECTS:
            raise ProviderError(self.provider, f"redirected the request {'nowhere' if not location else 'too often'} "
                                f"({reply.status}). Check {self.provider.base_env} if you set it.", reply.status,
                                **about)
        target = urljoin(url, location)
        if not same_origin(target, url):
            raise ProviderError(
                self.provider, f"redirected the request to another host ({cut(urlsplit(target).netloc, 60) or repr(cut(target, 60))}); "
                f"SD Bridge sends your key only to {urlsplit(url).netloc}. Check {self.provider.base_env} if you set "
                "it; nothing was sent there.", reply.status, **about)
        if reply.status == 303 or (reply.status in (301, 302) and method == "POST"):
            for name in ("json", "data", "files"):  # as HTTP says: the body does not follow
                kwargs.pop(name, None)
            method = "GET"
        return method, target

    def _maybe_charged(self, url: str, reply: Reply | None, why: str, about: dict) -> MaybeCharged:
        what = f"{why} at {urlsplit(url).netloc} after the request was sent." if reply is None else what_happened(reply)
        return MaybeCharged(
            self.provider,
            f"{what} {self.provider.name} may have made the image and charged for it, so SD Bridge did not send "
            f"the request again. Check your usage at {self.provider.billing_page} before running the node again.",
            None if reply is None else reply.status, **about)

    def _gave_up(self, url: str, reply: Reply | None, why: str, tries: int, retry_after: float | None,
                 policy: RetryPolicy, about: dict) -> ProviderError:
        if reply is None:
            return ProviderError(
                self.provider,
                f"{why} at {urlsplit(url).netloc} (after {tries} tries). Check the network, or "
                f"{self.provider.base_env} if you set it; then run again.", **about)
        if retry_after is not None and retry_after > policy.max_retry_after:
            if retry_after > LONGEST_WAIT:
                return ProviderError(self.provider, f"is rate limiting requests (429) and {_too_long(retry_after)}. "
                                     f"Run again in an hour at most (SD Bridge holds this key's requests no longer), "
                                     "or sooner if your plan's window is shorter.", RATE_LIMITED, **about)
            return ProviderError(self.provider, f"is rate limiting requests (429) and asks to wait {retry_after:.0f} s. "
                                 "Run again then.", RATE_LIMITED, **about)
        return error_for_status(self.provider, reply, tries, **about)

    async def download(self, url: str, *, base: str, accept: str = "image/", node_id: str | None = None,
                       max_redirects: int = 3, request_id: str | None = None) -> Reply:
        """GET a result URL the provider gave us (`base` is the API's base URL: it says which
        private address, if any, results may come from), refusing anything unsafe or unexpected.
        Each hop is checked and fetched from exactly the address checked. `request_id` is the
        provider's id of the request that made the image; every error carries it."""
        about = {"stage": "download", "request_id": request_id}
        for _ in range(max_redirects + 1):
            target = self._checked(url, base, about)
            try:
                reply = await self.request("GET", url, node_id=node_id, label="download", follow_redirects=False,
                                           pin=target, **about)
            except ProviderError as exc:
                if exc.status is None or exc.status in TRANSIENT_STATUSES or exc.status == RATE_LIMITED:
                    raise
                # The API's wording ("unknown model", "bad key") would mislead for a result URL.
                raise ProviderError(
                    self.provider, f"a result image could not be downloaded ({exc.status}); the link may "
                    "have expired. Run the node again.", exc.status, **about) from None
            if reply.status in REDIRECTS:
                location = reply.headers.get("location")
                if not location:
                    raise ProviderError(self.provider, f"a result download redirected nowhere ({reply.status}).",
                                        reply.status, **about)
                url = urljoin(url, location)
                continue
            if not reply.content_type.startswith(accept):
                raise ProviderError(
                    self.provider,
                    f"a result URL did not hold an image ({describe_body(reply)}). Try again; "
                    "if it keeps happening the provider may be having trouble.",
                    reply.status, **about,
                )
            return reply
        raise ProviderError(self.provider, f"a result download redirected more than {max_redirects} times.",
                            **about)

    def _checked(self, url: str, base: str, about: dict) -> Target:
        """Where a result URL may be fetched from, or ProviderError saying why not (raised outside
        the handler, so no chained exception carries the URL whole)."""
        try:
            return result_target(url, base)
        except RefusedURL as exc:
            refused = str(exc)
        raise ProviderError(self.provider, f"refused a result URL {refused}.", **about)

    async def _exchange(self, method, url, kwargs, deadline, follow_redirects, node_id, label, pin=None) -> Reply:
        """Run one exchange on a worker thread; poll for interrupts while it waits."""
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        future = loop.run_in_executor(
            exchange.executor(), exchange.exchange, method, url, kwargs, self.limits, cancel, deadline, follow_redirects,
            runtime.current_run(), pin, self.follows_interrupts,
        )
        started = time.monotonic()
        shown = 0
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.1)
                if done:
                    break
                if self.follows_interrupts and runtime.interrupted():
                    cancel.set()
                    runtime.show_text(node_id, f"{self.provider.name} {label}: cancelled")
                    runtime.raise_if_interrupted()
                waited = int(time.monotonic() - started)
                if waited > shown:  # a status line each second, as ComfyUI's API nodes do
                    shown = waited
                    runtime.show_text(node_id, f"{self.provider.name} {label}: waiting {waited} s",
                                      log_line=False)
        finally:
            if not future.done():  # withdrawn (interrupt, cancel, a failed batch): the worker
                cancel.set()       # ends with Cancelled, which nobody awaits any more
                future.add_done_callback(_retrieve)
        try:
            return future.result()
        except exchange.Cancelled:
            self._stop_if_interrupted()
            raise

    async def pause(self, seconds: float, why: str, node_id: str | None, label: str, log_line: bool = True) -> None:
        """Wait `seconds` in short slices, so an interrupt is seen within 0.1 s."""
        runtime.show_text(node_id, f"{self.provider.name} {label}: {why}", log_line=log_line)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._stop_if_interrupted()
            await asyncio.sleep(min(0.1, left))
        self._stop_if_interrupted()

    def _stop_if_interrupted(self) -> None:
        if self.follows_interrupts:
            runtime.raise_if_interrupted()

    async def _take_slot(self, limiter: RateLimiter, node_id: str | None, label: str) -> None:
        """Wait until the key's pace lets this request start; the node says so."""
        waited = 0.0
        while (wait := limiter.try_acquire()) > 0:
            step = min(wait, 0.25)
            why = f"waiting for a free request slot ({self.provider.name}: {limiter.explain()}), {wait:.0f} s"
            await self.pause(step, why, node_id, label, log_line=waited == 0.0)
            waited += step


def _too_long(retry_after: float) -> str:
    """A Retry-After past LONGEST_WAIT in words: one typo of a header can ask for centuries."""
    asked = f"{retry_after / 3600:.0f} hours" if retry_after < 1e6 else "longer than it can mean"
    return f"asks to wait {asked} (Retry-After)"


def _retrieve(future: asyncio.Future) -> None:
    """Take a withdrawn exchange's outcome, so asyncio does not log its Cancelled as never
    retrieved (with a traceback) after the run already stopped."""
    if not future.cancelled():
        future.exception()


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
