"""SinkIn's wire format: multipart forms with the access token, answers that report failure
with HTTP 200 and an error_code, and the result images' safe concurrent downloads."""

from __future__ import annotations

from .... import images as imaging
from ....errors import ProviderError
from ...http import rate_limit
from ...http.client import HttpClient, all_or_nothing
from ...http.policy import GENERATION, Limits, MiB, Policies, Resend
from ...http.replies import Reply, server_message
from ...keys import credentials
from ...provider_table import SINKIN

# Result images are fetched from URLs in the answer: tighter limits than the API call itself.
# SinkIn renders at most 896x896: an image far larger is not a result.
POLICIES = Policies(downloads=Limits(connect_timeout=10.0, read_timeout=30.0, deadline=120.0, max_bytes=20 * MiB),
                    max_result_pixels=4096 * 4096)


def request_id(data: dict) -> str | None:
    """SinkIn's id of an inference (`inf_id`), when its answer has one: its errors carry it."""
    inf_id = data.get("inf_id")
    return str(inf_id) if isinstance(inf_id, (str, int)) and not isinstance(inf_id, bool) and str(inf_id) else None


async def post_form(path: str, fields: dict[str, str], node_id: str | None, label: str,
                    upload: bytes | None = None, resend: Resend = GENERATION, policies: Policies = POLICIES) -> dict:
    """POST a multipart form with the access token; the answer's JSON, or ProviderError with
    SinkIn's message when error_code says it failed (it does so with HTTP 200). A form that
    makes images (the default) is never sent again once it may have reached SinkIn."""
    key = credentials.api_key(SINKIN)
    form: dict[str, tuple] = {"access_token": (None, key)}
    form.update((name, (None, value)) for name, value in fields.items())
    if upload is not None:
        form["init_image_file"] = ("init_image.png", upload, "image/png")
    url = credentials.base_url(SINKIN) + path
    limiter = rate_limit.for_key(SINKIN, key, policies.rate_plan) if resend is GENERATION else None  # reads: no pace
    client = HttpClient(SINKIN, retry=policies.retry, limits=policies.limits,
                        follows_interrupts=policies.follows_interrupts)
    reply = await client.request("POST", url, node_id=node_id, label=label, files=form, resend=resend,
                                 limiter=limiter)
    data = reply.json_object(SINKIN)
    if str(data.get("error_code", 0)) != "0":
        said = server_message(reply) or "no reason given"
        raise ProviderError(SINKIN, f'refused the request: "{said}". Check the inputs (model and LoRA ids, sizes), '
                            f"and your key and credits at {SINKIN.billing_page}", reply.status,
                            request_id=request_id(data))
    return data


async def download_images(urls: list[tuple[str, str | None]], node_id: str | None, policies: Policies = POLICIES
                          ) -> list[imaging.Picture]:
    """Fetch every result URL (each with the inf_id of the answer that gave it) at once; the first
    failure cancels the rest. Each image's bytes as downloaded, with its decoded picture."""
    base = credentials.base_url(SINKIN)
    downloads = HttpClient(SINKIN, retry=policies.retry, limits=policies.downloads,
                           follows_interrupts=policies.follows_interrupts)
    replies: list[Reply] = await all_or_nothing(
        downloads.download(url, base=base, node_id=node_id, request_id=inf_id) for url, inf_id in urls)
    pictures = []
    for reply in replies:
        try:
            pictures.append(imaging.decode_picture(reply.body, policies.max_result_pixels or imaging.MAX_PIXELS))
        except imaging.ImageDecodeError as exc:
            raise ProviderError(SINKIN, f"a result image could not be read: {exc}. Try again.", stage=reply.stage,
                                request_id=reply.request_id) from None
    return pictures
