"""What the runner meets that it did not expect (issue #17, items 19-21), against the fake ComfyUI
on the loopback: malformed /history and /queue answers, output names that are no file names, an
image that never ends, and every bad input a user can give. Each counts the /prompt posts that
reached the fake: a finished job is never paid twice, a bad input queues nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import load_runner  # noqa: F401  (first: runner/ as `runner`)
import pytest
from fakes.comfyui import FakeComfyUI
from fakes.queue import picture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import cli, files, jobs

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = "segmind_sdxl_panda.json"


def posts(*servers) -> int:
    return sum(r.method == "POST" and r.path == "/prompt" for server in servers for r in server.requests)


def main(tmp_path, *servers, args=()):
    return cli.main([WORKFLOW, *args, "--out", str(tmp_path / "out"), "--quiet",
                     *[item for server in servers for item in ("--server", server.url)]])


def manifest(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]


# 19: a finished job is never queued again because of how it was reported

MALFORMED = {
    "entry is a list": lambda entry: ["outputs", entry["outputs"]],
    "outputs is a list": lambda entry: {**entry, "outputs": list(entry["outputs"].values())},
    "an output is text": lambda entry: {**entry, "outputs": {"2": "images"}},
    "an image is a name": lambda entry: {**entry, "outputs": {"2": {"images": ["seed_1.png"]}}},
    "status is text": lambda entry: {**entry, "status": "error", "outputs": {"2": {"images": [{}]}}},
    "not JSON": lambda entry: b"{\"oops",
}


@pytest.mark.parametrize("shape", MALFORMED, ids=list(MALFORMED))
def test_a_malformed_history_entry_fails_the_job_and_never_queues_it_again(tmp_path, shape):
    with FakeComfyUI() as a, FakeComfyUI() as b:
        for server in (a, b):
            server.history_shape = MALFORMED[shape]
        code = main(tmp_path, a, b, args=("--seeds", "1-2"))
        assert posts(a, b) == 2 and len(a.finished) + len(b.finished) == 2  # one paid run per job
    entries = manifest(tmp_path)
    assert code == 1 and [e["status"] for e in entries] == ["failed", "failed"]
    assert all("its /history entry could not be read" in e["error"] and not e["resent"] for e in entries)


# 20: output names and sizes


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_an_output_with_no_file_name_lands_inside_the_output_folder(tmp_path, name):
    with FakeComfyUI() as a:
        a.image_name = lambda seed, number: name
        assert main(tmp_path, a, args=("--set", "seed=7")) == 0
    (entry,) = manifest(tmp_path)
    assert entry["images"] == ["output"] and (tmp_path / "out" / "output").read_bytes() == picture(7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing beside the folder


def test_an_image_named_like_the_manifest_does_not_overwrite_it(tmp_path):
    with FakeComfyUI() as a:
        a.image_name = lambda seed, number: "manifest.jsonl"
        assert main(tmp_path, a, args=("--set", "seed=7")) == 0
    (entry,) = manifest(tmp_path)
    assert entry["status"] == "done" and entry["images"] == ["manifest-2.jsonl"]
    assert (tmp_path / "out" / "manifest-2.jsonl").read_bytes() == picture(7)


@pytest.mark.parametrize("args, prefix", [(("--set", "seed=3"), ""), (("--seeds", "3-3"), "1_")])
def test_a_251_character_name_is_saved_within_255_bytes(tmp_path, args, prefix):
    long = "n" * 247 + ".png"
    with FakeComfyUI() as a:
        a.image_name = lambda seed, number: long
        assert main(tmp_path, a, args=args) == 0
    (entry,) = manifest(tmp_path)
    (saved,) = entry["images"]
    assert len(saved.encode()) <= 255 and saved.endswith(".png") and saved.startswith(prefix + "nnn")
    assert (tmp_path / "out" / saved).read_bytes() == picture(3)
    assert len(files.part(tmp_path / long).name) == 255 and files.fit("é" * 200 + ".png").endswith(".png")


def test_an_image_that_never_ends_is_cut_at_the_limit_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "MAX_IMAGE_BYTES", 1 << 20)
    with FakeComfyUI() as a:
        a.endless_views = True
        assert main(tmp_path, a, args=("--seeds", "1-2")) == 1
        assert posts(a) == 2
    entries = manifest(tmp_path)
    assert [e["status"] for e in entries] == ["failed", "failed"] and not any(e["resent"] for e in entries)
    assert "larger than the 1 MiB the runner downloads; fetch it from that server's output folder" in entries[0]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.jsonl"]  # no .part left


# 21: one clear line and an exit code for each bad input; nothing queued


def _deep(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return ["--batch", str(path)]


def _latin1(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"prompt": "un caf\u00e9"}\n'.encode("latin-1"))
    return ["--batch", str(path)]


def _workflow(text):
    def make(tmp_path):
        path = tmp_path / "flow.json"
        path.write_text(text)
        return ["--workflow", str(path)]
    return make


def _out_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("a file")
    return ["--out", str(tmp_path / "taken")]


def _manifest_is_a_folder(tmp_path):
    (tmp_path / "folder").mkdir()
    return ["--manifest", str(tmp_path / "folder")]


BAD_INPUTS = {
    "missing --batch": (lambda tmp_path: ["--batch", str(tmp_path / "nope.jsonl")], "no such file; check the path"),
    "--batch is a folder": (lambda tmp_path: ["--batch", str(tmp_path)], "is a folder; give a file"),
    "a line nested 100000 deep": (_deep, "deep.jsonl:1: nested too deeply"),
    "a Latin-1 batch file": (_latin1, "not UTF-8 text (byte 18); save it as UTF-8"),
    "missing workflow": (lambda tmp_path: ["--workflow", str(tmp_path / "none.json")], "no such file"),
    "invalid workflow": (_workflow("{not json"), "not JSON"),
    "list-shaped workflow": (_workflow("[1, 2]"), "not an API-format workflow"),
    "the editor's format": (_workflow('{"nodes": [], "links": []}'), "save it with Workflow > Export (API)"),
    "--manifest is a folder": (_manifest_is_a_folder, "is a folder; name a file"),
    "--out is a file": (_out_is_a_file, "is a file, not a folder; name a folder"),
    "--set without =": (lambda tmp_path: ["--set", "seed"], "--set needs NAME=VALUE"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_a_bad_input_is_one_clear_line_exit_2_and_nothing_queued(tmp_path, capsys, case):
    make, words = BAD_INPUTS[case]
    extra = make(tmp_path)
    workflow = WORKFLOW
    if extra[:1] == ["--workflow"]:
        workflow, extra = extra[1], extra[2:]
    with FakeComfyUI() as a:
        code = cli.main([workflow, *extra, "--quiet", "--server", a.url,
                         *([] if "--out" in extra else ["--out", str(tmp_path / "out")])])
        assert posts(a) == 0
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("submit.py: error: ") and words in err, err


def test_a_queue_whose_rows_are_not_lists_is_named_and_nothing_queued(tmp_path, capsys):
    with FakeComfyUI() as a:
        a.queue_shape = lambda answer: {"queue_running": [{"prompt_id": "x"}], "queue_pending": 3}
        with pytest.raises(SystemExit, match="no server can run this workflow"):
            main(tmp_path, a)
        assert posts(a) == 0
    assert "does not answer as ComfyUI does" in capsys.readouterr().out


def test_python_m_runner_from_the_repository_root(tmp_path):
    done = subprocess.run([sys.executable, "-m", "runner", WORKFLOW, "--batch", str(tmp_path / "none.jsonl")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("submit.py: error: --batch") and done.stdout == ""


@settings(max_examples=150, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.one_of(st.text(max_size=40), st.just("{"), st.just("[" * 5000),
                                    st.dictionaries(st.text(max_size=5), st.integers()).map(json.dumps),
                                    st.recursive(st.integers() | st.text(max_size=4),
                                                 lambda inner: st.lists(inner, max_size=3)).map(json.dumps)),
                          max_size=8).map("\n".join)))
def test_the_batch_file_parser_answers_rows_or_one_clear_line(text):
    try:
        rows = jobs.parse_batch(text, "fuzz.jsonl")
    except jobs.BadInput as exc:
        assert str(exc).startswith("fuzz.jsonl") and "\n" not in str(exc)
    else:
        assert rows and all(isinstance(row, dict) for _, row in rows)


def test_without_websocket_client_it_polls(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "websocket", None)  # import websocket fails
    with FakeComfyUI() as a:
        assert main(tmp_path, a, args=("--seeds", "1-2")) == 0
        assert not [r for r in a.requests if r.path.startswith("/ws")] and posts(a) == 2
    assert [e["status"] for e in manifest(tmp_path)] == ["done", "done"]
    assert "websocket-client is not installed: following the jobs by polling" in capsys.readouterr().out
