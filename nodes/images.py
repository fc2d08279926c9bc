"""ComfyUI IMAGE tensors <-> PIL images <-> encoded bytes.

An IMAGE is a float32 tensor [B, H, W, 3] with values in 0..1 on the CPU. Decoding untrusted
bytes is bounded: the pixel count is checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from .errors import InputError

MAX_PIXELS = 8192 * 8192  # per decoded image; larger is refused before decoding


class ImageDecodeError(ValueError):
    """Bytes that are not an image we can safely decode. The message says why."""


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode encoded bytes (PNG, JPEG, WebP, ...) to an RGB PIL image, refusing bombs."""
    if not data:
        raise ImageDecodeError("the body is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"the image is {width}x{height}, over the limit of {max_pixels:,} pixels"
                )
            image.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own guard fired while reading the header: same verdict as ours.
        raise ImageDecodeError(f"the image is over the limit of {max_pixels:,} pixels ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for garbage
        raise ImageDecodeError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Flatten transparency onto white, the way a viewer shows it.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def base64_bytes(text: str) -> bytes:
    """The bytes a base64 string (optionally a data: URL) holds."""
    if not isinstance(text, str):
        raise ImageDecodeError(f"expected a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"not valid base64 ({exc})") from None


def decode_base64_image(text: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode a base64 string (optionally a data: URL) to an RGB PIL image."""
    return decode_image(base64_bytes(text), max_pixels)


class Picture(NamedTuple):
    """A received image: the bytes exactly as the provider sent them (what the result cache
    keeps) and the picture decoded from them."""
    raw: bytes
    image: Image.Image


def decode_picture(data: bytes, max_pixels: int = MAX_PIXELS) -> Picture:
    """`decode_image`, keeping the bytes it decoded."""
    return Picture(data, decode_image(data, max_pixels))


_SUFFIXES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif"))


def suffix_of(data: bytes) -> str:
    """The file suffix of encoded image bytes (by their signature), "png" when not told."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((suffix for magic, suffix in _SUFFIXES if data.startswith(magic)), "png")


def pil_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL images -> IMAGE [B,H,W,3] float32. Images of other sizes are resized to the first's
    size (a batch must share one size)."""
    if not images:
        raise ValueError("no images to convert")
    width, height = images[0].size
    # One preallocated float32 buffer, filled and scaled in place: the cheapest route from
    # PIL's uint8 pixels (a torch cast and divide of a 1024x1024 image costs ~20 ms more).
    batch = np.empty((len(images), height, width, 3), dtype=np.float32)
    for index, image in enumerate(images):
        if image.mode != "RGB":
            image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        batch[index] = np.asarray(image)
    np.divide(batch, 255.0, out=batch)
    return torch.from_numpy(batch)


def as_image_tensor(images) -> torch.Tensor:
    """An IMAGE as the tensor ComfyUI passes. Another pack's node may output a numpy array of the
    same shape and values; it is taken as ComfyUI's own nodes take it (`torch.from_numpy`). An
    array of whole numbers (0..255 pixels, not an IMAGE's 0..1 floats) is refused, saying so."""
    if isinstance(images, torch.Tensor):
        return images
    if not isinstance(images, np.ndarray):
        raise InputError(f"expected an IMAGE (a tensor), got {type(images).__name__}; connect an image output")
    if images.dtype.kind != "f":
        raise InputError(f"got a numpy array of {images.dtype} values, but an IMAGE holds floats from 0 to 1; "
                         "convert it first (for 0..255 pixels: divide by 255 as float32)")
    return torch.from_numpy(np.array(images, dtype=np.float32))  # a copy: the other node keeps its array


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """IMAGE [B,H,W,C] (C = 1, 3 or 4; values 0..1; a numpy array too) -> RGB PIL images."""
    images = as_image_tensor(images)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise InputError(f"expected an IMAGE of shape [B,H,W,C], got {tuple(images.shape)}")
    arrays = (images.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    result = []
    for array in arrays:
        channels = array.shape[-1]
        if channels == 1:
            result.append(Image.fromarray(array[..., 0], "L").convert("RGB"))
        elif channels == 3:
            result.append(Image.fromarray(array, "RGB"))
        elif channels == 4:
            result.append(Image.fromarray(array[..., :3], "RGB"))
        else:
            raise InputError(f"an IMAGE needs 1, 3 or 4 channels, got {channels}")
    return result


def encode_image(image: Image.Image, fmt: str = "PNG") -> bytes:
    """Encode a PIL image. PNG is lossless (what we upload); JPEG at quality 95 when asked."""
    buffer = io.BytesIO()
    if fmt.upper() == "JPEG":
        image.convert("RGB").save(buffer, "JPEG", quality=95)
    else:
        image.save(buffer, fmt, compress_level=4)
    return buffer.getvalue()


def base64_text(data: bytes) -> str:
    """Encoded bytes (an image as uploaded) as the base64 text a JSON body carries."""
    return base64.b64encode(data).decode("ascii")


def placeholder(width: int = 64, height: int = 64) -> torch.Tensor:
    """A black IMAGE for nodes whose answer carried no picture (the STRING output says so)."""
    return torch.zeros((1, height, width, 3), dtype=torch.float32)
