"""Large estimate requests: an API-format graph of many hosted nodes, and a result cache index
holding many entries (each hosted node's estimate reads it), for the route's tests and benchmark."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from sdbridge.nodes import userdata
from sdbridge.nodes.hosted.store import result_cache

NODE = "SDBridgeSinkInTxt2Img"


def hosted_graph(nodes: int, prompt_chars: int = 40) -> dict:
    """`nodes` SinkIn txt2img nodes with fixed seeds (so each one asks the result cache)."""
    text = ("a lighthouse at dusk, " * (prompt_chars // 22 + 1))[:prompt_chars]
    return {str(i): {"class_type": NODE, "inputs": {"prompt": text, "seed": i, "steps": 20}} for i in range(nodes)}


def fill_cache_index(entries: int) -> None:
    """An index of `entries` stored results (the entries' folders are not needed to be asked)."""
    now = time.time()
    index = {hashlib.sha256(str(i).encode()).hexdigest(): {"bytes": 1000, "used": now} for i in range(entries)}
    userdata.write_json(result_cache.folder() / result_cache.INDEX_FILE, {"entries": index})


async def pieces(body: bytes, size: int = 64 * 1024, pause: float = 0.002):
    """The body as a client sends a large one: in pieces, a moment apart."""
    for start in range(0, len(body), size):
        yield body[start:start + size]
        await asyncio.sleep(pause)


async def stall_while(session, base: str, request, budget: float = 60.0) -> dict:
    """Run `request` (a coroutine: the slow call) while GET /sdbridge/providers is asked in a
    loop. {"result", "seconds": the slow call's time, "answers": other answers that came back
    while it ran, "worst": the longest an other answer took}."""
    times: list[tuple[float, float]] = []
    done = asyncio.Event()

    async def other():
        deadline = time.monotonic() + budget
        while not done.is_set() and time.monotonic() < deadline:
            asked = time.monotonic()
            async with session.get(f"{base}/sdbridge/providers") as response:
                await response.read()
            times.append((asked, time.monotonic()))
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(other())
    await asyncio.sleep(0.05)  # the watcher is under way before the slow call starts
    started = time.monotonic()
    try:
        result = await request
    finally:
        ended = time.monotonic()
        done.set()
        await watcher
    during = [(asked, back) for asked, back in times if started < back < ended]
    return {"result": result, "seconds": ended - started, "answers": len(during),
            "worst": max((back - asked for asked, back in times if back > started), default=0.0)}


def body_of(prompt: dict) -> bytes:
    return json.dumps({"prompt": prompt}).encode()
