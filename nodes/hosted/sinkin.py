"""SinkIn: the model catalog (live list, cache, bundled fallback), the request fields (the
document's parameters, declared once), answers and their safe concurrent downloads, and the
two nodes."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import images as imaging
from .. import runtime, surface, userdata
from ..params import Param, resolve_seed
from . import credentials
from .http import HttpClient, Limits, MiB, ProviderError, Reply, describe_body, private_results_allowed, server_message
from .nodebase import HostedNode
from .providers import SINKIN

CATEGORY = "SD Bridge/SinkIn"
SEED_MAX = 2**32 - 1              # SinkIn documents no maximum; SD 1.5 seeds are 32-bit
SCHEDULERS = surface.scheduler_names("sinkin")
CLIENT = HttpClient(SINKIN)
# Result images are fetched from URLs in the answer: tighter limits than the API call itself.
DOWNLOADS = HttpClient(SINKIN, limits=Limits(connect_timeout=10.0, read_timeout=30.0, deadline=120.0,
                                             max_bytes=20 * MiB))
MAX_RESULT_PIXELS = 4096 * 4096   # SinkIn renders at most 896x896; anything far larger is not a result
CATALOG_MAX_AGE = 7 * 24 * 3600   # older, and a key is set: the catalog route reads a fresh one
NO_LORA = "none"
NO_CONTROLNET = "none"

# ---------------------------------------------------------------- catalog

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID_IN_CHOICE = re.compile(r"\(([A-Za-z0-9_-]{1,64})\)\s*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Entry:
    id: str
    title: str

    @property
    def choice(self) -> str:
        """What the widget shows: readable, and still carrying the id."""
        return f"{self.title} ({self.id})" if self.title and self.title != self.id else self.id


def id_from_choice(value: str) -> str | None:
    """The id in a choice ("Realistic Vision (r2La2w2)") or a bare id ("r2La2w2"); else None."""
    value = value.strip()
    found = _ID_IN_CHOICE.search(value)
    if found:
        return found.group(1)
    return value if _ID.fullmatch(value) else None


def parse_entries(items: Any) -> tuple[Entry, ...]:
    """Catalog entries from an answer's list, tolerantly: `title` or `name`, other fields
    ignored, entries without a usable id skipped, the first of duplicate ids kept."""
    if not isinstance(items, list):
        return ()
    entries: dict[str, Entry] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        entry_id = item.get("id")
        if isinstance(entry_id, int) and not isinstance(entry_id, bool):
            entry_id = str(entry_id)
        if not isinstance(entry_id, str) or not _ID.fullmatch(entry_id.strip()):
            continue
        entry_id = entry_id.strip()
        title = item.get("title") or item.get("name")
        title = " ".join(_CONTROL.sub(" ", title).split())[:80] if isinstance(title, str) else ""
        entries.setdefault(entry_id, Entry(entry_id, title))
    return tuple(entries.values())


@dataclass(frozen=True)
class Catalog:
    models: tuple[Entry, ...]
    loras: tuple[Entry, ...]
    fetched_at: float | None = None   # when it was read from SinkIn; None for the bundled list

    def model_choices(self) -> list[str]:
        return [entry.choice for entry in self.models]

    def lora_choices(self) -> list[str]:
        return [NO_LORA] + [entry.choice for entry in self.loras]

    def age(self) -> float | None:
        return None if self.fetched_at is None else max(0.0, time.time() - self.fetched_at)


@functools.cache
def bundled_catalog() -> Catalog:
    data = json.loads((Path(__file__).parent / "sinkin_catalog.json").read_text(encoding="utf-8"))
    return Catalog(parse_entries(data["models"]), parse_entries(data["loras"]))


def cache_file() -> Path:
    return userdata.pack_folder() / "sinkin_catalog.json"


_memo: dict[tuple, Catalog] = {}


def current_catalog() -> Catalog:
    """The last catalog read from SinkIn (cached in the user directory), else the bundled one.
    Cheap: ComfyUI asks for it each time it lists the nodes' inputs."""
    path = cache_file()
    try:
        stat = path.stat()
    except OSError:
        return bundled_catalog()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _memo:
        _memo.clear()
        _memo[key] = _read_cache(path)
    return _memo[key]


def _read_cache(path: Path) -> Catalog:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fetched_at = float(data["fetched_at"])
        if not math.isfinite(fetched_at):
            raise ValueError("fetched_at is not a time")
        catalog = Catalog(parse_entries(data["models"]), parse_entries(data["loras"]), fetched_at)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        runtime.log.warning("SinkIn: the catalog cache %s is unreadable (%s); using the bundled model list. "
                            "Refresh the catalog to rewrite it.", path, type(exc).__name__)
        return bundled_catalog()
    if not catalog.models:
        runtime.log.warning("SinkIn: the catalog cache %s lists no models; using the bundled model list.", path)
        return bundled_catalog()
    return catalog


def _write_cache(catalog: Catalog) -> None:
    path = cache_file()
    data = {"fetched_at": catalog.fetched_at,
            "models": [{"id": e.id, "title": e.title} for e in catalog.models],
            "loras": [{"id": e.id, "title": e.title} for e in catalog.loras]}
    userdata.write_json(path, data)


async def refresh_catalog() -> Catalog:
    """Read the model and LoRA lists from SinkIn and cache them."""
    data = await post_form("/api/models", {}, None, "models")
    catalog = Catalog(parse_entries(data.get("models")), parse_entries(data.get("loras")), time.time())
    if not catalog.models:
        raise ProviderError(SINKIN, "listed no usable models; keeping the current list. Try again later.")
    _write_cache(catalog)
    return catalog


async def catalog_for_web(refresh: bool = False) -> dict:
    """What the web extension shows. Reads SinkIn when asked, or when the list is older than
    CATALOG_MAX_AGE and a key is set; a failed read keeps the current list and says why."""
    catalog = current_catalog()
    error = None
    stale = catalog.fetched_at is None or catalog.age() > CATALOG_MAX_AGE
    if refresh or (stale and credentials.key_source(SINKIN)):
        try:
            catalog = await refresh_catalog()
        except Exception as exc:  # noqa: BLE001 - the route must answer with the list it has
            error = credentials.redact(str(exc))
            runtime.log.warning("%s", error)
    age = catalog.age()
    return {"models": catalog.model_choices(), "loras": catalog.lora_choices(),
            "source": "bundled" if catalog.fetched_at is None else "sinkin",
            "fetched_at": catalog.fetched_at, "age_seconds": None if age is None else round(age),
            "error": error}


# ---------------------------------------------------------------- parameters

def _check_id(value: str) -> str | None:
    if id_from_choice(value) is None:
        return ("holds no SinkIn id; pick one from the list or write an id such as r2La2w2 "
                "(the last part of the model's sinkin.ai address)")
    return None


def _check_version(value: str) -> str | None:
    if len(value) > 64 or _CONTROL.search(value):
        return "must be a short version name on one line, or empty for the latest version"
    return None


def _size(name: str, default: int) -> Param:
    return Param(name, "INT", f"{name.capitalize()} of the image in pixels, 128 to 896 in multiples of 8 "
                 "(512, 640 and 768 are common).", default=default, min=128, max=896, multiple_of=8)


MODEL = Param("model_id", "COMBO", "The SinkIn model. The list comes from SinkIn (refresh it from the node's "
              "right-click menu); an id such as r2La2w2 works too.",
              default=bundled_catalog().models[0].choice, choices=tuple(bundled_catalog().model_choices()),
              open_choices=True, check=_check_id)
LORA = Param("lora", "COMBO", "A LoRA from SinkIn's catalog applied to the model, or none.",
             default=NO_LORA, choices=tuple(bundled_catalog().lora_choices()), open_choices=True, check=_check_id)

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
    surface.seed(SEED_MAX),
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

# How values go over the wire: booleans as "true"/"false", catalog choices as their id, and
# inputs left at "no value" are not sent (SinkIn then uses its documented default).
_SENT_AS_ID = {"model_id", "lora"}
_OMITTED_WHEN = {"version": "", "lora": NO_LORA, "controlnet": NO_CONTROLNET}
_NEEDS = {"lora_scale": "lora"}


def _wire(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, ".4f").rstrip("0").rstrip(".")
    return str(value)


def request_fields(params, values: dict, seed: int) -> dict[str, str]:
    """The multipart text fields for normalised `values` (the image is sent apart)."""
    fields: dict[str, str] = {}
    for param in params:
        name, value = param.name, values.get(param.name)
        if param.kind == "IMAGE" or value is None:
            continue
        if name in _OMITTED_WHEN and str(value).strip() == _OMITTED_WHEN[name]:
            continue
        if name in _NEEDS and _NEEDS[name] not in fields:
            continue
        fields[name] = id_from_choice(value) if name in _SENT_AS_ID else _wire(value)
    fields["seed"] = str(seed)
    return fields


def with_catalog(params, catalog: Catalog) -> list[Param]:
    """`params` with today's model and LoRA lists (the default keeps its id when listed)."""
    live = {MODEL.name: catalog.model_choices(), LORA.name: catalog.lora_choices()}
    result = []
    for param in params:
        choices = live.get(param.name)
        if choices:
            wanted = id_from_choice(param.default)
            default = next((c for c in choices if id_from_choice(c) == wanted), choices[0])
            param = replace(param, choices=tuple(choices), default=default)
        result.append(param)
    return result


# ---------------------------------------------------------------- requests and answers

async def post_form(path: str, fields: dict[str, str], node_id: str | None, label: str,
                    upload: bytes | None = None) -> dict:
    """POST a multipart form with the access token; the answer's JSON, or ProviderError with
    SinkIn's message when error_code says it failed (it does so with HTTP 200)."""
    form: dict[str, tuple] = {"access_token": (None, credentials.api_key(SINKIN))}
    form.update((name, (None, value)) for name, value in fields.items())
    if upload is not None:
        form["init_image_file"] = ("init_image.png", upload, "image/png")
    url = credentials.base_url(SINKIN) + path
    reply = await CLIENT.request("POST", url, node_id=node_id, label=label, files=form)
    data = reply.json(SINKIN)
    if not isinstance(data, dict):
        raise ProviderError(SINKIN, f"answered with JSON that is not an object ({describe_body(reply)}). "
                            "Try again later.", reply.status)
    if str(data.get("error_code", 0)) != "0":
        said = server_message(reply) or "no reason given"
        raise ProviderError(SINKIN, f'refused the request: "{said}". Check the inputs (model and LoRA ids, sizes), '
                            f"and your key and credits at {SINKIN.billing_page}", reply.status)
    return data


def downloads_may_be_private() -> bool:
    return private_results_allowed(credentials.base_url(SINKIN))


async def download_images(urls: list[str], node_id: str | None) -> list:
    """Fetch every result URL at once; the first failure cancels the rest."""
    allow_private = downloads_may_be_private()
    tasks = [asyncio.ensure_future(DOWNLOADS.download(url, allow_private=allow_private, node_id=node_id))
             for url in urls]
    try:
        replies: list[Reply] = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    pictures = []
    for reply in replies:
        try:
            pictures.append(imaging.decode_image(reply.body, MAX_RESULT_PIXELS))
        except imaging.ImageDecodeError as exc:
            raise ProviderError(SINKIN, f"a result image could not be read: {exc}. Try again.") from None
    return pictures


def result_urls(data: dict, expected: int) -> list[str]:
    urls = data.get("images")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ProviderError(SINKIN, "answered without a list of image URLs. Try again; if it keeps happening "
                            "SinkIn may have changed its API.")
    return urls[:expected]  # never more downloads than images asked for


# ---------------------------------------------------------------- nodes

class SinkInNode(HostedNode):
    PROVIDER = SINKIN
    CATEGORY = CATEGORY
    OUTPUT_TOOLTIPS = (
        "Every image the call returned, as one batch.",
        "What the call returned besides pixels, as JSON: credit_cost, inf_id, the seed used, time taken.",
    )

    @classmethod
    def editor_params(cls):
        return with_catalog(cls.PARAMS, current_catalog())

    async def call(self, values: dict, node_id: str | None):
        seed = resolve_seed(values["seed"], SEED_MAX)
        fields = request_fields(self.PARAMS, values, seed)
        uploads = [None] if "image" not in values else [
            imaging.encode_image(picture) for picture in imaging.tensor_to_pil(values["image"])]
        answers = await asyncio.gather(*(
            post_form("/api/inference", fields, node_id, "inference", upload) for upload in uploads))
        urls = [url for data in answers for url in result_urls(data, values["num_images"])]
        pictures = await download_images(urls, node_id)
        info: dict[str, Any] = {"provider": SINKIN.name, "model_id": fields["model_id"], "seed": seed,
                                "images": len(pictures)}
        costs = [data.get("credit_cost") for data in answers]
        if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in costs):
            info["credit_cost"] = round(sum(costs), 4)
        inf_ids = [data.get("inf_id") for data in answers]
        info["inf_id"] = inf_ids[0] if len(inf_ids) == 1 else inf_ids
        return imaging.pil_to_tensor(pictures), info


class SDBridgeSinkInTxt2Img(SinkInNode):
    PARAMS = TXT2IMG_PARAMS
    DESCRIPTION = ("Text to image on SinkIn with any model of its catalog of community checkpoints, an optional "
                   "LoRA and LCM. Needs a SinkIn API key (SINKIN_API_KEY or Settings > SD Bridge).")


class SDBridgeSinkInImg2Img(SinkInNode):
    PARAMS = IMG2IMG_PARAMS
    DESCRIPTION = ("Image to image on SinkIn, optionally guided by a ControlNet (canny, depth, openpose), with any "
                   "model of its catalog. Needs a SinkIn API key (SINKIN_API_KEY or Settings > SD Bridge).")


NODE_CLASS_MAPPINGS = {
    "SDBridgeSinkInTxt2Img": SDBridgeSinkInTxt2Img,
    "SDBridgeSinkInImg2Img": SDBridgeSinkInImg2Img,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SDBridgeSinkInTxt2Img": "SinkIn Text to Image",
    "SDBridgeSinkInImg2Img": "SinkIn Image to Image (ControlNet)",
}
