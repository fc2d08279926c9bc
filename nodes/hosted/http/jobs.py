"""Queue APIs (Segmind v2, fal, Replicate): submit a job once, then only ask about it.

`submit_and_poll` submits through an `HttpClient`, asks the job's status URL with growing pauses
(`PollPolicy`), shows queued / processing and the seconds waited, and returns the result URL's
answer. The key goes only to the submit's own origin. Given a `JobStore` (the request journal),
the same request run again while the provider holds it asks for that job instead of paying for
a new one."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ... import runtime
from ...errors import MaybeCharged, ProviderError
from ..keys.redaction import cut
from .addresses import same_origin
from .client import HttpClient
from .policy import GENERATION, PollPolicy
from .rate_limit import RateLimiter
from .replies import Reply


@dataclass(frozen=True)
class Job:
    """A request a provider accepted into its queue: where to ask about it and fetch it."""

    id: str
    status_url: str
    result_url: str
QUEUED, PROCESSING, COMPLETED, FAILED = "queued", "processing", "completed", "failed"
SUBMIT, STATUS, RESULT = "submit", "status", "result"   # the stages a queue API's errors name


@dataclass(frozen=True)
class JobState:
    state: str          # QUEUED, PROCESSING, COMPLETED or FAILED
    error: str = ""     # the provider's reason, when FAILED


# The request ids of the jobs the current run submitted or resumed, for its receipt: the node base
# hands in a list (`collect_request_ids`) and every job of the run, in any task it starts, adds to it.
_request_ids: ContextVar[list[str] | None] = ContextVar("sdbridge_request_ids", default=None)


def collect_request_ids() -> list[str]:
    """A list that every job submitted or resumed from now on in this context is added to."""
    seen: list[str] = []
    _request_ids.set(seen)
    return seen


def _note(job_id: str) -> None:
    seen = _request_ids.get()
    if seen is not None:
        seen.append(job_id)


class JobStore(Protocol):
    """Where submitted jobs are kept until their result is fetched (the request journal)."""

    def canonical_request(self, provider_id: str, endpoint: str, body: Any) -> str: ...
    def find(self, digest: str) -> tuple[str, str, str] | None: ...
    def record(self, digest: str, provider_id: str, job: tuple[str, str, str], keep_for: float) -> None: ...
    def forget(self, digest: str) -> None: ...


async def submit_and_poll(client: HttpClient, url: str, *, read_job: Callable[[Reply], Job],
                          read_state: Callable[[Reply], JobState], headers: Mapping[str, str],
                          node_id: str | None = None, label: str = "", json_body: Any = None,
                          poll: PollPolicy | None = None, state_statuses: Collection[int] = (422,),
                          keep_for: float | None = None, store: JobStore | None = None,
                          limiter: RateLimiter | None = None, seen: Callable[[Reply], None] | None = None) -> Reply:
    """POST a job to a queue API once, ask its status URL until it completes, and return the
    result URL's answer. `read_job` reads the submit's answer, `read_state` a status answer
    (`state_statuses` are statuses a status answer may carry and still be read, such as a
    422 with FAILED). The key (in `headers`) goes only to `url`'s origin.

    With a `store` (the request journal) and `keep_for` (the provider's result window, in
    seconds) the job is kept there: the same request run again while the provider holds it asks
    for that job instead of submitting (and paying for) a new one. A failure at submit carries
    `stage == "submit"`; every failure after it carries the job's id as `request_id`, and the
    result's answer carries it too (for the errors its reading raises). `seen` is handed every
    answer of the exchange as it comes (a provider may tell the balance on any of them)."""
    seen = seen or (lambda reply: None)
    poll = poll or PollPolicy()
    label = label or urlsplit(url).path
    digest = store.canonical_request(client.provider.id, url, json_body) if store is not None and keep_for else None
    found = store.find(digest) if digest else None
    if found is not None:
        job = Job(found[0], *(_credentials_of(url, where) for where in found[1:]))
        _note(job.id)
        runtime.show_text(node_id, f"{client.provider.name} {label}: asking for request {job.id}, sent before")
        try:
            return await _poll_until_done(client, job, url, read_state, headers, node_id, label, poll,
                                          state_statuses, store, digest, seen)
        except ProviderError as exc:
            if exc.status not in (404, 410):
                raise
            store.forget(digest)  # the provider no longer holds it: submit anew
    submitted = await client.request("POST", url, node_id=node_id, label=label, headers=headers,
                                     json_body=json_body, resend=GENERATION, limiter=limiter, stage=SUBMIT)
    seen(submitted)
    job = read_job(submitted)
    _note(job.id)
    if digest:
        store.record(digest, client.provider.id, (job.id, job.status_url, job.result_url), keep_for)
    return await _poll_until_done(client, job, url, read_state, headers, node_id, label, poll, state_statuses, store,
                                  digest, seen)


def _credentials_of(url: str, where: str) -> str:
    """A job URL kept without credentials (the journal keeps none), given the `user:password@`
    of the configured `url` again when it is on that same origin."""
    userinfo, at, _ = urlsplit(url).netloc.rpartition("@")
    parts = urlsplit(where)
    if not at or "@" in parts.netloc or not same_origin(where, url):
        return where
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


async def _poll_until_done(client: HttpClient, job: Job, url: str, read_state, headers, node_id, label,
                           poll: PollPolicy, state_statuses, store: JobStore | None, digest: str | None,
                           seen) -> Reply:
    """Ask about a submitted job until it ends; its result's answer. The job may run (and be
    billed) whatever happens here, so a failure that leaves it unknown is a MaybeCharged."""
    for where in (job.status_url, job.result_url):
        if not same_origin(where, url):
            raise MaybeCharged(client.provider, f"answered with a job URL on another host "
                               f"({urlsplit(where).netloc or cut(where, 60)!r}); SD Bridge sends your key only to "
                               f"{urlsplit(url).netloc}. Check {client.provider.base_env} if you set it.",
                               stage=SUBMIT, request_id=job.id)
    started = poll.clock()
    interval = poll.first_interval
    while True:
        answer = await _ask_about(client, job, digest, "GET", job.status_url, node_id=node_id,
                                  label=f"{label} status", headers=headers, accept=state_statuses, stage=STATUS,
                                  request_id=job.id)
        seen(answer)
        state = read_state(answer)
        waited = poll.clock() - started
        if state.state == COMPLETED:
            break
        if state.state == FAILED:
            if digest:
                store.forget(digest)
            said = f': "{state.error}"' if state.error else " without giving a reason"
            raise ProviderError(client.provider, f"could not finish request {job.id}{said}. Check the node's "
                                "inputs and run again.", answer.status, stage=STATUS, request_id=job.id)
        if waited + interval > poll.timeout:
            keep = " Running the node again with the same inputs asks for it again." if digest else ""
            raise MaybeCharged(client.provider, f"request {job.id} is still {state.state} after {waited:.0f} s; "
                               f"it may still finish on the provider's side.{keep}", stage=STATUS, request_id=job.id)
        await client.pause(interval, f"{state.state}, {waited:.0f} s", node_id, label, log_line=False)
        interval = min(interval * poll.growth, poll.max_interval)
    result = await _ask_about(client, job, digest, "GET", job.result_url, node_id=node_id, label=f"{label} result",
                              headers=headers, stage=RESULT, request_id=job.id)
    seen(result)
    if digest:
        store.forget(digest)
    return result


async def _ask_about(client: HttpClient, job: Job, digest: str | None, method: str, url: str, **kwargs) -> Reply:
    """A read about an accepted job. When it fails for good (the network, the gateway, a refusal)
    the job is still out there and may be finished and billed: a MaybeCharged, so the caps count
    it; the journal keeps it for the next run. A job the provider no longer holds (404/410) stays a
    ProviderError: submit_and_poll submits anew."""
    try:
        return await client.request(method, url, **kwargs)
    except MaybeCharged:
        raise
    except ProviderError as exc:
        if exc.status in (404, 410):
            raise
        said = str(exc).removeprefix(f"{client.provider.name}: ")
        keep = " Running the node again with the same inputs asks for it again." if digest else ""
        raise MaybeCharged(client.provider, f"{said} Request {job.id} was accepted and may still finish and be "
                           f"charged.{keep}", exc.status, stage=exc.stage, request_id=job.id) from None
