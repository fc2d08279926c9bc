"""Estimates, measured spend and the spending caps, against the loopback fakes (Segmind bills one
credit per sample and sends x-remaining-credits; SinkIn answers credit_cost 0.5 per image)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.nodecalls import run
from support.serving import call, serve

from sdbridge.nodes import errors, pack_settings
from sdbridge.nodes.hosted.money import budget, caps, ledger, prices
from sdbridge.nodes.hosted.node import hosted_classes
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.hosted.store import result_cache

API_WORKFLOWS = sorted((ROOT / "example_workflows" / "api").glob("*.json"))
HOSTED = hosted_classes()


@pytest.fixture(autouse=True)
def _no_result_cache(monkeypatch):
    """These tests repeat requests to see what each costs: the result cache would answer the
    repeats (test_result_cache.py prices and caps a cached run)."""
    monkeypatch.setenv(result_cache.SWITCH_ENV, "off")


def hosted_workflows() -> list:
    found = []
    for path in API_WORKFLOWS:
        prompt = json.loads(path.read_text())
        if any(node["class_type"] in HOSTED for node in prompt.values()):
            found.append(pytest.param(prompt, id=path.stem))
    return found


def estimate_over_http(prompt: dict) -> tuple[int, dict]:
    async def script(session, base):
        status, text = await call(session, "POST", f"{base}/sdbridge/estimate", json={"prompt": prompt})
        return status, json.loads(text)

    return serve(script)


def run_hosted_nodes(prompt: dict) -> dict[str, dict]:
    """Run each hosted node of an API prompt as ComfyUI would (one run: the same prompt object),
    with a small picture for every image input. Returns each node's info."""
    infos = {}
    for node_id, node in prompt.items():
        cls = HOSTED.get(node["class_type"])
        if cls is None:
            continue
        values = {name: value for name, value in node["inputs"].items() if not isinstance(value, list)}
        for param in cls.PARAMS:
            if param.kind == "IMAGE" and not param.optional:
                values[param.name] = torch.full((1, 64, 64, 3), 0.5)
        _, info = run(cls, node_id, sdbridge_prompt=prompt, **values)
        infos[node_id] = json.loads(info)
    return infos


def published(prompt: dict, node_id: str) -> bool:
    cls = HOSTED[prompt[node_id]["class_type"]]
    variant = "refiner" if prompt[node_id]["inputs"].get("refiner") else ""
    return (cls.PROVIDER.id, getattr(getattr(cls, "ENDPOINT", None), "slug", ""), variant) in prices.PUBLISHED


# ---------------------------------------------------------------- the estimate route

@pytest.mark.parametrize("prompt", hosted_workflows())
def test_every_shipped_workflow_is_priced_from_tables_then_from_what_runs_cost(prompt, fake_segmind_v2,
                                                                               fake_sinkin):
    status, before = estimate_over_http(prompt)
    assert status == 200
    hosted_ids = [i for i, node in prompt.items() if node["class_type"] in HOSTED]
    assert sorted(before["nodes"]) == sorted(hosted_ids)  # local and core nodes are not priced
    for node_id in hosted_ids:
        entry = before["nodes"][node_id]
        if published(prompt, node_id):
            assert entry["credits"] > 0 and entry["basis"].startswith("published price")
        else:
            assert entry["credits"] is None and entry["basis"].startswith("unknown")
            assert node_id in before["unknown"]

    for _ in range(2):  # Segmind's first answer only tells the balance; the second tells a cost
        infos = run_hosted_nodes(prompt)
    status, after = estimate_over_http(prompt)
    assert status == 200 and after["unknown"] == []
    expected_total = 0.0
    for node_id in hosted_ids:
        inputs = prompt[node_id]["inputs"]
        entry, info = after["nodes"][node_id], infos[node_id]
        assert entry["basis"].startswith("measured"), entry
        if entry["provider"] == "segmind":
            assert entry["credits"] == inputs["samples"]        # the fake bills one credit per sample
        else:
            assert entry["credits"] == 0.5 * inputs["num_images"]
        assert info["credits_spent"] == entry["credits"] and info["credits_basis"] == "measured"
        expected_total += entry["credits"]
    assert after["total"] == pytest.approx(expected_total)


def test_bypassed_and_muted_nodes_cost_nothing():
    prompt = json.loads((ROOT / "example_workflows/api/segmind_sdxl_panda.json").read_text())
    node_id = next(i for i, node in prompt.items() if node["class_type"] in HOSTED)
    for mode, word in ((4, "bypassed"), (2, "muted")):
        status, answer = estimate_over_http({node_id: {**prompt[node_id], "mode": mode}})
        assert status == 200
        assert answer["nodes"][node_id] == {"provider": "segmind", "credits": 0.0, "basis": f"{word}: does not run"}
        assert answer["total"] == 0.0 and answer["unknown"] == []


def test_an_estimate_scales_with_samples_size_steps_and_lcm(fake_sinkin):
    base = {"model_id": "yBG2r9O", "prompt": "a cat", "num_images": 2, "width": 512, "height": 512, "steps": 30,
            "seed": 5}
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", **base)   # measured: 1.0 credit for 2 images
    def priced(**changes):
        values = {**_defaults(sinkin_nodes.SDBridgeSinkInTxt2Img), **base, **changes}
        return prices.estimate(sinkin_nodes.SDBridgeSinkInTxt2Img.plan(values, images=False).cost)

    same = priced()
    assert same.credits == 1.0 and same.basis.startswith("measured")
    assert priced(num_images=4).credits == 2.0
    assert priced(width=256).credits == 0.5
    assert priced(steps=15).credits == 0.5
    assert priced(lcm=True).credits == 0.5
    assert priced(num_images=4).basis.startswith("scaled from your measured run (2 images")
    other_model = priced(model_id="r2La2w2")
    assert other_model.credits is None and other_model.basis.startswith("unknown")


def test_inputs_from_other_nodes_and_bad_values_give_unknown_not_a_guess():
    sdxl = {"class_type": "SDBridgeSegmindSDXL", "inputs": {"prompt": "x", "samples": ["9", 0]}}
    bad = {"class_type": "SDBridgeSegmindSDXL", "inputs": {"prompt": "x", "samples": 99}}
    seed_linked = {"class_type": "SDBridgeSegmindSDXL", "inputs": {"prompt": "x", "seed": ["9", 0]}}
    status, answer = estimate_over_http({"1": sdxl, "2": bad, "3": seed_linked, "4": {"class_type": "SaveImage"}})
    assert status == 200
    assert answer["nodes"]["1"]["credits"] is None and "samples comes from another node" in answer["nodes"]["1"]["basis"]
    assert answer["nodes"]["2"]["credits"] is None and "99 is out of range" in answer["nodes"]["2"]["basis"]
    assert answer["nodes"]["3"]["credits"] > 0  # the seed does not change the price
    assert answer["unknown"] == ["1", "2"] and answer["total"] == answer["nodes"]["3"]["credits"]
    assert "4" not in answer["nodes"]


@pytest.mark.parametrize("body, content_type, status", [
    (b"{}", "application/json", 400),
    (b'{"prompt": []}', "application/json", 400),
    (b"not json", "application/json", 400),
    (b'{"prompt": {}}', "text/plain", 415),
    (b'{"prompt": "' + b"x" * (9 * 1024 * 1024) + b'"}', "application/json", 413),
])
def test_bad_estimate_requests_get_a_clear_answer(body, content_type, status):
    async def script(session, base):
        code, text = await call(session, "POST", f"{base}/sdbridge/estimate", data=body,
                                headers={"Content-Type": content_type})
        return code, json.loads(text)

    code, answer = serve(script)
    assert code == status and answer["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=4), st.one_of(
    st.none(), st.integers(), st.text(max_size=20),
    st.fixed_dictionaries({"class_type": st.sampled_from(sorted(HOSTED) + ["SaveImage", ""]),
                           "inputs": st.dictionaries(st.sampled_from(["prompt", "samples", "seed", "num_images",
                                                                      "parameters", "slug", "width", "lcm"]),
                                                     st.one_of(st.integers(-5, 10**20), st.text(max_size=30),
                                                               st.booleans(), st.none(), st.floats(),
                                                               st.just(["1", 0]))),
                           "mode": st.sampled_from([0, 2, 4, "x", [4], None])})), max_size=5))
def test_any_prompt_gets_an_estimate_never_a_server_error(prompt):
    answer = budget.estimate_prompt(prompt, HOSTED)
    assert set(answer) == {"total", "nodes", "unknown", "providers"}
    for entry in answer["nodes"].values():
        assert entry["credits"] is None or entry["credits"] >= 0
        assert entry["basis"]
    if len(answer["providers"]) > 1:
        assert answer["total"] is None  # two units are never added


# ---------------------------------------------------------------- measured spend

def test_segmind_tells_a_cost_only_from_one_answer_to_the_next_with_nothing_in_between():
    watch = ledger.BalanceWatch()
    watch.start()
    assert watch.finish("100") is None          # the first answer only tells the balance
    watch.start()
    assert watch.finish("98.5") == 1.5
    watch.start()
    watch.start()                               # two at once: neither drop can be told apart
    assert watch.finish("97") is None
    assert watch.finish("96") is None
    watch.start()
    assert watch.finish("95") == 1.0
    watch.start()
    assert watch.finish(None) is None           # a failed request may have cost something
    watch.start()
    assert watch.finish("94") is None
    watch.start()
    assert watch.finish("200") is None          # a top-up in between
    watch.start()
    assert watch.finish("not a number") is None


def test_segmind_img2img_batches_are_measured_as_a_whole(fake_segmind):
    values = {"prompt": "a lake", "seed": 3}
    run(segmind_nodes.SDBridgeSegmindRealVisXL, "1", **values)
    run(segmind_nodes.SDBridgeSegmindRealVisXL, "1", **values)
    assert prices.estimate(segmind_nodes.SDBridgeSegmindRealVisXL.plan(
        {**_defaults(segmind_nodes.SDBridgeSegmindRealVisXL), **values}, images=False).cost).credits == 1.0
    # Two images at once: the balance drops by 2, which the batch cost as a whole.
    _, info = run(segmind_nodes.SDBridgeSegmindSD15Img2Img, "2", image=torch.rand(2, 64, 64, 3), prompt="a lake", seed=4)
    info = json.loads(info)
    assert info["credits_basis"] == "measured" and info["credits_spent"] == 2


def test_what_a_run_spent_is_added_to_the_day():
    assert ledger.spent_today() == {}
    ledger.record("sinkin", 1.25)
    ledger.record("segmind", 0.5)
    ledger.record("segmind", float("nan"))   # never counted
    assert ledger.spent_today() == {"sinkin": 1.25, "segmind": 0.5}  # each in its own unit
    assert ledger.spent_on("sinkin") == 1.25
    assert ledger.spent_on("sinkin", "1999-01-01") == 0.0


# ---------------------------------------------------------------- caps

SINKIN_RUN = {"model_id": "yBG2r9O", "prompt": "a cat", "num_images": 4, "seed": 5}  # costs 2.0 on the fake


def _measure_sinkin(fake) -> None:
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", **SINKIN_RUN)
    fake.requests.clear()


def _prompt_of(*node_values: dict) -> dict:
    return {str(i + 1): {"class_type": "SDBridgeSinkInTxt2Img", "inputs": values}
            for i, values in enumerate(node_values)}


def test_a_prompt_estimated_above_the_run_cap_sends_nothing(fake_sinkin, monkeypatch):
    _measure_sinkin(fake_sinkin)
    monkeypatch.setenv(caps.RUN_CAP, "3")
    prompt = _prompt_of(SINKIN_RUN, {**SINKIN_RUN, "seed": 6})   # 2 + 2 = 4 > 3
    with pytest.raises(errors.BudgetExceeded) as refused:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=prompt, **SINKIN_RUN)
    assert fake_sinkin.requests == []
    message = str(refused.value)
    assert "estimated at 4 credits" in message and "cap of 3 per run" in message
    assert caps.RUN_CAP in message and "Settings > SD Bridge" in message and "Nothing was sent" in message


def test_the_daily_cap_counts_what_earlier_runs_spent(fake_sinkin, monkeypatch):
    _measure_sinkin(fake_sinkin)                      # 2.0 spent today
    monkeypatch.setenv(caps.DAY_CAP, "5")
    first = _prompt_of({**SINKIN_RUN, "seed": 6})
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=first, **{**SINKIN_RUN, "seed": 6})  # 4.0 today
    assert len(fake_sinkin.forms()) == 1
    second = _prompt_of({**SINKIN_RUN, "seed": 7})
    with pytest.raises(errors.BudgetExceeded) as refused:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=second, **{**SINKIN_RUN, "seed": 7})
    assert len(fake_sinkin.forms()) == 1              # the second run sent nothing
    assert "4 spent today" in str(refused.value) and "cap of 5 per day" in str(refused.value)


def test_nodes_with_no_estimate_run_only_while_the_spend_stays_under_the_cap(fake_sinkin, monkeypatch):
    monkeypatch.setenv(caps.RUN_CAP, "3")
    nodes = [{**SINKIN_RUN, "model_id": model} for model in ("yBG2r9O", "r2La2w2", "mGYMaD5")]  # none measured
    prompt = _prompt_of(*nodes)
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=prompt, **nodes[0])   # 2 spent, under 3
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, "2", sdbridge_prompt=prompt, **nodes[1])   # 4 spent: the cap is reached
    with pytest.raises(errors.BudgetExceeded) as refused:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, "3", sdbridge_prompt=prompt, **nodes[2])
    assert len(fake_sinkin.forms()) == 2
    assert "this run has spent 4 credits" in str(refused.value) and "cost unknown" in str(refused.value)


def test_a_known_cost_that_would_pass_the_cap_is_not_sent(fake_sinkin, monkeypatch):
    _measure_sinkin(fake_sinkin)
    monkeypatch.setenv(caps.RUN_CAP, "3")
    prompt = _prompt_of(SINKIN_RUN)
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=prompt, **SINKIN_RUN)   # 2 of 3
    other = {**SINKIN_RUN, "seed": 9}
    with pytest.raises(errors.BudgetExceeded):
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, "2", sdbridge_prompt=prompt, **other)   # 2 + 2 > 3
    assert len(fake_sinkin.forms()) == 1


def test_caps_come_from_settings_and_the_environment_wins(fake_sinkin, monkeypatch):
    _measure_sinkin(fake_sinkin)
    pack_settings.store(caps.RUN_CAP, "1")
    with pytest.raises(errors.BudgetExceeded, match="cap of 1 per run"):
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=_prompt_of(SINKIN_RUN), **SINKIN_RUN)
    monkeypatch.setenv(caps.RUN_CAP, "10")
    run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=_prompt_of(SINKIN_RUN), **SINKIN_RUN)
    assert len(fake_sinkin.forms()) == 1


def test_a_cap_that_is_not_a_number_stops_the_run_with_the_fix(fake_sinkin, monkeypatch):
    monkeypatch.setenv(caps.DAY_CAP, "five")
    with pytest.raises(errors.BudgetExceeded, match="is not a number of credits") as refused:
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=_prompt_of(SINKIN_RUN), **SINKIN_RUN)
    assert caps.DAY_CAP in str(refused.value)
    assert fake_sinkin.requests == []


def test_no_cap_set_is_todays_behaviour(fake_sinkin):
    for seed in range(3):
        run(sinkin_nodes.SDBridgeSinkInTxt2Img, "1", sdbridge_prompt=_prompt_of(SINKIN_RUN), **{**SINKIN_RUN, "seed": seed})
    assert len(fake_sinkin.forms()) == 3
    assert ledger.spent_on("sinkin") == 6.0


def _defaults(cls) -> dict:
    return {p.name: p.default for p in cls.PARAMS if p.kind != "IMAGE"}
