"""Segmind's documented endpoints: each one's parameters, declared once."""

from __future__ import annotations

from dataclasses import dataclass

from .... import surface
from ....params import Param

SCHEDULERS = surface.scheduler_names("segmind")


# Realistic Vision documents the default UniPC and uses dpmpp_2m in its example; its full
# list is unpublished, so it offers the documented names of its sibling endpoints too.
SCHEDULERS_RV = ((surface.TXT2IMG_SCHEDULER,) + surface.scheduler_names("realistic_vision")
                 + tuple(s for s in SCHEDULERS if s != surface.TXT2IMG_SCHEDULER))


# The SD 1.5 endpoints document an enum of sizes without listing it: multiples of 64 around 512.
SD15_SIZES = (256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960, 1024)
SAMPLES = Param("samples", "INT", "Number of images to generate. Affects pricing: each costs credits.",
                default=1, min=1, max=4)
SEED = surface.seed(surface.SEGMIND_SEED_MAX)


def _steps(default: int) -> Param:
    return Param("num_inference_steps", "INT", "Number of denoising steps. Affects pricing.",
                 default=default, min=20, max=100)


def _guidance(minimum: float) -> Param:
    return Param("guidance_scale", "FLOAT", "Scale for classifier-free guidance: how closely to follow the prompt.",
                 default=7.5, min=minimum, max=25.0, step=0.1)


def _scheduler(choices: tuple, default: str, note: str = "") -> Param:
    return Param("scheduler", "COMBO", f"Type of scheduler (sampler).{note}", default=default, choices=choices)


def _size_enum(name: str, choices: tuple, default: int, note: str) -> Param:
    return Param(name, "COMBO", f"{'Width' if name == 'img_width' else 'Height'} of the image. "
                 f"Affects pricing. {note}", default=default, choices=choices)


def _size_range(name: str) -> Param:
    return Param(name, "INT", f"{'Width' if name == 'img_width' else 'Height'} of the image, 512 to 2048 "
                 "in multiples of 8. Affects pricing.", default=1024, min=512, max=2048, multiple_of=8)
SD15_SIZE_NOTE = "Segmind lists these as an enum without publishing the values."


@dataclass(frozen=True)
class Endpoint:
    slug: str
    title: str
    params: tuple[Param, ...]
    description: str
REALISTIC_VISION = Endpoint(
    "sd1.5-realisticvision", "Realistic Vision v3",
    (surface.PROMPT, surface.NEGATIVE_PROMPT,
     _scheduler(SCHEDULERS_RV, surface.TXT2IMG_SCHEDULER, " Segmind suggests Euler a or DPM++ SDE Karras for this model; "
                "its full list is unpublished."),
     _steps(20), _guidance(0.1), SAMPLES, SEED,
     _size_enum("img_width", SD15_SIZES, 512, SD15_SIZE_NOTE),
     _size_enum("img_height", SD15_SIZES, 512, SD15_SIZE_NOTE)),
    "Realistic Vision v3 (SD 1.5 fine-tune) on Segmind: photoreal portraits.",
)
SDXL = Endpoint(
    "sdxl1.0-txt2img", "SDXL 1.0 (base + refiner)",
    (surface.PROMPT, surface.NEGATIVE_PROMPT,
     Param("style", "COMBO", f"Style preset for SDXL. Segmind's full list is unpublished; '{surface.NO_STYLE}' "
           "applies none.", default=surface.NO_STYLE, choices=surface.STYLE_NAMES),
     SAMPLES, _scheduler(SCHEDULERS, surface.TXT2IMG_SCHEDULER), _steps(25), _guidance(1.0),
     Param("strength", "FLOAT", "How much the refiner transforms the base image when it runs as img2img "
           "after the base (used when the base/refiner split does not apply).",
           default=0.2, min=0.1, max=1.0, step=0.01),
     Param("high_noise_fraction", "FLOAT", "Fraction of the denoising done by the base model; the refiner "
           "does the rest. At 1 the refiner has nothing left to do.", default=0.8, min=0.0, max=1.0, step=0.01),
     SEED,
     _size_enum("img_width", (1024,), 1024, "Segmind documents 1024 as the only value for SDXL."),
     _size_enum("img_height", (1024,), 1024, "Segmind documents 1024 as the only value for SDXL."),
     Param("refiner", "BOOLEAN", "Run the refiner to improve quality. Does not work when "
           "high_noise_fraction is 1.", default=True)),
    "Stable Diffusion XL 1.0 with its refiner on Segmind.",
)
SD15_IMG2IMG = Endpoint(
    "sd1.5-img2img", "SD 1.5 img2img",
    (Param("image", "IMAGE", "The input image. Each image of a batch is sent as its own paid request."),
     SAMPLES, surface.PROMPT, surface.NEGATIVE_PROMPT, _scheduler(SCHEDULERS[:11], surface.IMG2IMG_SCHEDULER), _steps(20), _guidance(0.1),
     surface.STRENGTH_IMG2IMG, SEED,
     _size_enum("img_width", SD15_SIZES, 512, SD15_SIZE_NOTE),
     _size_enum("img_height", SD15_SIZES, 512, SD15_SIZE_NOTE)),
    "Stable Diffusion 1.5 image-to-image on Segmind.",
)
REALVIS = Endpoint(
    "sdxl1.0-realvis", "RealVisXL",
    (surface.PROMPT, surface.NEGATIVE_PROMPT, SAMPLES,
     _scheduler(SCHEDULERS, surface.TXT2IMG_SCHEDULER, " The last four names are likely but not confirmed by Segmind's page."),
     _steps(25), _guidance(1.0), SEED, _size_range("img_width"), _size_range("img_height")),
    "RealVisXL, a photoreal SDXL fine-tune, on Segmind.",
)
