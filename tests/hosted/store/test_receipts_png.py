"""Receipts travel with the image: a hosted node adds its receipt to the EXTRA_PNGINFO dict ComfyUI
hands every node of a prompt, and Save Image writes each key of that dict as a PNG text chunk.
The PNG here is written as ComfyUI 0.19.3's SaveImage writes it (PIL PngInfo, json.dumps of each
key), from the dict the nodes filled."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from support.nodecalls import run

from sdbridge.nodes.errors import ProviderError
from sdbridge.nodes.hosted import node as node_base
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.hosted.store import receipts
from sdbridge.nodes.setup import NODES

RV = segmind_nodes.SDBridgeSegmindRealisticVision
SMALL = {"img_width": 256, "img_height": 256}


def save_image_as_comfyui_does(images, path, prompt: dict | None, extra_pnginfo: dict | None) -> None:
    """nodes.SaveImage.save_images of ComfyUI 0.19.3, metadata on (no --disable-metadata)."""
    image = images[0]
    picture = Image.fromarray(np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8))
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    if extra_pnginfo is not None:
        for x in extra_pnginfo:
            metadata.add_text(x, json.dumps(extra_pnginfo[x]))
    picture.save(path, pnginfo=metadata, compress_level=4)


def test_a_saved_png_carries_the_receipts_of_the_prompt_s_hosted_images(fake_segmind_v2, fake_sinkin, tmp_path):
    extra = {"workflow": {"nodes": [{"id": 7}, {"id": 8}]}}  # what the editor queues with a prompt
    segmind_images, _ = run(RV, node_id="7", sdbridge_pnginfo=extra, prompt="a cat", seed=-1, **SMALL)
    run(sinkin_nodes.NODES[0], node_id="8", sdbridge_pnginfo=extra, prompt="a fox", seed=8, width=128, height=128)
    path = tmp_path / "ComfyUI_00001_.png"
    save_image_as_comfyui_does(segmind_images, path, {"7": {}}, extra)

    chunks = Image.open(path).text
    carried = json.loads(chunks[node_base.PNGINFO_KEY])
    assert json.loads(chunks["workflow"]) == {"nodes": [{"id": 7}, {"id": 8}]}  # ComfyUI's own keys untouched
    assert carried == list(reversed(receipts.read()))  # the same records, in the order the nodes ran
    assert [r["node_id"] for r in carried] == ["7", "8"]
    assert carried[0]["seed"] == fake_segmind_v2.bodies()[0]["seed"]  # seed -1 made reproducible
    assert carried[0]["request_ids"] == ["req-1"] and carried[1]["basis"] == "measured"


def test_a_failed_node_adds_its_receipt_too_and_leaves_the_rest(fake_segmind_v2):
    extra = {"workflow": {}}
    with pytest.raises(ProviderError):
        run(RV, sdbridge_pnginfo=extra, prompt="explode", seed=1, **SMALL)
    assert [r["status"] for r in extra[node_base.PNGINFO_KEY]] == ["failed"] and extra["workflow"] == {}


def test_a_script_without_extra_pnginfo_still_runs_and_keeps_its_receipt(fake_segmind_v2):
    images, _ = run(RV, sdbridge_pnginfo=None, prompt="a cat", seed=1, **SMALL)
    assert images.shape[0] == 1 and len(receipts.read()) == 1


@pytest.mark.parametrize("node_class", [n for n in NODES if issubclass(n, node_base.HostedNode)])
def test_the_png_info_input_is_hidden_never_a_widget(node_class):
    spec = node_class.INPUT_TYPES()
    assert spec["hidden"]["sdbridge_pnginfo"] == "EXTRA_PNGINFO"
    assert all("sdbridge_pnginfo" not in spec.get(section, {}) for section in ("required", "optional"))


def test_no_piece_of_a_key_reaches_the_png(fake_segmind_v2, tmp_path):
    """The key pasted into the prompt by mistake, and echoed by the server on a failure: the PNG's
    every chunk holds no spelling and no 8-character piece of it."""
    key = fake_segmind_v2.key
    extra = {"workflow": {}}
    images, _ = run(RV, node_id="7", sdbridge_pnginfo=extra, prompt=f"a cat {key}", seed=2, **SMALL)
    with pytest.raises(ProviderError):
        run(RV, node_id="8", sdbridge_pnginfo=extra, prompt=f"explode {key}", seed=3, **SMALL)
    path = tmp_path / "ComfyUI_00002_.png"
    save_image_as_comfyui_does(images, path, None, extra)
    text = " ".join(Image.open(path).text.values())
    pieces = [key[i:i + 8] for i in range(len(key) - 7)] + [json.dumps(key)[1:-1]]
    assert len(json.loads(Image.open(path).text[node_base.PNGINFO_KEY])) == 2
    assert not [piece for piece in pieces if piece in text]
