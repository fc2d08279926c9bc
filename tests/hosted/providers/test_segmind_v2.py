"""The Segmind nodes on Segmind's v2 queue (the default): submit once, then only ask; the request
journal that resumes a job instead of paying again; the v1 fallback. Every test counts the
generation requests (submits) that reached the fake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import ROOT
from fakes.segmind import KEY
from support.loopback import LOST_ANSWERS, Answer, Loopback, json_answer
from support.nodecalls import fast, run

from sdbridge.nodes import examples, runtime
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http.client import Limits
from sdbridge.nodes.hosted.providers.segmind import api as segmind_api
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.store import journal

RV, SDXL, IMG2IMG, REALVIS, ANY = segmind_nodes.NODES
DOCUMENTED = {RV: examples.SELFIE, SDXL: examples.PANDA, IMG2IMG: examples.LANDSCAPE, REALVIS: examples.PORTRAIT}
SMALL = {"img_width": 256, "img_height": 256}


@pytest.mark.parametrize("node", list(DOCUMENTED), ids=lambda n: n.__name__)
def test_every_node_submits_once_then_only_asks(fake_segmind_v2, node):
    example = dict(DOCUMENTED[node])
    extra = {"image": torch.rand((1, 16, 16, 3))} if node is IMG2IMG else {}
    images, info = run(node, **example, **extra)
    (submit,) = fake_segmind_v2.submits()
    assert submit.path == f"/v2/{node.ENDPOINT.slug}" and submit.headers["x-api-key"] == KEY
    body = json.loads(submit.body)
    body.pop("image", None)
    assert body == {**example, "base64": False}  # the same JSON body as v1
    statuses = [r for r in fake_segmind_v2.requests if r.path.endswith("/status")]
    assert len(statuses) == fake_segmind_v2.queued_polls + fake_segmind_v2.processing_polls + 1
    assert tuple(images.shape) == (1, example["img_height"], example["img_width"], 3)
    assert fake_segmind_v2.generated == 1 and json.loads(info)["remaining_credits"] == 99
    assert json.loads(journal.journal_file().read_text())["jobs"] == {}  # fetched: nothing left to resume


@pytest.mark.parametrize(("shape", "samples"), [("url", 1), ("url", 2), ("urls", 3), ("base64", 2), ("nested", 1)])
def test_the_output_is_read_whatever_its_shape(fake_segmind_v2, shape, samples):
    fake_segmind_v2.v2_output = shape
    images, _ = run(RV, prompt="a cat", seed=10, samples=samples, **SMALL)
    assert images.shape[0] == samples and len(fake_segmind_v2.submits()) == 1
    seeds_seen = {round(float(images[i, 0, 0, 0]) * 255) for i in range(samples)}
    assert len(seeds_seen) == samples  # each image is its own picture


def test_the_node_shows_queued_processing_and_seconds(fake_segmind_v2, monkeypatch):
    lines = []
    monkeypatch.setattr(runtime, "show_text", lambda node_id, text, log_line=True: lines.append(text))
    fake_segmind_v2.queued_polls, fake_segmind_v2.processing_polls = 2, 2
    run(RV, prompt="a cat", seed=1, **SMALL)
    states = [line for line in lines if line.startswith("Segmind sd1.5-realisticvision: ")]
    assert any("queued, 0 s" in line for line in states) and any("processing, " in line for line in states)


def test_failed_with_422_is_a_clear_node_error(fake_segmind_v2):
    with pytest.raises(ProviderError, match=r'Segmind: could not finish request req-1: "NSFW content detected in '
                                            r'the prompt"\. Check the node.s inputs'):
        run(RV, prompt="explode", seed=1, **SMALL)
    assert len(fake_segmind_v2.submits()) == 1 and fake_segmind_v2.generated == 0
    assert json.loads(journal.journal_file().read_text())["jobs"] == {}


@pytest.mark.parametrize(("status", "words"), [
    (400, "rejected the request as invalid (400)"), (401, "did not accept the API key (401)"),
    (403, "refused access (403)"), (406, "says there are not enough credits (406)")])
def test_errors_at_submit_keep_their_clear_messages(fake_segmind_v2, status, words):
    fake_segmind_v2.script.append(json_answer(status, {"error": f"problem {status}"}))
    with pytest.raises(ProviderError, match=rf"^Segmind: {words.replace('(', '[(]').replace(')', '[)]')}"):
        run(RV, prompt="a cat", seed=1, **SMALL)
    assert len(fake_segmind_v2.requests) == 1


def test_a_slug_v2_does_not_serve_falls_back_to_v1(fake_segmind_v2):
    fake_segmind_v2.v2_slugs.discard("sd1.5-realisticvision")
    images, _ = run(RV, prompt="a cat", seed=2, **SMALL)
    assert [r.path for r in fake_segmind_v2.submits()] == ["/v2/sd1.5-realisticvision", "/v1/sd1.5-realisticvision"]
    assert images.shape[0] == 1 and fake_segmind_v2.generated == 1


def test_v1_can_be_asked_for(fake_segmind_v2, monkeypatch):
    monkeypatch.setenv(segmind_api.API_ENV, "v1")
    run(RV, prompt="a cat", seed=2, **SMALL)
    assert [r.path for r in fake_segmind_v2.requests] == ["/v1/sd1.5-realisticvision"]


def test_job_urls_on_another_host_are_rebuilt_on_the_api_base(fake_segmind_v2):
    with Loopback(lambda request: Answer(500)) as elsewhere:
        fake_segmind_v2.job_host = elsewhere.url
        images, _ = run(RV, prompt="a cat", seed=3, **SMALL)
        assert images.shape[0] == 1 and elsewhere.requests == []  # the key never went there


@pytest.mark.parametrize("fault", LOST_ANSWERS)
def test_a_submit_whose_answer_is_lost_is_not_sent_again(fake_segmind_v2, monkeypatch, fault):
    fake_segmind_v2.lose_answers.append(fault)
    with pytest.raises(ProviderError, match="may have made the image and charged for it"):
        run(RV, prompt="a cat", seed=4, policies=fast(RV, limits=Limits(read_timeout=0.5)), **SMALL)
    assert len(fake_segmind_v2.submits()) == 1


@pytest.mark.parametrize("fault", ["drop", "502", "504", "truncate"])
def test_lost_answers_while_asking_cost_nothing_extra(fake_segmind_v2, fault):
    fake_segmind_v2.lose_answers += ["", fault, "", fault]  # submit fine; two status answers lost
    images, _ = run(RV, prompt="a cat", seed=5, **SMALL)
    assert images.shape[0] == 1 and len(fake_segmind_v2.submits()) == 1 and fake_segmind_v2.generated == 1


def interrupted_while_processing(fake, **values) -> None:
    """Run a node whose job never ends, and press Cancel while it waits; then let jobs finish."""
    fake.processing_polls = 10_000
    threading.Timer(0.3, runtime.request_interrupt).start()
    with pytest.raises(runtime.Interrupted):
        run(RV, **{"prompt": "a cat", **SMALL, **values})
    runtime.request_interrupt(False)
    fake.processing_polls = 0


def test_an_interrupted_wait_resumes_without_a_second_submit(fake_segmind_v2):
    fake_segmind_v2.processing_polls = 10_000
    threading.Timer(0.4, runtime.request_interrupt).start()
    started = time.monotonic()
    with pytest.raises(runtime.Interrupted):
        run(RV, prompt="a cat", seed=6, **SMALL)
    assert time.monotonic() - started < 1.4
    asked = len(fake_segmind_v2.requests)
    time.sleep(0.3)
    assert len(fake_segmind_v2.requests) == asked  # nothing more after the cancel
    runtime.request_interrupt(False)
    fake_segmind_v2.processing_polls = 0
    images, _ = run(RV, prompt="a cat", seed=6, **SMALL)  # the same inputs: the same job
    assert images.shape[0] == 1 and len(fake_segmind_v2.submits()) == 1 and fake_segmind_v2.generated == 1


def test_other_inputs_are_a_new_request(fake_segmind_v2):
    interrupted_while_processing(fake_segmind_v2, seed=7)
    run(RV, prompt="a cat", seed=8, **SMALL)  # another seed is another image
    assert len(fake_segmind_v2.submits()) == 2


def test_a_job_the_provider_forgot_is_submitted_anew(fake_segmind_v2):
    interrupted_while_processing(fake_segmind_v2, seed=9)
    fake_segmind_v2.expire()  # the result window has passed
    images, _ = run(RV, prompt="a cat", seed=9, **SMALL)
    assert images.shape[0] == 1 and len(fake_segmind_v2.submits()) == 2 and fake_segmind_v2.generated == 1


RESUME_SCRIPT = """
import asyncio, importlib.util, json, sys
root = sys.argv[1]
spec = importlib.util.spec_from_file_location("sdbridge", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules["sdbridge"] = pack; spec.loader.exec_module(pack)
from dataclasses import replace
from sdbridge.nodes.hosted.http.policy import PollPolicy
node = pack.NODE_CLASS_MAPPINGS["SDBridgeSegmindRealisticVision"]
fast = replace(node.POLICIES, poll=PollPolicy(first_interval=0.02, max_interval=0.05))
values = {"prompt": "a cat", "negative_prompt": "", "scheduler": "UniPC", "num_inference_steps": 20,
          "guidance_scale": 7.5, "samples": 1, "seed": 11, "img_width": 256, "img_height": 256}
images, info = asyncio.run(node(fast).generate(unique_id="1", **values))
print(json.dumps({"shape": list(images.shape)}))
"""


def test_a_restart_between_submit_and_result_costs_nothing_extra(fake_segmind_v2):
    """Submitted, then ComfyUI stopped: a new process with the same user directory asks for the
    job the journal holds instead of submitting again."""
    interrupted_while_processing(fake_segmind_v2, negative_prompt="", scheduler="UniPC", num_inference_steps=20,
                                 guidance_scale=7.5, samples=1, seed=11)
    assert len(fake_segmind_v2.submits()) == 1
    journal_text = journal.journal_file().read_text()
    assert KEY not in journal_text and "req-1" in journal_text
    out = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(ROOT)], env=dict(os.environ), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["shape"] == [1, 256, 256, 3]
    assert len(fake_segmind_v2.submits()) == 1 and fake_segmind_v2.generated == 1


def test_the_journal_stays_valid_under_concurrent_writers_and_a_stray_temp_file():
    journal.journal_file().parent.mkdir(parents=True, exist_ok=True)
    (journal.journal_file().parent / ".journal-crashed").write_text('{"jobs": {"half')  # a crash mid-write
    digests = [journal.canonical_request("segmind", "https://api.example/v2/x", {"seed": i}) for i in range(40)]

    def writer(part):
        for digest in digests[part::4]:
            journal.record(digest, "segmind", (digest[:8], "https://api.example/s", "https://api.example/r"), 600)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(journal.find(digest) == (digest[:8], "https://api.example/s", "https://api.example/r")
               for digest in digests)
    for digest in digests[::2]:
        journal.forget(digest)
    assert sum(journal.find(digest) is not None for digest in digests) == 20
    assert len(json.loads(journal.journal_file().read_text())["jobs"]) == 20


def test_expired_entries_are_dropped():
    digest = journal.canonical_request("segmind", "https://api.example/v2/x", {"seed": 1})
    journal.record(digest, "segmind", ("r1", "https://api.example/s", "https://api.example/r"), -1)
    assert journal.find(digest) is None


def test_an_any_model_call_goes_through_the_queue_too(fake_segmind_v2):
    images, info = run(ANY, slug="custom-model", parameters='{"prompt": "x", "seed": 3, "img_width": 32}')
    assert [r.path for r in fake_segmind_v2.submits()] == ["/v2/custom-model"]
    assert images.shape[0] == 1 and json.loads(info)["images"] == 1
