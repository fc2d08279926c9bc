"""What every hosted node shares: inputs, validation and the info output derived from its
params, random seeds, a description that says which key it needs, and reporting credits. Each
provider module supplies PROVIDER and `call`."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from .. import runtime
from ..param_node import ImageNode
from .credentials import redact
from .providers import Provider


class HostedNode(ImageNode):
    """Subclasses set PARAMS, PROVIDER, DISPLAY_NAME, ABOUT and implement `call`."""

    PROVIDER: ClassVar[Provider]
    ABOUT: ClassVar[str] = ""  # what the node does; DESCRIPTION adds which key it needs

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        provider = cls.PROVIDER
        cls.TITLE = provider.name
        cls.CATEGORY = f"SD Bridge/{provider.name}"
        if cls.ABOUT:
            cls.DESCRIPTION = (f"{cls.ABOUT} Needs a {provider.name} {provider.key_label} ({provider.key_env} or "
                               "Settings > SD Bridge).")

    async def generate(self, unique_id: str | None = None, **values):
        values = self.normalized(values)
        runtime.begin_run()  # an interrupt seen by any request of the prompt stops all of this run's
        # Replaces the last run's line (credits, waits) so nothing stale stays under the node.
        runtime.show_text(unique_id, f"{self.PROVIDER.name}: sending the request", log_line=False)
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
    remaining = redact(str(remaining))[:40]  # a server's header: shown on the node and sent to the page
    runtime.show_text(node_id, f"{provider.name}: {remaining} credits left")
    runtime.send_event("sdbridge.credits", {"provider": provider.id, "remaining": remaining, "node": node_id})
