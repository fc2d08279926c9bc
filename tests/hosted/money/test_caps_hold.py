"""Caps that hold when requests run together, lose their answer, go unmeasured, run in two
processes, or meet a damaged ledger or a jumping clock. Each counts what reached the fake."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta

import pytest
import torch
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.loopback import json_answer, lost
from support.nodecalls import defaults, run

from sdbridge.nodes import errors, runtime
from sdbridge.nodes.hosted.money import caps, ledger, prices
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.hosted.store import receipts, result_cache

TXT2IMG = sinkin_nodes.SDBridgeSinkInTxt2Img
SINKIN_RUN = {"model_id": "yBG2r9O", "prompt": "a cat", "num_images": 4, "seed": 5}  # 2 credits on the fake


@pytest.fixture(autouse=True)
def _no_result_cache(monkeypatch):
    monkeypatch.setenv(result_cache.SWITCH_ENV, "off")


def _prompt_of(count: int, values: dict) -> dict:
    return {str(i + 1): {"class_type": "SDBridgeSinkInTxt2Img", "inputs": {**values, "seed": i}} for i in range(count)}


async def _together(cls, prompt: dict) -> list:
    """Every node of `prompt` at once, as ComfyUI runs async nodes (one gather of their calls)."""
    calls = [cls().generate(unique_id=node_id, sdbridge_prompt=prompt, **{**defaults(cls), **node["inputs"]})
             for node_id, node in prompt.items()]
    return await asyncio.gather(*calls, return_exceptions=True)


# ---------------------------------------------------------------- #17.1 unknown costs sent together

def test_six_nodes_of_unknown_cost_sent_at_once_keep_the_run_cap(fake_sinkin, monkeypatch):
    fake_sinkin.image_delay = 0.3  # each request is still under way when the others start
    monkeypatch.setenv(caps.RUN_CAP, "3")
    prompt = _prompt_of(6, SINKIN_RUN)
    assert prices.estimate(TXT2IMG.plan({**defaults(TXT2IMG), **SINKIN_RUN}, images=False).cost).credits is None
    outcomes = asyncio.run(_together(TXT2IMG, prompt))
    refused = [o for o in outcomes if isinstance(o, errors.BudgetExceeded)]
    # The first (unknown) goes alone; its measured 2 credits price the others: 2 + 2 > 3.
    assert len(fake_sinkin.forms()) == 1 and len(refused) == 5
    assert all("would pass the cap of 3 per run" in str(r) for r in refused)
    assert ledger.spent_on("sinkin") == 2.0


def test_unknown_costs_without_a_cap_are_not_held_back(fake_sinkin):
    fake_sinkin.image_delay = 1.0
    started = time.monotonic()
    outcomes = asyncio.run(_together(TXT2IMG, _prompt_of(3, SINKIN_RUN)))
    assert not any(isinstance(o, BaseException) for o in outcomes)
    assert len(fake_sinkin.forms()) == 3 and time.monotonic() - started < 2.7  # together: in turn takes 3 s


# ---------------------------------------------------------------- #17.2 spend the caps never saw

def test_a_request_whose_answer_was_lost_counts_its_estimate(fake_sinkin):
    run(TXT2IMG, "1", **SINKIN_RUN)                                       # measured: 2 credits
    fake_sinkin.script.append(lost(json_answer(200, {}), "drop"))
    with pytest.raises(errors.MaybeCharged):
        run(TXT2IMG, "1", **{**SINKIN_RUN, "seed": 6})
    assert len(fake_sinkin.forms()) == 2
    assert ledger.spent_on("sinkin") == 4.0                               # it may have cost 2: counted


def test_a_run_cancelled_after_its_request_left_counts_its_estimate(fake_segmind_v2):
    """Cancel pressed while Segmind works on a submitted job: the job may still be finished and
    billed, so its estimate counts toward the caps (and its receipt says so)."""
    sdxl = segmind_nodes.SDBridgeSegmindSDXL
    values = {"prompt": "a cat", "seed": 3}
    estimate = prices.estimate(sdxl.plan({**defaults(sdxl), **values}, images=False).cost).credits
    assert estimate  # SDXL has a published price
    fake_segmind_v2.processing_polls = 10_000
    threading.Timer(0.3, runtime.request_interrupt).start()
    with pytest.raises(runtime.Interrupted):
        run(sdxl, "1", **values)
    runtime.request_interrupt(False)
    fake_segmind_v2.processing_polls = 0
    assert len(fake_segmind_v2.submits()) == 1
    assert ledger.spent_on("segmind") == estimate
    last = receipts.read(limit=1)[0]
    assert last["status"] == "cancelled" and last["credits"] == estimate and last["basis"] == "estimated"


def test_a_job_whose_status_cannot_be_read_counts_its_estimate_and_resumes(fake_segmind_v2):
    """Accepted, then every status answer lost: the job may still be made and billed, so it is a
    MaybeCharged that counts its estimate; the next run asks for the same job, never a new one."""
    sdxl = segmind_nodes.SDBridgeSegmindSDXL
    estimate = prices.estimate(sdxl.plan({**defaults(sdxl), "prompt": "a cat", "seed": 4}, images=False).cost).credits
    fake_segmind_v2.lose_answers += ["", "drop", "drop", "drop"]  # submit fine; three status asks lost
    with pytest.raises(errors.MaybeCharged, match="was accepted and may still finish and be charged") as caught:
        run(sdxl, "1", prompt="a cat", seed=4)
    assert caught.value.request_id == "req-1" and caught.value.stage == "status"
    assert len(fake_segmind_v2.submits()) == 1 and ledger.spent_on("segmind") == estimate
    images, _ = run(sdxl, "1", prompt="a cat", seed=4)  # the journal: the same job
    assert images.shape[0] == 1 and len(fake_segmind_v2.submits()) == 1


def test_a_run_cancelled_before_its_request_left_counts_nothing(fake_segmind_v2):
    runtime.request_interrupt()  # pressed before the node starts: nothing is sent
    with pytest.raises(runtime.Interrupted):
        run(segmind_nodes.SDBridgeSegmindSDXL, "1", prompt="a cat", seed=3)
    runtime.request_interrupt(False)
    assert fake_segmind_v2.requests == [] and ledger.spent_on("segmind") == 0


def test_a_lost_answer_of_unknown_cost_counts_a_cautious_figure(fake_sinkin):
    fake_sinkin.script.append(lost(json_answer(200, {}), "drop"))
    with pytest.raises(errors.MaybeCharged):
        run(TXT2IMG, "1", **SINKIN_RUN)
    shape = TXT2IMG.plan({**defaults(TXT2IMG), **SINKIN_RUN}, images=False).cost
    assert ledger.spent_on("sinkin") == prices.counted(shape).credits > 0


def test_an_unmeasured_batch_is_counted(fake_segmind, monkeypatch):
    monkeypatch.setenv(caps.DAY_CAP, "1")
    batch = torch.rand(10, 64, 64, 3)
    # No balance seen before it: the batch's cost cannot be told; it counts a cautious figure.
    _, info = run(segmind_nodes.SDBridgeSegmindSD15Img2Img, "2", image=batch, prompt="a lake", seed=4)
    info = json.loads(info)
    assert fake_segmind.generated == 10 and info["credits_basis"] == "unknown"
    assert ledger.spent_on("segmind") == info["credits_counted"] > 0


def test_a_batch_sent_at_once_is_measured_as_a_whole(fake_segmind, monkeypatch):
    run(segmind_nodes.SDBridgeSegmindRealisticVision, "1", prompt="a lake", seed=1)   # the balance: 99
    _, info = run(segmind_nodes.SDBridgeSegmindSD15Img2Img, "2", image=torch.rand(10, 64, 64, 3), prompt="a", seed=4)
    info = json.loads(info)
    assert fake_segmind.credits == 89
    assert info["credits_spent"] == 10 and info["credits_basis"] == "measured"
    monkeypatch.setenv(caps.DAY_CAP, "1")
    with pytest.raises(errors.BudgetExceeded, match="were spent today on Segmind"):
        run(segmind_nodes.SDBridgeSegmindSD15Img2Img, "2", image=torch.rand(1, 64, 64, 3), prompt="b", seed=5)
    assert fake_segmind.generated == 11  # the day cap saw the batch: nothing more was sent


# ---------------------------------------------------------------- #17.5 the balance on the submit answer

def test_segmind_v2_costs_are_measured_when_only_the_submit_answer_tells_the_balance(fake_segmind_v2):
    fake_segmind_v2.balance_on = {"submit"}
    values = {"prompt": "a lake", "seed": 3, "samples": 2}
    _, first = run(segmind_nodes.SDBridgeSegmindRealisticVision, "1", **values)
    _, info = run(segmind_nodes.SDBridgeSegmindRealisticVision, "1", **{**values, "seed": 4})
    first, info = json.loads(first), json.loads(info)
    assert info["credits_spent"] == 2 and info["credits_basis"] == "measured"
    # The first run had no earlier balance to tell its cost: it counted a cautious figure.
    assert first["credits_basis"] == "unknown" and first["credits_counted"] > 0
    assert ledger.spent_on("segmind") == pytest.approx(2 + first["credits_counted"])


# ---------------------------------------------------------------- #17.3 two processes, one user folder

TWO_PROCESS_SCRIPT = """
import asyncio, importlib.util, json, sys, time
from pathlib import Path
root, go, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
spec = importlib.util.spec_from_file_location("sdbridge", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules["sdbridge"] = pack; spec.loader.exec_module(pack)
sys.path.insert(0, root + "/tests")
from support.nodecalls import defaults
node = pack.NODE_CLASS_MAPPINGS["SDBridgeSinkInTxt2Img"]
values = json.loads(sys.argv[4])
prompt = {"1": {"class_type": "SDBridgeSinkInTxt2Img", "inputs": values}}
ready.touch()
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
try:
    asyncio.run(node().generate(unique_id="1", sdbridge_prompt=prompt, **{**defaults(node), **values}))
    print("sent")
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_two_processes_share_the_day_cap(fake_sinkin, monkeypatch, tmp_path):
    run(TXT2IMG, "1", **SINKIN_RUN)                                       # measured: 2 credits
    path = ledger.ledger_file()
    data = json.loads(path.read_text())
    data["days"] = {}                                                     # a new day: nothing spent yet
    path.write_text(json.dumps(data))
    fake_sinkin.forms().clear()
    sent_before = len(fake_sinkin.forms())
    fake_sinkin.image_delay = 1.5                                         # both are under way at once
    monkeypatch.setenv(caps.DAY_CAP, "3")
    go = tmp_path / "go"
    children = []
    for i in range(2):
        ready = tmp_path / f"ready{i}"
        values = json.dumps({**SINKIN_RUN, "seed": 10 + i})
        children.append((ready, subprocess.Popen(
            [sys.executable, "-c", TWO_PROCESS_SCRIPT, str(ROOT), str(go), str(ready), values],
            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    said = []
    for _, child in children:
        out, err = child.communicate(timeout=120)
        said.append(out.strip().splitlines()[-1] if out.strip() else err[-2000:])
    assert len(fake_sinkin.forms()) - sent_before == 1, said              # one 2-credit run; 2 + 2 > 3
    assert sorted(s.split(" ")[0] for s in said) == ["BudgetExceeded", "sent"], said
    assert ledger.spent_on("sinkin") == 2.0 and ledger.held_today() == {}


# ---------------------------------------------------------------- #17.4 damaged ledger, clock jumps

@pytest.mark.parametrize("damage", [
    '{"kinds": {}, "days": {"' + date.today().isoformat() + '": {"sinkin": 2',          # cut short
    '{"kinds": {}, "days": {"' + date.today().isoformat() + '": [1, 2]}}',              # today a list
    '{"kinds": {}, "days": {"' + date.today().isoformat() + '": {"sinkin": NaN}}}',     # NaN
])
def test_a_damaged_ledger_is_kept_aside_logged_once_and_stops_while_a_day_cap_is_set(
        damage, fake_sinkin, monkeypatch, pack_log):
    path = ledger.ledger_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(damage)
    monkeypatch.setenv(caps.DAY_CAP, "100")
    for seed in (1, 2):
        with pytest.raises(errors.BudgetExceeded, match="spending ledger was damaged today") as refused:
            run(TXT2IMG, "1", sdbridge_prompt=_prompt_of(1, SINKIN_RUN), **{**SINKIN_RUN, "seed": seed})
    assert fake_sinkin.forms() == []
    kept = [p for p in path.parent.iterdir() if p.name.startswith("spending.json.damaged-")]
    assert len(kept) == 1 and kept[0].read_text() == damage              # renamed, never deleted
    assert kept[0].name in str(refused.value)
    assert len([r for r in pack_log.records if "was damaged" in r.getMessage()]) == 1
    monkeypatch.delenv(caps.DAY_CAP)                                      # the user looked: no day cap
    run(TXT2IMG, "1", **SINKIN_RUN)
    assert len(fake_sinkin.forms()) == 1 and ledger.spent_on("sinkin") == 2.0   # records work again


def test_pruning_keeps_todays_record_when_the_clock_jumps_ahead_and_back(monkeypatch):
    real_today = date.today()
    ledger.record("sinkin", 1.5)
    ledger.flush()

    class Jumped(date):
        @classmethod
        def today(cls):
            return real_today + timedelta(days=100)

    monkeypatch.setattr(ledger, "date", Jumped)
    ledger.record("sinkin", 0.5)                                          # written 100 days "later"
    ledger.flush()
    monkeypatch.setattr(ledger, "date", date)                             # and the clock comes back
    assert ledger.spent_on("sinkin") == 1.5
    days = json.loads(ledger.ledger_file().read_text())["days"]
    assert set(days) == {real_today.isoformat(), (real_today + timedelta(days=100)).isoformat()}


def test_pruning_keeps_the_most_recent_days():
    path = ledger.ledger_file()
    start = date(2020, 1, 1)
    days = {(start + timedelta(days=i)).isoformat(): {"sinkin": 1.0} for i in range(ledger.KEEP_DAYS + 10)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kinds": {}, "days": days}))
    ledger.record("sinkin", 1.0)
    ledger.flush()
    kept = sorted(json.loads(path.read_text())["days"])
    assert len(kept) == ledger.KEEP_DAYS and kept[-1] == date.today().isoformat()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["kinds", "days", "holds", "damaged", date.today().isoformat(), "sinkin"]),
                        inner, max_size=4), max_leaves=12))
def test_any_ledger_file_is_read_or_kept_aside_never_a_crash(content):
    path = ledger.ledger_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    today = ledger.counted_today()
    assert all(isinstance(v, float) and v >= 0 for v in today.values())
    ledger.record("sinkin", 1.0)
    ledger.flush()
    assert ledger.spent_on("sinkin") >= 1.0  # records work after any file


def test_the_receipts_panel_reads_spend_and_caps_per_provider(monkeypatch):
    ledger.record("segmind", 0.25)
    ledger.record("sinkin", 2.0)
    monkeypatch.setenv(caps.DAY_CAP, "5")
    assert ledger.spent_today() == {"segmind": 0.25, "sinkin": 2.0}
    assert caps.per_provider()["segmind"] == {"unit": "credits (US$)", "per_run": None, "per_day": 5.0}
    assert caps.per_provider()["sinkin"]["unit"] == "credits"
