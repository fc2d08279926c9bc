"""The result cache: a request already paid for is answered from disk with zero provider requests
(in a new process too), anything else asks; seed -1 and failures are never stored; the files are
the provider's own bytes; the size bound evicts the least recently used; two processes share it;
it can be switched off and cleared. Every test counts the requests that reached the fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT
from fakes import segmind as fake_segmind_module
from fakes import sinkin as fake_sinkin_module
from support.loopback import json_answer
from support.nodecalls import defaults, run
from support.processes import run_two_at_once
from support.serving import call, serve

from sdbridge.nodes import declared_settings, errors, pack_settings, runtime
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.money import budget, caps
from sdbridge.nodes.hosted.node import hosted_classes
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.hosted.store import result_cache

RV, SDXL, IMG2IMG, REALVIS, ANY = segmind_nodes.NODES
Txt2Img, Img2Img = sinkin_nodes.NODES
SMALL = {"img_width": 256, "img_height": 256}
SINKIN_SMALL = {"width": 128, "height": 128}


def _source(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((1, 24, 32, 3), generator=generator)


def _cases() -> list[tuple[type, dict]]:
    """One run of each kind: Segmind txt2img (two samples), img2img and Any Model; SinkIn
    txt2img and img2img."""
    return [
        (RV, {"prompt": "a cat", "seed": 11, "samples": 2, **SMALL}),
        (IMG2IMG, {"prompt": "a cat", "seed": 12, "image": _source(), **SMALL}),
        (ANY, {"slug": "custom-model", "parameters": '{"prompt": "x", "seed": 13, "img_width": 64}',
               "image_1": _source(1)}),
        (Txt2Img, {"prompt": "a cat", "seed": 14, **SINKIN_SMALL}),
        (Img2Img, {"prompt": "a cat", "seed": 15, "image": _source(2), **SINKIN_SMALL}),
    ]


def _asked(segmind_fake, sinkin_fake) -> int:
    """Every request that reached a fake provider (generation, polls and downloads)."""
    return len(segmind_fake.requests) + len(sinkin_fake.requests)


def _key(node, values: dict) -> str | None:
    merged = node.normalized({**defaults(node), **values})
    return result_cache.key_for(node, merged, result_cache.image_digests(node.plan(merged).uploads))


HIT_SCRIPT = """
import asyncio, importlib.util, json, sys
import torch
root, cases_file, out_file = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("sdbridge", root + "/__init__.py", submodule_search_locations=[root])
pack = importlib.util.module_from_spec(spec); sys.modules["sdbridge"] = pack; spec.loader.exec_module(pack)
sys.path.insert(0, root + "/tests")
from support.nodecalls import defaults, make
outputs, infos = [], []
for node_id, values in torch.load(cases_file):
    node = pack.NODE_CLASS_MAPPINGS[node_id]
    images, info = asyncio.run(make(node).generate(unique_id="1", **{**defaults(node), **values}))
    outputs.append(images)
    infos.append(json.loads(info))
torch.save(outputs, out_file)
print(json.dumps(infos))
"""


@pytest.mark.parametrize("segmind_api", ["fake_segmind", "fake_segmind_v2"])
def test_a_new_process_with_the_same_user_directory_gets_the_same_pixels_without_asking(
        request, segmind_api, fake_sinkin, tmp_path):
    fake = request.getfixturevalue(segmind_api)
    cases = _cases()
    first = [run(node, **values)[0] for node, values in cases]
    asked = _asked(fake, fake_sinkin)
    assert fake.generated == 4 and fake_sinkin.inferences == 2
    torch.save([(node.__name__, values) for node, values in cases], tmp_path / "cases.pt")
    out = subprocess.run([sys.executable, "-c", HIT_SCRIPT, str(ROOT), str(tmp_path / "cases.pt"),
                          str(tmp_path / "out.pt")], env=dict(os.environ), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _asked(fake, fake_sinkin) == asked  # not one request: no submit, poll or download
    second = torch.load(tmp_path / "out.pt")
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    infos = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(info["cache"]["hit"] for info in infos)
    assert [info["cache"].get("saved_credits") for info in infos[3:]] == [0.5, 0.5]  # SinkIn's credit_cost


def test_the_stored_files_are_the_providers_own_bytes(fake_segmind, fake_sinkin):
    values = {"prompt": "a cat", "seed": 21, "samples": 2, **SMALL}  # two samples: base64 JSON, decoded
    run(RV, **values)
    folder = result_cache.folder() / "entries" / _key(RV, values)
    assert [(folder / name).read_bytes() for name in ("0", "1")] == [
        fake_segmind_module.picture(256, 256, 21), fake_segmind_module.picture(256, 256, 22)]
    run(RV, **{**values, "samples": 1})  # one sample: the raw JPEG body
    assert (result_cache.folder() / "entries" / _key(RV, {**values, "samples": 1}) / "0").read_bytes() == \
        fake_segmind_module.picture(256, 256, 21)
    run(Txt2Img, prompt="a cat", seed=5, **SINKIN_SMALL)
    stored = (result_cache.folder() / "entries" / _key(Txt2Img, {"prompt": "a cat", "seed": 5, **SINKIN_SMALL}) / "0")
    assert stored.read_bytes() == fake_sinkin_module.picture(128, 128, 5)


def test_a_hit_says_so_on_the_node_and_in_info(fake_sinkin, fake_segmind, monkeypatch):
    lines = []
    monkeypatch.setattr(runtime, "show_text", lambda node_id, text, log_line=True: lines.append(text))
    run(Txt2Img, prompt="a cat", seed=3, **SINKIN_SMALL)
    images, info = run(Txt2Img, prompt="a cat", seed=3, **SINKIN_SMALL)
    assert lines[-1] == "SinkIn: from cache — saved 0.5 credits"
    assert json.loads(info)["cache"] == {"hit": True, "saved_credits": 0.5} and fake_sinkin.inferences == 1
    # With the credits a run spent in its info, the hit names them; without, it says only "from cache".
    key = _key(RV, {"prompt": "a dog", "seed": 4, **SMALL})
    result_cache.store(key, [fake_segmind_module.picture(8, 8, 4)], {"provider": "Segmind", "credits_spent": 2.25})
    images, info = run(RV, prompt="a dog", seed=4, **SMALL)
    assert lines[-1] == "Segmind: from cache — saved 2.25 credits" and tuple(images.shape) == (1, 8, 8, 3)
    assert json.loads(info)["cache"] == {"hit": True, "saved_credits": 2.25} and fake_segmind.generated == 0
    run(RV, prompt="a cow", seed=4, **SMALL)
    run(RV, prompt="a cow", seed=4, **SMALL)
    assert lines[-1] == "Segmind: from cache" and fake_segmind.generated == 1


def _other(param, value):
    """A valid value of `param` other than `value` (None when it has only one)."""
    if param.kind == "BOOLEAN":
        return not value
    if param.kind == "COMBO":
        return next((c for c in param.choices if c != value), None)
    if param.kind in ("INT", "FLOAT"):
        step = param.multiple_of or param.step or 1
        changed = value + step if param.max is None or value + step <= param.max else value - step
        return int(changed) if param.kind == "INT" else float(changed)
    if param.name == "parameters":
        return '{"prompt": "x", "seed": 1, "steps": 2}'
    if param.name == "slug":
        return "another-model"
    if param.name.endswith("_field"):
        return "init_image"
    return f"{value}x" if value else "v2"


@pytest.mark.parametrize("node", [*segmind_nodes.NODES, *sinkin_nodes.NODES], ids=lambda n: n.__name__)
def test_any_changed_parameter_is_another_request(node):
    values = {**defaults(node), "prompt": "a cat", "seed": 1, "parameters": '{"prompt": "x", "seed": 1}'}
    values = {k: v for k, v in values.items() if any(p.name == k for p in node.PARAMS)}
    for param in node.PARAMS:
        if param.kind == "IMAGE":
            values[param.name] = _source()
    base = _key(node, values)
    assert base is not None
    for param in node.PARAMS:
        if param.kind == "IMAGE" or param.name not in values:
            continue  # an image is tested pixel by pixel below
        other = _other(param, values[param.name])
        if other is None:
            continue  # a one-choice combo cannot change
        changed = _key(node, {**values, param.name: other})
        assert changed is not None and changed != base, param.name
    # Spacing and key order of Any Model's JSON body do not make another request.
    if node is ANY:
        assert _key(node, {**values, "parameters": '{ "seed": 1,\n "prompt": "x" }'}) == base


@pytest.mark.parametrize("node", [IMG2IMG, Img2Img, ANY], ids=lambda n: n.__name__)
def test_one_changed_input_pixel_asks_again(node, fake_segmind, fake_sinkin):
    name = "image_1" if node is ANY else "image"
    extra = {"slug": "custom-model", "parameters": '{"prompt": "x", "seed": 2, "img_width": 64}'} if node is ANY \
        else {"prompt": "a cat", "seed": 2}
    source = _source()
    run(node, **extra, **{name: source})
    run(node, **extra, **{name: source.clone()})  # the same pixels: cached
    changed = source.clone()
    changed[0, 5, 7, 1] = (changed[0, 5, 7, 1] + 0.5) % 1.0
    run(node, **extra, **{name: changed})
    assert fake_segmind.generated + fake_sinkin.inferences == 2


def test_a_widget_value_key_works_before_the_run(fake_segmind):
    """The cost estimate asks `has` from the widget values alone, for nodes without image inputs."""
    widgets = {**defaults(RV), "prompt": "a cat", "seed": 8, **SMALL}
    key = result_cache.key_for(RV, widgets, None)
    assert key is not None and not result_cache.has(key)
    run(RV, **widgets)
    assert result_cache.has(key) and result_cache.key_for(RV, {"prompt": "a cat", "seed": 8, **SMALL}) == key
    # A node whose images are not known cannot be priced from its widgets.
    assert result_cache.key_for(IMG2IMG, {**defaults(IMG2IMG), "prompt": "a cat", "seed": 8}, None) is None
    assert result_cache.key_for(RV, {**widgets, "img_width": 257}, None) is None  # invalid: no key


def test_seed_minus_one_is_never_cached(fake_segmind, fake_sinkin):
    for _ in range(2):
        run(RV, prompt="a cat", seed=-1, **SMALL)
        run(Txt2Img, prompt="a cat", seed=-1, **SINKIN_SMALL)
        run(ANY, slug="custom-model", parameters='{"prompt": "x"}')  # no seed in the body: a new image
        run(ANY, slug="custom-model", parameters='{"prompt": "x", "seed": -1}')
    assert fake_segmind.generated == 6 and fake_sinkin.inferences == 2
    assert result_cache.stats()["results"] == 0
    assert result_cache.key_for(RV, {"prompt": "a cat", "seed": -1}) is None


def test_failures_are_never_cached(fake_sinkin, fake_segmind_v2):
    fake_segmind_v2.script.append(json_answer(500, {"error": "boom"}))  # maybe charged: not sent again
    with pytest.raises(ProviderError):
        run(RV, prompt="a cat", seed=9, **SMALL)
    for _ in range(2):  # a job that ends FAILED
        with pytest.raises(ProviderError):
            run(RV, prompt="explode", seed=9, **SMALL)
    fake_sinkin.script.append(fake_sinkin_module.failure("Out of credits"))
    with pytest.raises(ProviderError):
        run(Txt2Img, prompt="a cat", seed=9, **SINKIN_SMALL)
    assert result_cache.stats()["results"] == 0
    submits = len(fake_segmind_v2.submits())
    run(RV, prompt="a cat", seed=9, **SMALL)  # the same request once it succeeds: asked, then stored
    run(Txt2Img, prompt="a cat", seed=9, **SINKIN_SMALL)
    assert len(fake_segmind_v2.submits()) == submits + 1 and fake_sinkin.inferences == 1
    run(RV, prompt="a cat", seed=9, **SMALL)
    run(Txt2Img, prompt="a cat", seed=9, **SINKIN_SMALL)
    assert len(fake_segmind_v2.submits()) == submits + 1 and fake_sinkin.inferences == 1


def test_an_answer_without_an_image_is_not_stored(fake_segmind):
    fake_segmind.script.append(json_answer(200, {"text": "no picture"}))
    run(ANY, slug="custom-model", parameters='{"prompt": "x", "seed": 5}')
    assert result_cache.stats()["results"] == 0


def _entry(n: int, size: int) -> list[bytes]:
    return [bytes([n % 256]) * size]


def test_the_least_recently_used_go_first_when_over_the_bound(monkeypatch):
    monkeypatch.setenv(result_cache.SIZE_ENV, "1")
    third = 400 * 1024  # two fit in 1 MB; the third pushes one out
    for name in ("a", "b"):
        assert result_cache.store(name * 64, _entry(ord(name), third), {"n": name})
        time.sleep(0.01)
    assert result_cache.lookup("a" * 64) is not None  # "a" used last now
    time.sleep(0.01)
    assert result_cache.store("c" * 64, _entry(3, third), {"n": "c"})
    assert not result_cache.has("b" * 64)
    assert result_cache.has("a" * 64) and result_cache.has("c" * 64)
    assert result_cache.stats()["bytes"] <= 1024 * 1024
    assert sorted(p.name for p in (result_cache.folder() / "entries").iterdir()) == ["a" * 64, "c" * 64]
    # A result larger than the whole cache is not stored (and pushes nothing out).
    assert not result_cache.store("d" * 64, _entry(4, 2 * 1024 * 1024), {})
    assert result_cache.has("a" * 64) and result_cache.has("c" * 64)


WRITER_SCRIPT = """
from sdbridge.nodes.hosted.store import result_cache
for i in range(60):
    key = f"{i % 40:02d}" * 32  # the two writers share half their keys
    result_cache.store(key, [bytes([i % 256, worker]) * 20000], {"i": i, "worker": worker})
    result_cache.lookup(f"{(i * 7) % 40:02d}" * 32)
"""


def test_two_processes_writing_at_once_leave_a_consistent_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(result_cache.SIZE_ENV, "1")  # ~25 entries fit: eviction runs all along
    run_two_at_once(ROOT, WRITER_SCRIPT, tmp_path)
    index = json.loads((result_cache.folder() / "index.json").read_text())["entries"]
    folders = {p.name for p in (result_cache.folder() / "entries").iterdir()}
    assert set(index) == folders and 0 < len(index) <= 40
    assert sum(entry["bytes"] for entry in index.values()) <= 1024 * 1024
    for key in index:
        images, info = result_cache.lookup(key)
        assert images == [bytes([info["i"] % 256, info["worker"]]) * 20000]


def test_off_by_environment_or_setting_and_the_environment_wins(fake_segmind, monkeypatch):
    monkeypatch.setenv(result_cache.SWITCH_ENV, "off")
    for _ in range(2):
        run(RV, prompt="a cat", seed=1, **SMALL)
    assert fake_segmind.generated == 2 and not (result_cache.folder() / "entries").exists()
    monkeypatch.delenv(result_cache.SWITCH_ENV)
    pack_settings.store(result_cache.SWITCH_ENV, "off")
    for _ in range(2):
        run(RV, prompt="a cat", seed=1, **SMALL)
    assert fake_segmind.generated == 4 and result_cache.stats() == {
        "enabled": False, "results": 0, "bytes": 0, "limit_bytes": 2048 * 1024 * 1024}
    monkeypatch.setenv(result_cache.SWITCH_ENV, "on")  # the environment wins over the setting
    for _ in range(2):
        run(RV, prompt="a cat", seed=1, **SMALL)
    assert fake_segmind.generated == 5
    # Off also hides what is stored: nothing is answered from it.
    monkeypatch.setenv(result_cache.SWITCH_ENV, "OFF")
    run(RV, prompt="a cat", seed=1, **SMALL)
    assert fake_segmind.generated == 6


def test_clearing_removes_everything_and_the_next_run_asks(fake_segmind):
    run(RV, prompt="a cat", seed=1, samples=2, **SMALL)
    run(RV, prompt="a dog", seed=1, **SMALL)
    stored = result_cache.stats()
    assert stored["results"] == 2
    files, size = result_cache.clear()
    assert files == 5 and size >= stored["bytes"] - 2 * 1024  # three images and two entry files
    assert result_cache.stats()["results"] == 0 and not any((result_cache.folder() / "entries").iterdir())
    run(RV, prompt="a cat", seed=1, samples=2, **SMALL)
    assert fake_segmind.generated == 5


@pytest.mark.parametrize("damage", ["image", "entry", "missing"])
def test_a_damaged_entry_is_a_miss_and_is_removed(fake_sinkin, damage, pack_log):
    values = {"prompt": "a cat", "seed": 6, **SINKIN_SMALL}
    run(Txt2Img, **values)
    folder = result_cache.folder() / "entries" / _key(Txt2Img, values)
    if damage == "image":
        data = bytearray((folder / "0").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "0").write_bytes(bytes(data))
    elif damage == "entry":
        (folder / "entry.json").write_text('{"info": {"seed"')
    else:
        (folder / "0").unlink()
    images, _ = run(Txt2Img, **values)
    assert fake_sinkin.inferences == 2 and tuple(images.shape) == (1, 128, 128, 3)
    assert "damaged result cache entry" in pack_log.text
    run(Txt2Img, **values)  # stored again, whole
    assert fake_sinkin.inferences == 2


def test_a_cache_that_cannot_be_written_never_fails_a_run(fake_sinkin, monkeypatch, pack_log):
    monkeypatch.setattr(result_cache, "LOCK_TIMEOUT", 0.05)
    result_cache.folder().mkdir(parents=True)
    from filelock import FileLock

    with FileLock(str(result_cache.folder() / "index.lock")):  # another process holds it
        images, _ = run(Txt2Img, prompt="a cat", seed=1, **SINKIN_SMALL)
    assert tuple(images.shape) == (1, 128, 128, 3) and "could not be written" in pack_log.text
    assert result_cache.stats()["results"] == 0 and not [
        p for p in (result_cache.folder() / "entries").iterdir()]  # the temporary folder went too


# ---------------------------------------------------------------- the routes

async def _call(session, method, url, **kwargs):
    status, text = await call(session, method, url, **kwargs)
    return status, json.loads(text)


def test_the_cache_routes_show_and_clear_it():
    result_cache.store("e" * 64, [b"x" * 1000], {"n": 1})

    async def script(session, base):
        return [await _call(session, "GET", f"{base}/sdbridge/result-cache"),
                await _call(session, "POST", f"{base}/sdbridge/result-cache/clear", data=b"{}"),  # not JSON-typed
                await _call(session, "POST", f"{base}/sdbridge/result-cache/clear", json=[]),
                await _call(session, "POST", f"{base}/sdbridge/result-cache/clear", json={"pad": "x" * 5000}),
                await _call(session, "POST", f"{base}/sdbridge/result-cache/clear", json={}),
                await _call(session, "GET", f"{base}/sdbridge/result-cache")]

    stats, untyped, listed, large, cleared, after = serve(script)
    assert stats == (200, {"enabled": True, "results": 1, "bytes": stats[1]["bytes"], "limit_bytes": 2048 * 1024 * 1024})
    assert stats[1]["bytes"] > 1000
    assert (untyped[0], listed[0], large[0]) == (415, 400, 413)
    assert cleared[0] == 200 and cleared[1]["files"] == 2 and cleared[1]["bytes"] > 1000
    assert after[1]["results"] == 0


@pytest.mark.parametrize(("name", "good", "bad"), [
    (result_cache.SWITCH_ENV, "off", "maybe"),
    (result_cache.SIZE_ENV, "512", "-5"),
    (caps.RUN_CAP, "2.5", "-1"),
    (caps.DAY_CAP, "0", "lots"),
])
def test_the_new_settings_are_checked_saved_and_lose_to_the_environment(name, good, bad, monkeypatch):
    async def script(session, base):
        url = f"{base}/sdbridge/settings/{name}"
        return [await _call(session, "POST", url, json={"value": bad}),
                await _call(session, "POST", url, json={"value": good}),
                await _call(session, "GET", f"{base}/sdbridge/settings")]

    refused, saved, listed = serve(script)
    assert refused[0] == 400 and refused[1]["error"]
    assert saved[0] == 200 and saved[1]["value"] == good and saved[1]["source"] == "file"
    assert pack_settings.value(name) == good
    entry = next(e for e in listed[1]["settings"] if e["name"] == name)
    assert entry["value"] == good and entry["label"] and entry["help"] and entry["default"]
    monkeypatch.setenv(name, "7")
    assert pack_settings.value(name) == "7" and pack_settings.source(name) == "environment"
    saved_again = serve(lambda session, base: _call(session, "POST", f"{base}/sdbridge/settings/{name}",
                                                     json={"value": good}))
    assert "wins over this setting" in saved_again[1]["note"]


def test_the_size_setting_bounds_the_cache():
    assert result_cache.limit_bytes() == 2048 * 1024 * 1024
    pack_settings.store(result_cache.SIZE_ENV, "3")
    assert result_cache.limit_bytes() == 3 * 1024 * 1024


def test_a_result_holding_a_key_is_never_written(monkeypatch):
    monkeypatch.setenv("SINKIN_API_KEY", "sinkin-secret-0123456789")
    assert not result_cache.store("f" * 64, [b"PNG...sinkin-secret-0123456789..."], {})
    assert not result_cache.store("f" * 64, [b"PNG"], {"echo": "sinkin-secret-0123456789"})
    assert result_cache.store("f" * 64, [b"PNG"], {"echo": "nothing"})
    assert result_cache.stats()["results"] == 1


# ---------------------------------------------------------------- Settings > SD Bridge

WEB_DRIVER = """import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
${DOM}
api.answers = JSON.parse(process.argv[2]);
await import("./extensions/sdbridge/sdbridge.js");
const [extension] = app.extensions;
const rows = extension.settings.filter((s) => !s.id.startsWith("SDBridge.Keys."));
const made = rows.map((s) => s.type());
await new Promise((resolve) => setTimeout(resolve, 10));
const lines = made.map((row) => row.children[0].textContent);
const clear = made[made.length - 1].children[1];
clear.onclick();
await new Promise((resolve) => setTimeout(resolve, 10));
console.log(JSON.stringify({ rows: rows.map((s) => [s.id, s.category, s.name, s.tooltip]), lines,
  defaults: rows.map((s) => s.defaultValue ?? null),
  posts: api.calls.filter((c) => Array.isArray(c)), toasts: app.toasts.map((t) => [t.severity, t.summary, t.detail]) }));
"""


def test_settings_rows_come_from_the_server_and_the_cache_can_be_cleared(tmp_path, monkeypatch):
    from support.webjs import NODE_JS, run_extension

    if NODE_JS is None:
        pytest.skip("Node.js is not installed")
    from sdbridge.nodes.hosted.provider_table import PROVIDERS

    monkeypatch.setenv(caps.DAY_CAP, "50")
    pack_settings.store(result_cache.SIZE_ENV, "512")
    result_cache.store("a" * 64, [b"x" * 1000], {})
    answers = {"/sdbridge/providers": {"providers": [p.for_web() for p in PROVIDERS.values()]},
               "/sdbridge/settings": {"settings": [s.for_web() for s in declared_settings.declared()]},
               "/sdbridge/result-cache": result_cache.stats(),
               "/sdbridge/result-cache/clear": {"files": 3, "bytes": 2 * 1024 * 1024}}
    result = run_extension(tmp_path, "sdbridge.js", WEB_DRIVER, answers)
    names = [s.name for s in declared_settings.declared()]
    assert [row[0] for row in result["rows"]] == [f"SDBridge.Setting.{n}" for n in names] + ["SDBridge.ResultCache.Clear"]
    by_id = {row[0]: row for row in result["rows"]}
    assert by_id[f"SDBridge.Setting.{result_cache.SWITCH_ENV}"][1] == ["SD Bridge", "Result cache", "Cache"]
    assert by_id[f"SDBridge.Setting.{caps.RUN_CAP}"][1:3] == [
        ["SD Bridge", "Spending", "Per run"], "Most credits per run"]
    assert all(f"Or set {n} before starting ComfyUI, which wins" in by_id[f"SDBridge.Setting.{n}"][3] for n in names)
    assert all(value is None for value in result["defaults"])  # nothing kept as a browser setting
    lines = dict(zip([row[0] for row in result["rows"]], result["lines"], strict=True))
    assert lines[f"SDBridge.Setting.{result_cache.SWITCH_ENV}"] == "not set: on"
    assert lines[f"SDBridge.Setting.{result_cache.SIZE_ENV}"] == "512 (saved on the server)"
    assert lines[f"SDBridge.Setting.{caps.RUN_CAP}"] == "not set: no cap"
    assert lines[f"SDBridge.Setting.{caps.DAY_CAP}"] == \
        "50 (from SDBRIDGE_MAX_CREDITS_PER_DAY, which wins over a value saved here)"
    assert lines["SDBridge.ResultCache.Clear"] == "1 result, 0.0 MB of 512.0 MB"
    assert result["posts"] == [["/sdbridge/result-cache/clear", "POST", {}]]
    assert result["toasts"] == [["success", "Result cache cleared", "removed 3 files (2.0 MB)"]]


def test_a_hit_spends_nothing_passes_any_cap_and_the_estimate_prices_it_at_zero(fake_sinkin, monkeypatch):
    events = []
    monkeypatch.setattr(runtime, "send_event", lambda name, data: events.append((name, data)))
    values = {"prompt": "a cat", "seed": 7, **SINKIN_SMALL}
    prompt = {"3": {"class_type": Txt2Img.__name__, "inputs": {**defaults(Txt2Img), **values}}}
    assert budget.estimate_prompt(prompt, hosted_classes(), result_cache.cached_inputs)["nodes"]["3"]["basis"] != \
        "cached result: no request"
    first = json.loads(run(Txt2Img, **values)[1])
    assert first["credits_spent"] == 0.5 and first["credits_basis"] == "measured" and "cache" not in first
    assert budget.estimate_prompt(prompt, hosted_classes(), result_cache.cached_inputs)["nodes"]["3"] == {
        "provider": "sinkin", "credits": 0.0, "basis": "cached result: no request"}
    linked = {"3": {**prompt["3"], "inputs": {**prompt["3"]["inputs"], "prompt": ["9", 0]}}}
    assert budget.estimate_prompt(linked, hosted_classes(), result_cache.cached_inputs)["nodes"]["3"]["basis"] != \
        "cached result: no request"  # a prompt from another node is known only at run time
    monkeypatch.setenv(caps.RUN_CAP, "0")  # nothing may be spent: a hit still runs
    second = json.loads(run(Txt2Img, **values)[1])
    assert fake_sinkin.inferences == 1
    assert second["credits_spent"] == 0 and second["credits_basis"] == "cached"
    assert second["cache"] == {"hit": True, "saved_credits": 0.5}
    spent = [event for event in events if event[0] == "sdbridge.spent"]
    assert spent[-1] == ("sdbridge.spent", {"node": "7", "provider": "sinkin", "credits": 0, "basis": "cached"})
    with pytest.raises(errors.BudgetExceeded):  # a miss under the same cap sends nothing
        run(Txt2Img, **{**values, "seed": 8})
    assert fake_sinkin.inferences == 1
