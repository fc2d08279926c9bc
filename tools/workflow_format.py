"""What ComfyUI's editor does with a workflow, for the pack's own tools and tests.

- `widget_layout`: which inputs of a node definition are widgets, in the order the editor stores
  their values in `widgets_values` (with the extra value the editor adds after a seed widget's
  control_after_generate and after LoadImage's upload button).
- `ui_to_api`: the queue-API prompt the editor submits for a UI-format workflow (what "Export
  (API)" writes): one entry per executable node, widget values by name, links as [id, slot].
"""

from __future__ import annotations

VIRTUAL_NODES = {"MarkdownNote", "Note", "Reroute", "PrimitiveNode"}  # editor-only: never submitted
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def is_widget(kind) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _inputs_in_order(definition: dict):
    """(name, type, options) of every required then optional input, in the node's own order."""
    inputs = definition["input"]
    order = definition.get("input_order") or {s: list(inputs.get(s, {})) for s in ("required", "optional")}
    for section in ("required", "optional"):
        for name in order.get(section, []):
            kind, *rest = inputs[section][name]
            yield name, kind, (rest[0] if rest else {})


def widget_layout(definition: dict) -> list[tuple[str, bool]]:
    """[(input name, has an extra editor-only value after it)] in `widgets_values` order."""
    return [(name, bool(options.get("control_after_generate") or options.get("image_upload")))
            for name, kind, options in _inputs_in_order(definition) if is_widget(kind)]


def link_inputs(definition: dict) -> list[tuple[str, str]]:
    """[(input name, type)] of the inputs that take links, in slot order."""
    return [(name, kind) for name, kind, _ in _inputs_in_order(definition) if not is_widget(kind)]


def widget_values_by_name(definition: dict, values: list) -> dict:
    named, index = {}, 0
    for name, extra in widget_layout(definition):
        named[name] = values[index]
        index += 2 if extra else 1
    if index != len(values):
        raise ValueError(f"{definition['name']}: {len(values)} widget values for {index} slots")
    return named


def ui_to_api(workflow: dict, definitions: dict) -> dict:
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) != 0:
            continue
        definition = definitions[node["type"]]
        inputs = widget_values_by_name(definition, node.get("widgets_values", []))
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {
            "inputs": inputs,
            "class_type": node["type"],
            "_meta": {"title": node.get("title") or definition.get("display_name") or node["type"]},
        }
    return prompt


def pack_definitions(mappings: dict, display_names: dict) -> dict:
    """The pack's nodes as ComfyUI's /object_info describes them."""
    definitions = {}
    for name, node in mappings.items():
        spec = node.INPUT_TYPES()
        definitions[name] = {
            "input": spec,
            "input_order": {s: list(spec[s]) for s in ("required", "optional", "hidden") if s in spec},
            "output": list(node.RETURN_TYPES),
            "output_name": list(getattr(node, "RETURN_NAMES", node.RETURN_TYPES)),
            "output_node": bool(getattr(node, "OUTPUT_NODE", False)),
            "name": name,
            "display_name": display_names.get(name, name),
            "category": node.CATEGORY,
        }
    return definitions
