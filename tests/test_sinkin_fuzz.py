"""Hypothesis over both SinkIn nodes' inputs: each combination is either refused by validation
with a clear message (and no request), or sent as exactly the multipart fields it means; the
fake then accepts it, or refuses only an id that SinkIn alone can know is unknown."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch
from fake_sinkin import CATALOG, KEY, FakeSinkIn, Upload
from fuzzing import ANYTHING, valid_value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nodecalls import defaults

from sdbridge.nodes.hosted import sinkin
from sdbridge.nodes.hosted.http import ProviderError, RetryPolicy

KNOWN_IDS = {m["id"] for m in CATALOG["models"]} | {lora["id"] for lora in CATALOG["loras"]}


def _good_value(param):
    """Valid values, plus the spellings SinkIn's own ids and versions come in."""
    if param.name == "model_id":
        return st.sampled_from(param.choices + ("yBG2r9O", " 4zdwGOB ", "Renamed (newModel1)", "zz9"))
    if param.name == "lora":
        return st.sampled_from(param.choices + ("lora01", "Film Grain (lora02)", "gone (lora99)"))
    if param.name == "version":
        return st.sampled_from(("", " ", "v2", "1.0"))
    return valid_value(param)


def expected_fields(node, values: dict) -> dict:
    """What the document says each normalised value looks like on the wire, worked out here
    independently of the node's own code."""
    fields = {"access_token": KEY}
    for param in node.PARAMS:
        value = param.normalize(values[param.name]) if param.kind != "IMAGE" else None
        if param.kind == "IMAGE" or (param.name == "version" and not value.strip()):
            continue
        if param.name in ("lora", "controlnet") and value == "none":
            continue
        if param.name == "lora_scale" and "lora" not in fields:
            continue
        if param.name in ("model_id", "lora"):
            value = value.strip().rsplit("(", 1)[-1].rstrip(") ")
        fields[param.name] = ("true" if value else "false") if isinstance(value, bool) else value
    return fields


@pytest.fixture(scope="module")
def server():
    with FakeSinkIn() as fake:
        yield fake


@pytest.mark.parametrize("node", [sinkin.SDBridgeSinkInTxt2Img, sinkin.SDBridgeSinkInImg2Img],
                         ids=lambda n: n.__name__)
def test_fuzz_node_inputs(node, server, monkeypatch):
    monkeypatch.setenv("SINKIN_API_KEY", KEY)
    monkeypatch.setenv("SINKIN_API_BASE", server.url)
    monkeypatch.setattr(sinkin.CLIENT, "retry", RetryPolicy(transient_attempts=1, rate_limit_attempts=1))
    params = [p for p in node.PARAMS if p.kind != "IMAGE"]

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    # Good values everywhere but in up to two inputs, so both outcomes are common.
    @given(st.fixed_dictionaries({p.name: _good_value(p) for p in params}),
           st.one_of(st.just({}), st.dictionaries(st.sampled_from([p.name for p in params]), ANYTHING, max_size=2)))
    def check(good, wild):
        merged = {**defaults(node), **good, **wild}
        if node is sinkin.SDBridgeSinkInImg2Img:
            merged["image"] = torch.rand((1, 8, 8, 3))
        before = len(server.requests)
        verdict = node.VALIDATE_INPUTS(**merged)
        if verdict is not True:
            assert isinstance(verdict, str) and verdict.split(":")[0] in {p.name for p in params}
            with pytest.raises(ValueError, match=verdict.split(":")[0]):
                asyncio.run(node().generate(unique_id="1", **merged))
            assert len(server.requests) == before  # refused before spending anything
            return
        try:
            images, _ = asyncio.run(node().generate(unique_id="1", **merged))
        except ProviderError as exc:  # only SinkIn can know an id is unknown
            assert "not found" in str(exc)
            sent = server.forms()[-1]
            assert sent["model_id"] not in KNOWN_IDS or sent.get("lora", "lora01") not in KNOWN_IDS
        else:
            assert images.ndim == 4 and images.shape[-1] == 3 and images.dtype == torch.float32
        sent = server.forms()[-1]
        assert isinstance(sent.pop("init_image_file", Upload("", "", b"")), Upload)
        want = expected_fields(node, merged)
        assert set(sent) == set(want) | {"seed"}
        for name, value in want.items():
            if isinstance(value, float):
                assert math.isclose(float(sent[name]), value, abs_tol=1e-4), name
            elif name != "seed":
                assert sent[name] == str(value), name
        seed = int(want["seed"])
        assert int(sent["seed"]) == seed if seed != -1 else 0 <= int(sent["seed"]) <= sinkin.SEED_MAX

    check()
