"""One rate limiter per key: its pace as a plain object on a test clock, and twenty nodes sharing
one key against a fake Segmind that allows 5 generation requests per 2 s."""

from __future__ import annotations

import asyncio
import email.utils
import time
from datetime import timezone

import pytest
import torch
from fakes.segmind import KEY
from hypothesis import given, settings
from hypothesis import strategies as st
from support.loopback import json_answer
from support.nodecalls import defaults, fast, make

from sdbridge.nodes import runtime
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http import rate_limit
from sdbridge.nodes.hosted.http.policy import retry_after_seconds
from sdbridge.nodes.hosted.http.rate_limit import LONGEST_WAIT, Plan, RateLimiter
from sdbridge.nodes.hosted.provider_table import SEGMIND, SINKIN
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _start_and_answer(limiter, status=200):
    assert limiter.try_acquire() == 0.0
    limiter.observe(status, {}, None)


def test_the_pace_allows_a_plan_per_window():
    clock = Clock()
    limiter = RateLimiter(Plan(5, 2.0), clock, trusted=True)
    assert [limiter.try_acquire() for _ in range(5)] == [0.0] * 5
    assert limiter.try_acquire() == pytest.approx(2.1)  # asking does not take a slot; a margin for the trip
    clock.now += 1.0
    assert limiter.try_acquire() == pytest.approx(1.1)
    clock.now += 1.1
    assert limiter.try_acquire() == 0.0


def test_a_429_closes_the_gate_for_everyone_and_teaches_the_pace():
    clock = Clock()
    limiter = RateLimiter(Plan(50, 60.0), clock)
    for _ in range(5):
        _start_and_answer(limiter)
    limiter.observe(429, {}, 7.0)
    assert limiter.try_acquire() == pytest.approx(7.0) and limiter.plan == Plan(5, 60.0)
    clock.now += 7.0
    assert limiter.try_acquire() == pytest.approx(56.0)  # five started in this minute (+ a 3 s margin)
    clock.now += 56.0
    assert limiter.try_acquire() == 0.0


def test_a_new_limiter_starts_slow_until_answers_come_back():
    limiter = RateLimiter(Plan(50, 60.0), Clock())
    assert [limiter.try_acquire() == 0.0 for _ in range(3)] == [True, True, False]  # two before any answer
    limiter.observe(200, {}, None)
    assert limiter.try_acquire() == 0.0 and limiter.try_acquire() > 0  # one more per accepted answer


def test_without_retry_after_a_429_closes_the_gate_for_a_window():
    clock = Clock()
    limiter = RateLimiter(None, clock)  # no documented plan: only 429s set the pace
    assert limiter.try_acquire() == 0.0
    limiter.observe(429, {}, None)
    assert limiter.closed_for() == pytest.approx(60.0) and limiter.plan == Plan(1, 60.0)


def test_rate_limit_headers_close_the_gate_until_their_reset():
    limiter = RateLimiter(Plan(50, 60.0))
    limiter.observe(200, {"x-rate-limit-remaining": "0", "x-rate-limit-reset-at-utc": str(time.time() + 5)}, None)
    assert 4.0 < limiter.closed_for() <= 5.0
    limiter = RateLimiter(Plan(50, 60.0))
    limiter.observe(200, {"x-rate-limit-remaining": "3", "x-rate-limit-reset-at-utc": str(time.time() + 5)}, None)
    limiter.observe(200, {"x-rate-limit-remaining": "0", "x-rate-limit-reset-at-utc": "not a time"}, None)
    assert limiter.closed_for() == 0.0


@pytest.mark.parametrize(("text", "plan"), [("5/60", Plan(5, 60.0)), (" 50 / 60 ", Plan(50, 60.0)), ("1/0.5", Plan(1, 0.5)),
                                            ("0/60", None), ("5/0", None), ("5/-1", None), ("five/60", None), ("", None),
                                            ("5", None), ("5/nan", None), ("5/inf", None)])
def test_a_plan_setting_is_read_or_ignored(text, plan):
    assert Plan.parse(text) == plan


@given(st.text(max_size=20))
def test_any_plan_setting_is_read_or_ignored_never_an_error(text):
    plan = Plan.parse(text)
    assert plan is None or (plan.requests >= 1 and plan.window > 0)


def test_one_limiter_per_key_from_the_table_or_the_setting(monkeypatch):
    monkeypatch.delenv(SEGMIND.rate_env)
    monkeypatch.delenv(SINKIN.rate_env)
    first = rate_limit.for_key(SEGMIND, "key-a")
    assert rate_limit.for_key(SEGMIND, "key-a") is first and first.plan == Plan(*SEGMIND.rate_plan)
    assert rate_limit.for_key(SEGMIND, "key-b") is not first
    assert rate_limit.for_key(SINKIN, "key-a").plan is None
    monkeypatch.setenv(SEGMIND.rate_env, "5/60")
    assert rate_limit.for_key(SEGMIND, "key-a").plan == Plan(5, 60.0)
    assert not any("key-a" in str(ident) for ident in rate_limit._limiters)  # keys are kept as digests only


def _twenty_nodes(fake, rate_plan=None) -> tuple[float, list]:
    node = segmind_nodes.SDBridgeSegmindRealisticVision
    values = {**defaults(node), "prompt": "a cat", "img_width": 256, "img_height": 256}

    async def twenty():
        return await asyncio.gather(*(make(node, fast(node, rate_plan=rate_plan)).generate(unique_id=str(i), **{**values, "seed": i}) for i in range(20)))

    started = time.monotonic()
    results = asyncio.run(twenty())
    return time.monotonic() - started, results


def _per_window(times: list[float], start: float, window: float) -> list[int]:
    counts: dict[int, int] = {}
    for moment in times:
        counts[int((moment - start) // window)] = counts.get(int((moment - start) // window), 0) + 1
    return list(counts.values())


@pytest.mark.parametrize("setting", ["5/2", "default 20/2"], ids=["the right plan set", "a default too generous"])
def test_twenty_nodes_on_one_key_share_its_pace(fake_segmind, monkeypatch, setting):
    """With the right plan set, no 429 at all; under a default four times too generous (a free
    account under the pro default), the slow start and the first 429 teach the pace: no window
    sees more than two."""
    default = None
    if setting == "5/2":
        monkeypatch.setenv(SEGMIND.rate_env, setting)
    else:
        monkeypatch.delenv(SEGMIND.rate_env)
        default = (20, 2.0)  # the run's policies stand in for the table's default plan
    fake_segmind.rate_limit = (5, 2.0)
    begin = time.monotonic()
    elapsed, results = _twenty_nodes(fake_segmind, default)
    assert len(results) == 20 and all(torch.is_tensor(images) for images, _ in results)
    assert fake_segmind.generated == 20 and len(fake_segmind.accepted_at) == 20
    rejections = _per_window(fake_segmind.rejected, begin, 2.0)
    if setting == "5/2":
        assert fake_segmind.rejected == [] and elapsed >= 6.0
    assert max(rejections, default=0) <= 2 and len(fake_segmind.submits()) <= 20 + 2 * len(rejections)
    assert elapsed < 20


# ---------------------------------------------------------------- what a provider may ask for

YEAR_9999 = "Fri, 31 Dec 9999 23:59:59 GMT"


@pytest.mark.parametrize(("header", "closed"), [
    ("1e9", LONGEST_WAIT), ("inf", LONGEST_WAIT), ("1e308", LONGEST_WAIT), ("1e400", LONGEST_WAIT),
    (YEAR_9999, LONGEST_WAIT), ("3599", 3599.0), ("7", 7.0), ("nan", 60.0), ("-5", 0.0), ("soon", 60.0),
    ("Fri, 31 Dec 99999 23:59:59 GMT", 60.0)])
def test_no_retry_after_closes_a_key_for_more_than_an_hour(header, closed):
    limiter = RateLimiter(Plan(50, 60.0), Clock())
    _start_and_answer(limiter, 200)
    limiter.observe(429, {}, retry_after_seconds(header))
    assert limiter.closed_for() == pytest.approx(closed, abs=1.0)


@given(st.one_of(st.text(max_size=40), st.floats().map(repr), st.integers(-10**30, 10**400).map(str),
                 st.datetimes().map(lambda when: email.utils.format_datetime(when.replace(tzinfo=timezone.utc)))))
@settings(max_examples=200, deadline=None)
def test_any_retry_after_or_reset_header_closes_the_gate_for_at_most_an_hour(header):
    seconds = retry_after_seconds(header)
    assert seconds is None or (seconds >= 0 and seconds == seconds)
    limiter = RateLimiter(Plan(50, 60.0), Clock())
    limiter.observe(200, {"x-rate-limit-remaining": "0", "x-rate-limit-reset-at-utc": header}, None)
    assert 0.0 <= limiter.closed_for() <= LONGEST_WAIT
    limiter.observe(429, {}, seconds)
    assert 0.0 <= limiter.closed_for() <= LONGEST_WAIT


def test_a_retry_after_of_centuries_fails_the_node_once_and_says_the_key_waits_an_hour(fake_segmind, monkeypatch):
    lines = []
    monkeypatch.setattr(runtime, "show_text", lambda node_id, text, log_line=True: lines.append(text))
    fake_segmind.script.append(json_answer(429, {"error": "Rate limit exceeded"}, {"retry-after": "1e9"}))
    with pytest.raises(ProviderError, match="longer than it can mean.*an hour at most"):
        _nodes_at_once(fake_segmind, 1)
    assert len(fake_segmind.submits()) == 1
    assert any("at most 1 hour" in line for line in lines)
    limiter = rate_limit.for_key(SEGMIND, KEY)
    assert 3590 < limiter.closed_for() <= LONGEST_WAIT


def _nodes_at_once(fake, count):
    node = segmind_nodes.SDBridgeSegmindRealisticVision
    values = {**defaults(node), "prompt": "a cat", "img_width": 256, "img_height": 256}

    async def nodes():
        return await asyncio.gather(*(node().generate(unique_id=str(i), **{**values, "seed": i}) for i in range(count)))

    return asyncio.run(nodes())


# ---------------------------------------------------------------- a learned pace recovers

def _two_429s(limiter):
    _start_and_answer(limiter)
    assert limiter.try_acquire() == 0.0
    limiter.observe(429, {}, 1.0)
    limiter.clock.now += 1.0
    assert limiter.try_acquire() > 0  # one a minute now: the one accepted in this window
    limiter.observe(429, {}, 1.0)


def test_after_two_429s_the_pace_climbs_back_to_the_plan_a_tenth_per_clean_window():
    """The reported case: one prompt met two 429s, and every later request waited ~58 s."""
    clock = Clock()
    limiter = RateLimiter(Plan(50, 60.0), clock, trusted=True)
    _two_429s(limiter)
    assert limiter.plan == Plan(1, 60.0)
    clock.now += 62.0  # the gate opened (after 1 s), then one whole window without a 429
    assert limiter.try_acquire() == 0.0 and limiter.plan == Plan(6, 60.0)
    clock.now += 9 * 60.0
    assert limiter.plan == Plan(6, 60.0) and limiter.try_acquire() == 0.0 and limiter.plan == Plan(50, 60.0)
    assert [limiter.try_acquire() for _ in range(5)] == [0.0] * 5  # no ~58 s wait any more
    assert limiter.explain() == "keeping 50 requests per 60 s (your setting)"


def test_a_429_while_climbing_lowers_the_pace_again_and_restarts_the_count():
    clock = Clock()
    limiter = RateLimiter(Plan(50, 60.0), clock, trusted=True)
    _two_429s(limiter)
    clock.now += 1.0 + 3 * 60.0
    for _ in range(16):
        _start_and_answer(limiter)  # 16 allowed now (1 + 3 x 5)
    limiter.observe(429, {}, 5.0)
    assert limiter.plan == Plan(16, 60.0)
    clock.now += 5.0 + 59.0
    limiter.try_acquire()
    assert limiter.plan == Plan(16, 60.0)  # not yet a whole clean window since the gate opened
    clock.now += 1.0
    limiter.try_acquire()
    assert limiter.plan == Plan(21, 60.0)


def test_a_pace_learned_without_a_plan_rises_by_one_per_clean_window():
    clock = Clock()
    limiter = RateLimiter(None, clock)
    _start_and_answer(limiter, 429)
    assert limiter.plan == Plan(1, 60.0)
    clock.now += 60.0 + 3 * 60.0
    assert limiter.try_acquire() == 0.0 and limiter.plan == Plan(4, 60.0)


def test_the_limiter_says_which_pace_it_keeps_and_why():
    clock = Clock()
    limiter = RateLimiter(Plan(50, 60.0), clock)
    assert limiter.explain() == ("starting slow: 2 requests per 60 s until answers come back, "
                                 "then up to 50 requests per 60 s (the documented plan)")
    _two_429s(limiter)
    assert limiter.explain() == "the provider answered 429 (rate limited); the next request may start in 1 s"
    clock.now += 31.0
    assert limiter.explain() == ("keeping 1 request per 60 s, lowered after a 429 31 s ago; "
                                 "back toward 50 requests per 60 s by 5 every 60 s without a 429")


def test_a_waiting_node_says_which_pace_it_keeps(fake_segmind, monkeypatch):
    lines = []
    monkeypatch.setattr(runtime, "show_text", lambda node_id, text, log_line=True: lines.append(text))
    monkeypatch.setenv(SEGMIND.rate_env, "1/1")
    assert len(_nodes_at_once(fake_segmind, 2)) == 2
    assert any("waiting for a free request slot (Segmind: keeping 1 request per 1 s (your setting))" in line
               for line in lines)
