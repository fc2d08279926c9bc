"""Benchmark of the shared rate limiter: 20 Segmind nodes on one key, started together, against a
loopback fake that allows 5 generation requests per 2 s (429 with Retry-After beyond that).

Run: .venv/bin/python benchmarks/bench_rate_limit.py   (not part of the pytest run)

For each plan setting it prints the generation requests sent, the 429s received (the most in
one 2 s window), and the wall time against the ideal: the last slot opens after
(20 / 5 - 1) x 2 s = 6 s. Settings: the right plan (5/2); a default plan four times too generous
(as the pro default is for a free account), which the slow start and the 429s must correct; the
same plan set by the user (trusted, so its first window bursts); and no pacing at all (the nodes
retrying 429s on their own, as before the limiter), the baseline.

Then the recovery, on a simulated clock (no real minutes): Segmind's pro plan (50/60) meets two
429s, and a prompt of 5 requests comes 1, 3, 5 and 10 minutes later; it prints the pace kept and
how long the last of the 5 waits (before the pace recovered: ~58 s each time, until restart).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time

import harness  # noqa: F401  (first: the tests' helpers and the pack, as the tests load them)
from fakes.segmind import KEY, FakeSegmind
from support.nodecalls import defaults

from sdbridge.nodes.hosted.http import rate_limit
from sdbridge.nodes.hosted.http.client import RetryPolicy
from sdbridge.nodes.hosted.provider_table import SEGMIND
from sdbridge.nodes.hosted.providers.segmind import api as segmind_api
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes

IDEAL = (20 / 5 - 1) * 2.0
NODES = 20


def run(setting: str, limited: bool = True) -> None:
    rate_limit.forget_all()
    # Room for the baseline's retries; a "default" plan stands in for the table's (started slow).
    policies = dataclasses.replace(segmind_nodes.SDBridgeSegmindRealisticVision.POLICIES,
                                   retry=RetryPolicy(rate_limit_attempts=20))
    if setting.startswith("default "):  # not set by the user: the provider table's plan, started slow
        os.environ.pop(SEGMIND.rate_env, None)
        count, seconds = setting.removeprefix("default ").split("/")
        policies = dataclasses.replace(policies, rate_plan=(int(count), float(seconds)))
    else:
        os.environ[SEGMIND.rate_env] = setting
    with FakeSegmind() as fake:
        fake.rate_limit = (5, 2.0)
        os.environ.update({SEGMIND.key_env: KEY, SEGMIND.base_env: fake.url, segmind_api.API_ENV: "v1"})
        node = segmind_nodes.SDBridgeSegmindRealisticVision
        values = {**defaults(node), "prompt": "a cat", "img_width": 256, "img_height": 256}
        if not limited:  # the baseline: every node retries on its own, no shared pace
            original = rate_limit.for_key
            rate_limit.for_key = lambda provider, key, default=None: rate_limit.RateLimiter(rate_limit.Plan(10**6, 1.0))

        async def together():
            return await asyncio.gather(*(node(policies).generate(unique_id=str(i), **{**values, "seed": i})
                                          for i in range(NODES)), return_exceptions=True)

        started = time.monotonic()
        results = asyncio.run(together())
        elapsed = time.monotonic() - started
        if not limited:
            rate_limit.for_key = original
        windows: dict[int, int] = {}
        for moment in fake.rejected:
            windows[int((moment - started) // 2.0)] = windows.get(int((moment - started) // 2.0), 0) + 1
        failed = sum(isinstance(result, BaseException) for result in results)
        print(f"{setting if limited else 'no shared pace':>15}: {len(fake.submits())} generation requests sent, "
              f"{len(fake.rejected)} 429s (at most {max(windows.values(), default=0)} in one 2 s window), "
              f"{failed} nodes failed, {elapsed:.1f} s = {elapsed / IDEAL:.2f}x the ideal {IDEAL:.0f} s")


def recovery() -> None:
    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

    clock = Clock()
    limiter = rate_limit.RateLimiter(rate_limit.Plan(50, 60.0), clock, trusted=True)
    limiter.try_acquire()
    limiter.observe(200, {}, None)
    limiter.try_acquire()
    limiter.observe(429, {}, 1.0)
    clock.now = 1.0
    limiter.observe(429, {}, 1.0)
    for minutes in (1, 3, 5, 10):
        clock.now = minutes * 60.0 + 2.0
        waits = []
        for _ in range(5):  # each request waits its turn, as the nodes do
            wait = limiter.try_acquire()
            while wait > 0:
                clock.now += wait
                waits.append(wait)
                wait = limiter.try_acquire()
        clock.now = minutes * 60.0 + 2.0
        print(f"{minutes:>2} min after two 429s: pace {limiter.plan.requests}/{limiter.plan.window:g} s, "
              f"5 requests wait {sum(waits):.0f} s in all")


def main() -> None:
    os.environ["SDBRIDGE_USER_DIR"] = tempfile.mkdtemp(prefix="sdbridge-bench-")
    run("5/2")
    run("default 20/2")
    run("20/2")
    run("5/2", limited=False)
    recovery()


if __name__ == "__main__":
    main()
