"""Segmind: endpoint tables (the documents' parameters, declared once), request building,
answer reading, and the five nodes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .. import images as imaging
from .. import runtime, surface
from ..params import Param, ValidationError, parse_json_object, resolve_seed
from . import credentials, rate_limit, spending
from .addresses import same_origin
from .costs import CostShape
from .hosted_node import HostedNode, Result, report_credits
from .providers import SEGMIND
from .replies import ProviderError, Reply, describe_body
from .transport import (
    COMPLETED,
    FAILED,
    GENERATION,
    PROCESSING,
    QUEUED,
    HttpClient,
    Job,
    JobState,
    PollPolicy,
    all_or_nothing,
)

SEED_MAX = 999_999_999_999_999   # the documented seed range
CLIENT = HttpClient(SEGMIND)
API_ENV = "SDBRIDGE_SEGMIND_API"  # "v1" asks for the synchronous API the documents describe
# Segmind's SDK asks every second for up to 600 s; the pauses here grow to 5 s.
POLL = PollPolicy(first_interval=1.0, max_interval=5.0, growth=1.5, timeout=600.0)
RESULT_WINDOW = 55 * 60           # Segmind keeps v2 results about an hour
_V2_STATES = {"QUEUED": QUEUED, "PROCESSING": PROCESSING, "COMPLETED": COMPLETED, "FAILED": FAILED}
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

# ---------------------------------------------------------------- shared parameter shapes

SCHEDULERS = surface.scheduler_names("segmind")
# Realistic Vision documents the default UniPC and uses dpmpp_2m in its example; its full
# list is unpublished, so it offers the documented names of its sibling endpoints too.
SCHEDULERS_RV = ((surface.TXT2IMG_SCHEDULER,) + surface.scheduler_names("realistic_vision")
                 + tuple(s for s in SCHEDULERS if s != surface.TXT2IMG_SCHEDULER))
# The SD 1.5 endpoints document an enum of sizes without listing it: multiples of 64 around 512.
SD15_SIZES = (256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024)

SAMPLES = Param("samples", "INT", "Number of images to generate. Affects pricing: each costs credits.",
                default=1, min=1, max=4)
SEED = surface.seed(SEED_MAX)


def _steps(default: int) -> Param:
    return Param("num_inference_steps", "INT", "Number of denoising steps. Affects pricing.",
                 default=default, min=20, max=100)


def _guidance(minimum: float) -> Param:
    return Param("guidance_scale", "FLOAT", "Scale for classifier-free guidance: how closely to follow the prompt.",
                 default=7.5, min=minimum, max=25.0, step=0.1)


def _scheduler(choices: tuple, default: str, note: str = "") -> Param:
    return Param("scheduler", "COMBO", f"Type of scheduler (sampler).{note}", default=default, choices=choices)


def _size_enum(name: str, choices: tuple, default: int, note: str) -> Param:
    return Param(name, "COMBO", f"{'Width' if name == 'img_width' else 'Height'} of the image. "
                 f"Affects pricing. {note}", default=default, choices=choices)


def _size_range(name: str) -> Param:
    return Param(name, "INT", f"{'Width' if name == 'img_width' else 'Height'} of the image, 512 to 2048 "
                 "in multiples of 8. Affects pricing.", default=1024, min=512, max=2048, multiple_of=8)


SD15_SIZE_NOTE = "Segmind lists these as an enum without publishing the values."


@dataclass(frozen=True)
class Endpoint:
    slug: str
    title: str
    params: tuple[Param, ...]
    description: str


REALISTIC_VISION = Endpoint(
    "sd1.5-realisticvision", "Realistic Vision v3",
    (surface.PROMPT, surface.NEGATIVE_PROMPT,
     _scheduler(SCHEDULERS_RV, surface.TXT2IMG_SCHEDULER, " Segmind suggests Euler a or DPM++ SDE Karras for this model; "
                "its full list is unpublished."),
     _steps(20), _guidance(0.1), SAMPLES, SEED,
     _size_enum("img_width", SD15_SIZES, 512, SD15_SIZE_NOTE),
     _size_enum("img_height", SD15_SIZES, 512, SD15_SIZE_NOTE)),
    "Realistic Vision v3 (SD 1.5 fine-tune) on Segmind: photoreal portraits.",
)

SDXL = Endpoint(
    "sdxl1.0-txt2img", "SDXL 1.0 (base + refiner)",
    (surface.PROMPT, surface.NEGATIVE_PROMPT,
     Param("style", "COMBO", f"Style preset for SDXL. Segmind's full list is unpublished; '{surface.NO_STYLE}' "
           "applies none.", default=surface.NO_STYLE, choices=surface.STYLE_NAMES),
     SAMPLES, _scheduler(SCHEDULERS, surface.TXT2IMG_SCHEDULER), _steps(25), _guidance(1.0),
     Param("strength", "FLOAT", "How much the refiner transforms the base image when it runs as img2img "
           "after the base (used when the base/refiner split does not apply).",
           default=0.2, min=0.1, max=1.0, step=0.01),
     Param("high_noise_fraction", "FLOAT", "Fraction of the denoising done by the base model; the refiner "
           "does the rest. At 1 the refiner has nothing left to do.", default=0.8, min=0.0, max=1.0, step=0.01),
     SEED,
     _size_enum("img_width", (1024,), 1024, "Segmind documents 1024 as the only value for SDXL."),
     _size_enum("img_height", (1024,), 1024, "Segmind documents 1024 as the only value for SDXL."),
     Param("refiner", "BOOLEAN", "Run the refiner to improve quality. Does not work when "
           "high_noise_fraction is 1.", default=True)),
    "Stable Diffusion XL 1.0 with its refiner on Segmind.",
)

SD15_IMG2IMG = Endpoint(
    "sd1.5-img2img", "SD 1.5 img2img",
    (Param("image", "IMAGE", "The input image. Each image of a batch is sent as its own paid request."),
     SAMPLES, surface.PROMPT, surface.NEGATIVE_PROMPT, _scheduler(SCHEDULERS[:11], surface.IMG2IMG_SCHEDULER), _steps(20), _guidance(0.1),
     surface.STRENGTH_IMG2IMG, SEED,
     _size_enum("img_width", SD15_SIZES, 512, SD15_SIZE_NOTE),
     _size_enum("img_height", SD15_SIZES, 512, SD15_SIZE_NOTE)),
    "Stable Diffusion 1.5 image-to-image on Segmind.",
)

REALVIS = Endpoint(
    "sdxl1.0-realvis", "RealVisXL",
    (surface.PROMPT, surface.NEGATIVE_PROMPT, SAMPLES,
     _scheduler(SCHEDULERS, surface.TXT2IMG_SCHEDULER, " The last four names are likely but not confirmed by Segmind's page."),
     _steps(25), _guidance(1.0), SEED, _size_range("img_width"), _size_range("img_height")),
    "RealVisXL, a photoreal SDXL fine-tune, on Segmind.",
)


# ---------------------------------------------------------------- requests and answers

def request_body(endpoint: Endpoint, values: dict, seed: int) -> dict:
    """The JSON body: every declared param with its real JSON type, and the transport's base64."""
    body = {}
    for param in endpoint.params:
        if param.kind == "IMAGE" or param.name not in values:
            continue
        body[param.name] = values[param.name]
    body["seed"] = seed
    # One image comes back as raw bytes (fastest); what samples > 1 returns raw is unverified,
    # so several come back as base64 JSON.
    body["base64"] = values.get("samples", 1) > 1
    return body


def api_version() -> str:
    """"v2" (the queue: submit once, then only ask) unless SDBRIDGE_SEGMIND_API says "v1"."""
    return "v1" if os.environ.get(API_ENV, "").strip().lower() == "v1" else "v2"


async def post(slug: str, body: dict, node_id: str | None) -> tuple[Reply, float | None]:
    """One generation: the answer that holds its images, and its cost when the drop in remaining
    credits tells it. On the v2 queue unless v1 is asked for, or v2 does not serve the slug
    (404/405 at submit), when the documents' v1 runs it."""
    key = credentials.api_key(SEGMIND)
    watch = spending.balance_watch(SEGMIND.id, key)
    watch.start()
    reply = None
    try:
        reply = await _post(slug, body, node_id, key)
    finally:
        cost = watch.finish(reply.headers.get("x-remaining-credits") if reply is not None else None)
    return reply, cost


async def _post(slug: str, body: dict, node_id: str | None, key: str) -> Reply:
    base = credentials.base_url(SEGMIND)
    headers, limiter = {"x-api-key": key}, rate_limit.for_key(SEGMIND, key)
    if api_version() == "v2":
        try:
            reply = await CLIENT.submit_and_poll(
                f"{base}/v2/{slug}", json_body=body, headers=headers, read_job=_read_job, read_state=_read_state,
                node_id=node_id, label=slug, poll=POLL, keep_for=RESULT_WINDOW, limiter=limiter)
        except ProviderError as exc:
            if exc.stage != "submit" or exc.status not in (404, 405):
                raise
            runtime.log.info("Segmind: the v2 queue does not serve %s (%s); using v1", slug, exc.status)
        else:
            report_credits(SEGMIND, reply.headers.get("x-remaining-credits"), node_id)
            return reply
    reply = await CLIENT.request("POST", f"{base}/v1/{slug}", node_id=node_id, label=slug,
                                 headers=headers, json_body=body, resend=GENERATION, limiter=limiter)
    report_credits(SEGMIND, reply.headers.get("x-remaining-credits"), node_id)
    return reply


def _read_job(reply: Reply) -> Job:
    """A v2 submit's answer. Status and response URLs off the API's own origin are not followed
    with the key: they are rebuilt from the request id on the configured base."""
    data = reply.json_object(SEGMIND)
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise ProviderError(SEGMIND, f"accepted the request without a usable request id ({describe_body(reply)}); "
                            f"it may still run. Check your usage at {SEGMIND.billing_page} before running again.")
    base = credentials.base_url(SEGMIND)
    own = {"status_url": f"{base}/v2/requests/{request_id}/status", "response_url": f"{base}/v2/requests/{request_id}"}
    urls = {name: data[name] if isinstance(data.get(name), str) and same_origin(data[name], base) else built
            for name, built in own.items()}
    return Job(request_id, urls["status_url"], urls["response_url"])


def _read_state(reply: Reply) -> JobState:
    data = reply.json_object(SEGMIND)
    state = _V2_STATES.get(str(data.get("status", "")).upper())
    if state is None:
        raise ProviderError(SEGMIND, f"reported a status SD Bridge does not know ({str(data.get('status'))[:40]!r}). "
                            "Try again later.", reply.status)
    error = data.get("error")
    return JobState(state, error if isinstance(error, str) else "")


def _image_items(data: dict) -> list:
    """Image URLs or base64 strings in an answer, wherever its model puts them."""
    for key in ("image", "images", "output", "outputs"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return [value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, dict):  # v2: {"output": {"image": ...}}
            found = _image_items(value)
            if found:
                return found
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            found = [item for entry in value for item in _image_items(entry)]
            if found:
                return found
    return []


async def read_images(reply: Reply, node_id: str | None, *, required: bool = True):
    """Images from an answer: a raw image body, or JSON holding base64 strings or URLs.
    Returns (pictures: each image's bytes as received and its decoded picture, JSON dict or None)."""
    if reply.content_type.startswith("image/"):
        try:
            return [imaging.decode_picture(reply.body)], None
        except imaging.ImageDecodeError as exc:
            raise ProviderError(SEGMIND, f"answered with {reply.content_type} but {exc}. Try again.",
                                reply.status) from None
    if reply.content_type in ("application/json", "text/json") or reply.body[:1] in (b"{", b"["):
        data = reply.json(SEGMIND)
        if not isinstance(data, dict):
            data = {"output": data}
        items = _image_items(data)
        pictures = []
        for item in items:
            if re.match(r"^https?://", item):
                download = await CLIENT.download(item, base=credentials.base_url(SEGMIND), node_id=node_id)
                pictures.append(imaging.decode_picture(download.body))
                continue
            try:
                pictures.append(imaging.decode_picture(imaging.base64_bytes(item)))
            except imaging.ImageDecodeError as exc:
                raise ProviderError(SEGMIND, f"sent an image that could not be read: {exc}.") from None
        if pictures or not required:
            return pictures, data
        raise ProviderError(SEGMIND, f"answered without an image ({describe_body(reply)}). Try again.")
    if required:
        raise ProviderError(
            SEGMIND, f"answered with something that is not an image ({describe_body(reply)}). The service may "
            f"be down, or {SEGMIND.base_env} may point at the wrong place.", reply.status)
    return [], None


def info(slug: str, reply: Reply, seed: int | None, count: int, costs: list[float | None]) -> dict:
    result: dict[str, Any] = {"provider": SEGMIND.name, "model": slug, "images": count}
    if seed is not None:
        result["seed"] = seed
    credits = reply.headers.get("x-remaining-credits")
    if credits is not None:
        result["remaining_credits"] = _number(credits)
    if costs and all(cost is not None for cost in costs):
        result["credits_measured"] = round(sum(costs), 6)
    return result


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


# ---------------------------------------------------------------- nodes

class SegmindNode(HostedNode):
    """A node for one documented endpoint: its inputs, name and description come from ENDPOINT."""

    ENDPOINT: Endpoint
    PROVIDER = SEGMIND

    def __init_subclass__(cls, **kwargs):
        endpoint = cls.__dict__.get("ENDPOINT")
        if endpoint is not None:
            cls.PARAMS, cls.ABOUT = endpoint.params, endpoint.description
            cls.DISPLAY_NAME = f"{SEGMIND.name} {endpoint.title}"
        super().__init_subclass__(**kwargs)

    @classmethod
    def cost_shape(cls, values: dict, requests: int = 1) -> CostShape:
        return CostShape(SEGMIND.id, cls.ENDPOINT.slug, "refiner" if values.get("refiner") else "",
                         requests=requests, images=values["samples"],
                         pixels=values["img_width"] * values["img_height"], steps=values["num_inference_steps"])

    @classmethod
    def cache_endpoint(cls, values: dict) -> str:
        return cls.ENDPOINT.slug

    def uploads(self, values: dict) -> dict[str, list[bytes]]:
        if "image" not in values:
            return {}
        return {"image": [imaging.encode_image(src) for src in imaging.tensor_to_pil(values["image"])]}

    async def call(self, values: dict, node_id: str | None, uploads: dict[str, list[bytes]]) -> Result:
        endpoint = self.ENDPOINT
        seed = resolve_seed(values["seed"], SEED_MAX)
        body = request_body(endpoint, values, seed)
        if "image" not in uploads:
            reply, cost = await post(endpoint.slug, body, node_id)
            pictures, _ = await read_images(reply, node_id)
            return Result.of(pictures, info(endpoint.slug, reply, seed, len(pictures), [cost]))
        # img2img: one request per input image, sent together.
        answers = await all_or_nothing(
            post(endpoint.slug, {**body, "image": imaging.base64_text(png)}, node_id) for png in uploads["image"])
        pictures = []
        for reply, _ in answers:
            pictures += (await read_images(reply, node_id))[0]
        return Result.of(pictures, info(endpoint.slug, answers[-1][0], seed, len(pictures),
                                        [cost for _, cost in answers]))


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


class SDBridgeSegmindAnyModel(HostedNode):
    """Any Segmind slug: the body is a JSON object the user writes."""

    DISPLAY_NAME = f"{SEGMIND.name} Any Model"
    PARAMS = ANY_MODEL_PARAMS
    PROVIDER = SEGMIND
    ABOUT = ("Calls any Segmind model by slug with a JSON body. Returns the images when the answer holds "
             "images; otherwise a black placeholder and the answer's JSON in 'info'.")

    @classmethod
    def check_together(cls, values: dict) -> None:
        fields = [values.get(f"image_{i}_field") for i in (1, 2, 3) if values.get(f"image_{i}") is not None]
        if len(set(fields)) != len(fields):
            raise ValidationError("image fields: two connected images share one field name; give each its own")

    @classmethod
    def cost_shape(cls, values: dict, requests: int = 1) -> CostShape:
        """From the body's own fields where it has the usual names (any model may name them
        otherwise: then the price is not scaled by them)."""
        body = parse_json_object("parameters", values["parameters"])

        def number(*names: str) -> int | None:
            found = next((body[n] for n in names if isinstance(body.get(n), int) and not isinstance(body[n], bool)),
                         None)
            return found if found is not None and 0 < found < 1_000_000 else None

        width, height = number("img_width", "width"), number("img_height", "height")
        return CostShape(SEGMIND.id, values["slug"].strip(), requests=1,
                         images=number("samples", "num_images", "batch_size") or 1,
                         pixels=width * height if width and height else None,
                         steps=number("num_inference_steps", "steps"))

    @classmethod
    def cache_seed(cls, values: dict) -> int | None:
        """Only a body with a fixed seed (an integer >= 0) names one image."""
        seed = parse_json_object("parameters", values["parameters"]).get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None

    @classmethod
    def cache_endpoint(cls, values: dict) -> str:
        return values["slug"].strip()

    @classmethod
    def cache_values(cls, values: dict) -> dict:
        # The body as parsed: its spacing and key order do not make another request.
        return {**values, "parameters": parse_json_object("parameters", values["parameters"])}

    def uploads(self, values: dict) -> dict[str, list[bytes]]:
        return {f"image_{i}": [imaging.encode_image(imaging.tensor_to_pil(values[f"image_{i}"])[0])]
                for i in (1, 2, 3) if values.get(f"image_{i}") is not None}

    async def call(self, values: dict, node_id: str | None, uploads: dict[str, list[bytes]]) -> Result:
        slug = values["slug"].strip()
        body = parse_json_object("parameters", values["parameters"])
        for i in (1, 2, 3):
            if f"image_{i}" in uploads:
                field = values.get(f"image_{i}_field") or f"image_{i}"
                body[field] = imaging.base64_text(uploads[f"image_{i}"][0])
        reply, cost = await post(slug, body, node_id)
        pictures, data = await read_images(reply, node_id, required=False)
        result = info(slug, reply, body.get("seed"), len(pictures), [cost])
        if pictures:
            return Result.of(pictures, result)
        if data is not None:
            result["answer"] = data
        else:
            result["answer"] = credentials.redact(reply.body.decode("utf-8", "replace"))[:4096]
        return Result(imaging.placeholder(), result)


NODES = (SDBridgeSegmindRealisticVision, SDBridgeSegmindSDXL, SDBridgeSegmindSD15Img2Img, SDBridgeSegmindRealVisXL,
         SDBridgeSegmindAnyModel)
