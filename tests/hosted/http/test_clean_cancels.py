"""A withdrawn request leaves nothing in the log: when a batch fails or the user cancels, the
requests still on worker threads end with `exchange.Cancelled`, and that exception is taken,
never reported by asyncio as "Future exception was never retrieved"."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
from support.loopback import Answer, Loopback, json_answer

from sdbridge.nodes import runtime
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http import exchange
from sdbridge.nodes.hosted.http.client import HttpClient, all_or_nothing
from sdbridge.nodes.hosted.provider_table import SEGMIND

SLOW = 0.6  # seconds the slow requests' answers take: they are still on their workers when withdrawn


def _server() -> Loopback:
    def answer(request):
        if request.path == "/fail":
            return json_answer(400, {"error": "bad input"})
        return Answer(200, b"x" * 1024, {"content-type": "application/octet-stream"}, delay=SLOW)

    return Loopback(answer)


async def _settle(server: Loopback, expected: int) -> None:
    """Wait (bounded) until the withdrawn workers have had their answers and ended, then let
    the garbage collector report any future nobody asked."""
    deadline = time.monotonic() + 10
    while len(server.requests) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(SLOW + 0.5)  # the slow answers arrive; each worker sees its cancel and ends
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.05)


def _run_capturing(main) -> list[dict]:
    """Run `main` on a debug event loop; what its exception handler was given."""
    reported: list[dict] = []

    async def wrapper():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        await main()

    asyncio.run(wrapper(), debug=True)
    gc.collect()
    return reported


def _described(reported: list[dict]) -> list[str]:
    return [f"{c.get('message')}: {c.get('exception')!r}" for c in reported]


def test_a_failed_batch_leaves_no_unretrieved_exception(caplog):
    with _server() as server:
        client = HttpClient(SEGMIND)

        async def main():
            slow = [client.request("GET", f"{server.url}/slow/{i}") for i in range(3)]
            with pytest.raises(ProviderError, match="bad input"):
                await all_or_nothing([*slow, client.request("GET", f"{server.url}/fail")])
            await _settle(server, 4)

        reported = _run_capturing(main)
    assert len(server.requests) == 4  # each slow request was sent once, none again
    assert reported == [], _described(reported)
    assert "never retrieved" not in caplog.text and "Cancelled" not in caplog.text


def test_an_interrupt_leaves_no_unretrieved_exception(caplog):
    with _server() as server:
        client = HttpClient(SEGMIND)

        async def main():
            async def interrupt_soon():
                await asyncio.sleep(0.2)
                runtime.request_interrupt(True)

            runtime.begin_run()
            asyncio.get_running_loop().create_task(interrupt_soon())
            with pytest.raises(Exception) as caught:
                await all_or_nothing([client.request("GET", f"{server.url}/slow/{i}") for i in range(2)])
            assert not isinstance(caught.value, exchange.Cancelled)  # ComfyUI's interrupt, not ours
            runtime.request_interrupt(False)
            await _settle(server, 2)

        reported = _run_capturing(main)
    assert len(server.requests) == 2
    assert reported == [], _described(reported)
    assert "never retrieved" not in caplog.text
