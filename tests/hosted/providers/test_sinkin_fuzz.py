"""Hypothesis over both SinkIn nodes' inputs: each combination is either refused by validation
with a clear message (and no request), or sent as exactly the multipart fields it means; the
fake then accepts it, or refuses only an id that SinkIn alone can know is unknown."""

from __future__ import annotations

import math

import pytest
from fakes.sinkin import CATALOG, KEY, Upload
from hypothesis import strategies as st
from support.fuzzing import fuzz_node, valid_value

from sdbridge.nodes import surface
from sdbridge.nodes.hosted.providers.sinkin import catalog as sinkin_catalog
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes

# The fake knows every model the node lists (SinkIn does), and one that is new today.
FUZZ_CATALOG = {**CATALOG, "models": CATALOG["models"] + [
    {"id": entry.id, "title": entry.title} for entry in sinkin_catalog.bundled_catalog().models]}
KNOWN_IDS = {m["id"] for m in FUZZ_CATALOG["models"]} | {lora["id"] for lora in FUZZ_CATALOG["loras"]}


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


@pytest.mark.parametrize("node", sinkin_nodes.NODES, ids=lambda n: n.__name__)
def test_fuzz_node_inputs(node, fake_sinkin):
    fake_sinkin.catalog = FUZZ_CATALOG
    def check_sent(values):
        sent = fake_sinkin.forms()[-1]
        assert isinstance(sent.pop("init_image_file", Upload("", "", b"")), Upload)
        want = expected_fields(node, values)
        assert set(sent) == set(want) | {"seed"}
        for name, value in want.items():
            if isinstance(value, float):
                assert math.isclose(float(sent[name]), value, abs_tol=1e-4), name
            elif name != "seed":
                assert sent[name] == str(value), name
        seed = int(want["seed"])
        assert int(sent["seed"]) == seed if seed != -1 else 0 <= int(sent["seed"]) <= surface.SEED_MAX_32_BIT

    def only_sinkin_knows(error) -> bool:  # an id that is not in SinkIn's catalog
        sent = fake_sinkin.forms()[-1]
        unknown = sent["model_id"] not in KNOWN_IDS or sent.get("lora", "lora01") not in KNOWN_IDS
        return "not found" in str(error) and unknown

    fuzz_node(node, fake_sinkin, check_sent=check_sent, good=_good_value, provider_may_refuse=only_sinkin_knows,
              max_examples=60, min_accepted=5)
