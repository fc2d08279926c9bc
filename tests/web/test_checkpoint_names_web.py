"""The web extension that rewrites the Load Checkpoint's earlier model spelling, run in Node.js
against the stand-ins (skipped where Node.js is not installed)."""

from __future__ import annotations

import pytest
from support.webjs import NODE_JS, run_extension

DRIVER = """import { app } from "./scripts/app.js";
await import("./extensions/sdbridge/checkpoint_names.js");
const [extension] = app.extensions;
const loader = (values) => ({ type: "SDBridgeLoadCheckpoint", widgets_values: values });
const graph = {
  nodes: [loader(["checkpoints/Realistic_Vision_V3.0.safetensors", ""]), loader(["sd_xl_base_1.0.safetensors", ""]),
          loader(["diffusers/tiny-sdxl_base", ""]), loader({ model: "checkpoints/sub/x.safetensors", path_or_hub_id: "" }),
          { type: "CheckpointLoaderSimple", widgets_values: ["checkpoints/keep.safetensors"] }, loader(undefined)],
  definitions: { subgraphs: [{ nodes: [loader(["checkpoints/in_subgraph.safetensors", ""])] }] },
};
extension.beforeConfigureGraph(graph, []);
extension.beforeConfigureGraph({}, []);
console.log(JSON.stringify({ values: graph.nodes.map((n) => n.widgets_values ?? null),
  subgraph: graph.definitions.subgraphs[0].nodes[0].widgets_values }));
"""


@pytest.mark.skipif(NODE_JS is None, reason="Node.js is not installed")
def test_a_workflow_saved_with_checkpoints_prefix_loads_with_the_bare_file_name(tmp_path):
    result = run_extension(tmp_path, "checkpoint_names.js", DRIVER, {})
    assert result["values"] == [["Realistic_Vision_V3.0.safetensors", ""], ["sd_xl_base_1.0.safetensors", ""],
                                ["diffusers/tiny-sdxl_base", ""], {"model": "sub/x.safetensors", "path_or_hub_id": ""},
                                ["checkpoints/keep.safetensors"], None]  # other nodes' values are left alone
    assert result["subgraph"] == ["in_subgraph.safetensors", ""]
