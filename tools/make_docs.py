"""Writes the node help pages ComfyUI's node library shows: web/docs/<NodeId>.md for every node.

Run after changing a node's inputs:  .venv/bin/python tools/make_docs.py
Each page is derived from the node's declarations (description, every input with its range,
default and meaning, outputs), the provider table (keys, costs) and the shipped example
workflows, plus a short hand-written "when to use it" below. tests/test_docs.py fails when a
page is missing or out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "web" / "docs"
sys.path.insert(0, str(ROOT / "tools"))


def when_to_use() -> dict[type, str]:
    """The hand-written part: when a user reaches for each node."""
    from sdbridge.nodes.hosted.providers.segmind import nodes as segmind
    from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin
    from sdbridge.nodes.local import local_nodes as local

    return {
        segmind.SDBridgeSegmindRealisticVision: "Photoreal people and portraits in SD 1.5 style, without a GPU.",
        segmind.SDBridgeSegmindSDXL: "SDXL 1.0 quality at 1024×1024 with the refiner, and style presets.",
        segmind.SDBridgeSegmindSD15Img2Img: "Turning a picture into another with SD 1.5 (strength sets how far).",
        segmind.SDBridgeSegmindRealVisXL: "Photoreal SDXL images at any size from 512 to 2048.",
        segmind.SDBridgeSegmindAnyModel: "Any other Segmind model: write its JSON body, connect up to three images.",
        sinkin.SDBridgeSinkInTxt2Img: "Community checkpoints by id, a LoRA, or LCM for half the cost.",
        sinkin.SDBridgeSinkInImg2Img: "Reworking a picture with a community checkpoint, or following its edges, "
                                      "depth or pose with a ControlNet.",
        local.SDBridgeLoadCheckpoint: "The first node of every local graph: it loads a model once and keeps it.",
        local.SDBridgeLoadLoRA: "Adding up to three LoRAs to a local model for the branch after it.",
        local.SDBridgeLocalTxt2Img: "The hosted text-to-image nodes' requests on your own GPU, with the same inputs.",
        local.SDBridgeLocalImg2Img: "Image to image on your own GPU; also refines a hosted draft.",
        local.SDBridgeLocalSDXLRefiner: "SDXL base + refiner on your own GPU, split as Segmind's endpoint splits it.",
    }


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _range(param) -> str:
    if param.kind in ("INT", "FLOAT"):
        text = f"{_number(param.min)} to {_number(param.max)}"
        if param.multiple_of:
            text += f", multiples of {param.multiple_of}"
        return f"-1 (random) or 0 to {_number(param.max)}" if param.seed else text
    if param.kind == "COMBO":
        if param.open_choices:
            return "one of the list (a saved value outside today's list still works)"
        shown = ", ".join(f"`{c}`" for c in param.choices[:12])
        return shown + (f", … ({len(param.choices)} in all)" if len(param.choices) > 12 else "")
    if param.kind == "BOOLEAN":
        return "on / off"
    if param.kind == "IMAGE":
        return "an IMAGE (link)"
    return "a JSON object" if param.json_object else "text"


def _default(param) -> str:
    if param.kind == "IMAGE" or param.default is None:
        return "—" if not param.optional else "(optional)"
    if param.kind == "BOOLEAN":
        return "on" if param.default else "off"
    if param.kind == "STRING" and not param.default:
        return "(empty)"
    if param.kind == "STRING" and "\n" in str(param.default):
        return "see the node"
    return f"`{param.default}`"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _workflows() -> dict[str, list[tuple[str, str]]]:
    """node id -> [(workflow file name, title)] of the shipped example workflows using it."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((ROOT / "example_workflows").glob("*.json")):
        workflow = json.loads(path.read_text())
        title = workflow.get("extra", {}).get("info", {}).get("title", path.stem)
        for node in workflow["nodes"]:
            found.setdefault(node["type"], [])
            if (path.name, title) not in found[node["type"]]:
                found[node["type"]].append((path.name, title))
    return found


def page(node: type, node_id: str, display_name: str, workflows: dict) -> str:
    from sdbridge.nodes.hosted.money import prices as costs
    from sdbridge.nodes.hosted.node import HostedNode

    lines = [f"# {display_name}", "", node.DESCRIPTION, "", f"**When to use it:** {when_to_use()[node]}", ""]
    lines += ["## Inputs", "", "| input | range or choices | default | what it does |", "|---|---|---|---|"]
    for section in ("required", "optional"):
        for name, spec in node.link_inputs().get(section, {}).items():
            tooltip = spec[1].get("tooltip", "") if len(spec) > 1 else ""
            lines.append(f"| `{name}` | a {spec[0]} (link) | {'(optional)' if section == 'optional' else '—'} "
                         f"| {_cell(tooltip)} |")
    for param in node.PARAMS:
        lines.append(f"| `{param.name}` | {_cell(_range(param))} | {_cell(_default(param))} | {_cell(param.tooltip)} |")
    lines += ["", "## Outputs", "", "| output | what it is |", "|---|---|"]
    for name, tooltip in zip(node.RETURN_NAMES, node.OUTPUT_TOOLTIPS, strict=True):
        lines.append(f"| `{name}` | {_cell(tooltip)} |")
    lines += ["", "## Key and cost", ""]
    if issubclass(node, HostedNode):
        provider = node.PROVIDER
        lines.append(f"Needs a {provider.name} {provider.key_label}: set `{provider.key_env}` before starting "
                     f"ComfyUI, or paste it in Settings → SD Bridge → Keys ({provider.key_page}). Each run spends "
                     f"{provider.name} credits (top up at {provider.billing_page}); a request is sent once and "
                     "never paid for twice.")
        slug = getattr(getattr(node, "ENDPOINT", None), "slug", None)
        prices = [p.source for (pid, endpoint, _), p in costs.PUBLISHED.items() if pid == provider.id and endpoint == slug]
        known = f"the published price ({prices[0]}), scaled" if prices else "`cost ?` until then"
        lines += ["", "Before you press Run, the title bar shows what one run will cost: what your own runs of the "
                  f"same kind cost (measured), or {known}. After a run it shows what the run spent, and the `info` "
                  "output says so too. Spending caps (Settings → SD Bridge) stop a run before any request."]
        lines += ["", "A run that repeats one already paid for (the same inputs and input images, a fixed seed) "
                  "returns the stored images from the result cache: no request, no credits, and the node says "
                  "`from cache`. Seed -1 always asks for a new image. Switch the cache off or clear it in "
                  "Settings → SD Bridge → Result cache."]
    else:
        lines.append("Runs on your own GPU (or slowly on the CPU): no key, no credits.")
    examples = workflows.get(node_id, [])
    if examples:
        lines += ["", "## Example workflows", ""]
        lines += [f"- **{title}**: `example_workflows/{name}` (in the template browser under sdbridge)"
                  for name, title in examples]
    return "\n".join(lines) + "\n"


def pages(mappings: dict, display_names: dict) -> dict[str, str]:
    """file name -> page text, for every node."""
    workflows = _workflows()
    return {f"{node_id}.md": page(node, node_id, display_names[node_id], workflows)
            for node_id, node in mappings.items()}


def main() -> None:
    import make_workflows

    pack = make_workflows.load_pack()
    DOCS.mkdir(parents=True, exist_ok=True)
    for name, text in pages(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS).items():
        (DOCS / name).write_text(text, encoding="utf-8")
        print("wrote", name)


if __name__ == "__main__":
    main()
