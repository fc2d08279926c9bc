"""An IMAGE input that arrives as a numpy array (another pack's node output) works on every node
with an IMAGE input, exactly as the same pixels in a tensor; an array of whole-number pixels is
refused before anything is sent, saying what to do."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from support.nodecalls import run

from sdbridge.nodes import images as imaging
from sdbridge.nodes.errors import InputError
from sdbridge.nodes.hosted.node import hosted_classes
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.local import local_nodes

ANY = segmind_nodes.SDBridgeSegmindAnyModel
SINKIN_IMG2IMG = sinkin_nodes.SDBridgeSinkInImg2Img
PIXELS = np.random.default_rng(7).random((1, 8, 8, 3), dtype=np.float32)
IMAGE_INPUTS = [(cls, param.name) for cls in hosted_classes().values() for param in cls.PARAMS
                if param.kind == "IMAGE"]


def test_the_hosted_image_inputs_are_the_five_this_file_covers():
    assert sorted(f"{cls.__name__}.{name}" for cls, name in IMAGE_INPUTS) == [
        "SDBridgeSegmindAnyModel.image_1", "SDBridgeSegmindAnyModel.image_2", "SDBridgeSegmindAnyModel.image_3",
        "SDBridgeSegmindSD15Img2Img.image", "SDBridgeSinkInImg2Img.image"]


def _values(cls, name: str, image) -> dict:
    if cls is ANY:
        return {"slug": "custom-model", "parameters": json.dumps({"prompt": "x", "seed": 1}), name: image,
                f"{name}_field": "input_image"}
    return {"prompt": "x", "seed": 1, name: image}


def _sent(cls, fake_segmind, fake_sinkin) -> bytes:
    """The image bytes the last request carried."""
    if cls is SINKIN_IMG2IMG:
        return fake_sinkin.forms()[-1]["init_image_file"].data
    body = fake_segmind.bodies()[-1]
    return base64.b64decode(body["input_image" if cls is ANY else "image"])


@pytest.mark.parametrize(("cls", "name"), IMAGE_INPUTS, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_a_numpy_image_is_sent_as_the_same_pixels_in_a_tensor_are(fake_segmind, fake_sinkin, cls, name, dtype):
    images, _ = run(cls, **_values(cls, name, PIXELS.astype(dtype)))
    assert isinstance(images, torch.Tensor) and images.shape[0] == 1
    sent_from_array = _sent(cls, fake_segmind, fake_sinkin)
    run(cls, **_values(cls, name, torch.from_numpy(PIXELS.astype(dtype).astype(np.float32))))
    assert sent_from_array == _sent(cls, fake_segmind, fake_sinkin)
    assert Image.open(io.BytesIO(sent_from_array)).size == (8, 8)


@pytest.mark.parametrize(("cls", "name"), IMAGE_INPUTS, ids=lambda v: getattr(v, "__name__", v))
def test_an_array_of_whole_number_pixels_is_refused_before_anything_is_sent(fake_segmind, fake_sinkin, cls, name):
    with pytest.raises(InputError, match=rf"{name}: got a numpy array of uint8 values.*divide by 255"):
        run(cls, **_values(cls, name, (PIXELS * 255).astype(np.uint8)))
    assert fake_segmind.requests == [] and fake_sinkin.requests == []


def test_the_local_img2img_node_gets_a_tensor_too():
    values = local_nodes.SDBridgeLocalImg2Img.normalized(
        {**{p.name: p.default for p in local_nodes.SDBridgeLocalImg2Img.PARAMS if p.kind != "IMAGE"},
         "image": PIXELS, "pipeline": object(), "prompt": "x"})
    assert isinstance(values["image"], torch.Tensor) and torch.equal(values["image"], torch.from_numpy(PIXELS))


def test_tensor_to_pil_takes_an_array_and_leaves_the_callers_array_alone():
    array = PIXELS.copy()
    [picture] = imaging.tensor_to_pil(array)
    assert picture.size == (8, 8) and np.array_equal(array, PIXELS)
    with pytest.raises(ValueError, match="expected an IMAGE"):
        imaging.tensor_to_pil([[0.5]])
