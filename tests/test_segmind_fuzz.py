"""Hypothesis over every Segmind node's inputs: each combination is either refused by validation
with a clear message (and no request), or sent as a request the fake accepts."""

from __future__ import annotations

import asyncio

import pytest
from fake_segmind import KEY, FakeSegmind
from fuzzing import ANYTHING, valid_value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodecalls import defaults

from sdbridge.nodes.hosted import segmind
from sdbridge.nodes.hosted.http import RetryPolicy


@st.composite
def _inputs(draw, params):
    """Valid values everywhere, then up to two inputs replaced by anything at all: about half
    the cases are valid requests, the rest exercise one or two validators at a time."""
    values = {p.name: draw(valid_value(p)) for p in params}
    for name in draw(st.lists(st.sampled_from([p.name for p in params]), max_size=2, unique=True)):
        values[name] = draw(ANYTHING)
    return values


NODES = [n for name, n in segmind.NODE_CLASS_MAPPINGS.items() if name != "SDBridgeSegmindAnyModel"]


@pytest.fixture(scope="module")
def server():
    with FakeSegmind() as fake:
        yield fake


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_fuzz_node_inputs(node, server, monkeypatch):
    monkeypatch.setenv("SEGMIND_API_KEY", KEY)
    monkeypatch.setenv("SEGMIND_API_BASE", server.url)
    monkeypatch.setattr(segmind.CLIENT, "retry", RetryPolicy(transient_attempts=1, rate_limit_attempts=1))
    params = [p for p in node.PARAMS if p.kind != "IMAGE"]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_inputs(params))
    def check(values):
        import torch

        merged = {**defaults(node), **values}
        if any(p.kind == "IMAGE" for p in node.PARAMS):
            merged["image"] = torch.rand((1, 8, 8, 3))
        before = len(server.requests)
        verdict = node.VALIDATE_INPUTS(**merged)
        if verdict is not True:
            assert isinstance(verdict, str) and ": " in verdict
            with pytest.raises(ValueError):
                asyncio.run(node().generate(unique_id="1", **merged))
            assert len(server.requests) == before  # refused before spending anything
            return
        images, _ = asyncio.run(node().generate(unique_id="1", **merged))
        accepted.append(1)
        assert images.ndim == 4 and images.shape[-1] == 3
        body = server.bodies()[-1]
        for param in params:
            sent = body[param.name]
            assert type(sent) is type(param.normalize(merged[param.name])) or param.name == "seed"

    accepted: list[int] = []
    check()
    assert len(accepted) >= 10, "the fuzz should send real requests too"
