"""Receipts: every hosted run leaves one whatever its end (done, cached, failed, may have been
charged, cancelled), with what was sent, the seed used, every request id, the cost and its basis
and the returned images' digests; append-only lines a crash cannot damage, shared by two
processes, bounded in days, cut (never dropped) when too large, and a damaged file never breaks a
run or a read. Every test counts what reached the fake."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from datetime import date

import pytest
from conftest import ROOT
from fakes.segmind import picture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import standin_comfy
from support.nodecalls import defaults, fast, run
from support.processes import run_two_at_once

from sdbridge.nodes import runtime
from sdbridge.nodes.errors import InputError, ProviderError
from sdbridge.nodes.hosted import node
from sdbridge.nodes.hosted.http.policy import Limits
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.hosted.store import receipts

RV = segmind_nodes.SDBridgeSegmindRealisticVision
Txt2Img = sinkin_nodes.NODES[0]
SMALL = {"img_width": 256, "img_height": 256}


@pytest.fixture
def prompt_id(monkeypatch):
    monkeypatch.setattr(runtime, "current_prompt_id", lambda: "prompt-42")
    return "prompt-42"


def test_a_done_run_leaves_a_complete_receipt(fake_segmind_v2, prompt_id):
    images, info = run(RV, node_id="9", prompt="a cat", seed=3, **SMALL)
    info = json.loads(info)
    [receipt] = receipts.read()
    assert len(fake_segmind_v2.submits()) == 1
    assert receipt["status"] == "done" and receipt["provider"] == "segmind"
    assert receipt["endpoint"] == RV.ENDPOINT.slug and receipt["node_id"] == "9" and receipt["prompt_id"] == prompt_id
    assert receipt["title"] == RV.DISPLAY_NAME  # no prompt given: the node's menu name
    assert receipt["seed"] == 3 and receipt["inputs"]["prompt"] == "a cat"
    assert receipt["request_ids"] == ["req-1"]
    assert (receipt["credits"], receipt["basis"]) == (info["credits_spent"], info["credits_basis"])
    assert receipt["images"] == [hashlib.sha256(picture(256, 256, 3)).hexdigest()]
    assert receipt["message"].startswith("done")


def test_a_random_seed_is_recorded_as_really_sent(fake_segmind_v2):
    run(RV, prompt="a cat", seed=-1, **SMALL)
    [receipt] = receipts.read()
    assert receipt["seed"] == fake_segmind_v2.bodies()[0]["seed"] and receipt["seed"] >= 0


def test_a_cache_hit_leaves_a_cached_receipt_and_sends_nothing(fake_segmind_v2):
    run(RV, prompt="a cat", seed=5, **SMALL)
    run(RV, prompt="a cat", seed=5, **SMALL)
    newest, first = receipts.read()
    assert len(fake_segmind_v2.submits()) == 1
    assert (newest["status"], newest["basis"], newest["credits"]) == ("cached", "cached", 0)
    assert newest["images"] == first["images"] and first["status"] == "done"


def test_a_lost_answer_leaves_a_maybe_charged_receipt_with_its_estimate(fake_segmind_v2):
    realvis = segmind_nodes.SDBridgeSegmindRealVisXL  # it has a published price: an estimate
    fake_segmind_v2.lose_answers.append("drop")
    with pytest.raises(ProviderError):
        run(realvis, prompt="a cat", seed=4, img_width=512, img_height=512,
            policies=fast(realvis, limits=Limits(read_timeout=0.5)))
    [receipt] = receipts.read()
    assert len(fake_segmind_v2.submits()) == 1
    assert receipt["status"] == "maybe_charged" and "charged" in receipt["message"]
    assert receipt["basis"] == "estimated" and receipt["credits"] > 0


def test_a_failed_job_keeps_its_request_id_and_message(fake_segmind_v2):
    with pytest.raises(ProviderError):
        run(RV, prompt="explode", seed=4, **SMALL)
    [receipt] = receipts.read()
    assert len(fake_segmind_v2.submits()) == 1
    assert receipt["status"] == "failed" and receipt["request_ids"] == ["req-1"]
    assert "NSFW" in receipt["message"] and receipt["credits"] is None and receipt["basis"] == "unknown"


def test_a_bad_input_leaves_a_failed_receipt_and_sends_nothing(fake_segmind_v2):
    values = {**defaults(segmind_nodes.SDBridgeSegmindAnyModel), "parameters": "[1, 2]"}  # not an object
    with pytest.raises(InputError):
        asyncio.run(segmind_nodes.SDBridgeSegmindAnyModel().generate(unique_id="3", **values))
    [receipt] = receipts.read()
    assert fake_segmind_v2.requests == [] and receipt["status"] == "failed" and receipt["request_ids"] == []


def test_a_cancelled_run_leaves_a_cancelled_receipt_and_nothing_more_leaves(fake_segmind_v2):
    fake_segmind_v2.processing_polls = 10_000
    timer = threading.Timer(0.3, runtime.request_interrupt)
    timer.start()
    try:
        with pytest.raises(BaseException):  # noqa: B017 (ComfyUI's or the pack's interrupt)
            run(RV, prompt="a cat", seed=6, **SMALL)
    finally:
        timer.cancel()
    asked = len(fake_segmind_v2.requests)
    [receipt] = receipts.read()
    assert receipt["status"] == "cancelled" and receipt["request_ids"] == ["req-1"]
    assert len(fake_segmind_v2.submits()) == 1 and len(fake_segmind_v2.requests) == asked


def test_a_run_cancelled_in_comfyui_says_so_in_words(fake_segmind_v2, comfy_model_management):
    # ComfyUI's interrupt is an exception with no message: the receipt (and the panel) must not
    # show its class name ("InterruptProcessingException") as the reason.
    standin_comfy.with_interrupts(comfy_model_management)
    fake_segmind_v2.processing_polls = 10_000
    timer = threading.Timer(0.3, runtime.request_interrupt)
    timer.start()
    try:
        with pytest.raises(comfy_model_management.InterruptProcessingException):
            run(RV, prompt="a cat", seed=6, **SMALL)
    finally:
        timer.cancel()
        runtime.request_interrupt(False)
    [receipt] = receipts.read()
    assert receipt["status"] == "cancelled" and receipt["request_ids"] == ["req-1"]
    assert "Exception" not in receipt["message"] and receipt["message"] == node.CANCELLED_TEXT
    assert len(fake_segmind_v2.submits()) == 1


def test_sinkin_receipts_carry_its_inference_id_and_measured_cost(fake_sinkin):
    run(Txt2Img, prompt="a fox", seed=8, width=128, height=128, model_id="yBG2r9O")
    [receipt] = receipts.read()
    assert receipt["provider"] == "sinkin" and receipt["seed"] == 8 and receipt["request_ids"]
    assert receipt["endpoint"] == "yBG2r9O"  # the model it ran, not the node's class
    assert receipt["basis"] == "measured" and fake_sinkin.inferences == 1


def test_a_title_comes_from_the_prompt(fake_segmind_v2):
    prompt = {"9": {"class_type": RV.__name__, "inputs": {}, "_meta": {"title": "Hero shot"}}}
    run(RV, node_id="9", sdbridge_prompt=prompt, prompt="a cat", seed=3, **SMALL)
    assert receipts.read()[0]["title"] == "Hero shot"


# ---------------------------------------------------------------- the files

def _record(**changes) -> dict:
    fields = dict(provider="segmind", endpoint="sdxl", node_id="1", title="t", prompt_id="p", inputs={"prompt": "x"},
                  image_digests=[], seed=1, request_ids=["r"], status="done", message="done", credits=1.0,
                  basis="measured", returned=[])
    return receipts.make(**{**fields, **changes})


def _day_file():
    return receipts.folder() / f"{date.today().isoformat()}.jsonl"


def test_a_torn_last_line_is_skipped_and_the_next_receipt_starts_its_own_line(pack_log):
    receipts.write(_record(prompt_id="a"))
    receipts.flush()
    with open(_day_file(), "ab") as handle:
        handle.write(b'{"time": "2026-01-01", "status": "do')  # a crash mid-write
    assert [r["prompt_id"] for r in receipts.read()] == ["a"]
    assert not [r for r in pack_log.records if "receipts" in r.getMessage()]  # a torn tail is what a crash leaves
    receipts.write(_record(prompt_id="b"))
    assert [r["prompt_id"] for r in receipts.read()] == ["b", "a"]
    assert len([r for r in pack_log.records if "damaged line" in r.getMessage()]) == 1  # now inside the file


@pytest.mark.parametrize("garbage", [b"\x00\xff\xfe not json\n", b"[1, 2]\n", b'{"status": "done"}\n',
                                     b"[" * 100_000 + b"\n", b"x" * (receipts.MAX_LINE_READ * 3) + b"\n",
                                     b'{"time": "t", "status": "stolen"}\n'])
def test_a_hostile_file_is_skipped_with_one_log_line_and_kept(garbage, pack_log):
    receipts.write(_record(prompt_id="good"))
    receipts.flush()
    with open(_day_file(), "ab") as handle:
        handle.write(garbage * 3)
    before = _day_file().read_bytes()
    assert [r["prompt_id"] for r in receipts.read()] == ["good"]
    assert len([r for r in pack_log.records if "damaged line" in r.getMessage()]) == 1
    assert _day_file().read_bytes() == before  # kept for inspection


def test_an_unreadable_file_never_breaks_a_run(fake_segmind_v2, pack_log):
    receipts.folder().mkdir(parents=True)
    _day_file().mkdir()  # not a file at all: neither writable nor readable
    images, _ = run(RV, prompt="a cat", seed=3, **SMALL)
    assert images.shape[0] == 1 and receipts.read() == []
    assert any("receipt" in r.getMessage() for r in pack_log.records)


def test_a_receipt_larger_than_the_bound_is_cut_with_a_marker_never_dropped():
    huge = {f"field_{i}": "y" * 1900 for i in range(40)}
    record = _record(inputs=huge, message="m" * 50_000)
    text = json.dumps(record)
    assert len(text.encode()) <= receipts.MAX_RECEIPT_BYTES and receipts.CUT_MARKER in text
    assert record["status"] == "done" and record["request_ids"] == ["r"]
    receipts.write(record)
    assert receipts.read() == [record]


def test_old_day_files_go_after_the_setting_s_days(monkeypatch):
    monkeypatch.setenv(receipts.DAYS_ENV, "2")
    receipts.folder().mkdir(parents=True)
    old = receipts.folder() / "2020-01-01.jsonl"
    other = receipts.folder() / "notes.txt"
    old.write_text(json.dumps(_record()) + "\n")
    other.write_text("mine")
    receipts._pruned_on.clear()
    receipts.write(_record())
    receipts.flush()
    assert not old.exists() and other.exists() and len(receipts.read()) == 1


@pytest.mark.parametrize("text", ["0", "-3", "ten", "99999"])
def test_a_bad_days_setting_says_what_to_write(text):
    assert "whole number of days" in receipts.days_problem(text)


def test_read_filters_by_prompt_and_answers_newest_first_within_the_limit():
    for i in range(6):
        receipts.write(_record(prompt_id="even" if i % 2 == 0 else "odd", seed=i))
    assert [r["seed"] for r in receipts.read(limit=2)] == [5, 4]
    assert [r["seed"] for r in receipts.read(prompt_id="even")] == [4, 2, 0]


WRITER_SCRIPT = """
from sdbridge.nodes.hosted.store import receipts
for i in range(100):
    receipts.write(receipts.make(provider="segmind", endpoint="e", node_id=str(worker), title="t", prompt_id="p",
                                 inputs={"prompt": "z" * (i * 50)}, image_digests=[], seed=i, request_ids=[],
                                 status="done", message="", credits=None, basis="unknown", returned=[]))
receipts.flush()
"""


def test_two_processes_appending_at_once_lose_and_tear_nothing(tmp_path):
    run_two_at_once(ROOT, WRITER_SCRIPT, tmp_path)
    found = receipts.read(limit=receipts.MAX_LIMIT)
    assert sorted((r["node_id"], r["seed"]) for r in found) == sorted((str(w), i) for w in (1, 2) for i in range(100))


# ---------------------------------------------------------------- keys

CANARY = 'sg-CAN/ARY"0123+4567&89-xyz'


def test_nothing_of_a_key_reaches_a_receipt(fake_segmind_v2, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    fake_segmind_v2.key = CANARY
    monkeypatch.setenv("SEGMIND_API_KEY", CANARY)
    pnginfo: dict = {}
    run(RV, prompt=f"a cat {CANARY}", negative_prompt=json.dumps(CANARY), seed=3, sdbridge_pnginfo=pnginfo, **SMALL)
    fake_segmind_v2.script.append(json_echo(CANARY))
    with pytest.raises(ProviderError):
        run(RV, prompt="a dog", seed=4, **SMALL)
    found = receipts.read()
    assert [r["status"] for r in found] == ["failed", "done"]
    texts = [_day_file().read_text(encoding="utf-8"), json.dumps(found), json.dumps(pnginfo)]
    pieces = [CANARY[i:i + 8] for i in range(len(CANARY) - 8)] + [json.dumps(CANARY)[1:-1]]
    assert not [piece for text in texts for piece in pieces if piece in text]


def json_echo(key: str):
    from support.loopback import json_answer

    return json_answer(400, {"error": f"bad key {key}", "key": key, "echo": {"x-api-key": key}})


@settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                               st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                            lambda inner: st.lists(inner, max_size=4)
                                            | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                                            max_leaves=12).map(lambda v: json.dumps(v).encode())),
                     max_size=8))
def test_no_file_content_breaks_a_read(junk):
    receipts.write(_record(prompt_id="anchor"))
    receipts.flush()
    with open(_day_file(), "ab") as handle:
        handle.write(b"\n".join(junk))
    found = receipts.read(limit=receipts.MAX_LIMIT)
    assert all(isinstance(r, dict) and r["status"] in receipts.STATUSES for r in found)
    assert "anchor" in [r.get("prompt_id") for r in found]
    _day_file().unlink()


def test_a_day_file_that_is_a_link_is_neither_read_nor_written_through(tmp_path, pack_log):
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text(json.dumps(_record(prompt_id="planted")) + "\n")
    receipts.folder().mkdir(parents=True)
    try:
        _day_file().symlink_to(outside)
    except OSError:
        pytest.skip("this system makes no symlinks")
    receipts.write(_record(prompt_id="mine"))
    assert receipts.read() == [] and outside.read_text().count("\n") == 1  # nothing written out there
    assert any("receipt could not be written" in r.getMessage() for r in pack_log.records)
