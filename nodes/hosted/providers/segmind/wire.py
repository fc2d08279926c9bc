"""Segmind's wire format: request bodies, v2 job and status answers, where an answer keeps its images, the info."""

from __future__ import annotations

import re
from typing import Any

from ....errors import MaybeCharged, ProviderError
from ...http.addresses import same_origin
from ...http.jobs import COMPLETED, FAILED, PROCESSING, QUEUED, SUBMIT, Job, JobState
from ...http.replies import Reply, describe_body
from ...keys import credentials, redaction
from ...provider_table import SEGMIND
from .endpoints import Endpoint

_V2_STATES = {"QUEUED": QUEUED, "PROCESSING": PROCESSING, "COMPLETED": COMPLETED, "FAILED": FAILED}
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


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


def _read_job(reply: Reply) -> Job:
    """A v2 submit's answer. Status and response URLs off the API's own origin are not followed
    with the key: they are rebuilt from the request id on the configured base. An answer without
    a usable id is a MaybeCharged: the job was accepted, and may run and be billed."""
    data = reply.json_object(SEGMIND)
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise MaybeCharged(SEGMIND, f"accepted the request without a usable request id ({describe_body(reply)}); "
                           f"it may still run. Check your usage at {SEGMIND.billing_page} before running again.",
                           reply.status, stage=SUBMIT)
    base = credentials.base_url(SEGMIND)
    own = {"status_url": f"{base}/v2/requests/{request_id}/status", "response_url": f"{base}/v2/requests/{request_id}"}
    urls = {name: data[name] if isinstance(data.get(name), str) and same_origin(data[name], base) else built
            for name, built in own.items()}
    return Job(request_id, urls["status_url"], urls["response_url"])


def _read_state(reply: Reply) -> JobState:
    data = reply.json_object(SEGMIND)
    state = _V2_STATES.get(str(data.get("status", "")).upper())
    if state is None:
        raise ProviderError(SEGMIND, f"reported a status SD Bridge does not know ({redaction.cut(str(data.get('status')), 40)!r}). "
                            "Try again later.", reply.status, stage=reply.stage, request_id=reply.request_id)
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
