"""One Plan per run: every hosted node turns its values into one immutable Plan (what it sends,
costs and is cached as), made from widget values alone for the estimate, and with the input
images' bytes for a run; `call` sends exactly those bytes."""

from __future__ import annotations

import base64
import dataclasses

import pytest
import torch
from support.nodecalls import defaults, run
from support.standin.nodes import StandInTxt2Img

from sdbridge.nodes import images as imaging
from sdbridge.nodes.hosted.node import HostedNode, Plan, hosted_classes
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.params import normalize_all

IMG2IMG = segmind_nodes.SDBridgeSegmindSD15Img2Img
ANY = segmind_nodes.SDBridgeSegmindAnyModel
# What a provider writes besides its declarations; everything else comes from the node base.
PROVIDER_WRITES = {"plan", "call", "check_together", "editor_params"}


def _values(node, **changes) -> dict:
    return node.normalized({**defaults(node), **changes})


def test_a_plan_is_immutable():
    plan = segmind_nodes.SDBridgeSegmindSDXL.plan(_values(segmind_nodes.SDBridgeSegmindSDXL, prompt="x", seed=3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.seed = 4
    with pytest.raises(TypeError):
        plan.values["prompt"] = "y"
    with pytest.raises(TypeError):
        plan.uploads["image"] = (b"",)


def test_a_batch_plans_one_paid_request_per_image_with_the_bytes_sent(fake_segmind):
    batch = torch.rand((3, 16, 16, 3))
    plan = IMG2IMG.plan(_values(IMG2IMG, prompt="x", seed=2, image=batch))
    assert plan.requests == plan.cost.requests == 3 and len(plan.sent("image")) == 3
    assert plan.endpoint == IMG2IMG.ENDPOINT.slug and plan.seed == 2
    assert "image" not in plan.cache_values  # images name the request by their digests only
    run(IMG2IMG, prompt="x", seed=2, image=batch)
    sent = sorted(base64.b64decode(body["image"]) for body in fake_segmind.bodies())
    assert sent == sorted(plan.sent("image"))  # exactly the planned bytes left, once each


def test_without_images_no_image_is_read_and_one_request_is_priced():
    class Unreadable(dict):
        def __getitem__(self, name):  # an image input touched here would fail the estimate
            if name == "image":
                raise AssertionError("the image was read")
            return super().__getitem__(name)

    values = Unreadable({k: v for k, v in _values(IMG2IMG, prompt="x", seed=-1, image=torch.rand((2, 8, 8, 3))).items()})
    plan = IMG2IMG.plan(values, images=False)
    assert plan.uploads is None and plan.requests == 1 and plan.seed is None


def test_any_model_plans_its_body_seed_and_first_images():
    values = _values(ANY, slug=" custom-model ", parameters='{"seed": 7, "width": 64, "height": 32, "samples": 2}',
                     image_1=torch.rand((2, 8, 8, 3)))
    plan = ANY.plan(values)
    assert (plan.endpoint, plan.seed, plan.cost.images, plan.cost.pixels) == ("custom-model", 7, 2, 64 * 32)
    assert plan.cache_values["parameters"] == {"seed": 7, "width": 64, "height": 32, "samples": 2}
    assert len(plan.sent("image_1")) == 1 and plan.sent("image_2") == () and "image_1" not in plan.cache_values
    assert imaging.decode_image(plan.sent("image_1")[0]).size == (8, 8)


def test_sinkin_plans_a_kind_per_model_and_controlnet():
    node = sinkin_nodes.SDBridgeSinkInImg2Img
    plan = node.plan(_values(node, prompt="x", seed=1, controlnet="canny", image=torch.rand((1, 8, 8, 3))))
    assert plan.endpoint == "inference/SDBridgeSinkInImg2Img" and plan.cost.variant.endswith(":canny")
    assert plan.cost.variant.startswith("img2img:") and plan.requests == 1


def test_every_provider_writes_only_plan_call_and_its_declarations():
    """The override points: PARAMS, PROVIDER, DISPLAY_NAME, ABOUT, POLICIES (data), plan and
    call, and check_together / editor_params where a node needs them."""
    base = set(vars(HostedNode)) | {n for c in HostedNode.__mro__ for n in vars(c)}
    for cls in [*hosted_classes().values(), StandInTxt2Img]:
        written = {name for c in cls.__mro__[:cls.__mro__.index(HostedNode)] for name, value in vars(c).items()
                   if name in base and callable(getattr(cls, name)) and name.islower() and not name.startswith("__")}
        assert written <= PROVIDER_WRITES, (cls.__name__, written - PROVIDER_WRITES)
        assert "plan" in written and "call" in written
        widgets = normalize_all(cls.PARAMS, {**defaults(cls), "prompt": "x"}, partial=True)
        assert isinstance(cls.plan(widgets, images=False), Plan)
