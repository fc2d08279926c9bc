"""Each read of SinkIn's catalog is a keyed call: refreshes asked at the same time share one."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import make_mocked_request
from fakes.sinkin import CATALOG, failure
from support.loopback import json_answer

from sdbridge.nodes import routes, runtime
from sdbridge.nodes.hosted.providers.sinkin import catalog as sinkin_catalog


def catalog_calls(fake) -> int:
    return sum(1 for request in fake.requests if request.path == "/api/models")


async def ask_many(queries: list[str]) -> list[dict]:
    async def ask(query: str) -> dict:
        response = await routes.sinkin_models(make_mocked_request("GET", "/sdbridge/sinkin/catalog" + query))
        return json.loads(response.text)

    return await asyncio.gather(*(ask(query) for query in queries))


def slow_catalog():
    answer = json_answer(200, CATALOG)
    answer.delay = 0.3  # every refresh below is asked while this one is under way
    return answer


def test_twenty_concurrent_refreshes_send_one_keyed_call(fake_sinkin):
    fake_sinkin.script.append(slow_catalog())
    answers = asyncio.run(ask_many(["?refresh=1"] * 10 + [""] * 10))  # a fresh install: the list is stale
    assert catalog_calls(fake_sinkin) == 1
    assert all(a["source"] == "sinkin" and a["error"] is None for a in answers)
    assert {a["models"][0] for a in answers} == {"Realistic Vision V6.0 (r2La2w2)"}


def test_a_failed_read_is_shared_too_and_the_next_refresh_asks_again(fake_sinkin):
    fake_sinkin.script.append(failure("Invalid access token"))
    fake_sinkin.script[-1].delay = 0.3
    answers = asyncio.run(ask_many([""] * 20))
    assert catalog_calls(fake_sinkin) == 1
    assert all("Invalid access token" in a["error"] and a["source"] == "bundled" for a in answers)
    asyncio.run(ask_many([""]))  # the failed read is over: a later one asks again
    assert catalog_calls(fake_sinkin) == 2


def test_a_caller_that_gives_up_does_not_withdraw_the_read_from_the_others(fake_sinkin):
    fake_sinkin.script.append(slow_catalog())

    async def main():
        quitter = asyncio.ensure_future(sinkin_catalog.refresh_catalog())
        staying = asyncio.ensure_future(sinkin_catalog.refresh_catalog())
        await asyncio.sleep(0.05)
        quitter.cancel()
        return await asyncio.wait_for(staying, 10)

    catalog = asyncio.run(main())
    assert catalog.models[0].id == "r2La2w2" and catalog_calls(fake_sinkin) == 1


def test_a_refresh_during_a_cancel_neither_stops_nor_uses_up_the_prompt_s_cancel(fake_sinkin):
    """Cancel belongs to the prompt: the editor's refresh, asked meanwhile, still reads the list,
    and the prompt's nodes still see the cancel afterwards."""
    runtime.request_interrupt()
    try:
        [answer] = asyncio.run(ask_many(["?refresh=1"]))
        assert answer["source"] == "sinkin" and answer["error"] is None and catalog_calls(fake_sinkin) == 1
        assert runtime.interrupted()
    finally:
        runtime.request_interrupt(False)
