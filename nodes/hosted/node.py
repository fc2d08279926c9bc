"""What every hosted node shares: inputs, validation and the info output derived from its
params, random seeds, a description that says which key it needs, one `Plan` per run, the
result cache, the spending caps, and reporting credits. Each provider module supplies the
declarations (PARAMS, PROVIDER, DISPLAY_NAME, ABOUT, POLICIES), `plan` and `call`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from .. import images as imaging
from .. import runtime
from ..errors import MaybeCharged, ProviderError, SDBridgeError
from ..param_node import HIDDEN, ImageNode
from .http.client import counting_generations
from .http.jobs import collect_request_ids
from .http.policy import Policies
from .keys import redaction
from .keys.redaction import redact
from .money import budget
from .money import prices as costs
from .provider_table import Provider
from .store import receipts, result_cache


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


@dataclass(frozen=True)
class Plan:
    """One run, decided before anything is sent. Made from the normalized values alone when
    `uploads` is None (the estimate and the result cache's widget-only check: no image is read),
    else with the input images' bytes exactly as `call` sends them."""
    values: Mapping[str, Any]          # the normalized values the requests are built from
    endpoint: str                      # what the node calls, as the result cache's key names it
    seed: int | None                   # the fixed seed; None when each run asks for a new image
    cost: costs.CostShape              # what the run costs in; its `requests` are the paid requests
    cache_values: Mapping[str, Any] | None = None  # as the cache key reads them (None: `values`
    #                                                but the uploaded inputs, named by their digests)
    uploads: Mapping[str, tuple[bytes, ...]] | None = None  # {input name: bytes of each image sent}
    model: str = ""                    # the model run, where the endpoint does not name it (receipts)

    def __post_init__(self):
        # Read-only views: nothing downstream changes what was planned.
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        keyed = self.cache_values
        if keyed is None:
            keyed = {name: value for name, value in self.values.items() if name not in (self.uploads or {})}
        object.__setattr__(self, "cache_values", MappingProxyType(dict(keyed)))
        if self.uploads is not None:
            object.__setattr__(self, "uploads", MappingProxyType({k: tuple(v) for k, v in self.uploads.items()}))

    @property
    def requests(self) -> int:
        return self.cost.requests

    def sent(self, name: str) -> tuple[bytes, ...]:
        """The bytes of each image sent for input `name` (none when it is not connected)."""
        return (self.uploads or {}).get(name, ())


def fixed_seed(values: Mapping[str, Any], name: str = "seed") -> int | None:
    """The run's fixed seed (an integer >= 0), or None: -1 asks for a new image each run. Read
    past the estimate's linked-input guard (dict.get): a seed from another node changes no price,
    and a value not given names no image."""
    seed = dict.get(values, name) if isinstance(values, dict) else values.get(name)
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None


def encode_uploads(values: Mapping[str, Any], names, *, first_only: bool = False) -> dict[str, tuple[bytes, ...]]:
    """The PNG bytes of each connected image input in `names`: every image of its batch (each is
    its own request), or with `first_only` the first. These name the request in the result cache,
    so a change of one pixel is another request."""
    uploads = {}
    for name in names:
        if values.get(name) is not None:
            pictures = imaging.tensor_to_pil(values[name])
            uploads[name] = tuple(imaging.encode_image(p) for p in (pictures[:1] if first_only else pictures))
    return uploads


_HOSTED: dict[str, type] = {}  # every hosted node class defined, by id (its class name)


def hosted_classes() -> dict[str, type]:
    """Every hosted node class by id: what the whole prompt's estimate prices."""
    return dict(_HOSTED)


class HostedNode(ImageNode):
    """Subclasses declare PARAMS, PROVIDER, DISPLAY_NAME, ABOUT and POLICIES (the provider's
    default pace), and write `plan` (values -> Plan) and `call` (Plan -> Result)."""

    PROVIDER: ClassVar[Provider]
    POLICIES: ClassVar[Policies] = Policies()
    ABOUT: ClassVar[str] = ""  # what the node does; DESCRIPTION adds which key it needs
    # The whole prompt, for the spending caps (named so no widget can clash with it).
    HIDDEN_INPUTS = {**HIDDEN, "sdbridge_prompt": "PROMPT",
                     # ComfyUI's extra PNG info (the workflow): the run's receipt is added to it.
                     "sdbridge_pnginfo": "EXTRA_PNGINFO"}

    def __init__(self, policies: Policies | None = None):
        # ComfyUI makes nodes with no arguments: the provider's pace. Tests pass faster ones.
        self.policies = policies or self.POLICIES

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

    async def generate(self, unique_id: str | None = None, sdbridge_prompt: dict | None = None,
                       sdbridge_pnginfo: dict | None = None, **values):
        # Every run leaves a receipt, whatever its end (store/receipts.py); ComfyUI's Save Image
        # writes every key of EXTRA_PNGINFO into the PNG, so the receipt travels with the image.
        receipt = RunRecord(self, unique_id, sdbridge_prompt, values)
        try:
            return await self._generate(unique_id, sdbridge_prompt, values, receipt)
        except BaseException as error:
            if isinstance(error, Exception):
                # ComfyUI logs the whole chain of what a node raised: no key in any part of it.
                redaction.scrub_chain(error)
            if isinstance(error, SDBridgeError):
                report_failure(error, unique_id)
            receipt.ended_by(error)
            raise
        finally:
            receipt.finish(sdbridge_pnginfo)

    async def _generate(self, unique_id: str | None, sdbridge_prompt: dict | None, values: dict,
                        receipt: RunRecord):
        # 1. Check every input; mark the run, so an interrupt seen by any request of the prompt
        #    stops all of this run's.
        values = receipt.values = self.normalized(values)
        runtime.begin_run()
        started = time.monotonic()
        # 2. Plan what the run sends, costs and is cached as (the input images encoded once).
        plan = self.plan(values)
        receipt.planned(plan)
        # 3. A request already paid for is answered from the result cache: no request, no cap.
        key = result_cache.key_for(type(self), values, result_cache.image_digests(plan.uploads or {}))
        result = await self.from_cache(key, unique_id)
        if result is None:
            # 4. Reserve within the caps (past them nothing is sent), 5. call, 6. account for
            #    what it spent, 7. settle the reservation, whatever happened.
            #    A request that may have been billed counts even when its answer was lost.
            run = budget.run_for(sdbridge_prompt)
            hold = await self.reserve(run, sdbridge_prompt, plan.cost, unique_id)
            #    So does one cancelled after its request left: the provider may finish and bill it.
            spent = None
            with counting_generations() as sent:
                try:
                    result = await self.call(plan, unique_id)
                    spent = self.account(plan.cost, hold, result.info, unique_id)
                except MaybeCharged:
                    spent = receipt.estimate = self.count_maybe_charged(plan.cost, hold)
                    raise
                except (Exception, asyncio.CancelledError) as stopped:
                    if sent and not isinstance(stopped, SDBridgeError):  # ComfyUI's cancel, after a send
                        spent = receipt.estimate = self.count_maybe_charged(plan.cost, hold)
                    raise
                finally:
                    self.settle(run, hold, spent)
            # A failure raised above, so only what was paid for is kept.
            result.info["seconds"] = round(time.monotonic() - started, 2)
            if key and result.raw:
                await asyncio.to_thread(result_cache.store, key, result.raw, result.info)
        else:
            result.info["seconds"] = round(time.monotonic() - started, 2)
        receipt.result = result
        # The info text may carry what a server echoed back: scrub keys like any other output.
        return (result.images, redact(json.dumps(result.info, indent=1)))

    async def reserve(self, run: budget.Run, prompt: dict | None, shape: costs.CostShape,
                      node_id: str | None) -> budget.Hold:
        """The spending caps (past them nothing is sent): hold this run's estimate."""
        hold = await budget.reserve(run, prompt, shape, hosted_classes(), result_cache.cached_inputs)
        # Replaces the last run's line (credits, waits) so nothing stale stays under the node.
        runtime.show_text(node_id, f"{self.PROVIDER.name}: sending the request", log_line=False)
        return hold

    def count_maybe_charged(self, shape: costs.CostShape, hold: budget.Hold) -> float | None:
        """A request that may have been billed (its answer was lost) counts toward the caps."""
        spent = costs.counted(shape).credits
        budget.count(shape, hold, spent, measured=False)
        return spent

    def settle(self, run: budget.Run, hold: budget.Hold, spent: float | None) -> None:
        """The hold gives way to what was spent (None: nothing known, or it failed)."""
        budget.settle(run, hold, spent)

    def account(self, shape: costs.CostShape, hold: budget.Hold, info: dict, node_id: str | None) -> float | None:
        """Record what the run spent (measured when the provider told, else the estimate, else a
        cautious figure that only the caps count), put it in `info`, show it on the node and tell
        the web extension. Returns what the caps count."""
        measured = info.pop("credits_measured", None)
        own = hold.estimate
        counted = None
        if measured is not None:
            budget.count(shape, hold, measured, measured=True)
            spent, basis = measured, "measured"
        elif own.credits is not None:
            budget.count(shape, hold, own.credits, measured=False)
            spent, basis = own.credits, "estimated"
        else:
            counted = costs.counted(shape).credits
            budget.count(shape, hold, counted, measured=False)
            spent, basis = None, "unknown"
            info["credits_counted"] = counted  # toward the caps, until a run of this kind is measured
        info["credits_spent"] = spent
        info["credits_basis"] = basis
        if spent is not None:
            shown = f"{costs.rounded(spent):g}"
            runtime.show_text(node_id, f"{self.PROVIDER.name}: spent {shown} {self.PROVIDER.credit_unit} ({basis})")
        runtime.send_event("sdbridge.spent", {"node": node_id, "provider": self.PROVIDER.id, "credits": spent,
                                              "basis": basis, "unit": self.PROVIDER.credit_unit})
        return spent if spent is not None else counted

    async def from_cache(self, key: str | None, node_id: str | None) -> Result | None:
        """A cache hit: the stored bytes decoded as the first run decoded them, and its info,
        which says that nothing was spent and what the first run cost (None: a miss, no key, or
        bytes that no longer decode)."""
        cached = await asyncio.to_thread(result_cache.lookup, key) if key else None
        if cached is None:
            return None
        raw, info = cached
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

    @classmethod
    def plan(cls, values: Mapping[str, Any], images: bool = True) -> Plan:
        """What one run sends, costs and is cached as. With `images` off, made from the widget
        values alone: no image input is read (`uploads` None, one request)."""
        raise NotImplementedError

    async def call(self, plan: Plan, node_id: str | None) -> Result:
        """Run the planned requests at `self.policies`' pace. A provider that tells what they
        cost puts it in `info["credits_measured"]`."""
        raise NotImplementedError


def report_failure(error: SDBridgeError, node_id: str | None) -> None:
    """Tell the web extension what failed as data (its type and fields: whether it may have been
    charged, the provider, the request id, the usage page), so its toast acts on a type, not on
    the message's words. ComfyUI shows the message itself on its error card."""
    runtime.send_event("sdbridge.failed", {"node": node_id, **error.fields()})


PNGINFO_KEY = "sdbridge_receipts"  # the PNG text chunk holding the prompt's receipts
CANCELLED_TEXT = ("Cancelled in ComfyUI before the result came back; a request already sent may still be "
                  "finished and charged by the provider.")


class RunRecord:
    """What one run's receipt says, filled in by the run's steps: the node, its inputs, what
    it returned or how it ended. `finish` writes it (off the node's path), adds it to the PNG
    info and tells the web extension."""

    def __init__(self, node: HostedNode, node_id: str | None, prompt: dict | None, values: dict):
        self.node, self.node_id, self.prompt = node, node_id, prompt
        self.values: dict = values
        self.endpoint = type(node).__name__  # until the run is planned
        self.digests: list[str] = []
        self.result: Result | None = None
        self.estimate: float | None = None
        self.status, self.message = "done", ""
        self.request_ids = collect_request_ids()
        self.prompt_id = runtime.current_prompt_id()
        self.started = time.monotonic()
        self.token = receipts.begin(self._identity())

    def _identity(self) -> dict:
        cls = type(self.node)
        meta = self.prompt.get(self.node_id, {}).get("_meta") if isinstance(self.prompt, dict) else None
        title = meta.get("title") if isinstance(meta, dict) else None
        return {"provider": cls.PROVIDER.id, "endpoint": self.endpoint, "node_id": self.node_id,
                "title": title if isinstance(title, str) else cls.DISPLAY_NAME, "prompt_id": self.prompt_id}

    def planned(self, plan: Plan) -> None:
        self.endpoint = plan.model or plan.endpoint
        self.digests = result_cache.image_digests(plan.uploads or {})

    def ended_by(self, exc: BaseException) -> None:
        if isinstance(exc, MaybeCharged):
            self.status = "maybe_charged"
        elif isinstance(exc, (runtime.Interrupted, asyncio.CancelledError)) or runtime.interrupted():
            self.status = "cancelled"
        else:
            self.status = "failed"
        if isinstance(exc, ProviderError) and exc.request_id:
            self.request_ids.append(exc.request_id)
        # ComfyUI's interrupt carries no message: its class name would be the only reason shown.
        self.message = CANCELLED_TEXT if self.status == "cancelled" else str(exc) or type(exc).__name__

    def record(self) -> dict:
        info = self.result.info if self.result is not None else {}
        params = {p.name for p in self.node.PARAMS if p.kind == "IMAGE"}
        inputs = {k: v for k, v in self.values.items() if k not in params}
        if self.status == "done":
            credits, basis = info.get("credits_spent"), info.get("credits_basis", "unknown")
            self.status = "cached" if basis == "cached" else "done"
            spent = f"{costs.rounded(credits):g} credits ({basis})" if credits is not None else "cost unknown"
            self.message = "from the result cache" if basis == "cached" else f"done: {spent}"
        elif self.status == "maybe_charged" or self.estimate is not None:  # cancelled after a send too
            credits, basis = self.estimate, "estimated" if self.estimate is not None else "unknown"
        else:
            credits, basis = None, "unknown"
        found = info.get("inf_id")  # SinkIn's id of each request
        ids = self.request_ids + ([str(i) for i in found] if isinstance(found, list) else [str(found)] if found else [])
        raw = self.result.raw if self.result is not None else []
        return receipts.make(
            **self._identity(), inputs=inputs, image_digests=self.digests,
            seed=info.get("seed", inputs.get("seed")), request_ids=ids, status=self.status, message=self.message,
            credits=credits, basis=basis, returned=[hashlib.sha256(data).hexdigest() for data in raw],
            seconds=round(time.monotonic() - self.started, 2), remaining=info.get("remaining_credits"))

    def finish(self, pnginfo: dict | None) -> None:
        receipts.end(self.token)
        try:
            record = self.record()
        except Exception as exc:  # a receipt never fails the run
            runtime.log.warning("SD Bridge: no receipt for this run (%s)", redact(str(exc)))
            return
        receipts.write(record)
        if isinstance(pnginfo, dict):
            shown = pnginfo.get(PNGINFO_KEY)
            pnginfo[PNGINFO_KEY] = [*shown, record] if isinstance(shown, list) else [record]
        runtime.send_event("sdbridge.receipt", record)


def report_credits(provider: Provider, remaining: Any, node_id: str | None) -> None:
    """Show a provider's remaining credits on the node and tell the web extension."""
    if remaining is None or remaining == "":
        return
    remaining = redaction.cut(str(remaining), 40)  # a server's header: shown on the node and sent to the page
    runtime.show_text(node_id, f"{provider.name}: {remaining} credits left")
    runtime.send_event("sdbridge.credits", {"provider": provider.id, "remaining": remaining, "node": node_id})
