"""One rate limiter per API key, shared by every node and every prompt in the process.

A provider's plan allows so many generation requests in a window (Segmind: free 5 a minute, pro
50). Without a shared pace, twenty nodes on one key each find out by a 429 and retry on their
own. Here every generation request of a key first takes a slot: at most `requests` start in any
`window` seconds, reached by a slow start (two, then one more for each accepted answer) so that
a plan set too high costs a 429 or two, not a burst of them. The plan comes from the provider table, or from the user: its rate env
var or the same setting in Settings > SD Bridge ("5/60": 5 requests per 60 s).

The limiter also learns, and forgets (additive increase, multiplicative decrease, as TCP does):
- a 429 closes the gate for everyone until its Retry-After (or a whole window) has passed, and
  lowers the pace to what the provider accepted in the window (halved when it accepted none);
- each whole window after that without a 429 raises the pace again by a tenth of the plan (at
  least one request), so a burst of 429s costs minutes, not the session; a pace learned without
  a plan rises by one per clean window until the next 429 says where the limit is;
- `x-rate-limit-remaining: 0` with `x-rate-limit-reset-at-utc` closes the gate until the reset.
No provider may close it for more than LONGEST_WAIT (an hour), whatever its Retry-After or reset
says: a typo of a header (1e9 s, a date in 9999) would otherwise park every node on the key until
ComfyUI restarts. `explain()` says which pace is kept and why, for the node's text while it waits.
Keys are never stored: limiters are found by the key's sha256.
"""

from __future__ import annotations

import email.utils
import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ... import pack_settings
from ..provider_table import PROVIDERS, Provider

RATE_LIMITED = 429
SLOW_START = 2  # requests a new limiter lets start per window before any answer came back
LONGEST_WAIT = 3600.0  # seconds: the longest a provider's header may close a key's gate
RECOVERY_STEPS = 10  # clean windows a pace lowered to one request needs to climb back to its plan


@dataclass(frozen=True)
class Plan:
    requests: int       # at most this many starts...
    window: float       # ...in any window of this many seconds

    @classmethod
    def parse(cls, text: str) -> Plan | None:
        """"5/60" -> 5 requests per 60 s; None for anything else."""
        count, _, seconds = text.strip().partition("/")
        try:
            plan = cls(int(count), float(seconds))
        except ValueError:
            return None
        return plan if plan.requests >= 1 and 0 < plan.window <= 86400 and math.isfinite(plan.window) else None


class RateLimiter:
    """Slots for one key's generation requests. Thread-safe; `clock` is injectable for tests."""

    def __init__(self, plan: Plan | None, clock=time.monotonic, *, trusted: bool = False):
        self.plan = plan            # the pace kept now: the plan, or lower after a 429
        self.ceiling = plan         # what the pace climbs back to (None: no known plan)
        self.trusted = trusted      # the plan was set by the user, not taken from the table
        self.clock = clock
        self._starts: deque[float] = deque()    # when requests started, oldest first
        self._accepted: deque[float] = deque()  # when answers that were not 429 came back
        self._closed_until = 0.0
        self._closed_why = ""
        self._clean_since: float | None = None  # the pace is lowered; windows count from here
        self._last_429 = 0.0
        # A plan not set by the user may be wrong (a free account under the pro default): start
        # with a few requests per window and allow one more for each answer that was not a 429.
        self._allowance = (plan.requests if trusted else min(plan.requests, SLOW_START)) if plan else 0
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """0 when a request may start now (its start is counted); else the seconds until a slot
        may be free. Waiters ask again after that (or sooner), so a gate closed meanwhile holds."""
        with self._lock:
            now = self.clock()
            if now < self._closed_until:
                return self._closed_until - now
            self._recover(now)
            plan = self.plan
            if plan is not None:
                # the provider counts when a request arrives, a little after it started here
                margin = max(0.1, 0.05 * plan.window)
                while self._starts and self._starts[0] + plan.window + margin <= now:
                    self._starts.popleft()
                allowed = self._allowed()
                if len(self._starts) >= allowed:
                    free_at = self._starts[-allowed] + plan.window + margin
                    if now < free_at - 1e-9:
                        return free_at - now
            self._starts.append(now)
            return 0.0

    def observe(self, status: int, headers: Mapping[str, str], retry_after: float | None) -> None:
        """Learn from an answer: a 429 closes the gate and lowers the pace to what was accepted in
        the window; headers that say no request is left close it until their reset (at most
        LONGEST_WAIT either way)."""
        with self._lock:
            now = self.clock()
            self._recover(now)
            window = self.plan.window if self.plan else 60.0
            while self._accepted and self._accepted[0] <= now - window:
                self._accepted.popleft()
            if status != RATE_LIMITED:
                self._accepted.append(now)
                if self.plan is not None:
                    self._allowance = min(self.plan.requests, self._allowance + 1)
                reset = _reset_in(headers)
                if reset is not None:
                    self._close(now + reset, "the provider said no request is left until its reset")
                return
            wait = window if retry_after is None or retry_after != retry_after else min(retry_after, LONGEST_WAIT)
            self._close(now + max(0.0, wait), "the provider answered 429 (rate limited)")
            accepted = len(self._accepted)
            current = self.plan.requests if self.plan else 2
            learned = max(1, min(current, accepted) if accepted else current // 2)
            if self.plan is None or learned < self.plan.requests:
                self.plan = Plan(learned, window)
            self._allowance = self.plan.requests
            self._last_429 = now
            self._clean_since = max(now, self._closed_until)  # clean windows count once the gate opens

    def _close(self, until: float, why: str) -> None:
        if until > self._closed_until:
            self._closed_until, self._closed_why = until, why

    def _allowed(self) -> int:
        return max(1, min(self.plan.requests, self._allowance)) if self.plan else 1

    def _recover(self, now: float) -> None:
        """Raise a lowered pace by one step for each whole window since the last 429 (or the
        last raise); at the plan, stop counting."""
        if self._clean_since is None or self.plan is None or now < self._clean_since:
            return
        windows = int((now - self._clean_since) // self.plan.window)
        if windows < 1:
            return
        ceiling = self.ceiling.requests if self.ceiling else None
        step = max(1, ceiling // RECOVERY_STEPS) if ceiling else 1
        raised = self.plan.requests + step * windows
        if ceiling is not None and raised >= ceiling:
            self.plan, self._clean_since = self.ceiling, None
        else:
            self.plan = Plan(raised, self.plan.window)
            self._clean_since += windows * self.plan.window
        self._allowance = max(self._allowance, self.plan.requests)  # the climb is the slow start

    def closed_for(self) -> float:
        with self._lock:
            return max(0.0, self._closed_until - self.clock())

    def explain(self) -> str:
        """Which pace this key keeps and why, in words for the node ("5 requests per 60 s, ...")."""
        with self._lock:
            now = self.clock()
            self._recover(now)
            plan = self.plan
            if now < self._closed_until:
                return f"{self._closed_why}; the next request may start in {_duration(self._closed_until - now)}"
            if plan is None:
                return "no pace is known yet"
            pace = f"{_pace(plan.requests, plan.window)}"
            if self._clean_since is not None:
                ceiling = self.ceiling
                goal = (f"back toward {_pace(ceiling.requests, ceiling.window)} by "
                        f"{max(1, ceiling.requests // RECOVERY_STEPS)}" if ceiling else "up by 1")
                return (f"keeping {pace}, lowered after a 429 {_duration(now - self._last_429)} ago; "
                        f"{goal} every {plan.window:g} s without a 429")
            source = "your setting" if self.trusted else "the documented plan"
            if self._allowed() < plan.requests:
                return (f"starting slow: {_pace(self._allowed(), plan.window)} until answers come back, "
                        f"then up to {pace} ({source})")
            return f"keeping {pace} ({source})"


def _pace(requests: int, window: float) -> str:
    return f"{requests} request{'s' if requests != 1 else ''} per {window:g} s"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _reset_in(headers: Mapping[str, str]) -> float | None:
    """Seconds until `x-rate-limit-reset-at-utc` when `x-rate-limit-remaining` says none is left."""
    if str(headers.get("x-rate-limit-remaining", "")).strip() != "0":
        return None
    text = str(headers.get("x-rate-limit-reset-at-utc", "")).strip()
    try:
        when = float(text)  # epoch seconds
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, OverflowError):
            try:
                from datetime import datetime, timezone

                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()
            except ValueError:
                return None
    wait = when - time.time()
    return min(wait, LONGEST_WAIT) if wait > 0 else None


_limiters: dict[tuple[str, str], tuple[Plan | None, RateLimiter]] = {}
_registry_lock = threading.Lock()


def configured_plan(provider: Provider) -> Plan | None:
    """The pace the user set ("5/60"): the provider's rate env var, else Settings > SD Bridge."""
    return Plan.parse(pack_settings.value(provider.rate_env)) if provider.rate_env else None


def setting_problem(text: str) -> str | None:
    """Why a pace typed in Settings cannot be used, or None."""
    if not text.strip() or Plan.parse(text):
        return None
    return "write the requests allowed and the seconds they are counted over, such as 5/60 (5 a minute)"


def plan_for(provider: Provider, default: tuple[int, float] | None = None) -> Plan | None:
    """The pace for a provider: the user's setting, else `default` (a run's `Policies.rate_plan`)
    or its documented plan, else none (then only 429s set it)."""
    default = default or provider.rate_plan
    return configured_plan(provider) or (Plan(*default) if default else None)


def for_key(provider: Provider, key: str, default: tuple[int, float] | None = None) -> RateLimiter:
    """The limiter every request with this key shares (made on first use, and anew when the
    plan changes). A plan the user set is trusted from the first request; a default one (the
    table's, or `default`) starts slow."""
    ident = (provider.id, hashlib.sha256(key.encode()).hexdigest())
    plan = plan_for(provider, default)
    with _registry_lock:
        entry = _limiters.get(ident)
        if entry is None or entry[0] != plan:
            limiter = RateLimiter(plan, trusted=configured_plan(provider) is not None)
            entry = _limiters[ident] = (plan, limiter)
        return entry[1]


def forget_all() -> None:
    """Drop every limiter (tests)."""
    with _registry_lock:
        _limiters.clear()


# Settings > SD Bridge > Rate limits: one row per provider that has a pace.
SETTINGS = tuple(
    pack_settings.Setting(
        p.rate_env, f"{p.name} requests allowed",
        f"How many generation requests your {p.name} plan allows per so many seconds, shared by every "
        f"node ({p.rate_limits or 'no documented limit'}).",
        setting_problem,
        f"the default {'/'.join(f'{n:g}' for n in p.rate_plan)}" if p.rate_plan
        else "no pace until the provider answers 429",
        ("Rate limits", p.name), "5/60", p.id)
    for p in PROVIDERS.values() if p.rate_env)
