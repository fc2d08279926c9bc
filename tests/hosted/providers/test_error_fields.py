"""What a failed provider call carries, from its construction: the provider, the stage, and the
provider's request id (Segmind's v2 job id after submit, SinkIn's inf_id); a failure that may
have been billed is a MaybeCharged; and the node tells the web extension so as data. Messages
stay word for word. Every test counts what reached the fake."""

from __future__ import annotations

import json

import pytest
from fakes.segmind import KEY as SEGMIND_KEY
from fakes.sinkin import KEY as SINKIN_KEY
from support.loopback import Answer, json_answer
from support.nodecalls import fast, run

from sdbridge.nodes import runtime
from sdbridge.nodes.errors import MaybeCharged, ProviderError
from sdbridge.nodes.hosted.http import jobs
from sdbridge.nodes.hosted.http.policy import PollPolicy
from sdbridge.nodes.hosted.provider_table import SEGMIND, SINKIN
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes

RV = segmind_nodes.SDBridgeSegmindRealisticVision
SMALL = {"prompt": "a cat", "img_width": 256, "img_height": 256}
SINKIN_SMALL = {"model_id": "majicMIX realistic (yBG2r9O)", "prompt": "a fox", "width": 512, "height": 512,
                "num_images": 1, "seed": 5}


def answering(fake, change):
    """Let `change(request)` answer first; when it says None, the fake answers as usual."""
    usual = fake.handler
    fake.handler = lambda request: change(request) or usual(request)


@pytest.fixture
def events(monkeypatch):
    sent = []
    monkeypatch.setattr(runtime, "send_event", lambda name, data: sent.append((name, data)))
    return sent


def failed(events) -> dict:
    [(_, data)] = [(name, data) for name, data in events if name == "sdbridge.failed"]
    return data


def test_a_job_the_provider_failed_carries_its_id_and_keeps_its_words(fake_segmind_v2, events):
    with pytest.raises(ProviderError) as caught:
        run(RV, seed=1, **{**SMALL, "prompt": "explode"})
    error = caught.value
    assert str(error) == ('Segmind: could not finish request req-1: "NSFW content detected in the prompt". '
                          "Check the node's inputs and run again.")
    assert (type(error), error.stage, error.request_id, error.status) == (ProviderError, jobs.STATUS, "req-1", 422)
    assert len(fake_segmind_v2.submits()) == 1
    assert failed(events) == {"node": "7", "error": "ProviderError", "maybe_charged": False, "provider": "segmind",
                              "status": 422, "stage": "status", "request_id": "req-1",
                              "billing_page": SEGMIND.billing_page}


def test_a_status_answer_it_cannot_read_carries_the_job_id(fake_segmind_v2):
    answering(fake_segmind_v2, lambda r: json_answer(200, {"status": "WEIRD"}) if r.path.endswith("/status") else None)
    with pytest.raises(ProviderError) as caught:
        run(RV, seed=2, **SMALL)
    assert str(caught.value) == "Segmind: reported a status SD Bridge does not know ('WEIRD'). Try again later."
    assert (caught.value.stage, caught.value.request_id) == (jobs.STATUS, "req-1")
    assert len(fake_segmind_v2.submits()) == 1


def test_a_result_that_cannot_be_downloaded_carries_the_job_id(fake_segmind_v2):
    answering(fake_segmind_v2, lambda r: Answer(404) if r.path.startswith("/results/") else None)
    with pytest.raises(ProviderError) as caught:
        run(RV, seed=3, **SMALL)
    assert str(caught.value) == ("Segmind: a result image could not be downloaded (404); the link may have expired. "
                                 "Run the node again.")
    assert (caught.value.stage, caught.value.request_id) == ("download", "req-1")
    assert len(fake_segmind_v2.submits()) == 1


def test_a_result_answer_that_is_not_json_carries_the_job_id(fake_segmind_v2):
    answering(fake_segmind_v2, lambda r: Answer(200, b"{not json", {"content-type": "application/json"})
              if r.path.startswith("/v2/requests/") and not r.path.endswith("/status") else None)
    with pytest.raises(ProviderError, match="answered with something that is not JSON") as caught:
        run(RV, seed=4, **SMALL)
    assert (caught.value.stage, caught.value.request_id) == (jobs.RESULT, "req-1")


def test_an_accepted_job_without_a_usable_id_is_maybe_charged(fake_segmind_v2, events):
    fake_segmind_v2.script.append(json_answer(200, {"status": "QUEUED"}))
    with pytest.raises(MaybeCharged) as caught:
        run(RV, seed=5, **SMALL)
    assert str(caught.value) == ("Segmind: accepted the request without a usable request id (application/json, "
                                 "20 bytes); it may still run. Check your usage at "
                                 f"{SEGMIND.billing_page} before running again.")
    assert (caught.value.stage, caught.value.request_id) == (jobs.SUBMIT, None)
    assert len(fake_segmind_v2.submits()) == 1
    event = failed(events)
    assert event["maybe_charged"] is True and event["error"] == "MaybeCharged"
    assert event["billing_page"] == SEGMIND.billing_page and SEGMIND_KEY not in json.dumps(event)


def test_a_job_still_running_at_the_timeout_is_maybe_charged_with_its_id(fake_segmind_v2):
    fake_segmind_v2.processing_polls = 10_000
    short = fast(RV, poll=PollPolicy(first_interval=0.02, max_interval=0.05, timeout=0.3))
    with pytest.raises(MaybeCharged, match=r"request req-1 is still processing after 0 s; it may still finish on "
                                           r"the provider's side\.") as caught:
        run(RV, seed=6, policies=short, **SMALL)
    assert (caught.value.stage, caught.value.request_id) == (jobs.STATUS, "req-1")
    assert len(fake_segmind_v2.submits()) == 1


def test_a_sinkin_refusal_carries_its_inf_id(fake_sinkin, events):
    fake_sinkin.script.append(json_answer(200, {"error_code": 1, "message": "model busy", "inf_id": "inf0042"}))
    with pytest.raises(ProviderError) as caught:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, **SINKIN_SMALL)
    assert str(caught.value) == ('SinkIn: refused the request: "model busy". Check the inputs (model and LoRA ids, '
                                 f"sizes), and your key and credits at {SINKIN.billing_page}")
    assert caught.value.request_id == "inf0042" and len(fake_sinkin.forms()) == 1
    assert failed(events)["request_id"] == "inf0042" and SINKIN_KEY not in json.dumps(events)


def test_a_sinkin_download_failure_carries_the_inf_id_of_its_answer(fake_sinkin):
    answering(fake_sinkin, lambda r: Answer(404) if r.path.startswith("/images/") else None)
    with pytest.raises(ProviderError, match="a result image could not be downloaded") as caught:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, **SINKIN_SMALL)
    assert (caught.value.stage, caught.value.request_id) == ("download", "inf0001")
    assert len(fake_sinkin.forms()) == 1 and fake_sinkin.inferences == 1


def test_the_request_id_is_scrubbed_of_keys(fake_sinkin):
    fake_sinkin.script.append(json_answer(200, {"error_code": 1, "message": "no", "inf_id": f"x{SINKIN_KEY}"}))
    with pytest.raises(ProviderError) as caught:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, **SINKIN_SMALL)
    assert SINKIN_KEY not in str(caught.value.request_id) and SINKIN_KEY not in json.dumps(caught.value.fields())
