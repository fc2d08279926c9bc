"""SinkIn's wire format: how each value goes in the form, and where an answer keeps its result URLs."""

from __future__ import annotations

from typing import Any

from ....errors import ProviderError
from ...provider_table import SINKIN
from .api import request_id
from .catalog import NO_LORA, id_from_choice

NO_CONTROLNET = "none"


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


def result_urls(data: dict, expected: int) -> list[str]:
    urls = data.get("images")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ProviderError(SINKIN, "answered without a list of image URLs. Try again; if it keeps happening "
                            "SinkIn may have changed its API.", request_id=request_id(data))
    return urls[:expected]  # never more downloads than images asked for
