"""POST /sdbridge/estimate on a real aiohttp server on 127.0.0.1: the whole body is read however
it arrives, bad node shapes get a 400 that names the node, and pricing a large graph leaves the
server free to answer other routes."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from support.big_prompts import body_of, fill_cache_index, hosted_graph, pieces, stall_while
from support.serving import call, serve

from sdbridge.nodes import routes
from sdbridge.nodes.hosted.money import budget

JSON = {"Content-Type": "application/json"}


def _estimate(body, **headers):
    async def script(session, base):
        return await call(session, "POST", f"{base}/sdbridge/estimate", data=body, headers={**JSON, **headers})

    status, text = serve(script)
    return status, json.loads(text)


@pytest.mark.parametrize("size", [250 * 1024, 1024 * 1024, 6 * 1024 * 1024])
def test_a_valid_prompt_sent_in_pieces_is_read_whole(size):
    prompt = hosted_graph(3, prompt_chars=size // 3)
    body = body_of(prompt)
    for _ in range(3):  # refused 5 times out of 5 at 1 MB when only the bytes that had arrived were read
        status, answer = _estimate(pieces(body))
        assert status == 200, answer
        assert set(answer["nodes"]) == {"0", "1", "2"}


def test_a_body_past_the_limit_sent_in_pieces_is_still_refused(monkeypatch):
    monkeypatch.setattr(routes, "MAX_PROMPT_BODY", 100_000)
    status, answer = _estimate(pieces(body_of(hosted_graph(2, prompt_chars=120_000)), size=8192))
    assert status == 413 and "too large" in answer["error"]


@pytest.mark.parametrize(("node", "says"), [
    ({"class_type": ["SDBridgeSinkInTxt2Img"], "inputs": {}}, "has no class_type string"),
    ({"class_type": {"name": "x"}, "inputs": {}}, "has no class_type string"),
    ({"inputs": {}}, "has no class_type string"),
    ("SDBridgeSinkInTxt2Img", "is not an object"),
    (None, "is not an object"),
])
def test_a_node_of_the_wrong_shape_gets_a_400_that_names_it(node, says):
    status, answer = _estimate(body_of({"1": hosted_graph(1)["0"], "7": node}))
    assert status == 400 and f"node '7' {says}" in answer["error"]


def test_pricing_a_large_graph_leaves_the_server_answering_other_routes():
    """300 hosted nodes and 3,000 cached results: every node's estimate reads the cache index,
    which takes a while; other routes answer meanwhile (before: not one until it finished)."""
    fill_cache_index(3000)
    body = body_of(hosted_graph(300))

    async def script(session, base):
        async def slow():
            async with session.post(f"{base}/sdbridge/estimate", data=body, headers=JSON) as response:
                return response.status, await response.json()

        return await stall_while(session, base, slow())

    found = serve(script)
    status, answer = found["result"]
    assert status == 200 and len(answer["nodes"]) == 300
    assert found["seconds"] > 0.3, found  # long enough for the measure to mean something
    assert found["answers"] >= 3 and found["worst"] < found["seconds"] / 2, found


def test_estimates_asked_together_are_priced_one_at_a_time_off_the_loop(monkeypatch):
    """The page asks again at each edit: estimates wait their turn on one thread of their own
    instead of filling the worker threads other routes and ComfyUI share."""
    real, running, seen = budget.estimate_prompt, [0], []
    lock = threading.Lock()

    def slow_estimate(*args, **kwargs):
        with lock:
            running[0] += 1
            seen.append((running[0], threading.current_thread().name))
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(budget, "estimate_prompt", slow_estimate)
    body = body_of(hosted_graph(2))

    async def script(session, base):
        async def one():
            return await call(session, "POST", f"{base}/sdbridge/estimate", data=body, headers=JSON)

        return await asyncio.gather(*(one() for _ in range(4)))

    answers = serve(script)
    assert [status for status, _ in answers] == [200] * 4
    assert len(seen) == 4 and max(count for count, _ in seen) == 1
    assert all(name.startswith("sdbridge-estimate") for _, name in seen)
