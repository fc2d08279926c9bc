"""The stand-in's API calls: one generation through the queue (submit once, then only ask),
and its images, at the pace of the run's Policies."""

from __future__ import annotations

from sdbridge.nodes import images as imaging
from sdbridge.nodes.hosted.http import jobs
from sdbridge.nodes.hosted.http.client import HttpClient
from sdbridge.nodes.hosted.http.policy import Policies, PollPolicy
from sdbridge.nodes.hosted.http.replies import Reply
from sdbridge.nodes.hosted.keys import credentials

from .entry import STANDIN
from .wire import MODEL, read_job, read_state

POLICIES = Policies(poll=PollPolicy(first_interval=0.05, max_interval=0.2, timeout=30.0))


def client(policies: Policies) -> HttpClient:
    return HttpClient(STANDIN, retry=policies.retry, limits=policies.limits)


async def generate(body: dict, node_id: str | None, policies: Policies = POLICIES) -> Reply:
    """Submit once and follow the job to its result answer."""
    base = credentials.base_url(STANDIN)
    return await jobs.submit_and_poll(
        client(policies), f"{base}/v1/queue/{MODEL}", json_body=body,
        headers={"x-api-key": credentials.api_key(STANDIN)}, read_job=read_job, read_state=read_state,
        node_id=node_id, label=MODEL, poll=policies.poll)


async def download_images(urls: list[str], node_id: str | None, policies: Policies = POLICIES
                          ) -> list[imaging.Picture]:
    base, downloads = credentials.base_url(STANDIN), HttpClient(STANDIN, retry=policies.retry,
                                                                limits=policies.downloads)
    max_pixels = policies.max_result_pixels or imaging.MAX_PIXELS
    return [imaging.decode_picture((await downloads.download(url, base=base, node_id=node_id)).body, max_pixels)
            for url in urls]
