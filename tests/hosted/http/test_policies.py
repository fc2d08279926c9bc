"""The pace of a run is a Policies value a node receives at construction (ComfyUI's `cls()`
gives the provider's defaults) and hands to every API call: two nodes at different paces run
side by side, and the defaults are the documented ones."""

from __future__ import annotations

import asyncio

import pytest
from fakes.segmind import picture
from support.loopback import Answer, json_answer
from support.nodecalls import defaults, fast, make, run
from support.standin.nodes import StandInTxt2Img

from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted.http import rate_limit
from sdbridge.nodes.hosted.http.policy import Limits, MiB, Policies, PollPolicy, RetryPolicy
from sdbridge.nodes.hosted.node import hosted_classes
from sdbridge.nodes.hosted.provider_table import SEGMIND
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes

RV = segmind_nodes.SDBridgeSegmindRealisticVision


def test_comfyui_makes_nodes_at_the_providers_documented_pace():
    for cls in hosted_classes().values():
        assert cls().policies is cls.POLICIES and cls.POLICIES.retry == RetryPolicy()
    segmind = RV().policies
    assert segmind.poll == PollPolicy(first_interval=1.0, max_interval=5.0, growth=1.5, timeout=600.0)
    assert segmind.limits == Limits() and segmind.rate_plan is None and segmind.max_result_pixels is None
    sinkin = sinkin_nodes.SDBridgeSinkInTxt2Img().policies
    assert sinkin.downloads == Limits(connect_timeout=10.0, read_timeout=30.0, deadline=120.0, max_bytes=20 * MiB)
    assert sinkin.max_result_pixels == 4096 * 4096 and sinkin.limits == Limits()
    assert StandInTxt2Img().policies.poll == PollPolicy(first_interval=0.05, max_interval=0.2, timeout=30.0)


@pytest.mark.parametrize("tries", [1, 2])
def test_the_retry_policy_passed_in_decides_how_often_a_busy_provider_is_asked(fake_segmind, tries):
    fake_segmind.script += [json_answer(503, {"error": "busy"})] * tries
    with pytest.raises(ProviderError, match="503"):
        run(RV, prompt="x", seed=1, policies=fast(RV, retry=RetryPolicy(transient_attempts=tries, base_delay=0.01)))
    assert len(fake_segmind.requests) == tries  # nothing more left than the policy allowed


def test_two_nodes_at_two_paces_run_side_by_side(fake_segmind):
    """A node's limits are its own: the impatient one gives up, the other, at the same time,
    gets its image (a module-wide setting could not tell them apart)."""
    fake_segmind.script += [Answer(200, picture(64, 64, i), {"content-type": "image/jpeg"}, delay=1.0)
                            for i in range(2)]
    values = {**defaults(RV), "prompt": "x", "seed": 1}
    impatient = fast(RV, limits=Limits(read_timeout=0.3), retry=RetryPolicy(transient_attempts=1))

    async def both():
        return await asyncio.gather(make(RV, impatient).generate(unique_id="1", **values),
                                    make(RV).generate(unique_id="2", **values), return_exceptions=True)

    hurried, patient = asyncio.run(both())
    assert isinstance(hurried, ProviderError) and "may have made the image" in str(hurried)
    assert tuple(patient[0].shape) == (1, 64, 64, 3)
    assert len(fake_segmind.requests) == 2  # one request each: the lost answer is not resent


def test_a_runs_rate_plan_stands_in_for_the_tables_default_but_not_for_the_users(monkeypatch):
    monkeypatch.delenv(SEGMIND.rate_env)
    assert rate_limit.for_key(SEGMIND, "key-a", (20, 2.0)).plan == rate_limit.Plan(20, 2.0)
    assert rate_limit.for_key(SEGMIND, "key-a").plan == rate_limit.Plan(*SEGMIND.rate_plan)
    monkeypatch.setenv(SEGMIND.rate_env, "5/60")
    assert rate_limit.for_key(SEGMIND, "key-a", (20, 2.0)).plan == rate_limit.Plan(5, 60.0)
    assert Policies().rate_plan is None
