"""web/sdbridge_costs.js in Node.js: the prompt it prices, each node's badge, the total by the Run
button, caps, and what a node spent after a run. The estimates it is fed are made by the pack's
own route logic from the very prompt the extension sends."""

from __future__ import annotations

import json

import pytest
from support.webjs import NODE_JS, run_extension

from sdbridge.nodes import routes
from sdbridge.nodes.hosted.money import caps

pytestmark = pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")

SDXL_INPUTS = {"prompt": "a panda", "samples": 1, "seed": 7}
OUTPUT = {"1": {"class_type": "SDBridgeSegmindSDXL", "inputs": SDXL_INPUTS},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
# What the extension must send: Run's prompt, plus the bypassed SinkIn node priced at zero.
SENT = {**OUTPUT, "2": {"class_type": "SDBridgeSinkInTxt2Img", "inputs": {}, "mode": 4}}

DRIVER = """import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
${DOM}
globalThis.document.body = { append() {} };
const answers = JSON.parse(process.argv[2]);
api.answers = { "/sdbridge/estimate": answers.plain };
const sdxl = { id: 1, comfyClass: "SDBridgeSegmindSDXL", mode: 0, size: [300, 200], flags: {},
               widgets: [{ value: "a panda" }, { value: 1 }], inputs: [] };
app.graph.nodes = [sdxl,
  { id: 2, comfyClass: "SDBridgeSinkInTxt2Img", mode: 4, widgets: [{ value: "x" }], inputs: [] },
  { id: 3, comfyClass: "SaveImage", mode: 0, widgets: [], inputs: [{ link: 1 }] }];
app.graphToPrompt = async () => ({ workflow: {}, output: answers.output });
const costs = await import("./extensions/sdbridge/sdbridge_costs.js");
const extension = app.extensions.find((e) => e.name === "SDBridge.Costs");
const nodeType = { prototype: {} };
await extension.beforeRegisterNodeDef(nodeType, { name: "SDBridgeSegmindSDXL" });
const skipped = { prototype: {} };
await extension.beforeRegisterNodeDef(skipped, { name: "KSampler" });
await extension.setup();
const drawn = [];
const ctx = { save() {}, restore() {}, beginPath() {}, rect() {}, fill() {}, measureText: (t) => ({ width: t.length * 6 }),
              fillText: (text) => drawn.push(text) };
const out = {};
await costs.refreshEstimates();
out.sent = api.calls.filter((c) => Array.isArray(c) && c[0] === "/sdbridge/estimate").map((c) => c[2]);
out.before = [costs.badgeFor(1), costs.badgeFor(2), costs.badgeFor(3)];
nodeType.prototype.onDrawForeground.call(sdxl, ctx);
out.drawn = [...drawn];
out.patchedOthers = typeof skipped.prototype.onDrawForeground;
out.pill = [costs.totalText(answers.plain).text];
await costs.refreshEstimates();
out.unchangedSends = api.calls.length;
api.emit("execution_start", {});
api.emit("sdbridge.spent", { node: "1", provider: "segmind", credits: 1, basis: "measured", unit: "credits (US$)" });
out.afterRun = [costs.badgeFor(1), costs.totalText(answers.plain, { 1: { credits: 1, unit: "credits (US$)" } }).text];
await costs.refreshEstimates();
out.keptAfterRun = costs.badgeFor(1);
sdxl.widgets[1].value = 2;  // an edit: estimates again
await costs.refreshEstimates();
out.afterEdit = costs.badgeFor(1);
api.answers["/sdbridge/estimate"] = answers.capped;
const capped = await costs.refreshEstimates(true);
out.capped = costs.totalText(capped);
out.unknown = costs.totalText(answers.unknown).text;
out.unknownBadge = costs.badgeText(answers.unknown.nodes["1"]);
out.cachedBadge = costs.badgeText({ credits: 0, basis: "cached result: no request" });
out.mixed = costs.totalText(answers.mixed).text;
out.mixedSpent = costs.totalText(answers.mixed, { 1: { credits: 0.5, unit: "credits (US$)" }, 2: { credits: 2, unit: "credits" } }).text;
// The page decides nothing: the server's verdict is shown whatever the figures say.
out.serverSaysGo = costs.totalText({ ...answers.capped, verdict: { go: true, reason: "" } }).over;
out.serverSaysStop = costs.totalText({ ...answers.plain, verdict: { go: false, reason: "the server's reason" } });
console.log(JSON.stringify(out));
process.exit(0);
"""


def _answer(prompt: dict) -> dict:
    return routes.estimate_answer(prompt)


MIXED = {"1": {"class_type": "SDBridgeSegmindSDXL", "inputs": SDXL_INPUTS},
         "2": {"class_type": "SDBridgeSinkInTxt2Img", "inputs": {"model_id": "yBG2r9O", "prompt": "x"}}}


def test_badges_total_caps_and_spent(tmp_path, monkeypatch):
    plain = _answer(SENT)
    unknown = _answer({"1": {"class_type": "SDBridgeSegmindRealisticVision", "inputs": {"prompt": "x"}}})
    mixed = _answer(MIXED)
    monkeypatch.setenv(caps.RUN_CAP, "0.001")
    capped = _answer(SENT)
    assert capped["verdict"]["go"] is False and plain["verdict"]["go"] is True
    out = run_extension(tmp_path, "sdbridge_costs.js", DRIVER,
                        {"output": OUTPUT, "plain": plain, "capped": capped, "unknown": unknown, "mixed": mixed})

    assert out["sent"][0] == {"prompt": SENT}
    estimate = plain["nodes"]["1"]["credits"]
    assert plain["nodes"]["1"]["basis"].startswith("published price")  # SDXL's published price, scaled
    shown = f"≈ ${float(f'{estimate:.3g}'):g}"          # Segmind's credits are US dollars
    assert out["before"] == [shown, None, None]          # bypassed: no badge; core nodes: none
    assert out["drawn"] == [shown]
    assert out["patchedOthers"] == "undefined"            # only SD Bridge nodes get a badge
    assert out["pill"] == [f"SD Bridge: ≈ {float(f'{estimate:.3g}'):g} credits (US$)"]
    assert out["unchangedSends"] == len(out["sent"])      # nothing changed: nothing asked
    assert out["afterRun"] == ["spent $1", "SD Bridge: spent 1 credit (US$)"]
    assert out["keptAfterRun"] == "spent $1"
    assert out["afterEdit"] == shown
    assert out["capped"]["over"] is True
    assert out["capped"]["text"].startswith("⚠ SD Bridge:") and "cap 0.001/run" in out["capped"]["text"]
    assert out["capped"]["title"].startswith(capped["verdict"]["reason"])  # the server's words
    assert "above the cap of 0.001 per run" in out["capped"]["title"]
    assert out["unknown"] == "SD Bridge: cost unknown"
    assert out["unknownBadge"] == "cost ?"
    assert out["cachedBadge"] == "cached · 0"
    # Two providers: each figure in its own unit, never one sum of dollars and credits.
    assert out["mixed"] == "SD Bridge: Segmind ≈ 0.00813 credits (US$) · SinkIn cost unknown"
    assert out["mixedSpent"] == "SD Bridge: spent 0.5 credits (US$) · 2 credits"
    assert out["serverSaysGo"] is False
    assert out["serverSaysStop"]["over"] is True and out["serverSaysStop"]["title"].startswith("the server's reason")


def test_the_route_answer_has_what_the_extension_reads():
    answer = _answer(SENT)
    assert set(answer) == {"total", "nodes", "unknown", "caps", "providers", "verdict"}
    assert set(answer["caps"]) >= {"per_run", "per_day", "spent_today", "by_provider", "applies_to"}
    assert answer["verdict"] == {"go": True, "reason": "", "cap": None, "provider": None}
    assert answer["providers"]["segmind"]["unit"] == "credits (US$)"
    assert answer["caps"]["by_provider"]["sinkin"]["unit"] == "credits"
    assert json.dumps(answer)  # plain JSON
