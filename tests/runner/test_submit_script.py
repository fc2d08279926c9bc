"""example_workflows/api/submit.py (the thin script users call) against a loopback server that
speaks ComfyUI's queue API.

This one is a bare server (no websocket, no /object_info), as an old ComfyUI or a proxy may be:
the runner polls and skips the node-type check. test_batch_runner.py runs batches against the
full fake in tests/fakes/comfyui.py."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import load_runner  # noqa: F401  (first: runner/ as `runner`)
import pytest
from support.loopback import Answer, Loopback, json_answer

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = ROOT / "example_workflows" / "api" / "submit.py"
spec = importlib.util.spec_from_file_location("submit", SCRIPT)
submit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(submit)


class FakeComfy(Loopback):
    """POST /prompt queues; /history answers after two polls; /view serves the image bytes."""

    def __init__(self, fail: str | None = None, refuse: bool = False):
        self.prompts, self.polls, self.fail, self.refuse = [], 0, fail, refuse
        super().__init__(self.answer)

    def answer(self, request):
        url = urlsplit(request.path)
        if request.method == "POST" and url.path == "/prompt":
            body = json.loads(request.body)
            if self.refuse:
                return json_answer(400, {"error": {"type": "prompt_outputs_failed_validation", "message":
                                                   "Prompt outputs failed validation", "details": "", "extra_info": {}},
                                         "node_errors": {"1": {"class_type": "SDBridgeSegmindSDXL", "errors": [
                                             {"type": "value_bigger_than_max", "message": "Value 9 bigger than max of 4",
                                              "details": "samples", "extra_info": {"input_name": "samples"}}]}}})
            self.prompts.append(body)
            return json_answer(200, {"prompt_id": "p1", "number": 0, "node_errors": {}})
        if url.path == "/queue":
            return json_answer(200, {"queue_running": [[0, "p1"]], "queue_pending": []})
        if url.path == "/history/p1":
            self.polls += 1
            if self.polls < 3:
                return json_answer(200, {})
            if self.fail:
                return json_answer(200, {"p1": {"outputs": {}, "status": {"status_str": "error", "messages": [
                    ["execution_error", {"node_type": "SDBridgeSegmindSDXL", "exception_message": self.fail}]]}}})
            return json_answer(200, {"p1": {"status": {"status_str": "success"}, "outputs": {
                "2": {"images": [{"filename": "sdbridge_00001_.png", "subfolder": "sdbridge", "type": "output"}]}}}})
        if url.path == "/view":
            query = parse_qs(url.query)
            assert query == {"filename": ["sdbridge_00001_.png"], "subfolder": ["sdbridge"], "type": ["output"]}
            return Answer(200, b"\x89PNG fake", {"content-type": "image/png"})
        return Answer(404, b"")


def test_submit_with_overrides_follows_and_saves(tmp_path):
    with FakeComfy() as server:
        code = subprocess.run(
            [sys.executable, str(SCRIPT), "segmind_sdxl_panda.json", "--set", "prompt=a red fox", "--set", "seed=7",
             "--set", "1.refiner=false", "--server", server.url, "--out", str(tmp_path)],
            capture_output=True, text=True, timeout=60)
        assert code.returncode == 0, code.stderr
        (sent,) = server.prompts
    inputs = sent["prompt"]["1"]["inputs"]
    assert inputs["prompt"] == "a red fox" and inputs["seed"] == 7 and inputs["refiner"] is False
    assert sent["prompt"]["2"]["inputs"]["images"] == ["1", 0]  # links untouched
    assert sent["extra_data"] == {"extra_pnginfo": {}}  # so Save Image's PNG carries the receipts
    assert (tmp_path / "sdbridge_00001_.png").read_bytes() == b"\x89PNG fake"
    assert "queued segmind_sdxl_panda.json as p1" in code.stdout and "running" in code.stdout


def test_a_failed_run_reports_the_node_error(tmp_path):
    with FakeComfy(fail="Segmind: says there are not enough credits (406)") as server:
        with pytest.raises(SystemExit, match="SDBridgeSegmindSDXL failed: Segmind: says there are not enough credits"):
            submit.main(["segmind_sdxl_panda.json", "--server", server.url, "--out", str(tmp_path)])


def test_a_refused_workflow_lists_the_node_errors(tmp_path):
    with FakeComfy(refuse=True) as server:
        with pytest.raises(SystemExit, match="node 1 \\(SDBridgeSegmindSDXL\\): samples: Value 9 bigger than max of 4"):
            submit.main(["segmind_sdxl_panda.json", "--set", "samples=9", "--server", server.url,
                         "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing made, nothing written


@pytest.mark.parametrize("override, words", [("nonsense", "needs NAME=VALUE"), ("images=x", "no node"),
                                             ("colour=red", "no node")])
def test_bad_overrides_are_named(override, words):
    prompt = json.loads((ROOT / "example_workflows" / "api" / "segmind_sdxl_panda.json").read_text())
    with pytest.raises(SystemExit, match=words):
        submit.apply_overrides(prompt, [override])
