"""The Segmind nodes against a fake Segmind on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

import pytest
import torch
from fakes.segmind import KEY, picture
from PIL import Image
from support.loopback import LOST_ANSWERS, Answer, json_answer
from support.nodecalls import comfy_validate, defaults, fast, make, run

from sdbridge.nodes import examples, runtime, surface
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http.client import Limits, RetryPolicy
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes

NODES = {node.__name__: node for node in segmind_nodes.NODES}
RV, SDXL, IMG2IMG, REALVIS, ANY = (NODES[n] for n in (
    "SDBridgeSegmindRealisticVision", "SDBridgeSegmindSDXL", "SDBridgeSegmindSD15Img2Img",
    "SDBridgeSegmindRealVisXL", "SDBridgeSegmindAnyModel"))


def _input_image(width=64, height=48):
    return torch.rand((1, height, width, 3))


# ---------------------------------------------------------------- request bodies

# The documents' own example requests (seeds 000-003), with base64 left to the transport.
DOC_EXAMPLES = {RV: examples.SELFIE, SDXL: examples.PANDA, IMG2IMG: examples.LANDSCAPE, REALVIS: examples.PORTRAIT}


@pytest.mark.parametrize("node", list(DOC_EXAMPLES), ids=lambda n: n.__name__)
def test_request_body_is_the_documented_example(fake_segmind, node):
    example = dict(DOC_EXAMPLES[node])
    extra = {"image": _input_image()} if node is IMG2IMG else {}
    images, info = run(node, **example, **extra)
    (body,) = fake_segmind.bodies()
    sent_image = body.pop("image", None)
    assert body == {**example, "base64": False}
    # Real JSON types: numbers as numbers, booleans as booleans.
    assert isinstance(body["seed"], int) and isinstance(body["guidance_scale"], float)
    assert type(body["num_inference_steps"]) is int and type(body["samples"]) is int
    if node is SDXL:
        assert body["refiner"] is True
    if node is IMG2IMG:
        decoded = Image.open(io.BytesIO(base64.b64decode(sent_image)))
        assert decoded.size == (64, 48)
    assert images.shape == (1, example["img_height"], example["img_width"], 3)
    assert images.dtype == torch.float32 and images.device.type == "cpu"
    assert 0.0 <= float(images.min()) <= float(images.max()) <= 1.0
    report = json.loads(info)
    assert report["seed"] == example["seed"] and report["model"] == node.ENDPOINT.slug
    assert report["remaining_credits"] == 99 and report["seconds"] >= 0


def test_request_goes_to_the_slug_with_the_key_header(fake_segmind):
    run(REALVIS, prompt="a cat", seed=5)
    (request,) = fake_segmind.requests
    assert request.path == "/v1/sdxl1.0-realvis" and request.headers["x-api-key"] == KEY
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("samples", [1, 2, 3, 4])
def test_every_sample_comes_back(fake_segmind, samples):
    images, info = run(RV, prompt="a cat", samples=samples, seed=1000)
    assert images.shape == (samples, 512, 512, 3)
    assert fake_segmind.bodies()[0]["base64"] is (samples > 1)
    # Each sample is its own picture (the fake colours them by seed + i).
    firsts = {tuple((images[i, 0, 0] * 255).round().tolist()) for i in range(samples)}
    assert len(firsts) == samples
    assert json.loads(info)["images"] == samples


def test_base64_answer_with_a_single_string(fake_segmind):
    png = base64.b64encode(picture(32, 16, 3, "PNG")).decode()
    fake_segmind.script.append(json_answer(200, {"image": png}))
    images, _ = run(RV, prompt="x", seed=1)
    assert images.shape == (1, 16, 32, 3)


def test_random_seed_is_drawn_sent_and_reported(fake_segmind):
    assert RV.IS_CHANGED(**{**defaults(RV), "seed": -1}) != RV.IS_CHANGED(**{**defaults(RV), "seed": -1})
    assert RV.IS_CHANGED(**{**defaults(RV), "seed": 4}) == ""
    _, info = run(RV, prompt="x", seed=-1)
    sent = fake_segmind.bodies()[0]["seed"]
    assert 0 <= sent <= surface.SEGMIND_SEED_MAX and json.loads(info)["seed"] == sent


def test_img2img_sends_each_batch_image(fake_segmind):
    batch = torch.rand((3, 40, 56, 3))
    images, info = run(IMG2IMG, image=batch, prompt="x", seed=2, img_width=256, img_height=256)
    assert len(fake_segmind.bodies()) == 3 and images.shape == (3, 256, 256, 3)
    sent = [Image.open(io.BytesIO(base64.b64decode(b["image"]))) for b in fake_segmind.bodies()]
    assert {s.size for s in sent} == {(56, 40)}


def test_img2img_sends_the_image_losslessly(fake_segmind):
    image = torch.rand((1, 8, 8, 3))
    run(IMG2IMG, image=image, prompt="x", seed=2)
    sent = Image.open(io.BytesIO(base64.b64decode(fake_segmind.bodies()[0]["image"])))
    assert sent.format == "PNG"
    pixels = torch.frombuffer(bytearray(sent.tobytes()), dtype=torch.uint8).reshape(8, 8, 3)
    assert torch.equal(pixels.float(), (image[0] * 255).round())


# ---------------------------------------------------------------- validation before spending

# Values ComfyUI's own validation lets through (it does not check booleans, and truncates 25.5 to
# 25): a queue-API script can send them, and the node refuses them when it runs, before spending.
RUN_TIME_ONLY = pytest.mark.run_time_only


@pytest.mark.parametrize("node, values, expected", [
    (RV, {"prompt": "   "}, "prompt: must not be empty"),
    (RV, {"img_width": 500}, "img_width: 500 is not allowed"),
    (RV, {"num_inference_steps": 10}, "num_inference_steps: 10 is out of range; use a value from 20 to 100"),
    (RV, {"guidance_scale": 30}, "guidance_scale: 30.0 is out of range"),
    (RV, {"samples": 5}, "samples: 5 is out of range"),
    (RV, {"scheduler": "Karras 9000"}, "scheduler: 'Karras 9000' is not allowed. Pick one of: UniPC"),
    (SDXL, {"high_noise_fraction": 1.5}, "high_noise_fraction: 1.5 is out of range"),
    (SDXL, {"style": "vaporwave"}, "style: 'vaporwave' is not allowed"),
    pytest.param(SDXL, {"refiner": "maybe"}, "refiner: 'maybe' is not true or false", marks=RUN_TIME_ONLY),
    (REALVIS, {"img_width": 900}, "img_width: 900 is not a multiple of 8; use 896 or 904"),
    (REALVIS, {"img_height": 2056}, "img_height: 2056 is out of range"),
    (REALVIS, {"seed": -2}, "seed: -2 is out of range"),
    (REALVIS, {"seed": 10**15}, "seed: 1000000000000000 is out of range"),
    pytest.param(REALVIS, {"num_inference_steps": 25.5}, "num_inference_steps: 25.5 is not a whole number",
                 marks=RUN_TIME_ONLY),
    (ANY, {"parameters": "{'prompt': 1}"}, "parameters: not valid JSON"),
    (ANY, {"parameters": "[1, 2]"}, "parameters: must be a JSON object in braces, got a JSON list"),
    (ANY, {"slug": "../v2/secret"}, "slug: must be a Segmind model slug"),
    (ANY, {"image_1_field": "bad field"}, "image_1_field: must be a parameter name"),
])
def test_bad_values_fail_validation_with_a_clear_message(fake_segmind, node, values, expected, request):
    merged = {**defaults(node), "prompt": "a cat", **values}
    # The pack's validator gives the message above for every value it sees...
    verdict = node.VALIDATE_INPUTS(**merged)
    assert isinstance(verdict, str) and verdict.startswith(expected), verdict
    # ...and inside ComfyUI either it or ComfyUI's own check refuses the value, under its input.
    (name,) = values
    errors = comfy_validate(node, merged)
    if not request.node.get_closest_marker("run_time_only"):
        assert errors and any(e.startswith(f"{name}: ") for e in errors), errors
    # The node itself refuses too (values linked from other nodes skip validation), before any request.
    with pytest.raises(ValueError, match="Segmind: " + expected[:20].replace("(", r"\(").replace("[", r"\[")):
        asyncio.run(make(node).generate(unique_id="1", **merged))
    assert fake_segmind.requests == []


def test_the_validator_names_only_inputs_comfyui_cannot_check_itself():
    import inspect

    named = {n.__name__: inspect.getfullargspec(n.VALIDATE_INPUTS).args[1:] for n in NODES.values()}
    assert named["SDBridgeSegmindRealVisXL"] == ["prompt", "img_width", "img_height"]  # non-empty, multiples of 8
    assert named["SDBridgeSegmindSDXL"] == ["prompt"]
    assert named["SDBridgeSegmindAnyModel"] == ["slug", "parameters", "image_1_field", "image_2_field", "image_3_field"]
    # One bad value is reported once, under its own input, not under every widget.
    # ComfyUI files the one message under the three inputs the validator names, not all eleven.
    errors = comfy_validate(REALVIS, {**defaults(REALVIS), "prompt": "x", "img_width": 900})
    message = "img_width: 900 is not a multiple of 8; use 896 or 904"
    assert sorted(errors) == [f"{name}: {message}" for name in ("img_height", "img_width", "prompt")]


def test_linked_inputs_are_left_to_run_time(fake_segmind):
    # ComfyUI leaves linked inputs out of validation: a missing prompt must not fail there.
    values = defaults(RV)
    values.pop("prompt")
    assert RV.VALIDATE_INPUTS(**values) is True


def test_queue_api_strings_are_read_as_numbers(fake_segmind):
    images, _ = run(REALVIS, prompt="x", seed="12", num_inference_steps="30", guidance_scale="7", img_width="512")
    body = fake_segmind.bodies()[0]
    assert body["seed"] == 12 and body["num_inference_steps"] == 30 and body["guidance_scale"] == 7.0
    assert body["img_width"] == 512


def test_any_model_field_names_must_differ(fake_segmind):
    image = _input_image()
    verdict = ANY.VALIDATE_INPUTS(**{**defaults(ANY), "image_1": image, "image_2": image, "image_2_field": "image"})
    assert "share one field name" in verdict


# ---------------------------------------------------------------- the any-model node

def test_any_model_sends_json_and_images_under_chosen_fields(fake_segmind):
    params = json.dumps({"prompt": "a dog", "samples": 1, "seed": 9, "base64": False, "img_width": 40, "img_height": 24})
    images, info = run(ANY, slug="custom-model", parameters=params, image_1=_input_image(), image_1_field="input_image")
    (body,) = fake_segmind.bodies()
    assert body["prompt"] == "a dog" and body["seed"] == 9 and "input_image" in body
    assert images.shape == (1, 24, 40, 3) and json.loads(info)["seed"] == 9


def test_any_model_returns_json_text_when_the_answer_is_not_an_image(fake_segmind):
    fake_segmind.script.append(json_answer(200, {"text": "a caption", "tokens": 3}, {"x-remaining-credits": "5"}))
    images, info = run(ANY, slug="custom-model", parameters="{}")
    assert images.shape == (1, 64, 64, 3) and float(images.abs().sum()) == 0.0
    report = json.loads(info)
    assert report["answer"] == {"text": "a caption", "tokens": 3} and report["remaining_credits"] == 5


# ---------------------------------------------------------------- errors

def _status(status, payload=None, **headers):
    return json_answer(status, payload or {"error": f"problem {status}"}, headers)


@pytest.mark.parametrize("status, words", [
    (400, "rejected the request as invalid (400)"),
    (401, "did not accept the API key (401)"),
    (403, "refused access (403)"),
    (404, "does not know this model or endpoint (404)"),
    (405, "does not allow this request method (405)"),
    (406, "says there are not enough credits (406). It said: \"problem 406\". Top up at https://cloud.segmind.com"),
])
def test_permanent_errors_fail_at_once(fake_segmind, status, words):
    fake_segmind.script.append(_status(status))
    with pytest.raises(ProviderError) as caught:
        run(RV, prompt="x", seed=1)
    assert str(caught.value).startswith(f"Segmind: {words}")
    assert caught.value.status == status and len(fake_segmind.requests) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_not_started_answers_are_sent_again_then_succeed(fake_segmind, status):
    """429 and 503 say the work did not start: sending again cannot bill twice."""
    fake_segmind.script += [_status(status), _status(status)]
    images, _ = run(RV, prompt="x", seed=1)
    assert images.shape[0] == 1 and len(fake_segmind.requests) == 3 and fake_segmind.generated == 1


@pytest.mark.parametrize("status, tries", [(503, 3), (429, 5)])
def test_not_started_answers_give_up_after_a_bounded_number_of_tries(fake_segmind, status, tries):
    fake_segmind.script += [_status(status)] * 10
    with pytest.raises(ProviderError, match=rf"\({status}, after {tries} tries\)"):
        run(RV, prompt="x", seed=1)
    assert len(fake_segmind.requests) == tries and fake_segmind.generated == 0


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_a_status_that_may_follow_the_work_is_not_sent_again(fake_segmind, status):
    fake_segmind.script.append(_status(status))
    with pytest.raises(ProviderError, match=rf"\({status}\)\..*Segmind may have made the image and charged for it, "
                                            r"so SD Bridge did not send the request again\. Check your usage at "
                                            r"https://cloud\.segmind\.com/console/billing"):
        run(RV, prompt="x", seed=1)
    assert len(fake_segmind.requests) == 1


@pytest.mark.parametrize("fault", LOST_ANSWERS)
def test_processed_then_the_answer_lost_is_billed_once(fake_segmind, monkeypatch, fault):
    """The image was made and billed, and the answer never came back whole: one request, one
    image billed, and a message that says so."""
    fake_segmind.lose_answers.append(fault)
    with pytest.raises(ProviderError, match="may have made the image and charged for it"):
        run(RV, prompt="x", seed=1, policies=fast(RV, limits=Limits(read_timeout=0.5)))
    assert len(fake_segmind.requests) == 1 and fake_segmind.generated == 1


@pytest.mark.parametrize("fault", LOST_ANSWERS)
def test_every_image_of_a_batch_is_billed_once_whatever_is_lost(fake_segmind, monkeypatch, fault):
    fake_segmind.lose_answers.append(fault)
    with pytest.raises(ProviderError, match="may have made the image"):
        run(IMG2IMG, image=torch.rand((4, 16, 16, 3)), prompt="x", seed=1,
            policies=fast(IMG2IMG, limits=Limits(read_timeout=0.5)))
    assert len(fake_segmind.requests) <= 4 and fake_segmind.generated == len(fake_segmind.requests)


def test_retry_after_is_honoured(fake_segmind):
    fake_segmind.script.append(_status(429, **{"retry-after": "1"}))
    started = time.monotonic()
    run(RV, prompt="x", seed=1)
    assert 1.0 <= time.monotonic() - started < 3.0 and len(fake_segmind.requests) == 2


def test_a_long_retry_after_fails_at_once_and_says_how_long(fake_segmind):
    fake_segmind.script.append(_status(429, **{"retry-after": "3600"}))
    with pytest.raises(ProviderError, match="asks to wait 3600 s"):
        run(RV, prompt="x", seed=1)
    assert len(fake_segmind.requests) == 1


def test_unreachable_server_is_a_clear_error(monkeypatch):
    """A refused connection means nothing reached Segmind: sending again cannot bill twice."""
    monkeypatch.setenv("SEGMIND_API_KEY", KEY)
    monkeypatch.setenv("SEGMIND_API_BASE", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(ProviderError, match=r"the connection was refused at 127.0.0.1:9 \(after 3 tries\).*SEGMIND_API_BASE"):
        run(RV, prompt="x", seed=1, policies=fast(RV, retry=RetryPolicy(base_delay=0.01)))


def test_a_slow_answer_times_out_and_says_so(fake_segmind, monkeypatch):
    fake_segmind.script.append(Answer(delay=1.0))
    with pytest.raises(ProviderError, match="no answer in time"):
        run(RV, prompt="x", seed=1,
            policies=fast(RV, limits=Limits(read_timeout=0.3), retry=RetryPolicy(transient_attempts=1)))


@pytest.mark.parametrize("answer, words", [
    (Answer(200, b"<html><body><h1>Bad gateway</h1></body></html>", {"content-type": "text/html"}),
     "answered with something that is not an image (text/html, 46 bytes)"),
    (Answer(200, b"", {"content-type": "image/jpeg"}), "answered with image/jpeg but the body is empty"),
    (Answer(200, b"\xff\xd8\xff garbage bytes", {"content-type": "image/jpeg"}),
     "answered with image/jpeg but not a readable image"),
    (Answer(200, b"{not json", {"content-type": "application/json"}), "answered with something that is not JSON"),
    (Answer(200, b'{"status": "ok"}', {"content-type": "application/json"}), "answered without an image"),
    (Answer(200, b'{"image": "@@@not-base64@@@"}', {"content-type": "application/json"}),
     "sent an image that could not be read"),
    (Answer(200, picture(64, 64, 1), {"content-type": "image/jpeg"}, truncate=True), "may have made the image"),
])
def test_malformed_answers_become_clear_errors(fake_segmind, answer, words):
    fake_segmind.script += [answer] * 3
    with pytest.raises(ProviderError, match=words.replace("(", r"\(").replace(")", r"\)")):
        run(RV, prompt="x", seed=1)
    assert len(fake_segmind.requests) == 1  # a generation request goes once


def test_a_decompression_bomb_is_refused_before_decoding(fake_segmind):
    # A PNG header claiming 100000 x 100000 pixels, with almost no data behind it.
    bomb = _png_header(100_000, 100_000)
    fake_segmind.script.append(Answer(200, bomb, {"content-type": "image/png"}))
    with pytest.raises(ProviderError, match="over the limit of 67,108,864 pixels"):
        run(RV, prompt="x", seed=1)


def _png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_a_body_over_the_byte_limit_is_refused(fake_segmind, monkeypatch):
    with pytest.raises(ProviderError, match=r"the answer is larger than the 1 KiB limit; ask for fewer"):
        run(RV, prompt="x", seed=1, policies=fast(RV, limits=Limits(max_bytes=1024)))
    assert len(fake_segmind.requests) == 1  # too large is not worth sending again


def test_html_error_bodies_are_cleaned(fake_segmind):
    fake_segmind.script.append(Answer(500, b"<html><script>x()</script><p>Internal   <b>error</b></p></html>",
                              {"content-type": "text/html"}))
    fake_segmind.script += [_status(500)] * 2
    with pytest.raises(ProviderError) as caught:
        run(RV, prompt="x", seed=1)
    assert "<" not in str(caught.value)


def test_html_message_bodies_are_read(fake_segmind):
    fake_segmind.script.append(json_answer(400, {"html-message": "<p>img_width must be 512</p>"}))
    with pytest.raises(ProviderError, match='It said: "img_width must be 512"'):
        run(RV, prompt="x", seed=1)


# ---------------------------------------------------------------- keys

def test_missing_key_says_both_ways_to_set_it(fake_segmind, monkeypatch):
    monkeypatch.delenv("SEGMIND_API_KEY")
    with pytest.raises(Exception) as caught:
        run(RV, prompt="x", seed=1)
    text = str(caught.value)
    assert "SEGMIND_API_KEY" in text and "Settings > SD Bridge" in text and fake_segmind.requests == []


def test_key_file_is_used_when_no_env_var(fake_segmind, monkeypatch):
    from sdbridge.nodes.hosted.keys import credentials
    from sdbridge.nodes.hosted.provider_table import SEGMIND

    monkeypatch.delenv("SEGMIND_API_KEY")
    credentials.store_key(SEGMIND, KEY)
    run(RV, prompt="x", seed=1)
    assert fake_segmind.requests[0].headers["x-api-key"] == KEY


CANARY = "sg-CANARY-5f1e2d3c4b5a69788796"


def test_the_key_never_leaks(fake_segmind, monkeypatch, pack_log, capsys):
    """A canary key, echoed back by a hostile server in every way, appears nowhere we control."""
    monkeypatch.setenv("SEGMIND_API_KEY", CANARY)
    fake_segmind.key = CANARY
    seen: list[str] = []
    outputs = []
    outputs.append(run(RV, prompt="x", seed=1)[1])
    for status in (400, 401, 403, 404, 406, 500):
        fake_segmind.script[:] = [json_answer(status, {"error": f"key {CANARY} rejected"}, {"x-echo": CANARY})] * 3
        with pytest.raises(ProviderError) as caught:
            run(RV, prompt="x", seed=2)  # seed 1 is in the result cache now
        seen += [str(caught.value), repr(caught.value), str(caught.value.args)]
    fake_segmind.script[:] = [Answer(200, f"<html>{CANARY}</html>".encode(), {"content-type": "text/html"})]
    with pytest.raises(ProviderError) as caught:
        run(RV, prompt="x", seed=2)
    seen.append(str(caught.value))
    fake_segmind.script.append(json_answer(200, {"echo": CANARY}))
    outputs.append(run(ANY, slug="custom-model", parameters="{}")[1])
    captured = capsys.readouterr()
    everything = "\n".join(seen + outputs + [pack_log.text, captured.out, captured.err])
    assert "rejected" in everything  # the server's words did arrive...
    assert CANARY not in everything  # ...without the key
    stored = [p.read_bytes() for p in runtime.user_directory().rglob("*") if p.is_file()]
    assert stored and not any(CANARY.encode() in data for data in stored)  # the result cache's files too
    for node in NODES.values():
        assert CANARY not in json.dumps(node.INPUT_TYPES(), default=str)


# ---------------------------------------------------------------- interrupt and concurrency

def test_interrupt_stops_a_waiting_call_within_a_second(fake_segmind):
    fake_segmind.script.append(Answer(delay=5.0))
    threading.Timer(0.3, runtime.request_interrupt).start()
    started = time.monotonic()
    with pytest.raises(runtime.Interrupted):
        run(RV, prompt="x", seed=1)
    assert time.monotonic() - started < 1.3


def test_interrupt_stops_a_retry_wait(fake_segmind, monkeypatch):
    fake_segmind.script.append(_status(503))
    threading.Timer(0.3, runtime.request_interrupt).start()
    started = time.monotonic()
    with pytest.raises(runtime.Interrupted):
        run(RV, prompt="x", seed=1, policies=fast(RV, retry=RetryPolicy(base_delay=10, max_delay=10)))
    assert time.monotonic() - started < 1.3


def test_a_permanent_failure_in_a_batch_withdraws_the_rest(fake_segmind):
    """One image refused at once, the others slow and then failing: nothing more is sent."""
    fake_segmind.script += [_status(400)] + [Answer(503, b"busy", delay=0.5)] * 3
    with pytest.raises(ProviderError, match=r"\(400\)"):
        run(IMG2IMG, image=torch.rand((4, 16, 16, 3)), prompt="x", seed=1)
    time.sleep(1.5)  # longer than the slow answers and a backoff: a retry would have come by now
    assert 1 <= len(fake_segmind.requests) <= 4  # at most one per image (some may never have left), no retry


def test_an_interrupt_reaches_every_request_of_every_node_and_nothing_queued_leaves(fake_segmind):
    """Two nodes of 16 images each: 16 requests in flight (the worker pool's size), 16 queued.
    Every node stops within a second of the interrupt and no queued request is sent."""
    fake_segmind.script += [Answer(503, b"busy", delay=1.0)] * 40
    values = {**defaults(IMG2IMG), "prompt": "x", "seed": 1}

    async def two_nodes():
        return await asyncio.gather(*(make(IMG2IMG).generate(unique_id=str(i), image=torch.rand((16, 8, 8, 3)), **values)
                                      for i in range(2)), return_exceptions=True)

    threading.Timer(0.5, runtime.request_interrupt).start()
    started = time.monotonic()
    outcomes = asyncio.run(two_nodes())
    assert time.monotonic() - started < 1.5
    assert all(isinstance(outcome, runtime.Interrupted) for outcome in outcomes), outcomes
    sent = len(fake_segmind.requests)
    time.sleep(1.5)
    assert sent <= 16 and len(fake_segmind.requests) == sent


def test_independent_nodes_wait_at_the_same_time(fake_segmind):
    fake_segmind.script += [Answer(200, picture(64, 64, i), {"content-type": "image/jpeg"}, delay=1.0) for i in range(4)]
    values = {**defaults(RV), "prompt": "x", "seed": 1}

    async def four():
        return await asyncio.gather(*(make(RV).generate(unique_id=str(i), **values) for i in range(4)))

    started = time.monotonic()
    results = asyncio.run(four())
    elapsed = time.monotonic() - started
    assert len(results) == 4 and elapsed < 1.8, elapsed


def test_remaining_credits_reach_the_node_and_the_frontend(fake_segmind, monkeypatch):
    sent = []

    class Server:
        def send_sync(self, event, data):
            sent.append((event, data))

        def send_progress_text(self, text, node_id):
            sent.append(("text", {"text": text, "node": node_id}))

    monkeypatch.setattr(runtime, "_server", lambda: Server())
    run(RV, prompt="x", seed=1, node_id="42")
    assert ("sdbridge.credits", {"provider": "segmind", "remaining": "99", "node": "42"}) in sent
    assert ("text", {"text": "Segmind: 99 credits left", "node": "42"}) in sent


def test_json_answers_may_carry_image_urls_which_are_downloaded(fake_segmind):
    fake_segmind.script.append(json_answer(200, {"image": [f"{fake_segmind.url}/results/a.jpg"]}))
    fake_segmind.script.append(Answer(200, picture(20, 10, 1), {"content-type": "image/jpeg"}))
    images, _ = run(RV, prompt="x", seed=1)
    assert images.shape == (1, 10, 20, 3) and fake_segmind.requests[-1].method == "GET"


def test_an_expired_result_url_says_so(fake_segmind):
    fake_segmind.script.append(json_answer(200, {"image": [f"{fake_segmind.url}/results/gone.jpg"]}))
    fake_segmind.script.append(json_answer(404, {"error": "not found"}))
    with pytest.raises(ProviderError, match=r"a result image could not be downloaded \(404\); the link may have expired"):
        run(RV, prompt="x", seed=1)


def test_any_model_refuses_non_json_numbers_before_any_request(fake_segmind):
    with pytest.raises(AssertionError, match="NaN is not a JSON number"):  # refused by validation
        run(ANY, slug="custom-model", parameters='{"prompt": "x", "guidance_scale": NaN}')
    with pytest.raises(ValueError, match="NaN is not a JSON number"):  # and by the node itself
        asyncio.run(make(ANY).generate(unique_id="1", slug="custom-model", parameters='{"prompt": "x", "g": NaN}'))
    assert fake_segmind.requests == []
