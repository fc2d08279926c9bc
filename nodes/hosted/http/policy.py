"""Whether and when to send a request again: pure functions and the policies they read.

`classify` / `classify_lost` say what a failure means for the kind of request (`Resend`):
a request that makes (and bills) an image is never sent again once it may have reached the
provider; `retry_delay` says how long to wait under a `RetryPolicy` (429 has its own budget,
honouring Retry-After; 408, 5xx, timeouts and dropped connections share another). `PollPolicy`
is how a queued job is asked about, `Limits` what one exchange may take, and `Policies` all of
them for one run: a node receives it at construction and hands it to every API call."""

from __future__ import annotations

import dataclasses
import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass

MiB = 1024 * 1024
TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
RATE_LIMITED = 429
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 3


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
    clock: Callable[[], float] = time.monotonic  # what the wait is measured with (seconds)


@dataclass(frozen=True)
class Policies:
    """The pace of one run, passed down (never patched): how requests are retried, what an API
    exchange and a result download may take, how a queued job is asked about, how large a
    result image may be, and the rate plan that stands in for the table's default (None: the
    table's). Each provider declares its defaults; tests pass faster ones in."""
    retry: RetryPolicy = RetryPolicy()
    limits: Limits = Limits()
    downloads: Limits = Limits()
    poll: PollPolicy = PollPolicy()
    max_result_pixels: int | None = None    # None: the pack's own bound on a decoded image
    rate_plan: tuple[int, float] | None = None
    follows_interrupts: bool = True         # False for what the editor asks outside a run (routes)

    def outside_a_run(self) -> Policies:
        """The same pace for a request no prompt runs (a route's): ComfyUI's Cancel belongs to the
        prompt, so it neither stops such a request nor is used up by it."""
        return dataclasses.replace(self, follows_interrupts=False)

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
    """Retry-After as seconds (a number or an HTTP date), or None when absent or unreadable.
    Not capped here: the caller sees what was asked (rate_limit caps what it honours)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)  # may be inf: the rate limiter caps what it honours
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, AttributeError):
            return None
    return None if seconds != seconds else max(0.0, seconds)  # NaN says nothing
