"""Writes the shipped example workflows from the short descriptions below:
example_workflows/<name>.json (UI format 0.4, for the template browser), its queue-API twin in
example_workflows/api/<name>.json, and a drawn-card thumbnail <name>.jpg.

Run after changing a node's inputs:  .venv/bin/python tools/make_workflows.py
Widget values come from each node's declared defaults, overridden per workflow, so a workflow
can never disagree with the node it uses; tests/test_workflows.py checks the result.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from workflow_format import link_inputs, pack_definitions, ui_to_api, widget_layout  # noqa: E402

CORE_NODES = ROOT / "tests" / "data" / "comfyui_0.19.3_core_nodes.json"
OUT = ROOT / "example_workflows"
PACK_VERSION = "0.1.0"


def load_pack():
    spec = importlib.util.spec_from_file_location("sdbridge", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sdbridge"] = module
    spec.loader.exec_module(module)
    return module


def definitions() -> dict:
    pack = load_pack()
    result = json.loads(CORE_NODES.read_text())
    result.update(pack_definitions(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS))
    return result


# ---------------------------------------------------------------- descriptions

@dataclass
class N:
    id: int
    type: str | type   # a core node's id, or a pack node's class (its id is the class name)
    pos: tuple[int, int]
    widgets: dict = field(default_factory=dict)
    title: str | None = None
    models: list = field(default_factory=list)   # properties.models: download links
    size: tuple[int, int] | None = None

    def __post_init__(self):
        if isinstance(self.type, type):
            self.type = self.type.__name__
        self.widgets = dict(self.widgets)


@dataclass
class Workflow:
    name: str
    title: str
    note: str
    nodes: list[N]
    links: list[tuple[int, str, int, str]]   # (from node, output name, to node, input name)




def _saved(name: str, title: str, note: str, generator: N, prefix: str) -> Workflow:
    """A workflow of one generating node whose images a Save Image node beside it keeps."""
    save = N(generator.id + 1, "SaveImage", (generator.pos[0] + 460, generator.pos[1]), {"filename_prefix": prefix})
    return Workflow(name, title, note, [generator, save], [(generator.id, "images", save.id, "images")])


def key_note(provider) -> str:
    return (f"**Needs:** a {provider.name} key. Set `{provider.key_env}` before starting ComfyUI, or paste it in "
            "**Settings → SD Bridge → Keys**. Keys never go into the workflow.")


COSTS = "Each run spends Segmind credits; the node shows the credits left, and **info** reports the seed used."
SINKIN_COSTS = "Each image costs SinkIn credits; **info** reports the run's credit_cost and the seed used."


def segmind_workflows() -> list[Workflow]:
    from sdbridge.nodes import examples
    from sdbridge.nodes.hosted.provider_table import SEGMIND
    from sdbridge.nodes.hosted.providers.segmind import nodes as segmind

    segmind_key = key_note(SEGMIND)
    return [
        _saved(
            "segmind_realistic_vision_selfie", "Segmind: Realistic Vision v3 — selfie at Yosemite",
            f"## Realistic Vision v3 on Segmind\nThe request from Segmind's own documentation: a night-sky selfie "
            f"at Yosemite, 512×768, dpmpp_2m, 25 steps, fixed seed.\n\n{segmind_key}\n\n{COSTS}",
            N(1, segmind.SDBridgeSegmindRealisticVision, (60, 120), examples.SELFIE), "sdbridge/realistic_vision",
        ),
        _saved(
            "segmind_sdxl_panda", "Segmind: SDXL 1.0 with refiner — panda in a spacesuit",
            f"## SDXL 1.0 + refiner on Segmind\nThe documented example: the base model does 80% of the denoising "
            f"(high_noise_fraction 0.8) and the refiner the rest.\n\n{segmind_key}\n\n{COSTS}",
            N(1, segmind.SDBridgeSegmindSDXL, (60, 120), examples.PANDA), "sdbridge/sdxl",
        ),
        Workflow(
            "segmind_sd15_img2img_landscape", "Segmind: SD 1.5 img2img — fantasy landscape",
            f"## SD 1.5 img2img on Segmind\nTurns the loaded picture into a fantasy landscape (the documented "
            f"example: DDIM, 25 steps, strength 0.75). Load any picture in **Load Image**.\n\n{segmind_key}\n\n{COSTS}",
            [N(1, "LoadImage", (60, 120), {"image": "example.png"}),
             N(2, segmind.SDBridgeSegmindSD15Img2Img, (520, 120), examples.LANDSCAPE),
             N(3, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/img2img"})],
            [(1, "IMAGE", 2, "image"), (2, "images", 3, "images")],
        ),
        _saved(
            "segmind_realvisxl_portrait", "Segmind: RealVisXL — portrait of a 28-year-old man",
            f"## RealVisXL on Segmind\nThe documented example: an analog-photo portrait at 896×1152.\n\n"
            f"{segmind_key}\n\n{COSTS}",
            N(1, segmind.SDBridgeSegmindRealVisXL, (60, 120), examples.PORTRAIT), "sdbridge/realvisxl",
        ),
    ]


def all_workflows(defs: dict) -> list[Workflow]:
    return segmind_workflows() + sinkin_workflows(defs) + local_workflows(defs)


def sinkin_workflows(defs: dict) -> list[Workflow]:
    from sdbridge.nodes import examples
    from sdbridge.nodes.hosted.provider_table import SINKIN
    from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin

    models = defs[sinkin.SDBridgeSinkInTxt2Img.__name__]["input"]["required"]["model_id"][0]
    realistic = next(m for m in models if "r2La2w2" in m)
    dreamshaper = next(m for m in models if "4zdwGOB" in m)
    sinkin_key = key_note(SINKIN)
    portrait = {name: examples.PORTRAIT[name] for name in ("prompt", "negative_prompt", "seed")}
    return [
        Workflow(
            "sinkin_txt2img_lora", "SinkIn: txt2img with a LoRA",
            f"## SinkIn txt2img with a LoRA\nRealistic Vision by model id, ready for a LoRA at scale 0.75. SinkIn "
            f"documents no LoRA ids, so the LoRA is left at **none**: right-click the node → **Refresh SinkIn "
            f"models and LoRAs**, then pick a LoRA from the list (the run spends no credit until you press Run)."
            f"\n\n{sinkin_key}\n\n{SINKIN_COSTS}",
            [N(1, sinkin.SDBridgeSinkInTxt2Img, (60, 120), {
                "model_id": realistic, **portrait, "num_images": 1, "lora": "none", "lora_scale": 0.75}),
             N(2, "SaveImage", (520, 120), {"filename_prefix": "sdbridge/sinkin"})],
            [(1, "images", 2, "images")],
        ),
        Workflow(
            "sinkin_img2img_controlnet", "SinkIn: img2img with ControlNet (canny)",
            f"## SinkIn img2img with ControlNet\nThe documented img2img request (the angry orc), guided by the "
            f"edges of the loaded picture (canny). With a ControlNet, image_strength has no effect."
            f"\n\n{sinkin_key}\n\n{SINKIN_COSTS}",
            [N(1, "LoadImage", (60, 120), {"image": "example.png"}),
             N(2, sinkin.SDBridgeSinkInImg2Img, (520, 120), {
                 "model_id": dreamshaper, **examples.ORC, "seed": 1234567, "controlnet": "canny"}),
             N(3, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/sinkin_controlnet"})],
            [(1, "IMAGE", 2, "image"), (2, "images", 3, "images")],
        ),
    ]


def _checkpoint(node_id: int, pos: tuple[int, int], model: tuple[str, str], title: str | None = None) -> N:
    filename, url = model
    from sdbridge.nodes.local import local_nodes

    return N(node_id, local_nodes.SDBridgeLoadCheckpoint, pos, {"model": filename}, title=title,
             models=[{"name": filename, "url": url, "directory": "checkpoints"}])


RV3 = ("Realistic_Vision_V3.0.safetensors",
       "https://huggingface.co/SG161222/Realistic_Vision_V3.0_VAE/resolve/main/Realistic_Vision_V3.0.safetensors")
SD15 = ("v1-5-pruned-emaonly-fp16.safetensors",
        "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors")
SDXL_BASE = ("sd_xl_base_1.0.safetensors",
             "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors")
SDXL_REFINER = ("sd_xl_refiner_1.0.safetensors",
                "https://huggingface.co/stabilityai/stable-diffusion-xl-refiner-1.0/resolve/main/sd_xl_refiner_1.0.safetensors")
REALVISXL = ("RealVisXL_V4.0.safetensors",
             "https://huggingface.co/SG161222/RealVisXL_V4.0/resolve/main/RealVisXL_V4.0.safetensors")

def _needs_checkpoints(*models: tuple[str, str]) -> str:
    listed = "\n".join(f"- [{name}]({url})" for name, url in models)
    return (f"**Needs:** these checkpoints in `ComfyUI/models/checkpoints/` (the editor offers to download "
            f"them):\n{listed}\n\nRuns on your GPU (or slowly on the CPU); no key, no credits.")


def local_workflows(defs: dict) -> list[Workflow]:
    from sdbridge.nodes.examples import LANDSCAPE, PANDA, PORTRAIT, SELFIE
    from sdbridge.nodes.hosted.provider_table import SEGMIND
    from sdbridge.nodes.hosted.providers.segmind import nodes as segmind
    from sdbridge.nodes.local import local_nodes

    segmind_key = key_note(SEGMIND)
    return [
        Workflow(
            "local_realistic_vision_selfie", "Local: Realistic Vision v3 — selfie at Yosemite",
            "## Realistic Vision v3 on your GPU\nThe same request as the Segmind Realistic Vision example, with the "
            "same input names, run locally with diffusers.\n\n" + _needs_checkpoints(RV3),
            [_checkpoint(1, (60, 120), RV3),
             N(2, local_nodes.SDBridgeLocalTxt2Img, (520, 120), SELFIE),
             N(3, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/local_realistic_vision"})],
            [(1, "pipeline", 2, "pipeline"), (2, "images", 3, "images")],
        ),
        Workflow(
            "local_sd15_img2img_landscape", "Local: SD 1.5 img2img — fantasy landscape",
            "## SD 1.5 img2img on your GPU\nThe Segmind img2img example (DDIM, 25 steps, strength 0.75) run "
            "locally. Pick your own picture in **Load Image**.\n\n" + _needs_checkpoints(SD15),
            [_checkpoint(1, (60, 120), SD15),
             N(2, "LoadImage", (60, 380), {"image": "example.png"}),
             N(3, local_nodes.SDBridgeLocalImg2Img, (520, 120), LANDSCAPE),
             N(4, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/local_img2img"})],
            [(1, "pipeline", 3, "pipeline"), (2, "IMAGE", 3, "image"), (3, "images", 4, "images")],
        ),
        Workflow(
            "local_sdxl_base_refiner_panda", "Local: SDXL 1.0 base + refiner — panda in a spacesuit",
            "## SDXL base + refiner on your GPU\nThe Segmind SDXL example: the base denoises the first 80% of the "
            "schedule (high_noise_fraction 0.8) and hands its latents to the refiner. The two share their "
            "identical text encoder and VAE in memory.\n\n" + _needs_checkpoints(SDXL_BASE, SDXL_REFINER),
            [_checkpoint(1, (60, 120), SDXL_BASE, "Load SDXL base"),
             _checkpoint(2, (60, 340), SDXL_REFINER, "Load SDXL refiner"),
             N(3, local_nodes.SDBridgeLocalSDXLRefiner, (520, 120), PANDA),
             N(4, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/local_sdxl"})],
            [(1, "pipeline", 3, "base_pipeline"), (2, "pipeline", 3, "refiner_pipeline"), (3, "images", 4, "images")],
        ),
        Workflow(
            "local_realvisxl_portrait", "Local: RealVisXL — portrait of a 28-year-old man",
            "## RealVisXL on your GPU\nThe Segmind RealVisXL example (896×1152, UniPC, 25 steps) run "
            "locally.\n\n" + _needs_checkpoints(REALVISXL),
            [_checkpoint(1, (60, 120), REALVISXL),
             N(2, local_nodes.SDBridgeLocalTxt2Img, (520, 120), PORTRAIT),
             N(3, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/local_realvisxl"})],
            [(1, "pipeline", 2, "pipeline"), (2, "images", 3, "images")],
        ),
        Workflow(
            "hosted_and_local_side_by_side", "One parameter surface: the same request, hosted and local",
            "## Hosted and local, side by side\nThe same Realistic Vision request with the same input names and "
            "values, once on Segmind and once on your GPU: compare the two results, or delete either branch. "
            "Swapping a hosted node for a local one needs no relearning.\n\n"
            f"{segmind_key}\n\n" + _needs_checkpoints(RV3),
            [N(1, segmind.SDBridgeSegmindRealisticVision, (520, 120), SELFIE, title="Hosted: Segmind"),
             N(2, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/side_by_side_hosted"}),
             _checkpoint(3, (60, 820), RV3),
             N(4, local_nodes.SDBridgeLocalTxt2Img, (520, 820), SELFIE, title="Local: your GPU"),
             N(5, "SaveImage", (980, 820), {"filename_prefix": "sdbridge/side_by_side_local"})],
            [(1, "images", 2, "images"), (3, "pipeline", 4, "pipeline"), (4, "images", 5, "images")],
        ),
        Workflow(
            "hosted_draft_local_refine", "A hosted draft, refined locally with img2img",
            "## Draft hosted, refine locally\nSegmind RealVisXL makes the draft; a light img2img pass (strength "
            "0.3) on your own RealVisXL checkpoint refines it, with the same prompt. The draft is shown too.\n\n"
            f"{segmind_key}\n\n" + _needs_checkpoints(REALVISXL),
            [N(1, segmind.SDBridgeSegmindRealVisXL, (60, 300), PORTRAIT, title="Draft: Segmind RealVisXL"),
             N(2, "PreviewImage", (520, 860), {}, title="The draft"),
             _checkpoint(3, (60, 120), REALVISXL),
             N(4, local_nodes.SDBridgeLocalImg2Img, (520, 120), {
                 **PORTRAIT, "scheduler": "DPM Multi", "strength": 0.3}, title="Refine: local img2img"),
             N(5, "SaveImage", (980, 120), {"filename_prefix": "sdbridge/draft_refined"})],
            [(1, "images", 4, "image"), (1, "images", 2, "images"), (3, "pipeline", 4, "pipeline"),
             (4, "images", 5, "images")],
        ),
    ]


# ---------------------------------------------------------------- UI format

IMAGE_NODE_SIZES = {"SaveImage": (400, 480), "PreviewImage": (400, 440), "LoadImage": (400, 420)}


def _node_size(definition: dict, widgets: dict) -> tuple[int, int]:
    if definition["name"] in IMAGE_NODE_SIZES:  # room for the picture they show
        return IMAGE_NODE_SIZES[definition["name"]]
    rows = len(widget_layout(definition)) + len(link_inputs(definition)) + len(definition["output"])
    tall = sum(1 for name, _ in widget_layout(definition)
               if _multiline(definition, name))
    return (400, 60 + 26 * rows + 90 * tall)


def _multiline(definition: dict, name: str) -> bool:
    for section in ("required", "optional"):
        spec = definition["input"].get(section, {}).get(name)
        if spec and len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("multiline"):
            return True
    return False


def build_ui(workflow: Workflow, defs: dict) -> dict:
    links, link_id = [], 0
    incoming: dict[tuple[int, str], int] = {}
    outgoing: dict[tuple[int, str], list[int]] = {}
    by_id = {node.id: node for node in workflow.nodes}
    for origin, output, target, input_name in workflow.links:
        link_id += 1
        origin_def, target_def = defs[by_id[origin].type], defs[by_id[target].type]
        slot = origin_def["output_name"].index(output) if "output_name" in origin_def else origin_def["output"].index(output)
        target_slot = [name for name, _ in link_inputs(target_def)].index(input_name)
        kind = origin_def["output"][slot]
        links.append([link_id, origin, slot, target, target_slot, kind])
        incoming[(target, input_name)] = link_id
        outgoing.setdefault((origin, output), []).append(link_id)

    order = _topological(workflow)
    nodes = []
    for node in workflow.nodes:
        definition = defs[node.type]
        values = []
        for name, extra in widget_layout(definition):
            values.append(node.widgets[name] if name in node.widgets else _default(definition, name))
            if extra:
                values.append("fixed" if name == "seed" or "seed" in name else "image")
        unknown = set(node.widgets) - {name for name, _ in widget_layout(definition)}
        if unknown:
            raise ValueError(f"{workflow.name}: {node.type} has no widgets {sorted(unknown)}")
        names = definition.get("output_name", definition["output"])
        properties = {"Node name for S&R": node.type,
                      "cnr_id": "sdbridge" if node.type.startswith("SDBridge") else "comfy-core",
                      "ver": PACK_VERSION if node.type.startswith("SDBridge") else "0.19.3"}
        if node.models:
            properties["models"] = node.models
        entry = {
            "id": node.id, "type": node.type, "pos": list(node.pos),
            "size": list(node.size or _node_size(definition, node.widgets)), "flags": {},
            "order": order[node.id], "mode": 0,
            "inputs": [{"name": name, "type": kind, "link": incoming.get((node.id, name))}
                       for name, kind in link_inputs(definition)],
            "outputs": [{"name": name, "type": kind, "slot_index": slot,
                         "links": outgoing.get((node.id, name), [])}
                        for slot, (name, kind) in enumerate(zip(names, definition["output"], strict=True))],
            "properties": properties,
            "widgets_values": values,
        }
        if node.title:
            entry["title"] = node.title
        nodes.append(entry)
    note_id = max(by_id) + 1
    nodes.append({
        "id": note_id, "type": "MarkdownNote", "pos": [60, -200], "size": [520, 180], "flags": {},
        "order": len(nodes), "mode": 0, "inputs": [], "outputs": [], "title": "About this workflow",
        "properties": {}, "widgets_values": [workflow.note], "color": "#432", "bgcolor": "#653",
    })
    return {
        "id": _uuid(workflow.name), "revision": 0, "last_node_id": note_id, "last_link_id": link_id,
        "nodes": nodes, "links": links, "groups": [], "config": {},
        "extra": {"ds": {"scale": 0.8, "offset": [120, 320]}, "info": {"title": workflow.title}},
        "version": 0.4,
    }


def _default(definition: dict, name: str):
    for section in ("required", "optional"):
        spec = definition["input"].get(section, {}).get(name)
        if spec:
            kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
            if "default" in options:
                return options["default"]
            if isinstance(kind, list):
                return kind[0]
    raise ValueError(f"{definition['name']}.{name} has no default; give it a value")


def _topological(workflow: Workflow) -> dict[int, int]:
    depth = {node.id: 0 for node in workflow.nodes}
    for _ in workflow.nodes:
        for origin, _, target, _ in workflow.links:
            depth[target] = max(depth[target], depth[origin] + 1)
    ranked = sorted(depth, key=lambda node_id: (depth[node_id], node_id))
    return {node_id: index for index, node_id in enumerate(ranked)}


def _uuid(name: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sdbridge/example_workflows/{name}"))


# ---------------------------------------------------------------- thumbnails

def thumbnail(workflow: Workflow, defs: dict, path: Path) -> None:
    """A drawn card of the graph (the honest picture without real weights or keys)."""
    width, height = 768, 512
    card = Image.new("RGB", (width, height), (24, 26, 32))
    draw = ImageDraw.Draw(card)
    font_title = ImageFont.load_default(size=30)
    font_node = ImageFont.load_default(size=20)
    font_small = ImageFont.load_default(size=15)
    plain = workflow.title.replace("—", "-")  # the built-in font has no em dash
    draw.text((32, 26), "\n".join(textwrap.wrap(plain, 44)), fill=(235, 235, 240), font=font_title)
    from sdbridge.nodes.hosted.provider_table import PROVIDERS

    needs = [f"a {p.name} key" for p in PROVIDERS.values() if p.key_env in workflow.note]
    files = [model["name"] for node in workflow.nodes for model in node.models]
    if files:
        needs.append("checkpoints " + ", ".join(files))
    draw.text((32, height - 80), "\n".join(textwrap.wrap("Needs: " + "; ".join(needs), 95)[:2]),
              fill=(200, 200, 210), font=font_small)
    columns = sorted({node.pos[0] for node in workflow.nodes})
    rows: dict[int, list[N]] = {}
    for node in workflow.nodes:
        rows.setdefault(columns.index(node.pos[0]), []).append(node)
    box_w = min(220, (width - 64 - 40 * (len(columns) - 1)) // len(columns))
    boxes = {}
    for column, members in rows.items():
        for rank, node in enumerate(sorted(members, key=lambda n: n.pos[1])):
            row = max(rank, node.pos[1] // 600)  # a lone node low in the graph stays low
            x = 32 + column * (box_w + 40)
            y = 150 + row * 150
            boxes[node.id] = (x, y, x + box_w, y + 110)
            colour = (62, 92, 140) if node.type.startswith("SDBridge") else (70, 70, 78)
            draw.rounded_rectangle(boxes[node.id], 12, fill=colour, outline=(150, 170, 210), width=2)
            name = defs[node.type].get("display_name", node.type)
            draw.text((x + 12, y + 12), "\n".join(textwrap.wrap(name, 18)[:3]), fill=(255, 255, 255), font=font_node)
    for origin, _, target, _ in workflow.links:
        (_, y0, x1, y1), (u0, v0, _, v1) = boxes[origin], boxes[target]
        draw.line([(x1, (y0 + y1) // 2), (u0, (v0 + v1) // 2)], fill=(210, 180, 90), width=4)
    draw.text((32, height - 40), "SD Bridge example workflow - a drawing of the graph, not an output",
              fill=(150, 150, 160), font=font_small)
    card.save(path, "JPEG", quality=88)


def main() -> None:
    defs = definitions()
    (OUT / "api").mkdir(parents=True, exist_ok=True)
    for workflow in all_workflows(defs):
        ui = build_ui(workflow, defs)
        (OUT / f"{workflow.name}.json").write_text(json.dumps(ui, indent=2, ensure_ascii=False) + "\n")
        api = ui_to_api(ui, defs)
        (OUT / "api" / f"{workflow.name}.json").write_text(json.dumps(api, indent=2, ensure_ascii=False) + "\n")
        thumbnail(workflow, defs, OUT / f"{workflow.name}.jpg")
        print("wrote", workflow.name)


if __name__ == "__main__":
    main()
