"""Segmind's nodes: one per documented endpoint, and Any Model for any slug."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .... import images as imaging
from ....params import Param, ValidationError, parse_json_object, resolve_seed
from ...keys import redaction
from ...money.prices import CostShape
from ...node import HostedNode, Plan, Result, encode_uploads, fixed_seed
from ...provider_table import SEGMIND
from .api import POLICIES, post, post_all, read_images
from .endpoints import REALISTIC_VISION, REALVIS, SD15_IMG2IMG, SDXL, Endpoint
from .wire import info, request_body


class SegmindNode(HostedNode):
    """A node for one documented endpoint: its inputs, name and description come from ENDPOINT."""

    ENDPOINT: Endpoint
    PROVIDER = SEGMIND
    POLICIES = POLICIES

    def __init_subclass__(cls, **kwargs):
        endpoint = cls.__dict__.get("ENDPOINT")
        if endpoint is not None:
            cls.PARAMS, cls.ABOUT = endpoint.params, endpoint.description
            cls.DISPLAY_NAME = f"{SEGMIND.name} {endpoint.title}"
        super().__init_subclass__(**kwargs)

    @classmethod
    def plan(cls, values: Mapping[str, Any], images: bool = True) -> Plan:
        uploads = encode_uploads(values, ("image",)) if images else None
        requests = len(uploads["image"]) if uploads and "image" in uploads else 1  # one per input image
        cost = CostShape(SEGMIND.id, cls.ENDPOINT.slug, "refiner" if values.get("refiner") else "",
                         requests=requests, images=values["samples"],
                         pixels=values["img_width"] * values["img_height"], steps=values["num_inference_steps"])
        return Plan(values, cls.ENDPOINT.slug, fixed_seed(values), cost, uploads=uploads)

    async def call(self, plan: Plan, node_id: str | None) -> Result:
        endpoint, values = self.ENDPOINT, plan.values
        seed = resolve_seed(self.PARAMS, values)
        body = request_body(endpoint, values, seed)
        if "image" not in plan.uploads:
            reply, cost = await post(endpoint.slug, body, node_id, self.policies)
            pictures, _ = await read_images(reply, node_id, policies=self.policies)
            return Result.of(pictures, info(endpoint.slug, reply, seed, len(pictures), [cost]))
        # img2img: one request per input image, sent together and measured as a whole.
        replies, cost = await post_all(
            endpoint.slug, [{**body, "image": imaging.base64_text(png)} for png in plan.sent("image")], node_id,
            self.policies)
        pictures = []
        for reply in replies:
            pictures += (await read_images(reply, node_id, policies=self.policies))[0]
        return Result.of(pictures, info(endpoint.slug, replies[-1], seed, len(pictures), [cost]))


class SDBridgeSegmindRealisticVision(SegmindNode):
    ENDPOINT = REALISTIC_VISION


class SDBridgeSegmindSDXL(SegmindNode):
    ENDPOINT = SDXL


class SDBridgeSegmindSD15Img2Img(SegmindNode):
    ENDPOINT = SD15_IMG2IMG


class SDBridgeSegmindRealVisXL(SegmindNode):
    ENDPOINT = REALVIS
_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def _check_slug(value: str) -> str | None:
    if not _SLUG.match(value.strip()) or ".." in value:
        return ("must be a Segmind model slug such as 'sdxl1.0-txt2img' (lower-case letters, digits, "
                "'.', '-', '_'; no slashes)")
    return None


def _check_field(value: str) -> str | None:
    if value and not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", value):
        return "must be a parameter name such as 'image' or 'input_image' (letters, digits, '_')"
    return None
ANY_MODEL_PARAMS = (
    Param("slug", "STRING", "The Segmind model slug, the last part of https://api.segmind.com/v1/<slug>.",
          default="sdxl1.0-txt2img", nonempty=True, check=_check_slug),
    Param("parameters", "STRING", "The request body as a JSON object, with the model page's parameter names. "
          "Images connected below are added under their field names.",
          default='{\n  "prompt": "a photo of an astronaut riding a horse",\n  "samples": 1\n}',
          multiline=True, json_object=True),
    *(p for i in (1, 2, 3) for p in (
        Param(f"image_{i}", "IMAGE", f"An optional image, sent as base64 under the field name image_{i}_field.",
              optional=True),
        Param(f"image_{i}_field", "STRING", f"The parameter name the model expects for image_{i}.",
              default="image" if i == 1 else f"image_{i}", optional=True, check=_check_field),
    )),
)


IMAGE_INPUTS = ("image_1", "image_2", "image_3")  # each sent once: the first image of its batch


class SDBridgeSegmindAnyModel(HostedNode):
    """Any Segmind slug: the body is a JSON object the user writes."""

    DISPLAY_NAME = f"{SEGMIND.name} Any Model"
    PARAMS = ANY_MODEL_PARAMS
    PROVIDER = SEGMIND
    POLICIES = POLICIES
    ABOUT = ("Calls any Segmind model by slug with a JSON body. Returns the images when the answer holds "
             "images; otherwise a black placeholder and the answer's JSON in 'info'.")

    @classmethod
    def check_together(cls, values: dict) -> None:
        fields = [values.get(f"image_{i}_field") for i in (1, 2, 3) if values.get(f"image_{i}") is not None]
        if len(set(fields)) != len(fields):
            raise ValidationError("image fields: two connected images share one field name; give each its own")

    @classmethod
    def plan(cls, values: Mapping[str, Any], images: bool = True) -> Plan:
        """The price from the body's own fields where it has the usual names (any model may name
        them otherwise: then the price is not scaled by them); only a body with a fixed seed (an
        integer >= 0) names one image; the body as parsed is what the cache key reads (its
        spacing and key order do not make another request)."""
        body = parse_json_object("parameters", values["parameters"])

        def number(*names: str) -> int | None:
            found = next((body[n] for n in names if isinstance(body.get(n), int) and not isinstance(body[n], bool)),
                         None)
            return found if found is not None and 0 < found < 1_000_000 else None

        width, height = number("img_width", "width"), number("img_height", "height")
        slug = values["slug"].strip()
        cost = CostShape(SEGMIND.id, slug, requests=1, images=number("samples", "num_images", "batch_size") or 1,
                         pixels=width * height if width and height else None,
                         steps=number("num_inference_steps", "steps"))
        uploads = encode_uploads(values, IMAGE_INPUTS, first_only=True) if images else None
        keyed = {**{k: v for k, v in values.items() if k not in IMAGE_INPUTS}, "parameters": body}
        return Plan(values, slug, fixed_seed(body), cost, cache_values=keyed, uploads=uploads)

    async def call(self, plan: Plan, node_id: str | None) -> Result:
        values = plan.values
        slug = values["slug"].strip()
        body = parse_json_object("parameters", values["parameters"])
        for name in IMAGE_INPUTS:
            if plan.sent(name):
                field = values.get(f"{name}_field") or name
                body[field] = imaging.base64_text(plan.sent(name)[0])
        reply, cost = await post(slug, body, node_id, self.policies)
        pictures, data = await read_images(reply, node_id, required=False, policies=self.policies)
        result = info(slug, reply, body.get("seed"), len(pictures), [cost])
        if pictures:
            return Result.of(pictures, result)
        if data is not None:
            result["answer"] = data
        else:
            result["answer"] = redaction.cut(reply.body.decode("utf-8", "replace"), 4096)
        return Result(imaging.placeholder(), result)


NODES = (SDBridgeSegmindRealisticVision, SDBridgeSegmindSDXL, SDBridgeSegmindSD15Img2Img, SDBridgeSegmindRealVisXL,
         SDBridgeSegmindAnyModel)
