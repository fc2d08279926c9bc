"""One rate limiter per key: its pace as a plain object on a test clock, and twenty nodes sharing
one key against a fake Segmind that allows 5 generation requests per 2 s."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from support.nodecalls import defaults, fast, make

from sdbridge.nodes.hosted.http import rate_limit
from sdbridge.nodes.hosted.http.rate_limit import Plan, RateLimiter
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
