"""SinkIn nodes against a fake SinkIn on 127.0.0.1: the multipart fields sent for every input,
answers, error_code failures, retries, interrupt, safe downloads, and no leaked token."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import pytest
import torch
from fakes.sinkin import KEY, Upload, colour_of, failure
from support.loopback import LOST_ANSWERS, Answer, Loopback, json_answer
from support.nodecalls import defaults, fast, make, run

from sdbridge.nodes import examples, runtime, surface
from sdbridge.nodes import images as imaging
from sdbridge.nodes.errors import MissingKeyError, ProviderError
from sdbridge.nodes.hosted.http import addresses
from sdbridge.nodes.hosted.http.client import Limits
from sdbridge.nodes.hosted.keys import credentials
from sdbridge.nodes.hosted.provider_table import SINKIN
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes

Txt2Img, Img2Img = sinkin_nodes.SDBridgeSinkInTxt2Img, sinkin_nodes.SDBridgeSinkInImg2Img




def _answer_with(fake_sinkin, urls) -> Answer:
    return json_answer(200, {"error_code": 0, "images": urls, "credit_cost": 0.5, "inf_id": "inf1"})


# ---------------------------------------------------------------- the node contract

def test_node_ids_category_and_inputs_follow_the_document():
    assert {node.__name__ for node in sinkin_nodes.NODES} == {"SDBridgeSinkInTxt2Img", "SDBridgeSinkInImg2Img"}
    common = ["model_id", "prompt", "negative_prompt", "use_default_neg", "lcm", "version", "width", "height",
              "steps", "scale", "num_images", "seed", "scheduler", "lora", "lora_scale"]
    assert list(Txt2Img.INPUT_TYPES()["required"]) == common
    assert list(Img2Img.INPUT_TYPES()["required"]) == ["image", *common, "image_strength", "controlnet"]
    for node in (Txt2Img, Img2Img):
        assert node.CATEGORY == "SD Bridge/SinkIn"
        assert node.RETURN_TYPES == ("IMAGE", "STRING")
    assert {k: v for k, v in defaults(Img2Img).items() if k not in ("model_id", "prompt")} == {
        "negative_prompt": "", "use_default_neg": True, "lcm": False, "version": "", "width": 512, "height": 768,
        "steps": 30, "scale": 7.5, "num_images": 1, "seed": -1, "scheduler": "DPMSolverMultistep",
        "lora": "none", "lora_scale": 0.75, "image_strength": 0.75, "controlnet": "none"}
    spec = Img2Img.INPUT_TYPES()["required"]
    assert spec["seed"][1]["control_after_generate"] is True
    assert spec["scheduler"][0] == ["DPMSolverMultistep", "K_EULER_ANCESTRAL", "DDIM", "K_EULER", "PNDM", "KLMS"]
    assert spec["controlnet"][0] == ["none", "canny", "depth", "openpose"]
    assert "no effect" in spec["image_strength"][1]["tooltip"] and "no effect" in spec["controlnet"][1]["tooltip"]
    assert spec["model_id"][1]["default"] == "Realistic Vision (r2La2w2)"
    for name, low, high in (("width", 128, 896), ("height", 128, 896), ("steps", 1, 50), ("scale", 1, 20),
                            ("num_images", 1, 4)):
        assert (spec[name][1]["min"], spec[name][1]["max"]) == (low, high)


@pytest.mark.parametrize(("values", "problem"), [
    ({"width": 900}, "width: 900 is out of range"),
    ({"height": 500}, "height: 500 is not a multiple of 8"),
    ({"steps": 0}, "steps: 0 is out of range"),
    ({"scale": 25.0}, "scale: 25.0 is out of range"),
    ({"num_images": 5}, "num_images: 5 is out of range"),
    ({"scheduler": "Euler a"}, "scheduler: 'Euler a' is not allowed"),
    ({"controlnet": "scribble"}, "controlnet: 'scribble' is not allowed"),
    ({"model_id": "Realistic Vision"}, "model_id: holds no SinkIn id"),
    ({"lora": "my lora!"}, "lora: holds no SinkIn id"),
    ({"prompt": "  "}, "prompt: must not be empty"),
    ({"version": "v1\nv2"}, "version: must be a short version name"),
])
def test_bad_values_fail_validation_before_any_request(fake_sinkin, values, problem):
    merged = {**defaults(Img2Img), "prompt": "a cat", **values}
    assert Img2Img.VALIDATE_INPUTS(**merged).startswith(problem)
    with pytest.raises(ValueError, match=problem.split(":")[0]):
        asyncio.run(make(Img2Img).generate(unique_id="1", image=torch.rand(1, 8, 8, 3), **merged))
    assert fake_sinkin.requests == []


# ---------------------------------------------------------------- what goes over the wire

def test_txt2img_sends_every_input_as_multipart_text(fake_sinkin):
    images, info = run(Txt2Img, model_id="majicMIX realistic (yBG2r9O)", prompt="a red fox", negative_prompt="blur",
                       use_default_neg=False, lcm=True, version="v2", width=640, height=512, steps=20, scale=9.5,
                       num_images=2, seed=1234, scheduler="K_EULER", lora="Detail Tweaker (lora01)",
                       lora_scale=0.5)
    [request] = [r for r in fake_sinkin.requests if r.method == "POST"]
    assert request.path == "/api/inference" and request.headers["content-type"].startswith("multipart/form-data")
    assert fake_sinkin.forms()[0] == {
        "access_token": KEY, "model_id": "yBG2r9O", "prompt": "a red fox", "negative_prompt": "blur",
        "use_default_neg": "false", "lcm": "true", "version": "v2", "width": "640", "height": "512",
        "steps": "20", "scale": "9.5", "num_images": "2", "seed": "1234", "scheduler": "K_EULER",
        "lora": "lora01", "lora_scale": "0.5"}
    assert images.dtype == torch.float32 and tuple(images.shape) == (2, 512, 640, 3)
    for i in range(2):
        assert tuple(round(float(c) * 255) for c in images[i, 0, 0]) == colour_of(1234 + i)
    assert json.loads(info) == {"provider": "SinkIn", "model_id": "yBG2r9O", "seed": 1234, "images": 2,
                                "credit_cost": 1.0, "inf_id": "inf0001", "credits_spent": 1.0,
                                "credits_basis": "measured", "seconds": json.loads(info)["seconds"]}


def test_defaults_send_the_documented_values_and_leave_out_empty_choices(fake_sinkin):
    run(Txt2Img, prompt="a cat", seed=7)
    assert fake_sinkin.forms()[0] == {
        "access_token": KEY, "model_id": "r2La2w2", "prompt": "a cat", "negative_prompt": "",
        "use_default_neg": "true", "lcm": "false", "width": "512", "height": "768", "steps": "30",
        "scale": "7.5", "num_images": "1", "seed": "7", "scheduler": "DPMSolverMultistep"}


@pytest.mark.parametrize("model", ["yBG2r9O", "  yBG2r9O ", "majicMIX realistic (yBG2r9O)",
                                   "an old title, renamed since (yBG2r9O)"])
def test_a_bare_id_or_any_title_carrying_the_id_selects_the_model(fake_sinkin, model):
    run(Txt2Img, model_id=model, prompt="a cat", seed=1)
    assert fake_sinkin.forms()[0]["model_id"] == "yBG2r9O"


def test_a_saved_model_or_lora_missing_from_todays_list_still_validates_and_runs(fake_sinkin):
    assert "A Model Added Today (newModel1)" not in Txt2Img.INPUT_TYPES()["required"]["model_id"][0]
    images, _ = run(Txt2Img, model_id="A Model Added Today (newModel1)", prompt="a cat", seed=1,
                    lora="Film Grain (lora02)")
    assert fake_sinkin.forms()[0]["model_id"] == "newModel1" and fake_sinkin.forms()[0]["lora"] == "lora02"
    assert images.shape[0] == 1


def test_img2img_uploads_the_image_as_a_png_file_with_strength_and_controlnet(fake_sinkin):
    source = torch.zeros((1, 16, 24, 3))
    source[..., 0] = 1.0
    run(Img2Img, image=source, prompt="a cat", seed=3, image_strength=0.3, controlnet="depth")
    form = fake_sinkin.forms()[0]
    upload = form.pop("init_image_file")
    assert isinstance(upload, Upload) and upload.content_type == "image/png"
    assert torch.equal(imaging.pil_to_tensor([imaging.decode_image(upload.data)]), source)
    assert form["image_strength"] == "0.3" and form["controlnet"] == "depth"
    run(Img2Img, image=source, prompt="a cat", seed=3)
    assert "controlnet" not in fake_sinkin.forms()[1] and fake_sinkin.forms()[1]["image_strength"] == "0.75"


def test_the_documented_img2img_example_is_sent_as_written(fake_sinkin):
    run(Img2Img, image=torch.rand((1, 8, 8, 3)), model_id="4zdwGOB", seed=9, **examples.ORC)
    form = fake_sinkin.forms()[0]
    assert {name: form[name] for name in examples.ORC} == {
        "prompt": "an angry orc looking at camera smiling", "num_images": "1", "scale": "7", "steps": "30",
        "width": "512", "height": "768"}


def test_img2img_sends_each_image_of_a_batch_as_its_own_request(fake_sinkin):
    images, info = run(Img2Img, image=torch.rand((2, 8, 8, 3)), prompt="a cat", seed=3, num_images=2)
    assert len(fake_sinkin.forms()) == 2 and images.shape[0] == 4
    info = json.loads(info)
    assert info["credit_cost"] == 2.0 and sorted(info["inf_id"]) == ["inf0001", "inf0002"]


def test_a_random_seed_is_drawn_sent_and_reported(fake_sinkin):
    _, info = run(Txt2Img, prompt="a cat", seed=-1)
    sent = int(fake_sinkin.forms()[0]["seed"])
    assert 0 <= sent <= surface.SEED_MAX_32_BIT and json.loads(info)["seed"] == sent
    assert math.isnan(Txt2Img.IS_CHANGED(seed=-1)) and Txt2Img.IS_CHANGED(seed=5) == ""


def test_more_urls_than_images_asked_for_are_not_fetched(fake_sinkin):
    fake_sinkin.script.append(_answer_with(fake_sinkin, [f"{fake_sinkin.url}/images/{i}_8x8.png" for i in range(10)]))
    images, _ = run(Txt2Img, prompt="a cat", seed=1, num_images=1)
    assert images.shape[0] == 1
    assert len([r for r in fake_sinkin.requests if r.method == "GET"]) == 1


# ---------------------------------------------------------------- failures

def test_error_code_1_with_http_200_is_a_clear_error_with_sinkins_message(fake_sinkin):
    fake_sinkin.script.append(failure("Not enough credits. Please top up."))
    with pytest.raises(ProviderError, match=r'SinkIn: refused the request: "Not enough credits. Please top up."'):
        run(Txt2Img, prompt="a cat", seed=1)
    assert len(fake_sinkin.requests) == 1  # a refusal is not retried


def test_a_wrong_key_is_reported_and_an_unknown_model_too(fake_sinkin, monkeypatch):
    monkeypatch.setenv("SINKIN_API_KEY", "not-the-right-token")
    with pytest.raises(ProviderError, match="Invalid access token"):
        run(Txt2Img, prompt="a cat", seed=1)
    monkeypatch.setenv("SINKIN_API_KEY", KEY)
    with pytest.raises(ProviderError, match="Model zzzz9 not found"):
        run(Txt2Img, model_id="zzzz9", prompt="a cat", seed=1)


def test_without_a_key_the_error_says_how_to_set_one_and_nothing_is_sent(fake_sinkin, monkeypatch):
    monkeypatch.delenv("SINKIN_API_KEY")
    with pytest.raises(MissingKeyError, match="SINKIN_API_KEY"):
        run(Txt2Img, prompt="a cat", seed=1)
    assert fake_sinkin.requests == []


def test_the_key_can_come_from_the_users_key_file(fake_sinkin, monkeypatch):
    monkeypatch.delenv("SINKIN_API_KEY")
    credentials.store_key(SINKIN, KEY)
    run(Txt2Img, prompt="a cat", seed=1)
    assert fake_sinkin.forms()[0]["access_token"] == KEY


def test_transient_http_errors_are_retried_then_succeed(fake_sinkin):
    fake_sinkin.script += [Answer(503, b"busy"), Answer(429, b"slow down", {"retry-after": "0"})]
    images, _ = run(Txt2Img, prompt="a cat", seed=1)
    assert images.shape[0] == 1 and len(fake_sinkin.forms()) == 3


def test_permanent_http_errors_fail_at_once_and_repeated_5xx_give_up(fake_sinkin):
    fake_sinkin.script.append(json_answer(401, {"error_code": 1, "message": "bad token"}))
    with pytest.raises(ProviderError, match=r"did not accept the API key \(401\).*bad token.*SINKIN_API_KEY"):
        run(Txt2Img, prompt="a cat", seed=1)
    assert len(fake_sinkin.requests) == 1
    fake_sinkin.script.append(Answer(500, b"oops"))
    with pytest.raises(ProviderError, match=r"\(500\)\..*SinkIn may have made the image and charged for it"):
        run(Txt2Img, prompt="a cat", seed=1)
    assert len(fake_sinkin.requests) == 2  # a 500 may come after the work: not sent again
    fake_sinkin.script += [Answer(503, b"busy")] * 3
    with pytest.raises(ProviderError, match=r"\(503, after 3 tries\)"):
        run(Txt2Img, prompt="a cat", seed=1)
    assert len(fake_sinkin.requests) == 5


@pytest.mark.parametrize("fault", LOST_ANSWERS)
def test_an_inference_processed_then_lost_is_billed_once(fake_sinkin, monkeypatch, fault):
    fake_sinkin.lose_answers.append(fault)
    with pytest.raises(ProviderError, match="SinkIn may have made the image and charged for it"):
        run(Txt2Img, prompt="a cat", seed=1, policies=fast(Txt2Img, limits=Limits(read_timeout=0.5)))
    assert fake_sinkin.inferences == 1 and len(fake_sinkin.forms()) == 1


def test_a_refused_image_of_a_batch_withdraws_the_rest(fake_sinkin):
    fake_sinkin.script += [failure("Model not found")] + [Answer(503, b"busy", delay=0.5)] * 3
    with pytest.raises(ProviderError, match="Model not found"):
        run(Img2Img, image=torch.rand((4, 8, 8, 3)), prompt="a cat", seed=1)
    time.sleep(1.5)  # longer than the slow answers and a backoff: a retry would have come by now
    assert 1 <= len(fake_sinkin.forms()) <= 4  # at most one per image (some may never have left), no retry


def test_a_redirect_elsewhere_does_not_carry_the_access_token_there(fake_sinkin):
    with Loopback(lambda request: json_answer(200, {"error_code": 0})) as elsewhere:
        fake_sinkin.script.append(Answer(307, b"", {"location": f"{elsewhere.url}/api/inference"}))
        with pytest.raises(ProviderError, match="redirected the request to another host"):
            run(Txt2Img, prompt="a cat", seed=1)
        assert elsewhere.requests == [] and len(fake_sinkin.requests) == 1


def test_result_downloads_are_retried_since_they_cost_nothing(fake_sinkin):
    fake_sinkin.lose_answers += ["", "drop", "502"]  # the inference answers; two downloads fail
    images, _ = run(Txt2Img, prompt="a cat", seed=1)
    assert images.shape[0] == 1 and fake_sinkin.inferences == 1
    assert len([r for r in fake_sinkin.requests if r.path.startswith("/images/")]) == 3


@pytest.mark.parametrize(("answer", "problem"), [
    (Answer(200, b"<html>maintenance</html>", {"content-type": "text/html"}), "not JSON"),
    (json_answer(200, [1, 2]), "not an object"),
    (json_answer(200, {"error_code": 0, "credit_cost": 1}), "without a list of image URLs"),
    (json_answer(200, {"error_code": 0, "images": [42]}), "without a list of image URLs"),
    (json_answer(200, {"error_code": 2}), 'refused the request: "no reason given"'),
])
def test_malformed_answers_become_clear_errors(fake_sinkin, answer, problem):
    fake_sinkin.script.append(answer)
    with pytest.raises(ProviderError, match=problem):
        run(Txt2Img, prompt="a cat", seed=1)


def _interrupt_after(seconds: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), runtime.request_interrupt(True)))
    thread.start()
    return thread


@pytest.mark.parametrize("where", ["inference", "download"])
def test_an_interrupt_returns_within_a_second(fake_sinkin, where):
    if where == "inference":
        fake_sinkin.script.append(Answer(200, b"{}", {"content-type": "application/json"}, delay=5))
    else:
        fake_sinkin.image_delay = 5
    thread = _interrupt_after(0.3)
    started = time.monotonic()
    with pytest.raises(runtime.Interrupted):
        run(Txt2Img, prompt="a cat", seed=1)
    assert time.monotonic() - started < 0.3 + 1.0
    thread.join()


# ---------------------------------------------------------------- downloads

def test_downloads_run_concurrently(fake_sinkin):
    fake_sinkin.image_delay = 0.5
    started = time.monotonic()
    images, _ = run(Txt2Img, prompt="a cat", seed=1, num_images=4)
    assert images.shape[0] == 4
    assert time.monotonic() - started < 1.5  # one after another would take 2 s


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/a.png", "file:///etc/passwd", "http:///nohost.png", "gopher://127.0.0.1/x",
    "http://10.0.0.1/a.png", "http://169.254.169.254/latest/meta-data/", "http://192.168.1.7/a.png",
    "http://127.0.0.1:9/a.png", "http://[::1]/a.png", "http://localhost/a.png", "https://images.sinkin.invalid/a.png",
])
def test_unsafe_result_urls_are_refused_when_the_api_is_public(url):
    with pytest.raises(addresses.RefusedURL):
        addresses.result_target(url, "https://93.184.215.14")


def test_public_result_urls_pass_the_check():
    target = addresses.result_target("https://93.184.215.14/result.png", "https://93.184.215.14")
    assert target == addresses.Target("93.184.215.14", "93.184.215.14", "93.184.215.14")


@pytest.mark.parametrize(("base", "private"), [
    ("http://127.0.0.1:8000", True), ("http://localhost:1", True), ("http://10.1.2.3", True),
    ("http://192.168.0.5:8080/", True), ("https://93.184.215.14", False), ("https://sinkin.invalid", False),
])
def test_private_results_are_allowed_only_when_the_api_base_is_private(base, private):
    assert bool(addresses.private_allowed(base)) is private


def test_a_hostile_answer_cannot_aim_the_server_at_the_local_network(fake_sinkin, monkeypatch):
    monkeypatch.setattr(addresses, "private_allowed", lambda base: frozenset())  # as with the public API
    with pytest.raises(ProviderError, match="private, loopback or unresolvable"):
        run(Txt2Img, prompt="a cat", seed=1)
    assert [r.method for r in fake_sinkin.requests] == ["POST"]  # the URL on 127.0.0.1 was never fetched


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.png", "file:///etc/hostname"])
def test_non_http_result_urls_are_refused_even_on_a_private_api(fake_sinkin, url):
    fake_sinkin.script.append(_answer_with(fake_sinkin, [url]))
    with pytest.raises(ProviderError, match="not http"):
        run(Txt2Img, prompt="a cat", seed=1)


def test_redirects_are_followed_a_few_times_and_each_hop_is_checked(fake_sinkin):
    image = f"{fake_sinkin.url}/images/5_8x8.png"
    fake_sinkin.script += [_answer_with(fake_sinkin, [f"{fake_sinkin.url}/r1"]), Answer(302, b"", {"location": "/r2"}),
                    Answer(302, b"", {"location": image})]
    images, _ = run(Txt2Img, prompt="a cat", seed=1)
    assert tuple(images.shape) == (1, 8, 8, 3)
    fake_sinkin.script += [_answer_with(fake_sinkin, [f"{fake_sinkin.url}/r1"]), Answer(302, b"", {"location": "file:///etc/passwd"})]
    with pytest.raises(ProviderError, match="not http"):
        run(Txt2Img, prompt="a cat", seed=2)  # seed 1 is in the result cache now
    fake_sinkin.script += [_answer_with(fake_sinkin, [f"{fake_sinkin.url}/r"])] + [Answer(302, b"", {"location": "/r"})] * 4
    with pytest.raises(ProviderError, match="redirected more than 3 times"):
        run(Txt2Img, prompt="a cat", seed=2)


def test_oversize_non_image_and_unreadable_bodies_are_refused(fake_sinkin, monkeypatch):
    assert Txt2Img.POLICIES.downloads.max_bytes <= 32 * 1024 * 1024
    small = fast(Txt2Img, downloads=Limits(max_bytes=1000))
    url = f"{fake_sinkin.url}/big.png"
    fake_sinkin.script += [_answer_with(fake_sinkin, [url]), Answer(200, b"\0" * 5000, {"content-type": "image/png"})]
    with pytest.raises(ProviderError, match="larger than the 1000 bytes limit"):
        run(Txt2Img, prompt="a cat", seed=1, policies=small)
    fake_sinkin.script += [_answer_with(fake_sinkin, [url]), Answer(200, b"<html>hi</html>", {"content-type": "text/html"})]
    with pytest.raises(ProviderError, match=r"did not hold an image \(text/html"):
        run(Txt2Img, prompt="a cat", seed=1, policies=small)
    fake_sinkin.script += [_answer_with(fake_sinkin, [url]), Answer(200, b"not a png", {"content-type": "image/png"})]
    with pytest.raises(ProviderError, match="a result image could not be read: not a readable image"):
        run(Txt2Img, prompt="a cat", seed=1, policies=small)


def test_results_over_the_pixel_limit_are_refused(fake_sinkin, monkeypatch):
    with pytest.raises(ProviderError, match="over the limit of 1,024 pixels"):
        run(Txt2Img, prompt="a cat", seed=1, width=128, height=128, policies=fast(Txt2Img, max_result_pixels=32 * 32))


def test_a_download_that_stalls_times_out(fake_sinkin, monkeypatch):
    fake_sinkin.image_delay = 1.0
    with pytest.raises(ProviderError, match="no answer in time .*after 3 tries"):
        run(Txt2Img, prompt="a cat", seed=1, policies=fast(Txt2Img, downloads=Limits(read_timeout=0.2)))


# ---------------------------------------------------------------- the token stays secret

CANARY = "CANARY-sinkin-token-5b1f0c9e"


def test_the_token_never_shows_in_outputs_info_logs_or_errors(fake_sinkin, monkeypatch, pack_log):
    monkeypatch.setenv("SINKIN_API_KEY", CANARY)
    fake_sinkin.key = CANARY
    seen: list[str] = []
    echo = {"error_code": 0, "images": [f"{fake_sinkin.url}/images/1_8x8.png"], "credit_cost": 0.5, "inf_id": CANARY}
    fake_sinkin.script.append(json_answer(200, echo))
    images, info = run(Txt2Img, prompt=f"a cat {CANARY[:6]}", seed=1)
    seen.append(info)
    for answer in (failure(f"bad token {CANARY}"), Answer(400, f"token {CANARY} rejected".encode()),
                   json_answer(500, {"message": CANARY})):
        fake_sinkin.script += [answer] * 3
        with pytest.raises(ProviderError) as caught:
            run(Txt2Img, prompt="a cat", seed=1)
        seen.append(str(caught.value))
    fake_sinkin.script.clear()
    seen += [json.dumps(Txt2Img.INPUT_TYPES()), json.dumps(defaults(Img2Img)), pack_log.text]
    seen += [r.getMessage() for r in pack_log.records]
    assert all(CANARY not in text for text in seen)
    assert "***" in seen[0] and any("***" in text for text in seen[1:4])
    assert fake_sinkin.forms()[0]["access_token"] == CANARY  # it did go where it belongs


def test_a_lone_surrogate_in_a_prompt_is_refused_before_any_request(fake_sinkin):
    with pytest.raises(ValueError, match="lone surrogate"):
        asyncio.run(make(Txt2Img).generate(unique_id="1", **{**defaults(Txt2Img), "prompt": "a \ud800 cat"}))
    assert fake_sinkin.requests == []
