"""The web extension's catalog part, run in Node.js against stand-ins for ComfyUI's `app` and
`api` modules, fed with the real route's answer (skipped where Node.js is not installed)."""

from __future__ import annotations

import asyncio

import pytest
from support.webjs import NODE_JS, run_extension

from sdbridge.nodes.hosted import sinkin_catalog

DRIVER = """import { app } from "./scripts/app.js";
import { api } from "./scripts/api.js";
api.answers = JSON.parse(process.argv[2]);
await import("./extensions/sdbridge/sinkin_catalog.js");
const [extension] = app.extensions;
const widget = (name, value) => ({ name, value, options: { values: [value] } });
const saved = { comfyClass: "SDBridgeSinkInImg2Img", widgets: [widget("model_id", "Old Title (gone1)"), widget("lora", "none")] };
const other = { comfyClass: "KSampler", widgets: [widget("model_id", "x")] };
app.graph.nodes.push(saved, other);
await extension.setup();
const created = { comfyClass: "SDBridgeSinkInTxt2Img", widgets: [widget("model_id", "m"), widget("lora", "none")] };
extension.nodeCreated(created);
const nodeType = { prototype: {} };
await extension.beforeRegisterNodeDef(nodeType, { name: "SDBridgeSinkInTxt2Img" });
const menu = [];
nodeType.prototype.getExtraMenuOptions.call(saved, {}, menu);
menu[0].callback();
await new Promise((resolve) => setTimeout(resolve, 20));
const lists = (node) => Object.fromEntries(node.widgets.map((w) => [w.name, [w.value, w.options.values]]));
console.log(JSON.stringify({ calls: api.calls, saved: lists(saved), created: lists(created), other: lists(other),
  menu: menu.map((item) => item.content), toasts: app.toasts.map((t) => [t.severity, t.detail]) }));
"""


@pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")
def test_the_extension_refreshes_model_and_lora_lists_in_place(tmp_path):
    first = asyncio.run(sinkin_catalog.catalog_for_web())
    refreshed = {**first, "models": ["Today (new1)"], "loras": ["none", "Grain (l2)"], "error": "SinkIn: slow"}
    answers = {"/sdbridge/sinkin/catalog": first, "/sdbridge/sinkin/catalog?refresh=1": refreshed}
    result = run_extension(tmp_path, "sinkin_catalog.js", DRIVER, answers)
    assert result["calls"] == ["/sdbridge/sinkin/catalog", "/sdbridge/sinkin/catalog?refresh=1"]
    assert result["created"]["model_id"] == ["m", first["models"]]
    assert result["created"]["lora"] == ["none", ["none"]]
    assert result["saved"]["model_id"] == ["Old Title (gone1)", ["Today (new1)"]]  # the saved value stays
    assert result["saved"]["lora"] == ["none", ["none", "Grain (l2)"]]
    assert result["other"]["model_id"] == ["x", ["x"]]  # other nodes are left alone
    assert result["menu"] == ["Refresh SinkIn models and LoRAs"]
    assert result["toasts"] == [["error", "SinkIn: slow"]]
