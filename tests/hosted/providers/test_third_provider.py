"""A third provider takes one table entry, one folder and one fake: the stand-in queue provider
(support/standin/, shaped as nodes/hosted/providers/<name>/; fakes/queue.py) has its table
entry added here, and then the routes, the key handling and a node run against its fake, with
submit-then-poll."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from aiohttp.test_utils import make_mocked_request
from conftest import serve_fake
from fakes.queue import KEY, FakeQueue
from support.nodecalls import fast, run
from support.standin.entry import STANDIN
from support.standin.nodes import StandInTxt2Img

from sdbridge.nodes import routes, runtime
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http.jobs import PollPolicy
from sdbridge.nodes.hosted.keys import credentials, redaction
from sdbridge.nodes.hosted.provider_table import PROVIDERS


@pytest.fixture
def queue(monkeypatch):
    """The stand-in in the provider table, pointed at a running fake queue."""
    monkeypatch.setitem(PROVIDERS, STANDIN.id, STANDIN)
    with FakeQueue() as server:
        yield serve_fake(monkeypatch, STANDIN, server)


@pytest.fixture
def shown(monkeypatch):
    """The status lines the node shows, in order."""
    lines: list[str] = []
    monkeypatch.setattr(runtime, "show_text", lambda node_id, text, log_line=True: lines.append(text))
    return lines


def route(handler, path: str) -> dict:
    return json.loads(asyncio.run(handler(make_mocked_request("GET", path))).text)


def test_the_table_entry_reaches_routes_keys_and_redaction(queue):
    listed = route(routes.providers, "/sdbridge/providers")["providers"]
    assert STANDIN.for_web() in listed and [p["id"] for p in listed][-1] == "standin"
    assert route(routes.key_status, "/sdbridge/keys")["standin"] == {"set": True, "source": "environment",
                                                                     "env": "STANDIN_API_KEY"}
    assert credentials.api_key(STANDIN) == KEY and credentials.base_url(STANDIN) == queue.url
    assert redaction.redact(f"echo {KEY}") == "echo ***"
    assert StandInTxt2Img.CATEGORY == "SD Bridge/Stand-in"
    assert "STANDIN_API_KEY or Settings > SD Bridge" in StandInTxt2Img.DESCRIPTION


def test_a_node_submits_once_polls_and_downloads(queue, shown):
    images, info = run(StandInTxt2Img, prompt="a lighthouse", seed=5, num_images=2)
    assert tuple(images.shape) == (2, 16, 16, 3)
    assert json.loads(info)["seed"] == 5
    assert len(queue.submits()) == 1  # one click, one submit: the rest only asks
    asked = [r.path for r in queue.requests if r.method == "GET" and r.path.endswith("/status")]
    assert len(asked) == queue.queued_polls + queue.processing_polls + 1
    assert all(r.headers.get("x-api-key") == KEY for r in queue.requests if not r.path.startswith("/images/"))
    states = [line for line in shown if line.startswith("Stand-in tiny-model: ")]
    assert states[0].startswith("Stand-in tiny-model: queued, ") and any(", " in s and "processing" in s for s in states)


def test_a_failed_job_is_a_clear_node_error(queue):
    with pytest.raises(ProviderError, match=r'Stand-in: could not finish request req1: "the model could not render '
                                            r'this prompt"\. Check the node'):
        run(StandInTxt2Img, prompt="explode", seed=1)
    assert len(queue.submits()) == 1 and not any(r.path.startswith("/images/") for r in queue.requests)


def test_job_urls_on_another_host_get_no_key(queue):
    with FakeQueue() as elsewhere:
        queue.job_host = elsewhere.url
        with pytest.raises(ProviderError, match="job URL on another host"):
            run(StandInTxt2Img, prompt="a cat", seed=1)
        assert elsewhere.requests == [] and len(queue.requests) == 1


def test_interrupt_while_polling_stops_within_a_second_and_nothing_more_leaves(queue):
    queue.processing_polls = 10_000
    threading.Timer(0.5, runtime.request_interrupt).start()
    started = time.monotonic()
    with pytest.raises(runtime.Interrupted):
        run(StandInTxt2Img, prompt="a cat", seed=1)
    assert time.monotonic() - started < 1.5
    sent = len(queue.requests)
    time.sleep(0.5)
    assert len(queue.requests) == sent and len(queue.submits()) == 1


def test_a_job_that_never_finishes_says_so(queue):
    queue.processing_polls = 10_000
    briefly = fast(StandInTxt2Img, poll=PollPolicy(first_interval=0.05, max_interval=0.05, timeout=0.3))
    with pytest.raises(ProviderError, match=r"request req1 is still processing after \d+ s; it may still finish"):
        run(StandInTxt2Img, prompt="a cat", seed=1, policies=briefly)
    assert len(queue.submits()) == 1


def test_the_poll_clock_passed_in_measures_the_wait(queue):
    """The wait is measured with the run's clock: one that says 400 s pass per reading gives up
    after the second status answer, in no real time, and says how long it waited."""
    queue.processing_polls = 10_000
    readings = iter(range(0, 10_000, 400))
    slow_clock = fast(StandInTxt2Img, poll=PollPolicy(first_interval=0.01, max_interval=0.01, timeout=600.0,
                                                      clock=lambda: float(next(readings))))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"request req1 is still processing after 800 s"):
        run(StandInTxt2Img, prompt="a cat", seed=1, policies=slow_clock)
    assert time.monotonic() - started < 2.0
    assert len(queue.submits()) == 1 and sum(r.path.endswith("/status") for r in queue.requests) == 2
