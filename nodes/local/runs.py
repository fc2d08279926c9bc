"""Local runs: text-to-image, image-to-image and the SDXL base + refiner pair.

Each run reads like a diffusers pipeline: a fresh scheduler from the checkpoint's own config,
the LoRAs this branch asked for, the prompt embeddings, one seeded generator per sample, the
denoising call with progress, preview and interrupt, and images out as a ComfyUI IMAGE.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from .. import runtime
from .loras import activate_loras
from .pipeline_cache import Loaded, LocalPipeline, holding

IMG2IMG_CLASSES = {"sd15": "StableDiffusionImg2ImgPipeline", "sdxl_base": "StableDiffusionXLImg2ImgPipeline",
                   "sdxl_refiner": "StableDiffusionXLImg2ImgPipeline"}

# Latent -> RGB by a linear map: a cheap preview with no VAE decode.
_PREVIEW_FACTORS = {
    "sd15": ([[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350],
              [-0.2829, 0.1762, 0.2721], [-0.2120, -0.2616, -0.7177]], [0.0, 0.0, 0.0]),
    "sdxl": ([[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068],
              [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]], [0.1084, -0.0175, -0.0011]),
}
PREVIEWS_PER_RUN = 10


@dataclass(frozen=True)
class RunSettings:
    """What every mode shares (the nodes' common inputs, seed already resolved)."""

    prompt: str
    negative_prompt: str
    scheduler: str
    num_inference_steps: int
    guidance_scale: float
    samples: int
    seed: int
    width: int
    height: int


# ---------------------------------------------------------------- the three modes

def txt2img(local: LocalPipeline, settings: RunSettings, node_id: str | None = None):
    """Images [samples,H,W,3] and the info dict."""
    started = time.monotonic()
    with holding(local) as (loaded,):
        images = _run(local, loaded, loaded.pipe, settings, _Progress(node_id, local.family),
                      width=settings.width, height=settings.height)
    return _to_image(images), _info("txt2img", local, settings, started)


def img2img(local: LocalPipeline, settings: RunSettings, image, strength: float, node_id: str | None = None):
    """Each input image (resized to width x height) transformed `samples` times, seeds seed..seed+samples-1."""
    import torch

    started = time.monotonic()
    progress = _Progress(node_id, local.family)
    with holding(local) as (loaded,):  # every image on the same pipeline, whatever is unloaded meanwhile
        pipe = loaded.variant(IMG2IMG_CLASSES[local.family])
        outputs = [_run(local, loaded, pipe, settings, progress, image=_to_pipeline_image(one, settings),
                        strength=strength) for one in image.split(1)]
    info = _info("img2img", local, settings, started, strength=strength)
    return _to_image(torch.cat(outputs)), info


def base_and_refiner(base: LocalPipeline, refiner: LocalPipeline | None, settings: RunSettings,
                     high_noise_fraction: float, strength: float, node_id: str | None = None):
    """SDXL with its refiner, the Segmind way. With no refiner: the base alone. With
    0 < high_noise_fraction < 1: the ensemble of experts, the base denoising the first
    high_noise_fraction of the schedule and the refiner the rest, on latents. At 0 or 1 the
    split leaves one model nothing to do, so the base runs all steps and the refiner then
    refines its result as img2img with `strength`."""
    with holding(base, refiner) as (base_loaded, refiner_loaded):
        return _base_and_refiner(base, base_loaded, refiner, refiner_loaded, settings, high_noise_fraction, strength,
                                 node_id)


def _base_and_refiner(base: LocalPipeline, base_loaded: Loaded, refiner: LocalPipeline | None,
                      refiner_loaded: Loaded | None, settings: RunSettings, high_noise_fraction: float,
                      strength: float, node_id: str | None):
    started = time.monotonic()
    progress = _Progress(node_id, base.family)
    size = {"width": settings.width, "height": settings.height}
    if refiner is None:
        images = _run(base, base_loaded, base_loaded.pipe, settings, progress, **size)
        return _to_image(images), _info("sdxl base", base, settings, started)
    split = 0 < high_noise_fraction < 1
    if split:
        latents = _run(base, base_loaded, base_loaded.pipe, settings, progress, denoising_end=high_noise_fraction,
                       output_type="latent", **size)
        images = _run(refiner, refiner_loaded, refiner_loaded.pipe, settings, progress,
                      image=latents, denoising_start=high_noise_fraction)
        extra = {"high_noise_fraction": high_noise_fraction}
    else:
        latents = _run(base, base_loaded, base_loaded.pipe, settings, progress, output_type="latent", **size)
        images = _run(refiner, refiner_loaded, refiner_loaded.pipe, settings, progress,
                      image=latents, strength=strength)
        extra = {"refiner_strength": strength}
    info = _info("sdxl base + refiner", base, settings, started, refiner=_name(refiner), **extra)
    return _to_image(images), info


# ---------------------------------------------------------------- one pipeline call

def _run(local: LocalPipeline, loaded: Loaded, pipe, settings: RunSettings, progress: _Progress, **call_kwargs):
    """One denoising run of `settings.samples` images: a tensor [samples,...] (pixels 0..1 or latents).

    Sample i is seeded with seed+i by its own generator, so it equals a single run with that
    seed. A scheduler that draws noise from its own seed (not from generators) gets one call per
    sample for the same guarantee."""
    import torch

    from .schedulers import make_scheduler

    runtime.raise_if_interrupted()
    activate_loras(local, loaded.pipe)  # the pipeline this run holds (its variants share the UNet)
    scheduler = make_scheduler(settings.scheduler, loaded.scheduler_config, seed=settings.seed)
    if getattr(scheduler, "noise_sampler_seed", None) is None or settings.samples == 1:
        return _call(pipe, scheduler, settings, settings.seed, settings.samples, progress, call_kwargs)
    parts = []
    for i in range(settings.samples):
        one = {k: v[i:i + 1] if torch.is_tensor(v) and v.shape[0] == settings.samples else v
               for k, v in call_kwargs.items()}
        scheduler = make_scheduler(settings.scheduler, loaded.scheduler_config, seed=settings.seed + i)
        parts.append(_call(pipe, scheduler, settings, settings.seed + i, 1, progress, one))
    return torch.cat(parts)


def _call(pipe, scheduler, settings: RunSettings, seed: int, count: int, progress: _Progress, call_kwargs: dict):
    import torch

    from .prompts import encode_prompts

    pipe.scheduler = scheduler  # the cached pipeline is shared, so each call brings its own scheduler
    embeddings = encode_prompts(pipe, settings.prompt, settings.negative_prompt,
                                device=pipe._execution_device, num_images_per_prompt=count)
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(count)]
    kwargs = {"output_type": "pt", **call_kwargs}
    with torch.inference_mode():
        output = pipe(**embeddings, num_images_per_prompt=1, generator=generators,
                      num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
                      callback_on_step_end=progress.step, **kwargs)
    return output.images


class _Progress:
    """ComfyUI's progress bar, one tick per UNet call (pipe.num_timesteps of them per run, so
    second-order schedulers count right), a latent preview now and then, and the interrupt
    check: raising from the callback stops the run at once."""

    def __init__(self, node_id: str | None, family: str):
        self.node_id = node_id
        self.factors = _PREVIEW_FACTORS["sd15" if family == "sd15" else "sdxl"]
        self.bar: runtime.ProgressBar | None = None
        self.done = 0
        self.run_start = 0

    def step(self, pipe, step: int, timestep, tensors: dict) -> dict:
        if step == 0:
            self.run_start = self.done
        self.done += 1
        total = self.run_start + pipe.num_timesteps
        if self.bar is None:
            self.bar = runtime.ProgressBar(total, self.node_id)
        self.bar.total = max(total, 1)
        every = max(pipe.num_timesteps // PREVIEWS_PER_RUN, 1)
        preview = self._preview(tensors["latents"]) if (step + 1) % every == 0 else None
        self.bar.update(self.done, preview)
        runtime.raise_if_interrupted()
        return tensors

    def _preview(self, latents):
        import torch
        from PIL import Image

        weights, bias = self.factors
        first = latents[0].float().permute(1, 2, 0)  # [h, w, 4]
        rgb = first @ torch.tensor(weights, device=first.device) + torch.tensor(bias, device=first.device)
        pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        return Image.fromarray(pixels, "RGB")


# ---------------------------------------------------------------- images and info

def _to_pipeline_image(image, settings: RunSettings):
    """One IMAGE [1,H,W,C] as the pipelines take it: [1,3,height,width] in 0..1 (grey becomes RGB,
    alpha is dropped)."""
    import torch.nn.functional as F

    pixels = image[..., :3].expand(-1, -1, -1, 3).permute(0, 3, 1, 2).float()
    if pixels.shape[-2:] != (settings.height, settings.width):
        pixels = F.interpolate(pixels, size=(settings.height, settings.width), mode="bicubic",
                               align_corners=False, antialias=True).clamp(0, 1)
    return pixels


def _to_image(images):
    """Pipeline output [B,3,H,W] in 0..1 -> ComfyUI IMAGE [B,H,W,3] float32 on the CPU."""
    import torch

    return images.permute(0, 2, 3, 1).to("cpu", torch.float32).contiguous()


def _name(local: LocalPipeline) -> str:
    """The model's file or folder name (its full path stays off the node)."""
    return os.path.basename(local.source.rstrip("/\\"))


def _info(mode: str, local: LocalPipeline, settings: RunSettings, started: float, **extra: Any) -> dict:
    return {"mode": mode, "model": _name(local), "family": local.family_name,
            "seed": settings.seed, "seeds": [settings.seed + i for i in range(settings.samples)],
            "steps": settings.num_inference_steps, "scheduler": settings.scheduler,
            "guidance_scale": settings.guidance_scale, "size": [settings.width, settings.height],
            "samples": settings.samples, "loras": [[os.path.basename(p), s] for p, s in local.loras], **extra,
            "seconds": round(time.monotonic() - started, 2)}
