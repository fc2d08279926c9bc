"""Every shipped workflow, checked against the pack's node definitions and ComfyUI 0.19.3's core
nodes: types exist, widget values fit their inputs in order and type, combos are valid on a
fresh install, links are consistent, an output is reachable; each API twin is the conversion of
its UI workflow."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import PACK, ROOT

sys.path.insert(0, str(ROOT / "tools"))
import make_workflows  # noqa: E402  (tools/ is not a package)
from workflow_format import link_inputs, pack_definitions, ui_to_api, widget_layout, widget_values_by_name  # noqa: E402

CORE = json.loads((ROOT / "tests" / "data" / "comfyui_0.19.3_core_nodes.json").read_text())
SHARED_OBJECT_INFO = ROOT.parent / "shared" / "comfyui-0.19.3" / "object_info.json"
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
FRESH_INSTALL_INPUTS = {"example.png"}  # what ComfyUI ships in input/


@pytest.fixture(scope="module")
def defs():
    return {**CORE, **pack_definitions(PACK.NODE_CLASS_MAPPINGS, PACK.NODE_DISPLAY_NAME_MAPPINGS)}


def test_workflows_are_shipped():
    names = {path.stem for path in WORKFLOWS}
    assert len(names) >= 6
    for name in names:
        assert (ROOT / "example_workflows" / f"{name}.jpg").is_file(), f"{name} has no thumbnail"
        assert (ROOT / "example_workflows" / "api" / f"{name}.json").is_file(), f"{name} has no API twin"
    assert {p.stem for p in (ROOT / "example_workflows" / "api").glob("*.json")} == names


def test_shipped_workflows_are_what_the_generator_writes(defs):
    """The documents' examples and the node declarations are the source: a shipped file that
    differs from what tools/make_workflows.py writes now is out of date."""
    built = make_workflows.all_workflows(defs)
    assert {workflow.name for workflow in built} == {path.stem for path in WORKFLOWS}
    for workflow in built:
        ui = make_workflows.build_ui(workflow, defs)
        assert json.loads((ROOT / "example_workflows" / f"{workflow.name}.json").read_text()) == ui, workflow.name
        shipped_api = json.loads((ROOT / "example_workflows" / "api" / f"{workflow.name}.json").read_text())
        assert shipped_api == ui_to_api(ui, defs), workflow.name


@pytest.mark.skipif(not SHARED_OBJECT_INFO.is_file(), reason="shared/ is not beside this checkout")
def test_core_node_definitions_match_comfyui_0_19_3():
    real = json.loads(SHARED_OBJECT_INFO.read_text())
    for name, definition in CORE.items():
        assert real[name] == definition, name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_is_valid(path, defs, pack):
    workflow = json.loads(path.read_text())
    assert workflow["version"] == 0.4
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["last_node_id"] >= max(nodes) and workflow["last_link_id"] >= max([link[0] for link in workflow["links"]] or [0])
    notes = [n for n in nodes.values() if n["type"] == "MarkdownNote"]
    assert notes and all(n["widgets_values"][0].strip() for n in notes), "a MarkdownNote must say what it does"

    for node in nodes.values():
        if node["type"] == "MarkdownNote":
            continue
        assert node["type"] in defs, f"unknown node type {node['type']}"
        definition = defs[node["type"]]
        values = node["widgets_values"]
        named = widget_values_by_name(definition, values)  # raises when counts disagree
        _check_editor_extras(definition, values)
        _check_values(node, definition, named, pack)
        # Link-taking inputs in slot order, each with the right type.
        assert [(i["name"], i["type"]) for i in node["inputs"]] == link_inputs(definition)
        assert [o["type"] for o in node["outputs"]] == list(definition["output"])

    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        assert link_id in nodes[origin]["outputs"][origin_slot]["links"]
        assert nodes[target]["inputs"][target_slot]["link"] == link_id
        assert defs[nodes[origin]["type"]]["output"][origin_slot] == kind == nodes[target]["inputs"][target_slot]["type"]
    linked = {i["link"] for n in nodes.values() for i in n.get("inputs", []) if i["link"] is not None}
    assert linked == {link[0] for link in workflow["links"]}
    for node in nodes.values():  # every required link input is connected
        for slot in node.get("inputs", []):
            required = defs[node["type"]]["input"]["required"]
            assert slot["link"] is not None or slot["name"] not in required, f"{node['type']}.{slot['name']} unconnected"

    # An output node is reachable from a pack node.
    outputs = [n for n in nodes.values() if n["type"] in defs and defs[n["type"]].get("output_node")]
    assert outputs
    upstream = {target: [] for target in nodes}
    for _, origin, _, target, _, _ in workflow["links"]:
        upstream[target].append(origin)
    seen, stack = set(), [n["id"] for n in outputs]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack += upstream[current]
    assert any(nodes[i]["type"].startswith("SDBridge") for i in seen)


def _check_editor_extras(definition: dict, values: list) -> None:
    index = 0
    for name, extra in widget_layout(definition):
        if extra:
            extra_value = values[index + 1]
            if name == "image":
                assert extra_value == "image"
            else:
                assert extra_value == "fixed", f"{name}: shipped seeds are fixed, got {extra_value!r}"
        index += 2 if extra else 1


def _check_values(node: dict, definition: dict, named: dict, pack) -> None:
    node_class = pack.NODE_CLASS_MAPPINGS.get(node["type"])
    if node_class is not None:
        verdict = node_class.VALIDATE_INPUTS(**named)
        assert verdict is True, f"{node['type']}: {verdict}"
        models = {m["name"] for m in node["properties"].get("models", [])}
        for param in getattr(node_class, "PARAMS", ()):
            if param.seed:
                assert named[param.name] != -1, "shipped workflows use fixed seeds"
            if param.kind == "COMBO" and param.name in named and named[param.name] not in param.choices:
                # Open choices (a model catalog): the value must still be offered on a fresh install,
                # unless it is a model file the workflow links for download.
                assert named[param.name] in models, f"{node['type']}.{param.name}={named[param.name]!r}"
        for model in node["properties"].get("models", []):
            # The editor (frontends 1.27 to 1.58) offers a download only for a model whose name is one
            # of the node's widget values exactly, and looks for it in models/<directory>/<name>.
            assert model["url"].startswith("https://huggingface.co/") and model["directory"] == "checkpoints"
            assert model["name"] in node["widgets_values"]
        return
    for name, value in named.items():
        kind = next(definition["input"][s][name] for s in ("required", "optional") if name in definition["input"].get(s, {}))
        if kind[0] == [] and kind[1].get("image_upload"):
            assert value in FRESH_INSTALL_INPUTS
        elif isinstance(kind[0], list):
            assert value in kind[0]
        elif kind[0] == "STRING":
            assert isinstance(value, str)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_api_twin_is_what_the_editor_submits(path, defs):
    twin = json.loads((path.parent / "api" / path.name).read_text())
    assert twin == ui_to_api(json.loads(path.read_text()), defs)
    for entry in twin.values():
        assert entry["class_type"] in defs and "MarkdownNote" != entry["class_type"]


def test_the_editor_conversion_rules():
    """ui_to_api itself, on a hand-written graph with a seed widget, a link and a note."""
    defs = {
        "A": {"name": "A", "input": {"required": {"seed": ["INT", {"control_after_generate": True}],
                                                  "text": ["STRING", {}]}}, "output": ["IMAGE"]},
        "B": {"name": "B", "input": {"required": {"images": ["IMAGE", {}], "prefix": ["STRING", {}]}}, "output": []},
    }
    workflow = {"nodes": [
        {"id": 1, "type": "A", "widgets_values": [5, "fixed", "hi"], "inputs": []},
        {"id": 2, "type": "B", "widgets_values": ["out"], "inputs": [{"name": "images", "type": "IMAGE", "link": 9}],
         "title": "Saver"},
        {"id": 3, "type": "MarkdownNote", "widgets_values": ["note"]},
        {"id": 4, "type": "A", "mode": 4, "widgets_values": [1, "fixed", "muted"], "inputs": []},
    ], "links": [[9, 1, 0, 2, 0, "IMAGE"]]}
    assert ui_to_api(workflow, defs) == {
        "1": {"inputs": {"seed": 5, "text": "hi"}, "class_type": "A", "_meta": {"title": "A"}},
        "2": {"inputs": {"prefix": "out", "images": ["1", 0]}, "class_type": "B", "_meta": {"title": "Saver"}},
    }
