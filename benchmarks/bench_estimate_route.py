"""Benchmark of POST /sdbridge/estimate on a real aiohttp server on 127.0.0.1: how long pricing a
large graph takes, and how long the server is stalled for other routes meanwhile.

Run: .venv/bin/python benchmarks/bench_estimate_route.py   (not part of the pytest run)

A graph of 2,000 SinkIn nodes with fixed seeds (each one asks the result cache) against an index
of 3,000 stored results; GET /sdbridge/providers is asked in a loop while the estimate runs. It
prints the estimate's time, how many other answers came back during it and the slowest of them
(before the work went to a worker thread: none, and the slowest waited the whole estimate). Then
how often a 1 MB and a 250 KB prompt sent in pieces are read whole (before: refused 5/5 and 1/5).
"""

from __future__ import annotations

import os
import sys

import harness  # noqa: F401  (first: the tests' helpers and the pack, as the tests load them)
from support.big_prompts import body_of, fill_cache_index, hosted_graph, pieces, stall_while
from support.serving import serve

from sdbridge.nodes.hosted.store import result_cache

JSON = {"Content-Type": "application/json"}


def stall(nodes: int, cached: int) -> dict:
    os.environ[result_cache.SWITCH_ENV] = "on"  # the harness turns it off; the estimate asks it here
    fill_cache_index(cached)
    body = body_of(hosted_graph(nodes))

    async def script(session, base):
        async def slow():
            async with session.post(f"{base}/sdbridge/estimate", data=body, headers=JSON) as response:
                return response.status

        return await stall_while(session, base, slow(), budget=120.0)

    return serve(script)


def read_whole(size: int, tries: int = 5) -> int:
    body = body_of(hosted_graph(3, prompt_chars=size // 3))

    async def script(session, base):
        accepted = 0
        for _ in range(tries):
            async with session.post(f"{base}/sdbridge/estimate", data=pieces(body), headers=JSON) as response:
                accepted += response.status == 200
        return accepted

    return serve(script)


def main() -> None:
    nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    found = stall(nodes, 3000)
    print(f"estimate of {nodes} hosted nodes, 3000 cached results: {found['seconds']:.2f} s (status "
          f"{found['result']}); other route answered {found['answers']} times meanwhile, slowest {found['worst']:.3f} s")
    for size in (250 * 1024, 1024 * 1024):
        print(f"{size // 1024} KB prompt sent in pieces: read whole {read_whole(size)}/5")


if __name__ == "__main__":
    main()
