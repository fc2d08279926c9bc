"""What every hosted node shares: inputs, validation and the info output derived from its
params, random seeds, and reporting credits. Each provider module supplies `call`."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from .. import runtime
from ..params import Param, ValidationError, input_types, normalize_all, validate_inputs_classmethod
from .credentials import redact
from .providers import Provider

HIDDEN = {"unique_id": "UNIQUE_ID"}


class HostedNode:
    """Subclasses set PARAMS, PROVIDER, DESCRIPTION and implement `call`."""

    PARAMS: ClassVar[Sequence[Param]] = ()
    PROVIDER: ClassVar[Provider]
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "info")
    OUTPUT_TOOLTIPS = (
        "Every image the call returned, as one batch.",
        "What the call returned besides pixels, as JSON: seed, remaining credits, time taken.",
    )
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return input_types(cls.PARAMS, HIDDEN)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.VALIDATE_INPUTS = validate_inputs_classmethod(cls.PARAMS)

    @classmethod
    def IS_CHANGED(cls, **values):
        # A seed of -1 asks for a new random image each run; otherwise ComfyUI's cache may
        # reuse the last answer instead of paying for the same image again.
        if str(values.get("seed")) == "-1":
            return float("nan")
        return ""

    @classmethod
    def check_together(cls, values: dict) -> None:
        """Rules that span several inputs; raise ValidationError."""

    async def generate(self, unique_id: str | None = None, **values):
        try:
            values = normalize_all(self.PARAMS, values)
            self.check_together(values)
        except ValidationError as exc:
            raise ValueError(f"{self.PROVIDER.name}: {exc}") from None
        started = time.monotonic()
        images, info = await self.call(values, unique_id)
        info["seconds"] = round(time.monotonic() - started, 2)
        # The info text may carry what a server echoed back: scrub keys like any other output.
        return (images, redact(json.dumps(info, indent=1)))

    async def call(self, values: dict, node_id: str | None) -> tuple[Any, dict]:
        raise NotImplementedError


def report_credits(provider: Provider, remaining: Any, node_id: str | None) -> None:
    """Show a provider's remaining credits on the node and tell the web extension."""
    if remaining is None or remaining == "":
        return
    runtime.show_text(node_id, f"{provider.name}: {remaining} credits left")
    runtime.send_event("sdbridge.credits", {"provider": provider.id, "remaining": remaining, "node": node_id})
