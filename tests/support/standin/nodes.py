"""The stand-in's node: its params (shared ones from surface.py), its plan and its call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdbridge.nodes import surface
from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.money.prices import CostShape
from sdbridge.nodes.hosted.node import HostedNode, Plan, Result, fixed_seed
from sdbridge.nodes.params import Param, resolve_seed

from .api import POLICIES, download_images, generate
from .entry import STANDIN
from .wire import MODEL, request_body, result_urls


class StandInTxt2Img(HostedNode):
    PROVIDER = STANDIN
    POLICIES = POLICIES
    DISPLAY_NAME = "Stand-in Text to Image"
    ABOUT = "Text to image on the stand-in queue API."
    PARAMS = (surface.PROMPT, surface.NEGATIVE_PROMPT, surface.seed(surface.SEED_MAX_32_BIT),
              Param("num_images", "INT", "Number of images.", default=1, min=1, max=4))

    @classmethod
    def plan(cls, values: Mapping[str, Any], images: bool = True) -> Plan:
        # No price is published and no answer tells the cost: estimates stay "unknown".
        cost = CostShape(STANDIN.id, MODEL, images=values["num_images"])
        return Plan(values, MODEL, fixed_seed(values), cost, uploads={} if images else None)

    async def call(self, plan: Plan, node_id: str | None) -> Result:
        values = plan.values
        seed = resolve_seed(self.PARAMS, values)
        answer = await generate(request_body(values, seed), node_id, self.policies)
        pictures = await download_images(result_urls(answer, values["num_images"]), node_id, self.policies)
        if not pictures:
            raise ProviderError(STANDIN, "finished without an image. Try again.")
        return Result.of(pictures, {"provider": STANDIN.name, "seed": seed, "images": len(pictures)})


NODES = (StandInTxt2Img,)
