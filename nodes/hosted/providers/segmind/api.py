"""Segmind's API calls: one generation on the v2 queue (or v1), its measured cost, and its images."""

from __future__ import annotations

import os
import re

from .... import images as imaging
from .... import runtime
from ....errors import ProviderError
from ...http import jobs, rate_limit
from ...http.client import HttpClient, all_or_nothing
from ...http.policy import GENERATION, Policies, PollPolicy
from ...http.replies import Reply, describe_body
from ...keys import credentials
from ...money import ledger as spending
from ...node import report_credits
from ...provider_table import SEGMIND
from ...store import journal
from .wire import _REQUEST_ID, _image_items, _read_job, _read_state

API_ENV = "SDBRIDGE_SEGMIND_API"  # "v1" asks for the synchronous API the documents describe


# Segmind's SDK asks every second for up to 600 s; the pauses here grow to 5 s.
POLICIES = Policies(poll=PollPolicy(first_interval=1.0, max_interval=5.0, growth=1.5, timeout=600.0))
RESULT_WINDOW = 55 * 60           # Segmind keeps v2 results about an hour


def api_version() -> str:
    """"v2" (the queue: submit once, then only ask) unless SDBRIDGE_SEGMIND_API says "v1"."""
    return "v1" if os.environ.get(API_ENV, "").strip().lower() == "v1" else "v2"


def client(policies: Policies) -> HttpClient:
    """The client of one run, at its pace."""
    return HttpClient(SEGMIND, retry=policies.retry, limits=policies.limits,
                      follows_interrupts=policies.follows_interrupts)


async def post(slug: str, body: dict, node_id: str | None, policies: Policies = POLICIES
               ) -> tuple[Reply, float | None]:
    """One generation: the answer that holds its images, and its cost when the drop in remaining
    credits tells it. On the v2 queue unless v1 is asked for, or v2 does not serve the slug
    (404/405 at submit), when the documents' v1 runs it."""
    replies, cost = await post_all(slug, [body], node_id, policies)
    return replies[0], cost


async def post_all(slug: str, bodies: list[dict], node_id: str | None, policies: Policies = POLICIES
                   ) -> tuple[list[Reply], float | None]:
    """Generations sent together (an img2img batch: all or nothing), measured as a whole: their
    answers, and what they cost together when the drop in remaining credits tells it. The balance
    is read from whichever answer of the exchanges carries it (submit, status or result), the
    latest one winning."""
    key = credentials.api_key(SEGMIND)
    watch = spending.balance_watch(SEGMIND.id, key)
    seen: list[list[str]] = [[] for _ in bodies]  # each exchange's x-remaining-credits, in the order they came
    watch.start()
    replies = None
    try:
        if len(bodies) == 1:
            replies = [await _post(slug, bodies[0], node_id, key, policies, seen[0])]
        else:
            replies = await all_or_nothing(_post(slug, body, node_id, key, policies, mine)
                                           for body, mine in zip(bodies, seen, strict=True))
    finally:
        cost = watch.finish(_balance_after(seen) if replies is not None else None)
    return replies, cost


def _balance_after(seen: list[list[str]]) -> float | None:
    """The balance after exchanges that ran together: each one's latest figure, and of those
    the lowest (their answers may come back in any order); None when one never told it."""
    latest = []
    for balances in seen:
        try:
            latest.append(float(balances[-1]))
        except (IndexError, ValueError):
            return None
    return min(latest) if latest else None


async def _post(slug: str, body: dict, node_id: str | None, key: str, policies: Policies,
                balances: list[str]) -> Reply:
    base, http = credentials.base_url(SEGMIND), client(policies)
    headers, limiter = {"x-api-key": key}, rate_limit.for_key(SEGMIND, key, policies.rate_plan)

    def seen(reply: Reply) -> None:
        remaining = reply.headers.get("x-remaining-credits")
        if remaining not in (None, ""):
            balances.append(remaining)

    if api_version() == "v2":
        try:
            reply = await jobs.submit_and_poll(
                http, f"{base}/v2/{slug}", json_body=body, headers=headers, read_job=_read_job, read_state=_read_state,
                node_id=node_id, label=slug, poll=policies.poll, keep_for=RESULT_WINDOW, store=journal, limiter=limiter,
                seen=seen)
        except ProviderError as exc:
            if exc.stage != jobs.SUBMIT or exc.status not in (404, 405):
                raise
            runtime.log.info("Segmind: the v2 queue does not serve %s (%s); using v1", slug, exc.status)
        else:
            report_credits(SEGMIND, balances[-1] if balances else None, node_id)
            return reply
    reply = await http.request("POST", f"{base}/v1/{slug}", node_id=node_id, label=slug,
                                 headers=headers, json_body=body, resend=GENERATION, limiter=limiter)
    seen(reply)
    report_credits(SEGMIND, reply.headers.get("x-remaining-credits"), node_id)
    return reply


async def fetch_again(request_id: str, policies: Policies = POLICIES) -> list[imaging.Picture]:
    """The images of a v2 request Segmind still holds (about RESULT_WINDOW seconds): its status,
    then its result, both reads. No generation request is ever sent, so nothing is charged."""
    if not _REQUEST_ID.fullmatch(request_id):
        raise ProviderError(SEGMIND, f"{request_id[:60]!r} is not a Segmind request id; use one a receipt shows.")
    base, headers, http = credentials.base_url(SEGMIND), {"x-api-key": credentials.api_key(SEGMIND)}, client(policies)
    where = f"{base}/v2/requests/{request_id}"
    answer = await http.request("GET", f"{where}/status", label="fetch again", headers=headers,
                                accept=(404, 410, 422))
    if answer.status in (404, 410):
        raise ProviderError(SEGMIND, f"no longer holds request {request_id} (results are kept about "
                            f"{RESULT_WINDOW // 60} minutes); it cannot be fetched again.", answer.status)
    state = _read_state(answer)
    if state.state != jobs.COMPLETED:
        said = f': "{state.error}"' if state.error else ""
        raise ProviderError(SEGMIND, f"request {request_id} is {state.state}{said}; nothing to fetch"
                            f"{' yet: try again in a moment' if state.state != jobs.FAILED else ''}.")
    reply = await http.request("GET", where, label="fetch again", headers=headers)
    return (await read_images(reply, None, policies=policies))[0]


async def read_images(reply: Reply, node_id: str | None, *, required: bool = True, policies: Policies = POLICIES):
    """Images from an answer: a raw image body, or JSON holding base64 strings or URLs.
    Returns (pictures: each image's bytes as received and its decoded picture, JSON dict or None).
    Every error carries the answer's request id (the v2 job's)."""
    max_pixels = policies.max_result_pixels or imaging.MAX_PIXELS
    about = {"stage": reply.stage, "request_id": reply.request_id}
    if reply.content_type.startswith("image/"):
        try:
            return [imaging.decode_picture(reply.body, max_pixels)], None
        except imaging.ImageDecodeError as exc:
            raise ProviderError(SEGMIND, f"answered with {reply.content_type} but {exc}. Try again.",
                                reply.status, **about) from None
    if reply.content_type in ("application/json", "text/json") or reply.body[:1] in (b"{", b"["):
        data = reply.json(SEGMIND)
        if not isinstance(data, dict):
            data = {"output": data}
        items = _image_items(data)
        pictures = []
        for item in items:
            is_url = re.match(r"^https?://", item) is not None
            if is_url:
                downloads = HttpClient(SEGMIND, retry=policies.retry, limits=policies.downloads,
                                       follows_interrupts=policies.follows_interrupts)
                fetched = await downloads.download(item, base=credentials.base_url(SEGMIND), node_id=node_id,
                                                   request_id=reply.request_id)
            try:  # a downloaded image that does not decode is the provider's fault too, not a bare ValueError
                pictures.append(imaging.decode_picture(fetched.body if is_url else imaging.base64_bytes(item),
                                                       max_pixels))
            except imaging.ImageDecodeError as exc:
                raise ProviderError(SEGMIND, f"sent an image that could not be read: {exc}.", **about) from None
        if pictures or not required:
            return pictures, data
        raise ProviderError(SEGMIND, f"answered without an image ({describe_body(reply)}). Try again.", **about)
    if required:
        raise ProviderError(
            SEGMIND, f"answered with something that is not an image ({describe_body(reply)}). The service may "
            f"be down, or {SEGMIND.base_env} may point at the wrong place.", reply.status, **about)
    return [], None
