"""IMAGE tensors <-> PIL <-> bytes."""

from __future__ import annotations

import base64
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sdbridge.nodes import images
from sdbridge.nodes.errors import InputError


def test_round_trip_is_lossless_through_png():
    tensor = (torch.randint(0, 256, (2, 5, 7, 3)).float() / 255)
    pictures = images.tensor_to_pil(tensor)
    back = images.pil_to_tensor([images.decode_image(images.encode_image(p)) for p in pictures])
    assert back.dtype == torch.float32 and back.shape == (2, 5, 7, 3) and torch.allclose(back, tensor)


def test_alpha_is_flattened_on_white_and_grey_becomes_rgb():
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    assert images.decode_image(images.encode_image(rgba)).getpixel((0, 0)) == (255, 255, 255)
    grey = torch.full((1, 2, 2, 1), 0.5)
    assert images.tensor_to_pil(grey)[0].mode == "RGB"


def test_batches_of_mixed_sizes_share_the_first_size():
    batch = images.pil_to_tensor([Image.new("RGB", (8, 4)), Image.new("RGB", (16, 8))])
    assert batch.shape == (2, 4, 8, 3)


def test_base64_and_data_urls():
    png = images.encode_image(Image.new("RGB", (3, 3), (1, 2, 3)))
    for text in (base64.b64encode(png).decode(), "data:image/png;base64," + base64.b64encode(png).decode()):
        assert images.decode_base64_image(text).getpixel((1, 1)) == (1, 2, 3)


@pytest.mark.parametrize("data, words", [(b"", "empty"), (b"GIF89a\x00", "not a readable image"),
                                         (b"\x89PNG\r\n\x1a\n", "not a readable image")])
def test_garbage_is_refused(data, words):
    with pytest.raises(images.ImageDecodeError, match=words):
        images.decode_image(data)


def test_pixel_limit_is_checked_before_decoding():
    big = io.BytesIO()
    Image.new("RGB", (300, 300)).save(big, "PNG")
    with pytest.raises(images.ImageDecodeError, match="300x300, over the limit of 10,000 pixels"):
        images.decode_image(big.getvalue(), max_pixels=10_000)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_decode_never_raises_anything_but_a_decode_error(data):
    try:
        picture = images.decode_image(data, max_pixels=1_000_000)
    except images.ImageDecodeError:
        return
    assert picture.mode == "RGB"


def test_an_image_input_of_the_wrong_shape_is_an_input_error_with_its_words():
    with pytest.raises(InputError) as caught:
        images.tensor_to_pil(torch.rand(2, 3))
    assert str(caught.value) == "expected an IMAGE of shape [B,H,W,C], got (2, 3)"
    with pytest.raises(InputError) as caught:
        images.tensor_to_pil(torch.rand(1, 4, 4, 2))
    assert str(caught.value) == "an IMAGE needs 1, 3 or 4 channels, got 2"


def test_an_image_input_that_is_no_tensor_is_an_input_error_with_its_words():
    import numpy as np

    with pytest.raises(InputError) as caught:
        images.as_image_tensor([[0.5]])
    assert str(caught.value) == "expected an IMAGE (a tensor), got list; connect an image output"
    with pytest.raises(InputError) as caught:
        images.as_image_tensor(np.zeros((1, 2, 2, 3), dtype=np.uint8))
    assert str(caught.value) == ("got a numpy array of uint8 values, but an IMAGE holds floats from 0 to 1; "
                                 "convert it first (for 0..255 pixels: divide by 255 as float32)")
