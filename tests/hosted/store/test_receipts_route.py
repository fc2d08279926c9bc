"""GET /sdbridge/receipts on a real aiohttp server: the same records the store reads, newest first,
bounded, filtered by prompt id, with the runs still going; a clear 400 for what it cannot answer."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fakes.segmind import picture
from support.nodecalls import run
from support.serving import call, serve

from sdbridge.nodes import runtime
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.store import receipts

RV = segmind_nodes.SDBridgeSegmindRealisticVision
SMALL = {"img_width": 256, "img_height": 256}


def _record(prompt_id: str, seed: int) -> dict:
    return receipts.make(provider="segmind", endpoint="e", node_id="1", title="t", prompt_id=prompt_id, inputs={},
                         image_digests=[], seed=seed, request_ids=[f"req-{seed}"], status="done", message="done",
                         credits=1.0, basis="measured", returned=[])


def _get(query: str):
    async def script(session, base):
        return await call(session, "GET", f"{base}/sdbridge/receipts{query}")

    status, text = serve(script)
    return status, json.loads(text)


def test_the_route_answers_the_store_s_records_newest_first_bounded_and_filtered():
    for seed in range(5):
        receipts.write(_record("a" if seed % 2 else "b", seed))
    status, body = _get("")
    assert status == 200 and body["receipts"] == receipts.read() and [r["seed"] for r in body["receipts"]] == [
        4, 3, 2, 1, 0]
    assert [r["seed"] for r in _get("?limit=2")[1]["receipts"]] == [4, 3]
    assert [r["seed"] for r in _get("?prompt_id=a")[1]["receipts"]] == [3, 1]
    assert _get("?prompt_id=zzz")[1] == {"receipts": [], "in_flight": []}


@pytest.mark.parametrize("query, says", [("?limit=0", "limit must be"), ("?limit=abc", "limit must be"),
                                         (f"?limit={receipts.MAX_LIMIT + 1}", "limit must be"),
                                         ("?limit=-1", "limit must be"), ("?prompt_id=", "prompt_id must be"),
                                         ("?prompt_id=" + "x" * 300, "prompt_id must be"),
                                         ("?prompt_id=%00", "prompt_id must be"), ("?since=1", "unknown parameter")])
def test_what_the_route_cannot_answer_is_a_clear_400(query, says):
    status, body = _get(query)
    assert status == 400 and says in body["error"]


def test_a_damaged_file_never_breaks_the_route():
    receipts.write(_record("a", 1))
    receipts.flush()
    with open(next(receipts.folder().glob("*.jsonl")), "ab") as handle:
        handle.write(b"\xff\x00garbage\n{\"time\": 1}\n[" * 50)
    status, body = _get("")
    assert status == 200 and [r["seed"] for r in body["receipts"]] == [1]


def test_a_run_still_going_is_in_flight_until_its_receipt_is_written(fake_segmind_v2, monkeypatch):
    monkeypatch.setattr(runtime, "current_prompt_id", lambda: "p-running")
    fake_segmind_v2.processing_polls = 10_000
    ended = []

    def interrupted_run():
        try:
            run(RV, prompt="a cat", seed=2, **SMALL)
        except runtime.Interrupted as exc:
            ended.append(exc)

    worker = threading.Thread(target=interrupted_run)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while not fake_segmind_v2.submits() and time.monotonic() < deadline:
            time.sleep(0.02)
        status, body = _get("?prompt_id=p-running")
        assert status == 200 and body["receipts"] == []
        assert [(r["provider"], r["node_id"]) for r in body["in_flight"]] == [("segmind", "7")]
    finally:
        runtime.request_interrupt()
        worker.join(timeout=30)
    status, body = _get("?prompt_id=p-running")
    assert ended and body["in_flight"] == [] and [r["status"] for r in body["receipts"]] == ["cancelled"]
    assert len(fake_segmind_v2.submits()) == 1


def test_the_route_never_answers_a_key(fake_segmind_v2):
    canary = fake_segmind_v2.key
    run(RV, prompt=f"a cat {canary}", seed=3, **SMALL)
    status, body = _get("")
    text = json.dumps(body)
    assert status == 200 and body["receipts"] and canary not in text and canary[:10] not in text



def test_spending_answers_each_provider_s_day_and_last_balance_apart(fake_segmind_v2, fake_sinkin):
    from sdbridge.nodes.hosted.money import ledger

    ledger.record("segmind", 2.5)
    ledger.record("sinkin", 0.75)
    run(RV, prompt="a cat", seed=3, **SMALL)  # the fake answers its remaining credits

    async def script(session, base):
        return await call(session, "GET", f"{base}/sdbridge/spending")

    status, text = serve(script)
    body = json.loads(text)
    rows = {row["id"]: row for row in body["providers"]}
    assert status == 200 and rows["sinkin"]["spent_today"] == 0.75 and rows["sinkin"]["unit"] == "credits"
    assert rows["segmind"]["spent_today"] == ledger.spent_today()["segmind"] >= 2.5
    assert rows["segmind"]["counted_today"] == ledger.counted_today()["segmind"]  # what the day cap compares
    assert rows["segmind"]["unit"] == "credits (US$)"  # never added to SinkIn's
    assert rows["segmind"]["balance"] == fake_segmind_v2.credits and rows["sinkin"]["balance"] is None
    assert rows["segmind"]["usage_page"].startswith("https://") and "spent_today" in body["caps"]


def _post(path: str, body):
    async def script(session, base):
        return await call(session, "POST", f"{base}{path}", json=body)

    status, text = serve(script)
    return status, json.loads(text)


def _cancelled_run(fake) -> None:
    """A run cancelled while Segmind still works on its request (req-1), which then finishes."""
    fake.processing_polls = 10_000
    timer = threading.Timer(0.3, runtime.request_interrupt)
    timer.start()
    with pytest.raises(runtime.Interrupted):
        run(RV, prompt="a cat", seed=21, **SMALL)
    timer.cancel()
    runtime.request_interrupt(False)
    fake.processing_polls = 0


def test_fetch_again_brings_back_a_held_result_without_a_generation_request(fake_segmind_v2):
    _cancelled_run(fake_segmind_v2)
    assert receipts.read()[0]["status"] == "cancelled"
    asked_before = len(fake_segmind_v2.requests)
    status, body = _post("/sdbridge/receipts/fetch-again", {"request_id": "req-1"})
    assert status == 200, body
    assert len(fake_segmind_v2.submits()) == 1 and fake_segmind_v2.generated == 1  # 0 new submits, 1 image made
    asked = [r.path for r in fake_segmind_v2.requests[asked_before:]]
    assert asked == ["/v2/requests/req-1/status", "/v2/requests/req-1", "/results/21_256x256.jpg"]
    assert "No new generation request" in body["note"] and body["saved"] == ["sdbridge/req-1_0.jpg"]
    saved = runtime.output_directory() / "sdbridge" / "req-1_0.jpg"
    assert saved.read_bytes() == picture(256, 256, 21)


def test_fetch_again_during_another_prompt_s_cancel_works_and_leaves_the_cancel(fake_segmind_v2):
    _cancelled_run(fake_segmind_v2)
    runtime.request_interrupt()  # another prompt is being cancelled right now
    try:
        status, body = _post("/sdbridge/receipts/fetch-again", {"request_id": "req-1"})
        assert status == 200, body
        assert runtime.interrupted()  # still there for that prompt's nodes
    finally:
        runtime.request_interrupt(False)
    assert len(fake_segmind_v2.submits()) == 1


def test_fetch_again_of_a_result_the_provider_forgot_says_so_and_sends_nothing_paid(fake_segmind_v2):
    _cancelled_run(fake_segmind_v2)
    fake_segmind_v2.expire()
    status, body = _post("/sdbridge/receipts/fetch-again", {"request_id": "req-1"})
    assert status == 409 and "no longer holds request req-1" in body["error"]
    assert len(fake_segmind_v2.submits()) == 1


@pytest.mark.parametrize("body, code, says", [({"request_id": "req-9"}, 404, "no recent receipt"),
                                              ({"id": "req-1"}, 400, "request_id"),
                                              ({"request_id": "old-1"}, 410, "older than")])
def test_fetch_again_refuses_what_it_cannot_answer(fake_segmind_v2, body, code, says):
    old = _record("p", 1)
    old.update(time="2020-01-01T00:00:00+00:00", provider="segmind", request_ids=["old-1"])
    receipts.write(old)
    status, answer = _post("/sdbridge/receipts/fetch-again", body)
    assert status == code and says in answer["error"] and fake_segmind_v2.requests == []


def test_each_receipt_names_its_cost_s_unit_older_ones_too():
    receipts.write(_record("new", 1))
    old = {k: v for k, v in _record("old", 2).items() if k != "unit"}  # written before receipts had a unit
    receipts.flush()
    folder = receipts.folder()
    with open(next(folder.glob("*.jsonl")), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(old) + "\n")
    status, body = _get("")
    assert status == 200 and [(r["seed"], r["unit"]) for r in body["receipts"]] == [
        (2, "credits (US$)"), (1, "credits (US$)")]
    assert receipts.unit_of("nobody") is None and receipts.unit_of(["segmind"]) is None
