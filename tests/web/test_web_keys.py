"""web/sdbridge.js in Node.js: key settings that never store the key, credits, and toasts for
the failures the pack really reports (the "sdbridge.failed" events made here by the pack's own
code, so a change of a type or field in Python that the extension no longer reads fails this
test)."""

from __future__ import annotations

import pytest
from support.webjs import NODE_JS, run_extension

from sdbridge.nodes import declared_settings, errors, runtime
from sdbridge.nodes.hosted.node import report_failure
from sdbridge.nodes.hosted.providers.segmind import wire as segmind_wire
from sdbridge.nodes.hosted.http.replies import Reply, error_for_status
from sdbridge.nodes.hosted.keys import credentials
from sdbridge.nodes.hosted.provider_table import PROVIDERS, SEGMIND, SINKIN

pytestmark = pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")

DRIVER = """import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
${DOM}
api.answers = JSON.parse(process.argv[2]);
await import("./extensions/sdbridge/sdbridge.js");
const [extension] = app.extensions;
await extension.setup();
const settings = extension.settings.map((s) => ({ id: s.id, category: s.category, default: s.defaultValue,
                                                  type: typeof s.type }));
const row = extension.settings[0].type();
await new Promise((resolve) => setTimeout(resolve, 10));
const [status, controls] = row.children;
const [input, save, clear] = controls.children;
const before = status.textContent;
api.emit("sdbridge.credits", { provider: "segmind", remaining: 42 });
input.value = "  sg-secret-1234  ";
save.onclick();
await new Promise((resolve) => setTimeout(resolve, 10));
const typedAfterSave = input.value;
clear.onclick();
await new Promise((resolve) => setTimeout(resolve, 10));
for (const [name, detail] of api.answers.events) api.emit(name, detail);
api.emit("execution_error", { node_type: "SDBridgeSegmindSDXL", exception_message: "Segmind: no API key is set" });
console.log(JSON.stringify({ settings, before, typedAfterSave, calls: api.calls,
  toasts: app.toasts.map((t) => [t.severity, t.summary, t.detail, t.life]) }));
"""


def _reported_failures(monkeypatch) -> list:
    """The events a hosted node sends for a missing key, a refused key, no credits, a server
    error, a request that may have been charged (with and without its id), and a spending cap."""
    try:
        credentials.api_key(SEGMIND)
    except errors.MissingKeyError as exc:
        missing = exc
    answer = Reply(401, {"content-type": "application/json"}, b'{"error": "bad token"}', "", 0.1)
    refused = error_for_status(SINKIN, answer)
    broke = error_for_status(SEGMIND, Reply(406, {}, b"", "", 0.1))
    server = error_for_status(SEGMIND, Reply(500, {}, b"", "", 0.1), attempts=3)
    try:
        segmind_wire._read_job(Reply(200, {"content-type": "application/json"}, b'{"status": "QUEUED"}', "", 0.1))
    except errors.MaybeCharged as exc:
        lost_id = exc
    charged = errors.MaybeCharged(SINKIN, "lost the answer.", stage="status", request_id="req-9")
    capped = errors.BudgetExceeded("SD Bridge: the cap would be passed.")
    sent = []
    monkeypatch.setattr(runtime, "send_event", lambda name, data: sent.append([name, data]))
    for error in (missing, refused, broke, server, lost_id, charged, capped):
        report_failure(error, "7")
    return sent


def test_key_settings_credits_and_toasts(tmp_path, monkeypatch):
    status = {"segmind": {"set": True, "source": "environment", "env": SEGMIND.key_env},
              "sinkin": {"set": False, "source": None, "env": SINKIN.key_env}}
    answers = {"/sdbridge/keys": status, "/sdbridge/keys/segmind": {"set": True, "source": "file"},
               "/sdbridge/providers": {"providers": [p.for_web() for p in PROVIDERS.values()]},
               "events": _reported_failures(monkeypatch)}
    result = run_extension(tmp_path, "sdbridge.js", DRIVER, answers)
    # One settings row per provider of the table, rendered by the pack: no stored default value
    # that could hold a key.
    keys = [s["id"] for s in result["settings"] if s["id"].startswith("SDBridge.Keys.")]
    assert keys == ["SDBridge.Keys.Segmind", "SDBridge.Keys.SinkIn"]
    assert all(s["type"] == "function" and s.get("default") is None for s in result["settings"])
    assert result["before"] == "set (from SEGMIND_API_KEY); SEGMIND_API_KEY wins over a key saved here"
    # Save posts the trimmed key once, then the field is emptied; Clear posts an empty key.
    posts = [call for call in result["calls"] if isinstance(call, list)]
    assert posts == [["/sdbridge/keys/segmind", "POST", {"key": "sg-secret-1234"}],
                     ["/sdbridge/keys/segmind", "POST", {"key": ""}]]
    assert result["typedAfterSave"] == ""
    toasts = result["toasts"]
    assert ["success", "Segmind API key", "saved", 5000] in toasts and ["success", "Segmind API key", "cleared", 5000] in toasts
    failures = [t for t in toasts if t[0] == "warn"]
    assert failures == [
        ["warn", "Segmind: no API key", "Set SEGMIND_API_KEY before starting ComfyUI, or paste the key in Settings → SD Bridge.",
         5000],
        ["warn", "SinkIn: key refused", "Paste a valid key in Settings → SD Bridge.", 5000],
        ["warn", "Segmind: out of credits", f"Top up at {SEGMIND.billing_page}, then run again.", 5000],
        ["warn", "Segmind: may have been charged", "The request may have run and been billed, so it was not sent again. "
         f"Check your usage at {SEGMIND.billing_page} before running again.", 15000],
        ["warn", "SinkIn: may have been charged", "The request (request req-9) may have run and been billed, so it was "
         f"not sent again. Check your usage at {SINKIN.billing_page} before running again.", 15000],
    ]  # a server error, a cap, or ComfyUI's own error event gets no toast: ComfyUI's error card says it all


PACE_DRIVER = """import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
${DOM}
api.answers = JSON.parse(process.argv[2]);
await import("./extensions/sdbridge/sdbridge.js");
const [extension] = app.extensions;
const rows = extension.settings.filter((s) => s.id.startsWith("SDBridge.Setting."));
const made = rows.map((s) => s.type());
await new Promise((resolve) => setTimeout(resolve, 10));
const lines = made.map((row) => row.children[0].textContent);
const [input, save] = made[0].children[1].children;
input.value = " 5/60 ";
save.onclick();
await new Promise((resolve) => setTimeout(resolve, 10));
console.log(JSON.stringify({ ids: rows.map((s) => s.id), categories: rows.map((s) => s.category), lines,
  posts: api.calls.filter((c) => Array.isArray(c)), toasts: app.toasts.map((t) => [t.severity, t.summary, t.detail]) }));
"""


def test_rate_limit_rows_show_the_pace_and_save_it_on_the_server(tmp_path, monkeypatch):
    monkeypatch.delenv(SEGMIND.rate_env)
    monkeypatch.setenv(SINKIN.rate_env, "10/60")
    settings = {"settings": [s.for_web() for s in declared_settings.declared()]}  # what the route answers
    answers = {"/sdbridge/providers": {"providers": [p.for_web() for p in PROVIDERS.values()]},
               "/sdbridge/settings": settings,
               f"/sdbridge/settings/{SEGMIND.rate_env}": {"name": SEGMIND.rate_env, "value": "5/60", "source": "file"}}
    result = run_extension(tmp_path, "sdbridge.js", PACE_DRIVER, answers)
    assert result["ids"][:2] == [f"SDBridge.Setting.{SEGMIND.rate_env}", f"SDBridge.Setting.{SINKIN.rate_env}"]
    assert result["categories"][0] == ["SD Bridge", "Rate limits", "Segmind"]
    assert result["lines"][:2] == ["not set: the default 50/60",
                                   "10/60 (from SDBRIDGE_SINKIN_RATE, which wins over a value saved here)"]
    assert result["posts"] == [[f"/sdbridge/settings/{SEGMIND.rate_env}", "POST", {"value": "5/60"}]]
    assert result["toasts"] == [["success", "Segmind requests allowed", "saved: 5/60"]]
