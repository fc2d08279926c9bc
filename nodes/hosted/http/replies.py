"""What a provider answered, and how a failure is told to the user.

`Reply` is one HTTP answer read whole (within the transport's limits). `error_for_status` turns a status code into
that message from one table, filled in with the provider's own pages and env vars.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ProviderError
from ..keys.redaction import cut, redact
from ..provider_table import Provider

_STATUS_TEXT: dict[int, tuple[str, str]] = {
    400: ("rejected the request as invalid", "Check the node's inputs."),
    401: ("did not accept the API key", "Set a valid key in {key_env} or in Settings > SD Bridge; get one at {key_page}"),
    402: ("says payment is required", "Top up at {billing_page}"),
    403: ("refused access", "Your key or plan may not include this model; check {key_page}"),
    404: ("does not know this model or endpoint", "Check the model name or slug."),
    405: ("does not allow this request method", "Check {base_env}: it must point at the API root."),
    406: ("says there are not enough credits", "Top up at {billing_page}"),
    408: ("timed out waiting for the request", "Try again."),
    413: ("says the request is too large", "Use a smaller input image."),
    422: ("rejected the request as invalid", "Check the node's inputs."),
    429: ("is rate limiting requests", "Wait a minute and run again{rate_limits_note}."),
    500: ("had a server error", "Try again later."),
    502: ("is temporarily unavailable (bad gateway)", "Try again in a minute."),
    503: ("is temporarily unavailable", "Try again in a minute."),
    504: ("timed out on its side", "Try again, or ask for fewer steps or a smaller image."),
}


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
    seconds: float
    # Which request and step this answers, when the caller said (`HttpClient.request`): its
    # errors carry them from their construction.
    request_id: str | None = None
    stage: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self, provider: Provider) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise ProviderError(
                provider,
                f"answered with something that is not JSON ({describe_body(self)}). "
                "The service may be down or the API base URL wrong; try again later.",
                self.status, stage=self.stage, request_id=self.request_id,
            ) from None

    def json_object(self, provider: Provider) -> dict:
        """The body as a JSON object, or ProviderError saying it is something else."""
        data = self.json(provider)
        if not isinstance(data, dict):
            raise ProviderError(provider, f"answered with JSON that is not an object ({describe_body(self)}). "
                                "Try again later.", self.status, stage=self.stage, request_id=self.request_id)
        return data


def describe_body(reply: Reply) -> str:
    """A short, safe description of an unexpected body for error messages."""
    kind = reply.content_type or "no content type"
    if not reply.body:
        return f"{kind}, empty body"
    return f"{kind}, {len(reply.body):,} bytes"


def server_message(reply: Reply) -> str:
    """The provider's own explanation in an error body, cleaned and shortened."""
    text = ""
    try:
        data = json.loads(reply.body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "html-message", "detail", "msg"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                text = value
                break
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                text = value["message"]
                break
    elif data is None and reply.body:
        raw = reply.body[:4096].decode("utf-8", "replace")
        raw = re.sub(r"(?is)<(script|style).*?</\1>", " ", raw)
        text = html.unescape(re.sub(r"<[^>]+>", " ", raw))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text)).strip()
    return cut(text, 297, "...") if len(text) > 300 else redact(text)


def _status_text(status: int) -> tuple[str, str]:
    """What a status says happened, and what to do."""
    return _STATUS_TEXT.get(
        status, ("answered with an error" if status >= 400 else "answered unexpectedly", "Try again later."))


def what_happened(reply: Reply) -> str:
    """A failing answer in a few words: 'had a server error (500). It said: "..."'."""
    said = server_message(reply)
    return f"{_status_text(reply.status)[0]} ({reply.status})." + (f' It said: "{said}".' if said else "")


def error_for_status(provider: Provider, reply: Reply, attempts: int = 1, *, stage: str = "",
                     request_id: str | None = None) -> ProviderError:
    what, remedy = _status_text(reply.status)
    tries = f", after {attempts} tries" if attempts > 1 else ""
    said = server_message(reply)
    said = f' It said: "{said}".' if said else ""
    rate_note = f" ({provider.rate_limits})" if provider.rate_limits else ""
    remedy = remedy.format(**provider.__dict__, rate_limits_note=rate_note)
    return ProviderError(provider, f"{what} ({reply.status}{tries}).{said} {remedy}", reply.status, stage=stage,
                         request_id=request_id)


def size_text(size: int) -> str:
    """A byte count as people read it: "64 MiB", "1.5 MiB", "512 KiB", "300 bytes"."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
