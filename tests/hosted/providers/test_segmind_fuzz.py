"""Hypothesis over every Segmind node's inputs: each combination is either refused by validation
with a clear message (and no request), or sent as a request the fake accepts, every value with
its real JSON type."""

from __future__ import annotations

import pytest
from support.fuzzing import fuzz_node

from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes

NODES = [node for node in segmind_nodes.NODES if node is not segmind_nodes.SDBridgeSegmindAnyModel]


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_fuzz_node_inputs(node, fake_segmind):
    params = [p for p in node.PARAMS if p.kind != "IMAGE"]

    def check_sent(values):
        body = fake_segmind.bodies()[-1]
        for param in params:
            sent = body[param.name]
            assert type(sent) is type(param.normalize(values[param.name])) or param.name == "seed"

    fuzz_node(node, fake_segmind, check_sent=check_sent, max_examples=60, min_accepted=10)
