"""SinkIn's nodes: the document's parameters (declared once) and the two nodes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .... import surface
from ....params import Param, resolve_seed
from ...http.client import all_or_nothing
from ...money.prices import CostShape
from ...node import HostedNode, Plan, Result, encode_uploads, fixed_seed
from ...provider_table import SINKIN
from . import api as sinkin_api
from . import catalog as sinkin_catalog
from .wire import NO_CONTROLNET, request_fields, result_urls

SCHEDULERS = surface.scheduler_names("sinkin")


def _check_id(value: str) -> str | None:
    if sinkin_catalog.id_from_choice(value) is None:
        return ("holds no SinkIn id; pick one from the list or write an id such as r2La2w2 "
                "(the last part of the model's sinkin.ai address)")
    return None


def _check_version(value: str) -> str | None:
    if len(value) > 64 or sinkin_catalog.CONTROL_CHARACTERS.search(value):
        return "must be a short version name on one line, or empty for the latest version"
    return None


def _size(name: str, default: int) -> Param:
    return Param(name, "INT", f"{name.capitalize()} of the image in pixels, 128 to 896 in multiples of 8 "
                 "(512, 640 and 768 are common).", default=default, min=128, max=896, multiple_of=8)
MODEL = Param("model_id", "COMBO", "The SinkIn model. The list comes from SinkIn (refresh it from the node's "
              "right-click menu); an id such as r2La2w2 works too.",
              default=sinkin_catalog.bundled_catalog().models[0].choice, choices=tuple(sinkin_catalog.bundled_catalog().model_choices()),
              open_choices=True, check=_check_id)
LORA = Param("lora", "COMBO", "A LoRA from SinkIn's catalog applied to the model, or none.",
             default=sinkin_catalog.NO_LORA, choices=tuple(sinkin_catalog.bundled_catalog().lora_choices()), open_choices=True, check=_check_id)
TXT2IMG_PARAMS = (
    MODEL,
    replace(surface.PROMPT, tooltip="What to render."),
    replace(surface.NEGATIVE_PROMPT, tooltip="What to keep out of the image."),
    Param("use_default_neg", "BOOLEAN", "Append SinkIn's default negative prompt to yours.", default=True),
    Param("lcm", "BOOLEAN", "Use LCM: half the cost, with some loss of quality.", default=False),
    Param("version", "STRING", "The model version to use; empty for the latest.", default="",
          check=_check_version),
    _size("width", 512),
    _size("height", 768),
    Param("steps", "INT", "Number of inference steps.", default=30, min=1, max=50),
    Param("scale", "FLOAT", "Guidance scale: how closely to follow the prompt.", default=7.5, min=1.0, max=20.0,
          step=0.1),
    Param("num_images", "INT", "Number of images to generate. Each one costs credits.", default=1, min=1, max=4),
    surface.seed(surface.SEED_MAX_32_BIT),
    Param("scheduler", "COMBO", "The sampler.", default=SCHEDULERS[0], choices=SCHEDULERS),
    LORA,
    Param("lora_scale", "FLOAT", "How strongly the LoRA applies (SinkIn documents no range). Unused without a LoRA.",
          default=0.75, min=0.0, max=2.0, step=0.05),
)
IMG2IMG_PARAMS = (
    Param("image", "IMAGE", "The base image, sent as init_image_file. Each image of a batch is its own paid "
          "request."),
    *TXT2IMG_PARAMS,
    Param("image_strength", "FLOAT", "How much to transform the base image. Has no effect when a ControlNet is "
          "chosen.", default=0.75, min=0.0, max=1.0, step=0.01),
    Param("controlnet", "COMBO", "A ControlNet that follows the base image's edges (canny), depth or pose "
          "(openpose). With a ControlNet, image_strength has no effect.", default=NO_CONTROLNET,
          choices=(NO_CONTROLNET, "canny", "depth", "openpose")),
)


def with_catalog(params, catalog: sinkin_catalog.Catalog) -> list[Param]:
    """`params` with today's model and LoRA lists (the default keeps its id when listed)."""
    live = {MODEL.name: catalog.model_choices(), LORA.name: catalog.lora_choices()}
    result = []
    for param in params:
        choices = live.get(param.name)
        if choices:
            wanted = sinkin_catalog.id_from_choice(param.default)
            default = next((c for c in choices if sinkin_catalog.id_from_choice(c) == wanted), choices[0])
            param = replace(param, choices=tuple(choices), default=default)
        result.append(param)
    return result


class SinkInNode(HostedNode):
    PROVIDER = SINKIN
    POLICIES = sinkin_api.POLICIES
    OUTPUT_TOOLTIPS = (
        "Every image the call returned, as one batch.",
        "What the call returned besides pixels, as JSON: credit_cost, inf_id, the seed used, time taken.",
    )

    @classmethod
    def editor_params(cls):
        return with_catalog(cls.PARAMS, sinkin_catalog.current_catalog())

    @classmethod
    def plan(cls, values: Mapping[str, Any], images: bool = True) -> Plan:
        # The model, an img2img base and a ControlNet may each change the price: each is its own kind.
        model = sinkin_catalog.id_from_choice(values["model_id"]) or str(values["model_id"])
        kind = "img2img" if "image" in {p.name for p in cls.PARAMS} else "txt2img"
        controlnet = values.get("controlnet", NO_CONTROLNET)
        variant = f"{kind}:{model}" + (f":{controlnet}" if controlnet != NO_CONTROLNET else "")
        uploads = encode_uploads(values, ("image",)) if images else None
        requests = len(uploads["image"]) if uploads and "image" in uploads else 1  # one per input image
        cost = CostShape(SINKIN.id, "inference", variant, requests=requests, images=values["num_images"],
                         pixels=values["width"] * values["height"], steps=values["steps"],
                         factor=0.5 if values["lcm"] else 1.0)
        return Plan(values, f"inference/{cls.__name__}", fixed_seed(values), cost, uploads=uploads, model=model)

    async def call(self, plan: Plan, node_id: str | None) -> Result:
        values = plan.values
        seed = resolve_seed(self.PARAMS, values)
        fields = request_fields(self.PARAMS, values, seed)
        answers = await all_or_nothing(
            sinkin_api.post_form("/api/inference", fields, node_id, "inference", upload, policies=self.policies)
            for upload in plan.uploads.get("image", [None]))
        urls = [(url, sinkin_api.request_id(data)) for data in answers for url in result_urls(data, values["num_images"])]
        pictures = await sinkin_api.download_images(urls, node_id, self.policies)
        info: dict[str, Any] = {"provider": SINKIN.name, "model_id": fields["model_id"], "seed": seed,
                                "images": len(pictures)}
        costs = [data.get("credit_cost") for data in answers]
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in costs):
            info["credit_cost"] = round(sum(costs), 4)
            info["credits_measured"] = info["credit_cost"]
        inf_ids = [data.get("inf_id") for data in answers]
        info["inf_id"] = inf_ids[0] if len(inf_ids) == 1 else inf_ids
        return Result.of(pictures, info)


class SDBridgeSinkInTxt2Img(SinkInNode):
    DISPLAY_NAME = "SinkIn Text to Image"
    PARAMS = TXT2IMG_PARAMS
    ABOUT = ("Text to image on SinkIn with any model of its catalog of community checkpoints, an optional LoRA "
             "and LCM.")


class SDBridgeSinkInImg2Img(SinkInNode):
    DISPLAY_NAME = "SinkIn Image to Image (ControlNet)"
    PARAMS = IMG2IMG_PARAMS
    ABOUT = ("Image to image on SinkIn, optionally guided by a ControlNet (canny, depth, openpose), with any "
             "model of its catalog.")
NODES = (SDBridgeSinkInTxt2Img, SDBridgeSinkInImg2Img)


def catalog_widgets() -> dict[str, dict[str, str]]:
    """For the web extension: which widget of which node shows which catalog list."""
    lists = {MODEL.name: "models", LORA.name: "loras"}
    return {node.__name__: {p.name: lists[p.name] for p in node.PARAMS if p.name in lists} for node in NODES}
