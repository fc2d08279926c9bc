"""The stand-in's wire format: the request body, its job and status answers, the result URLs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http.jobs import COMPLETED, FAILED, PROCESSING, QUEUED, Job, JobState
from sdbridge.nodes.hosted.http.replies import Reply

from .entry import STANDIN

MODEL = "tiny-model"
_STATES = {"QUEUED": QUEUED, "IN_QUEUE": QUEUED, "PROCESSING": PROCESSING, "IN_PROGRESS": PROCESSING,
           "COMPLETED": COMPLETED, "FAILED": FAILED}


def request_body(values: Mapping[str, Any], seed: int) -> dict:
    return {"prompt": values["prompt"], "negative_prompt": values["negative_prompt"], "seed": seed,
            "num_images": values["num_images"]}


def read_job(reply: Reply) -> Job:
    data = reply.json_object(STANDIN)
    try:
        return Job(str(data["request_id"]), str(data["status_url"]), str(data["response_url"]))
    except KeyError as missing:
        raise ProviderError(STANDIN, f"accepted the request without a {missing} field. Try again later.") from None


def read_state(reply: Reply) -> JobState:
    data = reply.json_object(STANDIN)
    state = _STATES.get(str(data.get("status", "")).upper())
    if state is None:
        raise ProviderError(STANDIN, f"reported an unknown status {str(data.get('status'))[:40]!r}.",
                            stage=reply.stage, request_id=reply.request_id)
    return JobState(state, str(data.get("error") or ""))


def result_urls(answer: Reply, wanted: int) -> list[str]:
    urls = answer.json_object(STANDIN).get("output") or []
    return [str(url) for url in urls[:wanted]]
