"""The key-settings routes, served by a real aiohttp app on 127.0.0.1 (what ComfyUI's server is)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.serving import call as _call
from support.serving import serve

from sdbridge.nodes import runtime
from sdbridge.nodes.hosted.keys import credentials
from sdbridge.nodes.hosted.money import caps
from sdbridge.nodes.hosted.provider_table import SEGMIND, SINKIN

CANARY = "key-CANARY-0a1b2c3d4e5f"


def test_saving_reading_and_clearing_a_key_never_returns_it():
    async def script(session, base):
        answers = [await _call(session, "GET", f"{base}/sdbridge/keys")]
        answers.append(await _call(session, "POST", f"{base}/sdbridge/keys/segmind", json={"key": f"  {CANARY} "}))
        answers.append(await _call(session, "GET", f"{base}/sdbridge/keys"))
        saved = credentials.api_key(SEGMIND)
        answers.append(await _call(session, "POST", f"{base}/sdbridge/keys/segmind", json={"key": ""}))
        return answers, saved

    answers, saved = serve(script)
    assert saved == CANARY  # stored, trimmed
    assert all(status == 200 for status, _ in answers)
    assert not any(CANARY in text for _, text in answers)
    before, after_save, status, after_clear = (json.loads(text) for _, text in answers)
    assert before["segmind"] == {"set": False, "source": None, "env": "SEGMIND_API_KEY"}
    assert after_save == {"set": True, "source": "file", "env": "SEGMIND_API_KEY"}
    assert status["segmind"]["set"] and not status["sinkin"]["set"]
    assert after_clear["set"] is False and credentials.key_source(SEGMIND) is None


def test_the_key_file_is_owner_only():
    serve(lambda s, base: _call(s, "POST", f"{base}/sdbridge/keys/sinkin", json={"key": CANARY}))
    assert stat.S_IMODE(os.stat(credentials.key_file()).st_mode) == 0o600
    assert credentials.api_key(SINKIN) == CANARY


def test_the_environment_wins_and_the_answer_says_so(monkeypatch):
    monkeypatch.setenv("SEGMIND_API_KEY", "env-key-1234")
    status, text = serve(lambda s, base: _call(s, "POST", f"{base}/sdbridge/keys/segmind", json={"key": CANARY}))
    answer = json.loads(text)
    assert status == 200 and answer["source"] == "environment" and "wins" in answer["note"]
    assert "env-key-1234" not in text and CANARY not in text


@pytest.mark.parametrize("method, path, kwargs, expected", [
    ("POST", "/sdbridge/keys/openai", {"json": {"key": "abcd1234"}}, 404),
    ("POST", "/sdbridge/keys/..%2F..%2Fsecrets", {"json": {"key": "abcd1234"}}, 404),
    ("POST", "/sdbridge/keys/segmind/../../x", {"json": {"key": "abcd1234"}}, 404),
    ("POST", "/sdbridge/keys/segmind", {"data": "not json"}, 415),
    ("POST", "/sdbridge/keys/segmind", {"data": '{"key": "abcd1234"}', "headers": {"content-type": "text/plain"}}, 415),
    ("POST", "/sdbridge/keys/segmind", {"data": "not json", "headers": {"content-type": "application/json"}}, 400),
    ("POST", "/sdbridge/keys/segmind", {"data": "[" * 100_000, "headers": {"content-type": "application/json"}}, 413),
    ("POST", "/sdbridge/keys/segmind", {"data": "[" * 4000, "headers": {"content-type": "application/json"}}, 400),
    ("POST", "/sdbridge/keys/segmind", {"json": {"key": "     "}}, 400),
    ("POST", "/sdbridge/keys/segmind", {"json": ["abcd1234"]}, 400),
    ("POST", "/sdbridge/keys/segmind", {"json": {"key": 12345678}}, 400),
    ("POST", "/sdbridge/keys/segmind", {"json": {"key": "has a space"}}, 400),
    ("POST", "/sdbridge/keys/segmind", {"json": {"key": "x" * 5000}}, 413),
    ("GET", "/sdbridge/keys/segmind", {}, 405),
])
def test_bad_requests_are_refused_and_write_nothing(method, path, kwargs, expected):
    status, text = serve(lambda s, base: _call(s, method, base + path, **kwargs))
    assert status == expected, text
    assert not credentials.key_file().exists()
    assert not runtime.user_directory().exists() or not [p for p in runtime.user_directory().rglob("*") if p.is_file()]


def test_a_chunked_body_is_bounded_by_the_bytes_read():
    """No Content-Length: the route reads at most its limit, then refuses."""

    async def chunks():
        for _ in range(20):
            yield b" " * 1024

    async def script(session, base):
        return await _call(session, "POST", f"{base}/sdbridge/keys/segmind", data=chunks(),
                           headers={"content-type": "application/json"})

    status, text = serve(script)
    assert status == 413 and not credentials.key_file().exists()


def test_a_key_of_only_spaces_is_refused_and_does_not_clear_the_saved_one():
    credentials.store_key(SEGMIND, "saved-key-1234")
    status, text = serve(lambda s, base: _call(s, "POST", f"{base}/sdbridge/keys/segmind", json={"key": "   "}))
    assert status == 400 and "only spaces" in text and credentials.api_key(SEGMIND) == "saved-key-1234"


def test_no_route_reads_other_files():
    secret = runtime.user_directory() / "default" / "comfy.settings.json"
    secret.parent.mkdir(parents=True)
    secret.write_text('{"token": "other-secret"}')

    async def script(session, base):
        return [await _call(session, "GET", base + path) for path in (
            "/sdbridge/keys", "/sdbridge/keys/../default/comfy.settings.json", "/sdbridge/keys?file=comfy.settings.json")]

    for _status, text in serve(script):
        assert "other-secret" not in text


def test_a_rate_limit_setting_is_saved_checked_and_loses_to_the_environment(monkeypatch):
    from sdbridge.nodes.hosted.http import rate_limit
    from sdbridge.nodes.hosted.http.rate_limit import Plan

    monkeypatch.delenv(SEGMIND.rate_env)

    async def script(session, base):
        url = f"{base}/sdbridge/settings/{SEGMIND.rate_env}"
        answers = [await _call(session, "GET", f"{base}/sdbridge/settings")]
        answers.append(await _call(session, "POST", url, json={"value": "5/60"}))
        answers.append(await _call(session, "POST", url, json={"value": "five a minute"}))
        answers.append(await _call(session, "POST", f"{base}/sdbridge/settings/SEGMIND_API_KEY", json={"value": "x"}))
        answers.append(await _call(session, "POST", url, data=b"[not json"))
        return answers

    (listed, saved, bad, unknown, garbage) = serve(script)
    entries = {e["name"]: e for e in json.loads(listed[1])["settings"]}
    segmind_pace = entries[SEGMIND.rate_env]
    assert {k: segmind_pace[k] for k in ("name", "provider", "value", "source", "default", "section")} == {
        "name": SEGMIND.rate_env, "provider": "segmind", "value": "", "source": None, "default": "the default 50/60",
        "section": ["Rate limits", "Segmind"]}
    assert saved[0] == 200 and json.loads(saved[1])["source"] == "file"
    assert rate_limit.configured_plan(SEGMIND) == Plan(5, 60.0)  # the limiter reads what Settings saved
    assert bad[0] == 400 and "such as 5/60" in json.loads(bad[1])["error"]
    assert unknown[0] == 404 and garbage[0] == 415
    monkeypatch.setenv(SEGMIND.rate_env, "50/60")
    assert rate_limit.configured_plan(SEGMIND) == Plan(50, 60.0)  # the environment wins


# ---------------------------------------------------------------- fuzz: any body, any type

@settings(max_examples=80, deadline=None)
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.recursive(st.none() | st.booleans() | st.text(max_size=20) | st.floats(),
                                   lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                                inner, max_size=3),
                                   max_leaves=8).map(lambda v: json.dumps({"key": v, "value": v}).encode())),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
       path=st.sampled_from(["/sdbridge/keys/segmind", f"/sdbridge/settings/{SEGMIND.rate_env}",
                             f"/sdbridge/settings/{caps.DAY_CAP}", "/sdbridge/result-cache/clear"]))
def test_any_body_gets_an_answer_never_a_server_error(body, content_type, path):
    before = credentials.key_file().read_bytes() if credentials.key_file().exists() else None

    async def script(session, base):
        headers = {"content-type": content_type} if content_type else {}
        return await _call(session, "POST", base + path, data=body, headers=headers)

    status, text = serve(script)
    assert status in (200, 400, 413, 415), text
    if status != 200 and path.startswith("/sdbridge/keys"):
        after = credentials.key_file().read_bytes() if credentials.key_file().exists() else None
        assert after == before  # a refused body writes nothing
