"""The manifest's hosted runs (#18 item 4): after a job's prompt ends, the runner asks the server's
/sdbridge/receipts (the fake ComfyUI serves the pack's own receipt records) and lists each hosted
node's provider, model, seed, request ids, status and cost, with a total per provider in its own
unit. A server without the route, a garbled answer or no answer leave the line as before with
"hosted": null and why: the job is neither failed nor queued again."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import load_runner  # noqa: F401  (first: runner/ as `runner`)
import pytest
from fakes.comfyui import FakeComfyUI
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import cli as submit
from runner import hosted, jobs
from runner.batch import Batch, Settings
from runner.manifest import Manifest
from runner.progress import Progress
from runner.server import Server

API = Path(__file__).resolve().parents[2] / "example_workflows" / "api"
WORKFLOW = "segmind_sdxl_panda.json"
SEGMIND_UNIT = "credits (US$)"


def run(tmp_path, server, args=(), expect=0) -> list[dict]:
    code = submit.main([WORKFLOW, *args, "--out", str(tmp_path / "out"), "--quiet", "--server", server.url])
    assert code == expect
    return [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]


def asked(server) -> list[str]:
    """The prompt ids whose receipts the runner asked for."""
    return [r.path.split("prompt_id=")[1].split("&")[0] for r in server.requests
            if r.path.startswith("/sdbridge/receipts?")]


def test_each_line_lists_its_hosted_runs_and_a_total_per_provider(tmp_path):
    with FakeComfyUI(duration=0.05) as a:
        entries = run(tmp_path, a, args=("--seeds", "1-3"))
        assert asked(a) and sorted(asked(a)) == sorted(e["prompt_id"] for e in entries)  # once each
        assert len(a.accepted) == 3
    for entry in entries:
        assert entry["status"] == "done" and entry["images"] and entry["hosted_error"] is None
        assert entry["hosted"] == [{
            "node_id": "1", "provider": "segmind", "model": "sdxl1.0-txt2img", "seed": entry["overrides"]["seed"],
            "request_ids": [entry["hosted"][0]["request_ids"][0]], "status": "done", "cost": 0.0125,
            "basis": "measured", "unit": SEGMIND_UNIT}]
        assert entry["hosted_cost"] == {"segmind": {"total": 0.0125, "unit": SEGMIND_UNIT, "basis": "measured",
                                                    "unpriced": 0}}
    assert len({e["hosted"][0]["request_ids"][0] for e in entries}) == 3


def test_a_failed_run_lists_its_hosted_node_without_a_cost(tmp_path):
    with FakeComfyUI(duration=0.05) as a:
        (entry,) = run(tmp_path, a, args=("--set", "prompt=explode", "--seeds", "5"), expect=1)
        assert len(a.accepted) == 1
    assert entry["status"] == "failed" and entry["hosted"][0]["status"] == "failed"
    assert entry["hosted"][0]["cost"] is None
    assert entry["hosted_cost"] == {"segmind": {"total": 0.0, "unit": SEGMIND_UNIT, "basis": None, "unpriced": 1}}


@pytest.mark.parametrize("answer, why", [
    ("404", "has no /sdbridge/receipts (HTTP 404): SD Bridge is not installed there"),
    ("garbage", "/sdbridge/receipts answered something that is not JSON"),
    ("wrong shape", "not SD Bridge's receipts: a receipt's provider is not text"),
])
def test_a_server_without_receipts_leaves_the_line_as_before(tmp_path, answer, why):
    with FakeComfyUI(duration=0.05) as a:
        a.receipts_answer = answer
        entries = run(tmp_path, a, args=("--seeds", "1-2"))
        assert len(a.accepted) == 2 and len(asked(a)) == 2  # asked once each, never queued again
    for entry in entries:
        assert entry["status"] == "done" and entry["images"] and entry["error"] is None
        assert entry["hosted"] is None and entry["hosted_cost"] is None and why in entry["hosted_error"], entry


def test_receipts_that_do_not_come_in_time_end_the_job_all_the_same(tmp_path):
    workflow = json.loads((API / WORKFLOW).read_text())
    with FakeComfyUI(duration=0.05) as a:
        a.receipts_answer, a.receipts_delay = "slow", 3.0
        out = io.StringIO()
        batch = Batch([Server(a.url)], jobs.build(workflow, [], seeds="1-2"),
                      Manifest(tmp_path / "out" / "manifest.jsonl"), Progress(2, quiet=True, out=out),
                      Settings(out=tmp_path / "out", receipts_timeout=0.3, receipts_wait=5.0))
        began = time.monotonic()
        assert batch.run() == 0
        took = time.monotonic() - began
        assert len(a.accepted) == 2
    entries = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [e["status"] for e in entries] == ["done", "done"] and all(e["images"] for e in entries)
    assert all(e["hosted"] is None and "no answer from /sdbridge/receipts" in e["hosted_error"] for e in entries)
    assert "left the batch" not in out.getvalue()  # a slow receipts route is not a server failing
    assert took < 4.0, took  # each ask bounded by receipts_timeout, not the fake's 3 s


def test_totals_keep_each_provider_in_its_own_unit():
    def run_of(provider, unit, cost, basis):
        return {"provider": provider, "endpoint": "m", "node_id": "1", "seed": 1, "request_ids": [], "status": "done",
                "credits": cost, "basis": basis, "unit": unit, "prompt_id": "p"}

    answer = {"receipts": [run_of("segmind", "credits (US$)", 0.1, "measured"),
                           run_of("segmind", "credits (US$)", 0.2, "estimated"),
                           run_of("sinkin", "credits", 3, "measured"), run_of("sinkin", "credits", 0, "cached"),
                           run_of("sinkin", "credits", None, "unknown")]}
    runs, totals = hosted.read(answer, "p")
    assert [r["cost"] for r in runs] == [None, 0, 3, 0.2, 0.1]  # in the order they ran: the route answers newest first
    assert totals == {"segmind": {"total": 0.3, "unit": "credits (US$)", "basis": "estimated", "unpriced": 0},
                      "sinkin": {"total": 3, "unit": "credits", "basis": "measured", "unpriced": 1}}
    with pytest.raises(hosted.Unreadable, match="two units"):
        hosted.read({"receipts": [run_of("segmind", "credits (US$)", 1, "measured"),
                                  run_of("segmind", "credits", 1, "measured")]}, "p")
    with pytest.raises(hosted.Unreadable, match="another prompt"):
        hosted.read({"receipts": [run_of("segmind", "credits (US$)", 1, "measured")]}, "q")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "provider": JSON | st.sampled_from(["segmind", "sinkin"]), "endpoint": JSON | st.just("m"),
    "node_id": JSON, "seed": JSON, "request_ids": JSON | st.lists(st.text(max_size=4), max_size=2),
    "status": JSON | st.just("done"), "credits": JSON, "basis": JSON, "unit": JSON, "prompt_id": st.just("p") | JSON})


@settings(max_examples=150, deadline=None)
@given(st.one_of(JSON, st.fixed_dictionaries({"receipts": st.lists(FIELDS | JSON, max_size=4)})))
def test_any_answer_is_read_or_refused_with_a_reason(answer):
    try:
        runs, totals = hosted.read(answer, "p")
    except hosted.Unreadable as exc:
        assert str(exc)
        return
    json.dumps([runs, totals], allow_nan=False)  # what the manifest writes: plain, finite JSON
    assert all(isinstance(r["provider"], str) and (r["cost"] is None or r["cost"] >= 0) for r in runs)
    assert set(totals) == {r["provider"] for r in runs}
