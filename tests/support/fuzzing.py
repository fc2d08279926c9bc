"""The one fuzz driver for node inputs, and the strategies it draws from: a valid value for
each declared param, and anything at all (what a queue-API script could send instead)."""

from __future__ import annotations

import asyncio
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdbridge.nodes.errors import ProviderError

from .nodecalls import defaults, make

ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(-10**16, 10**16), st.floats(allow_nan=True),
                     st.text(max_size=12))


def valid_value(param):
    """Values `param` accepts: its choices, a number in range (on its multiple), a boolean, or text
    (non-blank where it must be)."""
    if param.kind == "COMBO":
        return st.sampled_from(param.choices)
    if param.kind == "INT":
        step = param.multiple_of or 1
        return st.integers(int(param.min) // step, int(param.max) // step).map(lambda n: n * step)
    if param.kind == "FLOAT":
        return st.floats(param.min, param.max)
    if param.kind == "BOOLEAN":
        return st.booleans()
    text = st.text(max_size=40)
    return text.filter(str.strip) if param.nonempty else text


@st.composite
def node_inputs(draw, params, good=valid_value):
    """Good values everywhere, then up to two inputs replaced by anything at all: both outcomes
    (refused, sent) are common, and each refusal exercises one or two validators at a time."""
    values = {p.name: draw(good(p)) for p in params}
    for name in draw(st.lists(st.sampled_from([p.name for p in params]), max_size=2, unique=True)):
        values[name] = draw(ANYTHING)
    return values


def fuzz_node(node, server, *, check_sent, good=valid_value, provider_may_refuse=None, max_examples=40,
              min_accepted=10):
    """Hypothesis over `node`'s widget inputs against a running fake `server`. Every case is either
    refused by VALIDATE_INPUTS with a message that starts with an input's name, and then by the
    node itself when run, with no request sent; or sent, after which `check_sent(merged_values)`
    judges what reached the server. `provider_may_refuse(error)` says which ProviderErrors only
    the provider could have known about. Fails unless `min_accepted` cases produced images."""
    params = [p for p in node.PARAMS if p.kind != "IMAGE"]
    names = {p.name for p in params}
    accepted: list[int] = []

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(node_inputs(params, good))
    def check(values):
        merged = {**defaults(node), **values}
        for param in node.PARAMS:
            if param.kind == "IMAGE" and not param.optional:
                merged[param.name] = torch.rand((1, 8, 8, 3))
        before = len(server.requests)
        verdict = node.VALIDATE_INPUTS(**merged)
        if verdict is not True:
            assert isinstance(verdict, str) and verdict.split(":")[0] in names, verdict
            with pytest.raises(ValueError, match=re.escape(verdict.split(":")[0])):
                asyncio.run(make(node).generate(unique_id="1", **merged))
            assert len(server.requests) == before  # refused before spending anything
            return
        try:
            images, _ = asyncio.run(make(node).generate(unique_id="1", **merged))
        except ProviderError as exc:
            if provider_may_refuse is None or not provider_may_refuse(exc):
                raise
        else:
            accepted.append(1)
            assert images.ndim == 4 and images.shape[-1] == 3 and images.dtype == torch.float32
        check_sent(merged)

    check()
    assert len(accepted) >= min_accepted, f"only {len(accepted)} cases reached the provider; the fuzz must send too"
