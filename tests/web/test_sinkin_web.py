"""The web extension's catalog part, run in Node.js against stand-ins for ComfyUI's `app` and
`api` modules, fed with the real route's answer (skipped where Node.js is not installed)."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import make_mocked_request
from support.webjs import NODE_JS, run_extension

from sdbridge.nodes import routes


def route_answer(query: str) -> dict:
    request = make_mocked_request("GET", "/sdbridge/sinkin/catalog" + query)
    return json.loads(asyncio.run(routes.sinkin_models(request)).text)


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
const hostedType = { prototype: {} };
await extension.beforeRegisterNodeDef(hostedType, { name: "SDBridgeSegmindSDXL" });
const menu = [];
nodeType.prototype.getExtraMenuOptions.call(saved, {}, menu);
menu[0].callback();
await new Promise((resolve) => setTimeout(resolve, 20));
const lists = (node) => Object.fromEntries(node.widgets.map((w) => [w.name, [w.value, w.options.values]]));
console.log(JSON.stringify({ calls: api.calls, saved: lists(saved), created: lists(created), other: lists(other),
  menu: menu.map((item) => item.content), otherMenu: typeof hostedType.prototype.getExtraMenuOptions, toasts: app.toasts.map((t) => [t.severity, t.detail]) }));
"""


@pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")
def test_the_extension_refreshes_model_and_lora_lists_in_place(tmp_path):
    first = route_answer("?cached=1")  # the route's real answer: lists, and which widgets show them
    refreshed = {**first, "models": ["Today (new1)"], "loras": ["none", "Grain (l2)"], "error": "SinkIn: slow"}
    answers = {"/sdbridge/sinkin/catalog?cached=1": first, "/sdbridge/sinkin/catalog": first,
               "/sdbridge/sinkin/catalog?refresh=1": refreshed}
    result = run_extension(tmp_path, "sinkin_catalog.js", DRIVER, answers)
    # At load the server's copy, at setup a read of SinkIn if it is old, then the menu's refresh.
    assert result["calls"] == ["/sdbridge/sinkin/catalog?cached=1", "/sdbridge/sinkin/catalog",
                               "/sdbridge/sinkin/catalog?refresh=1"]
    assert result["created"]["model_id"] == ["m", first["models"]]
    assert result["created"]["lora"] == ["none", ["none"]]
    assert result["saved"]["model_id"] == ["Old Title (gone1)", ["Today (new1)"]]  # the saved value stays
    assert result["saved"]["lora"] == ["none", ["none", "Grain (l2)"]]
    assert result["other"]["model_id"] == ["x", ["x"]]  # other nodes are left alone
    assert result["menu"] == ["Refresh SinkIn models and LoRAs", "Pick model by picture…", "Pick LoRA by picture…"]
    assert result["otherMenu"] == "undefined"  # only the nodes the route names get the menu
    assert result["toasts"] == [["error", "SinkIn: slow"]]
