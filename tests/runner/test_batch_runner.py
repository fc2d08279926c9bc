"""The batch runner (runner/, through submit.py) against fake ComfyUI servers on the loopback
(tests/fakes/comfyui.py): spreading jobs, websocket and polling, a server dying mid-batch,
Ctrl-C, ComfyUI's reasons, the manifest. The same rules without sockets: test_state_machine.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import load_runner  # noqa: F401  (first: runner/ as `runner`)
import pytest
from fakes.comfyui import FakeComfyUI, pack_object_info
from fakes.queue import picture

from runner import cli as submit
from runner import jobs, listen, reasons, schedule
from runner.batch import Batch, BatchOptions
from runner.manifest import Manifest
from runner.progress import Progress
from runner.server import Server

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "example_workflows" / "api"
SCRIPT = API / "submit.py"

WORKFLOW = "segmind_sdxl_panda.json"


def run(tmp_path, *servers, args=(), expect=0):
    code = submit.main([WORKFLOW, *args, "--out", str(tmp_path / "out"), "--quiet",
                        *[item for server in servers for item in ("--server", server.url)]])
    assert code == expect
    return manifest(tmp_path)


def manifest(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]


def ours(*servers) -> list[dict]:
    return [item for server in servers for item in server.accepted]


def assert_images_match_seeds(tmp_path, entries):
    for entry in entries:
        (name,) = entry["images"]
        assert (tmp_path / "out" / name).read_bytes() == picture(entry["overrides"]["seed"]), entry
    files = {p.name for p in (tmp_path / "out").iterdir()} - {"manifest.jsonl"}
    assert files == {name for entry in entries for name in entry["images"]}  # no extra copy, no .part


def test_a_batch_is_spread_over_servers_and_followed_over_the_websocket(tmp_path):
    with FakeComfyUI() as a, FakeComfyUI() as b, FakeComfyUI() as c:
        entries = run(tmp_path, a, b, c, args=("--seeds", "1-9", "--set", "prompt=a red fox"))
        used = [len(server.accepted) for server in (a, b, c)]
        histories = sum(r.path.startswith("/history/") for s in (a, b, c) for r in s.requests)
        sockets = sum(r.path.startswith("/ws?clientId=") for s in (a, b, c) for r in s.requests)
    assert [e["index"] for e in entries] == list(range(1, 10)) and {e["status"] for e in entries} == {"done"}
    assert sum(used) == 9 and min(used) >= 2, used  # every server worked; each job queued once
    assert sockets == 3 and histories == 9  # events came over the websocket: one /history per job, no polling
    assert all(e["overrides"] == {"prompt": "a red fox", "seed": e["index"]} for e in entries)
    assert {e["prompt_id"] for e in entries} == {item["prompt_id"] for item in ours(a, b, c)}
    assert_images_match_seeds(tmp_path, entries)


def test_without_a_websocket_it_polls(tmp_path):
    with FakeComfyUI(websocket=False) as a, FakeComfyUI(websocket=False) as b:
        entries = run(tmp_path, a, b, args=("--seeds", "1-4"))
    assert [e["status"] for e in entries] == ["done"] * 4
    assert_images_match_seeds(tmp_path, entries)


def test_a_server_dying_mid_batch_loses_no_job_and_counts_none_twice(tmp_path):
    with FakeComfyUI() as a, FakeComfyUI(die_at=2) as b, FakeComfyUI(die_at=3) as c:
        entries = run(tmp_path, a, b, c, args=("--seeds", "1-12"))
        assert b.dead and c.dead
    assert [e["index"] for e in entries] == list(range(1, 13)) and {e["status"] for e in entries} == {"done"}
    resent = [e for e in entries if e["resent"]]
    assert resent and all(e["server"] == a.url for e in resent)
    assert all(r["server"] in (b.url, c.url) and r["why"] == "it stopped answering" for e in resent for r in e["resent"])
    assert_images_match_seeds(tmp_path, entries)


def test_a_prompt_forgotten_by_a_restarted_server_is_sent_again(tmp_path):
    with FakeComfyUI(duration=1.0) as a:
        threading.Timer(0.5, a.restart).start()
        entries = run(tmp_path, a, args=("--seeds", "1-2"))
        forgotten = a.accepted[0]["prompt_id"]
        assert len(a.accepted) == 4 and forgotten not in a.finished  # both forgotten ones sent again, once
    assert [e["status"] for e in entries] == ["done", "done"]
    assert entries[0]["resent"] == [{"server": a.url, "prompt_id": forgotten,
                                     "why": "the server no longer knows the prompt"}]
    assert_images_match_seeds(tmp_path, entries)


def test_a_server_that_cannot_queue_is_passed_over_and_a_job_nobody_queues_is_listed(tmp_path):
    with FakeComfyUI() as broken, FakeComfyUI() as good:
        broken.broken_submit = True
        entries = run(tmp_path, broken, good, args=("--seeds", "1-3"))
        assert len(good.accepted) == 3
        assert {e["server"] for e in entries} == {good.url}
        (tmp_path / "out" / "manifest.jsonl").unlink()
        (entry,) = run(tmp_path, broken, expect=1)
    assert entry["status"] == "failed" and entry["error"].startswith(f"tried 3 times; last: could not queue it on {broken.url}")


def test_an_image_cut_short_is_fetched_again_and_never_left_half_written(tmp_path):
    with FakeComfyUI() as a:
        a.cut_views = 1
        entries = run(tmp_path, a, args=("--seeds", "1-2"))
        views = [r for r in a.requests if r.path.startswith("/view")]
        assert len(a.accepted) == 2 and len(views) == 3
    assert_images_match_seeds(tmp_path, entries)


def test_a_server_back_from_an_outage_rejoins_and_what_it_held_of_ours_is_withdrawn(tmp_path):
    workflow = json.loads((API / WORKFLOW).read_text())
    with FakeComfyUI(duration=2.0) as a, FakeComfyUI(duration=2.0) as b:
        threading.Timer(0.3, a.blackout, args=(1.2,)).start()  # a holds a running and a waiting job of ours
        batch = Batch([Server(a.url), Server(b.url)], jobs.build(workflow, [], seeds="1-6"),
                      Manifest(tmp_path / "out" / "manifest.jsonl"), Progress(6, quiet=True, out=io.StringIO()),
                      BatchOptions(out=tmp_path / "out", revive_every=0.5))
        assert batch.run() == 0
        entries = manifest(tmp_path)
        moved = {r["prompt_id"] for e in entries for r in e["resent"]}
        assert len(moved) == 2 and all(r["server"] == a.url for e in entries for r in e["resent"])
        withdrawn = set(a.deleted) | set(a.interrupts)
        assert moved <= set(a.finished) | withdrawn and moved & withdrawn  # made and not counted, or withdrawn
        assert any(e["server"] == a.url and not e["resent"] for e in entries[4:])  # it took new jobs once back
    assert "is back in the batch" in batch.progress.out.getvalue()
    assert [e["status"] for e in entries] == ["done"] * 6
    assert_images_match_seeds(tmp_path, entries)


def test_when_every_server_dies_the_rest_are_listed_as_failed(tmp_path):
    with FakeComfyUI(die_at=2) as a:
        entries = run(tmp_path, a, args=("--seeds", "1-5", "--wait", "0"), expect=1)
    assert [e["index"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["status"] == "done"
    assert {e["status"] for e in entries[1:]} == {"failed"}
    assert all("no server left" in e["error"] for e in entries[1:])


def test_the_least_loaded_server_gets_the_first_jobs(tmp_path):
    with FakeComfyUI(duration=1.0) as busy, FakeComfyUI(duration=0.1) as idle:
        for _ in range(3):  # another client's work, queued before the batch
            busy.queue_for_another_client(json.loads((API / WORKFLOW).read_text()))
        run(tmp_path, busy, idle, args=("--seeds", "1-2", "--depth", "1"))
        assert len(idle.accepted) == 2 and len(busy.accepted) == 3  # nothing of ours waited behind theirs


def test_servers_that_are_down_or_lack_a_node_type_are_left_out(tmp_path, capsys):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    without = {k: v for k, v in pack_object_info().items() if k != "SDBridgeSegmindSDXL"}
    with FakeComfyUI() as good, FakeComfyUI(object_info=without) as lacking:
        code = submit.main([WORKFLOW, "--seeds", "1-2", "--server", down, "--server", lacking.url,
                            "--server", good.url, "--out", str(tmp_path / "out"), "--quiet"])
        assert code == 0 and len(good.accepted) == 2 and not lacking.accepted
        with pytest.raises(SystemExit, match="no server can run this workflow"):
            submit.main([WORKFLOW, "--server", lacking.url, "--server", down, "--out", str(tmp_path / "other")])
    said = capsys.readouterr().out
    assert f"server {down}: not reachable" in said
    assert f"server {lacking.url}: does not have the node type SDBridgeSegmindSDXL; not used" in said


def test_a_refused_job_shows_comfyuis_reason_for_each_input_and_the_rest_run(tmp_path, capsys):
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"seed": 1}\n# a comment\n\n{"seed": 2, "samples": 9, "style": "sepia"}\n{"seed": 3}\n')
    with FakeComfyUI() as a:
        entries = run(tmp_path, a, args=("--batch", str(lines)), expect=1)
        assert len(a.accepted) == 2
    assert [e["status"] for e in entries] == ["done", "refused", "done"]
    error = entries[1]["error"]
    assert "node 1 (SDBridgeSegmindSDXL): samples: Value 9 bigger than max of 4" in error
    assert "node 1 (SDBridgeSegmindSDXL): style: Value not in list ('sepia' not in [" in error
    assert "samples: Value 9 bigger than max of 4" in capsys.readouterr().out  # said even with --quiet


def test_a_failed_run_is_listed_with_comfyuis_reason_and_not_sent_again(tmp_path):
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"seed": 1}\n{"seed": 2, "prompt": "explode"}\n')
    with FakeComfyUI() as a, FakeComfyUI() as b:
        entries = run(tmp_path, a, b, args=("--batch", str(lines)), expect=1)
        assert len(ours(a, b)) == 2
    assert entries[1]["status"] == "failed"
    assert entries[1]["error"] == "SDBridgeSegmindSDXL failed: the model could not render this prompt"


def test_a_job_over_its_time_is_withdrawn_and_listed(tmp_path):
    with FakeComfyUI(duration=3.0) as a:
        entries = run(tmp_path, a, args=("--seeds", "1-2", "--timeout", "0.5"), expect=1)
        assert a.interrupts == [entries[0]["prompt_id"]] and a.deleted == [entries[1]["prompt_id"]]
    assert all(e["status"] == "failed" and e["error"].startswith("gave up after 0 s") for e in entries)


def ctrl_c_after_start(tmp_path, server, seeds="1-6"):
    process = subprocess.Popen([sys.executable, str(SCRIPT), WORKFLOW, "--seeds", seeds, "--server", server.url,
                                "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 30
    while not [item for item in server.accepted if item["client_id"] != "someone else"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_withdraws_what_this_batch_queued_and_writes_the_manifest(tmp_path):
    with FakeComfyUI(duration=5.0) as a:
        code, out, err = ctrl_c_after_start(tmp_path, a)
        running, waiting = a.accepted
        assert code == 130, err
        assert a.interrupts == [running["prompt_id"]] and a.deleted == [waiting["prompt_id"]]
    entries = manifest(tmp_path)
    assert [e["status"] for e in entries] == ["cancelled", "cancelled", "not run", "not run", "not run", "not run"]
    assert "stopping: withdrawing 2 queued job(s)" in out


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_leaves_other_clients_running_prompts_alone(tmp_path):
    with FakeComfyUI(duration=3.0) as a:
        theirs = a.queue_for_another_client(json.loads((API / WORKFLOW).read_text()))
        code, _, err = ctrl_c_after_start(tmp_path, a, seeds="1-2")
        assert code == 130, err
        assert a.interrupts == [] and len(a.deleted) == 2
        assert theirs not in a.deleted


def test_images_of_an_earlier_run_in_the_same_folder_are_kept(tmp_path):
    with FakeComfyUI() as a:
        first = run(tmp_path, a, args=("--seeds", "1-2"))
    with FakeComfyUI() as b:  # a fresh server numbers its files from 1 again: the same names
        second = run(tmp_path, b, args=("--seeds", "1-2"))
    assert [e["images"] for e in first] == [["1_seed_1_00001_.png"], ["2_seed_2_00002_.png"]]
    assert [e["images"] for e in second] == [["1_seed_1_00001_-2.png"], ["2_seed_2_00002_-2.png"]]
    assert len(list((tmp_path / "out").glob("*.png"))) == 4


def test_the_old_command_line_still_saves_one_job_under_comfyuis_file_name(tmp_path):
    with FakeComfyUI() as a:
        done = subprocess.run([sys.executable, str(SCRIPT), WORKFLOW, "--set", "seed=7", "--server", a.url,
                               "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (entry,) = manifest(tmp_path)
    assert entry["images"] == ["seed_7_00001_.png"] and "saved" in done.stdout and "running" in done.stdout
    assert done.stderr == ""  # no progress bar when stderr is not a terminal


# The parts


def test_jobs_from_a_batch_file_times_seeds():
    workflow = json.loads((API / WORKFLOW).read_text())
    built = jobs.build(workflow, ["refiner=false"], seeds="1-2,5")
    assert [job.overrides for job in built] == [{"refiner": False, "seed": s} for s in (1, 2, 5)]
    assert built[2].prompt["1"]["inputs"]["seed"] == 5 and workflow["1"]["inputs"]["seed"] == 468685
    for bad in ("5-1", "x", "1-200000"):
        with pytest.raises(SystemExit, match="--seeds"):
            jobs.parse_seeds(bad)


def test_a_bad_batch_line_is_named(tmp_path):
    workflow = json.loads((API / WORKFLOW).read_text())
    lines = tmp_path / "jobs.jsonl"
    lines.write_text('{"seed": 1}\n{"colour": "red"}\n')
    with pytest.raises(SystemExit, match="jobs.jsonl line 2: colour: no node"):
        jobs.build(workflow, [], lines)
    lines.write_text('{"seed": 1}\n[1, 2]\n')
    with pytest.raises(SystemExit, match="jobs.jsonl:2: each line is an object"):
        jobs.build(workflow, [], lines)


def test_reasons_in_comfyuis_words():
    assert reasons.input_error({"type": "value_bigger_than_max", "message": "Value 9 bigger than max of 4",
                                "details": "samples", "extra_info": {"input_name": "samples"}}) == \
        "samples: Value 9 bigger than max of 4"
    assert reasons.input_error({"type": "required_input_missing", "message": "Required input is missing",
                                "details": "prompt", "extra_info": {"input_name": "prompt"}}) == \
        "prompt: Required input is missing"
    assert reasons.refusal({"error": {"type": "invalid_prompt", "message": "Cannot execute because node Foo does not "
                                      "exist.", "details": "Node ID '#3'"}, "node_errors": {}}) == \
        ["Cannot execute because node Foo does not exist.: Node ID '#3'"]


def test_why_a_run_failed_in_comfyuis_words():
    def entry(kind, message):
        return {"status": {"status_str": "error", "messages": [["execution_start", {}], [kind, message]]}}

    assert reasons.failure({"status": {"status_str": "success"}}) is None
    assert reasons.failure(entry("execution_error", {"node_type": "KSampler", "exception_message": "out of memory"})) \
        == "KSampler failed: out of memory"
    assert reasons.failure(entry("execution_interrupted", {"node_type": "KSampler"})) == \
        "interrupted on the server at KSampler"
    assert reasons.failure({"status": {"status_str": "error", "messages": []}}) == "the workflow failed"


def test_the_plain_bar_is_one_line_cleared_before_each_message_when_tqdm_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    stream, out = io.StringIO(), io.StringIO()
    progress = Progress(20, stream=stream, out=out, bar=True)
    assert progress.tqdm is None
    progress.update(force=True, finished=5, failed=1, running=2, queued=3, servers=4, steps=[(3, 25), (20, 25)])
    assert stream.getvalue().startswith("\r[######------------------] 5/20 (1 failed) | 2 running, 3 queued on 4 "
                                        "servers | steps 3/25 20/25 | 0:00")
    progress.say("a line")
    assert out.getvalue() == "a line\n" and "\r" + " " * 10 in stream.getvalue()
    assert stream.getvalue().isascii()
    quiet = Progress(20, quiet=True, stream=io.StringIO(), out=io.StringIO())
    quiet.update(force=True, finished=1)
    quiet.say("chatter")
    quiet.say("an error", always=True)
    assert quiet.stream.getvalue() == "" and quiet.out.getvalue() == "an error\n"


def test_the_tqdm_bar_shows_the_counts_and_lines_go_above_it():
    stream, out = io.StringIO(), io.StringIO()
    progress = Progress(20, stream=stream, out=out, bar=True)
    assert progress.tqdm is not None
    progress.update(force=True, finished=5, failed=1, running=2, queued=3, servers=4, steps=[(3, 25), (20, 25)])
    progress.say("a line")
    progress.close()
    assert "5/20" in stream.getvalue() and "1 failed, 2 running, 3 queued on 4 servers, steps 3/25 20/25" in \
        stream.getvalue()
    assert out.getvalue() == "a line\n"


def test_the_listener_reads_fragments_pings_previews_and_long_messages():
    listener = socket.create_server(("127.0.0.1", 0))
    got: dict = {}
    long = json.dumps({"type": "execution_start", "data": {"prompt_id": "p1", "pad": "x" * 70000}}).encode()
    progress = json.dumps({"type": "progress", "data": {"value": 3, "max": 8, "prompt_id": "p1"}}).encode()
    done = json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "p1"}}).encode()

    def serve():
        connection, _ = listener.accept()
        request = b""
        while b"\r\n\r\n" not in request:
            request += connection.recv(4096)
        key = next(line.split(b": ")[1] for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        connection.sendall(b"\x89\x02hi"                                              # ping
                           + b"\x01" + bytes([20]) + progress[:20]                      # a text message in two
                           + b"\x80" + bytes([len(progress) - 20]) + progress[20:]      # fragments
                           + b"\x82\x01\x00"                                           # binary (a preview)
                           + b"\x81\x7f" + struct.pack("!Q", len(long)) + long
                           + b"\x81\x7e" + struct.pack("!H", len(done)) + done)
        pong = connection.recv(2 + 4 + 2)
        got["pong"] = (pong[0], pong[1] & 0x80, bytes(b ^ pong[2 + i % 4] for i, b in enumerate(pong[6:])))
        connection.sendall(b"\x88\x02\x03\xe8")  # close
        time.sleep(0.2)
        connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    events: queue.Queue = queue.Queue()
    follower = listen.Listener(f"http://127.0.0.1:{listener.getsockname()[1]}", "x", events, reopen_every=30)
    follower.start()
    heard = [events.get(timeout=5) for _ in range(5)]
    follower.stop()
    follower.join(5)
    thread.join(5)
    listener.close()
    server = follower.server
    assert heard == [schedule.Socket(server, True), schedule.Progress(server, "p1", 3, 8),
                     schedule.Started(server, "p1"), schedule.Ended(server, "p1"), schedule.Socket(server, False)]
    assert got["pong"] == (0x8A, 0x80, b"hi")  # answered, masked as a client must
