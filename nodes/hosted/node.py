"""What every hosted node shares: inputs, validation and the info output derived from its
params, random seeds, a description that says which key it needs, the result cache, and
reporting credits. Each provider module supplies PROVIDER and `call`."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import images as imaging
from .. import runtime
from ..errors import SDBridgeError
from ..param_node import HIDDEN, ImageNode
from .keys import redaction
from .keys.redaction import redact
from .money import budget
from .money import ledger as spending
from .money import prices as costs
from .provider_table import Provider
from .store import result_cache


@dataclass
class Result:
    """What `call` returns: the IMAGE batch, the info, and the provider's bytes of each image as
    received (what the result cache stores; empty when the answer held no image)."""
    images: Any
    info: dict
    raw: list[bytes] = field(default_factory=list)

    @classmethod
    def of(cls, pictures: list[imaging.Picture], info: dict) -> Result:
        return cls(imaging.pil_to_tensor([p.image for p in pictures]), info, [p.raw for p in pictures])


_HOSTED: dict[str, type] = {}  # every hosted node class defined, by id (its class name)


def hosted_classes() -> dict[str, type]:
    """Every hosted node class by id: what the whole prompt's estimate prices."""
    return dict(_HOSTED)


class HostedNode(ImageNode):
    """Subclasses set PARAMS, PROVIDER, DISPLAY_NAME, ABOUT and implement `call`."""

    PROVIDER: ClassVar[Provider]
    ABOUT: ClassVar[str] = ""  # what the node does; DESCRIPTION adds which key it needs
    # The whole prompt, for the spending caps (named so no widget can clash with it).
    HIDDEN_INPUTS = {**HIDDEN, "sdbridge_prompt": "PROMPT"}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        provider = cls.PROVIDER
        if cls.__dict__.get("PARAMS"):
            _HOSTED.setdefault(cls.__name__, cls)
        cls.TITLE = provider.name
        cls.CATEGORY = f"SD Bridge/{provider.name}"
        if cls.ABOUT:
            cls.DESCRIPTION = (f"{cls.ABOUT} Needs a {provider.name} {provider.key_label} ({provider.key_env} or "
                               "Settings > SD Bridge).")

    async def generate(self, unique_id: str | None = None, sdbridge_prompt: dict | None = None, **values):
        try:
            return await self._generate(unique_id, sdbridge_prompt, values)
        except Exception as error:
            # ComfyUI logs the whole chain of what a node raised: no key in any part of it.
            redaction.scrub_chain(error)
            raise

    async def _generate(self, unique_id: str | None, sdbridge_prompt: dict | None, values: dict):
        # 1. Check every input; mark the run, so an interrupt seen by any request of the prompt
        #    stops all of this run's.
        values = self.normalized(values)
        runtime.begin_run()
        started = time.monotonic()
        # 2. A request already paid for is answered from the result cache: no request, no cap.
        uploads = self.uploads(values)  # the input images' bytes, as `call` will send them
        key = result_cache.key_for(type(self), values, result_cache.image_digests(uploads))
        cached = await asyncio.to_thread(result_cache.lookup, key) if key else None
        result = self.from_cache(*cached, unique_id) if cached is not None else None
        if result is None:
            # 3. Ask the provider (within the caps), then keep what was paid for; a failure
            #    raised above, so it is never stored.
            try:
                result = await self.ask(values, uploads, sdbridge_prompt, unique_id)
            except SDBridgeError as exc:
                report_failure(exc, unique_id)
                raise
            result.info["seconds"] = round(time.monotonic() - started, 2)
            if key and result.raw:
                await asyncio.to_thread(result_cache.store, key, result.raw, result.info)
        else:
            result.info["seconds"] = round(time.monotonic() - started, 2)
        # The info text may carry what a server echoed back: scrub keys like any other output.
        return (result.images, redact(json.dumps(result.info, indent=1)))

    async def ask(self, values: dict, uploads: dict[str, list[bytes]], prompt: dict | None,
                  node_id: str | None) -> Result:
        """The spending caps first (past them nothing is sent), then `call`; what it spent is
        recorded and put in its info."""
        shape = self.cost_shape(values, requests=self.request_count(values))
        own = costs.estimate(shape)
        run = budget.run_for(prompt)
        reserved = budget.check_before_request(run, prompt, own, hosted_classes(), result_cache.cached_inputs)
        # Replaces the last run's line (credits, waits) so nothing stale stays under the node.
        runtime.show_text(node_id, f"{self.PROVIDER.name}: sending the request", log_line=False)
        spent = None
        try:
            result = await self.call(values, node_id, uploads)
            spent = self.account(shape, own, result.info, node_id)
        finally:
            budget.settle(run, reserved, spent)
        return result

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

    def from_cache(self, raw: list[bytes], info: dict, node_id: str | None) -> Result | None:
        """A cache hit: the stored bytes decoded as the first run decoded them, and its info,
        which says that nothing was spent and what the first run cost (None, a miss, if the
        bytes no longer decode)."""
        try:
            pictures = [imaging.decode_image(data) for data in raw]
        except imaging.ImageDecodeError:
            return None
        saved = info.get("credits_spent")
        saved = saved if isinstance(saved, (int, float)) and not isinstance(saved, bool) else None
        note = f"from cache — saved {costs.rounded(saved):g} credits" if saved is not None else "from cache"
        runtime.show_text(node_id, f"{self.PROVIDER.name}: {note}")
        runtime.send_event("sdbridge.spent", {"node": node_id, "provider": self.PROVIDER.id, "credits": 0,
                                              "basis": "cached"})
        info = {**info, "credits_spent": 0, "credits_basis": "cached",
                "cache": {"hit": True, **({"saved_credits": saved} if saved is not None else {})}}
        return Result(imaging.pil_to_tensor(pictures), info, raw)

    def uploads(self, values: dict) -> dict[str, list[bytes]]:
        """The bytes each image input is sent as ({input name: one per image sent}); they name
        the request in the result cache, so a change of one pixel is another request."""
        return {}

    @classmethod
    def cache_seed(cls, values: dict) -> int | None:
        """The run's fixed seed, or None when each run asks for a new image (seed -1)."""
        seed = values.get("seed")
        return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None

    @classmethod
    def cache_endpoint(cls, values: dict) -> str:
        """What the node calls, for the result cache's key."""
        return cls.__name__

    @classmethod
    def cache_values(cls, values: dict) -> dict:
        """The normalized values as the cache key reads them."""
        return values

    @classmethod
    def request_count(cls, values: dict) -> int:
        """How many paid requests one run sends: one per input image, or one."""
        image = values.get("image")
        return int(image.shape[0]) if image is not None and hasattr(image, "shape") else 1

    @classmethod
    def cost_shape(cls, values: dict, requests: int = 1) -> costs.CostShape:
        """What one run costs in: provider, endpoint, and the inputs a price scales with."""
        raise NotImplementedError

    async def call(self, values: dict, node_id: str | None, uploads: dict[str, list[bytes]]) -> Result:
        """Run the requests. A provider that tells what they cost puts it in `credits_measured`."""
        raise NotImplementedError


def report_failure(error: SDBridgeError, node_id: str | None) -> None:
    """Tell the web extension what failed as data (its type and fields: whether it may have been
    charged, the provider, the request id, the usage page), so its toast acts on a type, not on
    the message's words. ComfyUI shows the message itself on its error card."""
    runtime.send_event("sdbridge.failed", {"node": node_id, **error.fields()})


def report_credits(provider: Provider, remaining: Any, node_id: str | None) -> None:
    """Show a provider's remaining credits on the node and tell the web extension."""
    if remaining is None or remaining == "":
        return
    remaining = redaction.cut(str(remaining), 40)  # a server's header: shown on the node and sent to the page
    runtime.show_text(node_id, f"{provider.name}: {remaining} credits left")
    runtime.send_event("sdbridge.credits", {"provider": provider.id, "remaining": remaining, "node": node_id})
