"""A stand-in third provider, written as a real one would be in nodes/hosted/ (CONTRIBUTING.md
points here): one table entry (STANDIN), one module (this), one fake (fakes/queue.py). It
does not ship as a node; test_third_provider.py adds it to the table and runs it.

Everything shared comes from the pack: the parameter surface, the node base (inputs,
validation, info, redaction), credentials and base URL from the table entry, and the
transport's submit-then-poll operation and safe downloads.
"""

from __future__ import annotations

from sdbridge.nodes import images as imaging
from sdbridge.nodes import surface
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http import jobs
from sdbridge.nodes.hosted.http.client import HttpClient
from sdbridge.nodes.hosted.http.jobs import COMPLETED, FAILED, PROCESSING, QUEUED, Job, JobState
from sdbridge.nodes.hosted.http.policy import PollPolicy
from sdbridge.nodes.hosted.http.replies import Reply
from sdbridge.nodes.hosted.keys import credentials
from sdbridge.nodes.hosted.money.prices import CostShape
from sdbridge.nodes.hosted.node import HostedNode, Result
from sdbridge.nodes.hosted.provider_table import Provider
from sdbridge.nodes.params import Param, resolve_seed

# The table entry (a shipped provider adds this line to PROVIDERS in nodes/hosted/providers.py).
STANDIN = Provider("standin", "Stand-in", key_env="STANDIN_API_KEY", base_env="STANDIN_API_BASE",
                   default_base="https://queue.standin.invalid", key_page="https://standin.invalid/keys",
                   billing_page="https://standin.invalid/billing", rate_limits="10 requests a minute")

CLIENT = HttpClient(STANDIN)
POLL = PollPolicy(first_interval=0.05, max_interval=0.2, timeout=30.0)
_STATES = {"QUEUED": QUEUED, "IN_QUEUE": QUEUED, "PROCESSING": PROCESSING, "IN_PROGRESS": PROCESSING,
           "COMPLETED": COMPLETED, "FAILED": FAILED}


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


class StandInTxt2Img(HostedNode):
    PROVIDER = STANDIN
    DISPLAY_NAME = "Stand-in Text to Image"
    ABOUT = "Text to image on the stand-in queue API."
    PARAMS = (surface.PROMPT, surface.NEGATIVE_PROMPT, surface.seed(surface.SEED_MAX_32_BIT),
              Param("num_images", "INT", "Number of images.", default=1, min=1, max=4))

    @classmethod
    def cost_shape(cls, values: dict, requests: int = 1) -> CostShape:
        # No price is published and no answer tells the cost: estimates stay "unknown".
        return CostShape(STANDIN.id, "tiny-model", images=values["num_images"])

    async def call(self, values: dict, node_id: str | None, uploads: dict[str, list[bytes]]) -> Result:
        base = credentials.base_url(STANDIN)
        seed = resolve_seed(self.PARAMS, values)
        body = {"prompt": values["prompt"], "negative_prompt": values["negative_prompt"], "seed": seed,
                "num_images": values["num_images"]}
        answer = await jobs.submit_and_poll(
            CLIENT, f"{base}/v1/queue/tiny-model", json_body=body, headers={"x-api-key": credentials.api_key(STANDIN)},
            read_job=read_job, read_state=read_state, node_id=node_id, label="tiny-model", poll=POLL)
        urls = answer.json_object(STANDIN).get("output") or []
        pictures = [imaging.decode_picture((await CLIENT.download(url, base=base)).body)
                    for url in urls[:values["num_images"]]]
        if not pictures:
            raise ProviderError(STANDIN, "finished without an image. Try again.")
        return Result.of(pictures, {"provider": STANDIN.name, "seed": seed, "images": len(pictures)})
