"""What every hosted node shares: inputs, validation and the info output derived from its
params, random seeds, a description that says which key it needs, and reporting credits. Each
provider module supplies PROVIDER and `call`."""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from .. import runtime
from ..param_node import HIDDEN, ImageNode
from . import budget, costs, spending
from .credentials import redact
from .providers import Provider


class HostedNode(ImageNode):
    """Subclasses set PARAMS, PROVIDER, DISPLAY_NAME, ABOUT and implement `call`."""

    PROVIDER: ClassVar[Provider]
    ABOUT: ClassVar[str] = ""  # what the node does; DESCRIPTION adds which key it needs
    # The whole prompt, for the spending caps (named so no widget can clash with it).
    HIDDEN_INPUTS = {**HIDDEN, "sdbridge_prompt": "PROMPT"}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        provider = cls.PROVIDER
        cls.TITLE = provider.name
        cls.CATEGORY = f"SD Bridge/{provider.name}"
        if cls.ABOUT:
            cls.DESCRIPTION = (f"{cls.ABOUT} Needs a {provider.name} {provider.key_label} ({provider.key_env} or "
                               "Settings > SD Bridge).")

    async def generate(self, unique_id: str | None = None, sdbridge_prompt: dict | None = None, **values):
        values = self.normalized(values)
        runtime.begin_run()  # an interrupt seen by any request of the prompt stops all of this run's
        shape = self.cost_shape(values, requests=self.request_count(values))
        own = costs.estimate(shape)
        run = budget.run_for(sdbridge_prompt)
        reserved = budget.check_before_request(run, sdbridge_prompt, own)
        # Replaces the last run's line (credits, waits) so nothing stale stays under the node.
        runtime.show_text(unique_id, f"{self.PROVIDER.name}: sending the request", log_line=False)
        started = time.monotonic()
        spent = None
        try:
            images, info = await self.call(values, unique_id)
            spent = self.account(shape, own, info, unique_id)
        finally:
            budget.settle(run, reserved, spent if spent is not None else None)
        info["seconds"] = round(time.monotonic() - started, 2)
        # The info text may carry what a server echoed back: scrub keys like any other output.
        return (images, redact(json.dumps(info, indent=1)))

    def account(self, shape: costs.CostShape, own: costs.Estimate, info: dict, node_id: str | None) -> float | None:
        """Record what the run spent (measured when the provider told, else the estimate), put
        it in `info`, show it on the node and tell the web extension."""
        measured = info.pop("credits_measured", None)
        if measured is not None:
            costs.record_measured(shape, measured)
            spent, basis = measured, "measured"
        elif own.credits is not None:
            spending.record(self.PROVIDER.id, own.credits)
            spent, basis = own.credits, "estimated"
        else:
            spent, basis = None, "unknown"
        info["credits_spent"] = spent
        info["credits_basis"] = basis
        if spent is not None:
            shown = f"{costs.rounded(spent):g}"
            runtime.show_text(node_id, f"{self.PROVIDER.name}: spent {shown} credits ({basis})")
        runtime.send_event("sdbridge.spent", {"node": node_id, "provider": self.PROVIDER.id, "credits": spent,
                                              "basis": basis})
        return spent

    @classmethod
    def request_count(cls, values: dict) -> int:
        """How many paid requests one run sends: one per input image, or one."""
        image = values.get("image")
        return int(image.shape[0]) if image is not None and hasattr(image, "shape") else 1

    @classmethod
    def cost_shape(cls, values: dict, requests: int = 1) -> costs.CostShape:
        """What one run costs in: provider, endpoint, and the inputs a price scales with."""
        raise NotImplementedError

    async def call(self, values: dict, node_id: str | None) -> tuple[Any, dict]:
        """Run the requests. A provider that tells what they cost puts it in `credits_measured`."""
        raise NotImplementedError


def report_credits(provider: Provider, remaining: Any, node_id: str | None) -> None:
    """Show a provider's remaining credits on the node and tell the web extension."""
    if remaining is None or remaining == "":
        return
    remaining = redact(str(remaining))[:40]  # a server's header: shown on the node and sent to the page
    runtime.show_text(node_id, f"{provider.name}: {remaining} credits left")
    runtime.send_event("sdbridge.credits", {"provider": provider.id, "remaining": remaining, "node": node_id})
