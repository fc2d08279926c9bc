"""The local (diffusers) nodes: load a checkpoint, add LoRAs, and generate with the same inputs
as the Segmind nodes, so a hosted node and a local one swap without relearning anything.

Importing this module stays cheap: diffusers and torch load on first use."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import surface
from ..errors import InputError
from ..param_node import ImageNode, ParamNode, with_choices
from ..params import Param, ValidationError, resolve_seed
from . import loras, model_files, pipeline_cache

CATEGORY = "SD Bridge/Local"
PIPELINE = "SDBRIDGE_PIPELINE"
NONE = "None"

# ---------------------------------------------------------------- parameters (local ranges, and why)

SAMPLES = Param("samples", "INT", "Number of images. Image i uses seed+i, so any one of them can be made again alone. "
                "Up to 8 locally (Segmind allows 4): more images need more GPU memory.", default=1, min=1, max=8)
STEPS = Param("num_inference_steps", "INT", "Number of denoising steps. Segmind allows 20-100; locally 1-150, since "
              "distilled models (LCM, Turbo, Lightning) need only a few.", default=25, min=1, max=150)
GUIDANCE = Param("guidance_scale", "FLOAT", "Classifier-free guidance: how closely to follow the prompt. 1 or less "
                 "switches guidance off (twice as fast; right for LCM and Turbo models).",
                 default=7.5, min=0.0, max=30.0, step=0.1)
STYLE = Param("style", "COMBO", "Style preset, Segmind's SDXL style names: wraps the prompt in a template (e.g. "
              "'cinematic' gives 'cinematic film still of <prompt>, ...') and adds to the negative prompt. "
              f"'{surface.NO_STYLE}' applies none.", default=surface.NO_STYLE, choices=surface.STYLE_NAMES)
SEED = surface.seed()


def _scheduler(default: str) -> Param:
    return Param("scheduler", "COMBO", "Type of scheduler (sampler), built fresh for every run from the "
                 "checkpoint's own scheduler settings.", default=default, choices=tuple(surface.SCHEDULERS))


def _size(name: str, default: int) -> Param:
    side = "Width" if name == "img_width" else "Height"
    return Param(name, "INT", f"{side} of the image in pixels, 64 to 2048 in multiples of 8 (the latents are 1/8 of "
                 "the image). Segmind fixes a few sizes; locally any works, but SD 1.5 models are made for 512 and "
                 "SDXL models for 1024, and far from that they repeat or blur.",
                 default=default, min=64, max=2048, multiple_of=8)


IMAGE = Param("image", "IMAGE", "The starting image, resized to img_width x img_height. Each image of a batch is "
              "transformed `samples` times.")
REFINER_STRENGTH = Param("strength", "FLOAT", "How much the refiner changes the base's image when it runs as "
                         "img2img after the base: only when high_noise_fraction is 0 or 1 (otherwise the refiner "
                         "continues the base's denoising and strength does not apply).",
                         default=0.2, min=0.1, max=1.0, step=0.01)
HIGH_NOISE_FRACTION = Param("high_noise_fraction", "FLOAT", "Share of the denoising (by noise level) done by the "
                            "base; the refiner does the rest from the base's latents. At 0 or 1 there is nothing to "
                            "split: the base runs all steps and the refiner then refines its image as img2img with "
                            "'strength'.", default=0.8, min=0.0, max=1.0, step=0.01)
REFINER = Param("refiner", "BOOLEAN", "Run the refiner (connect refiner_pipeline). Off: the base alone.", default=True)

# ---------------------------------------------------------------- pipeline inputs

@dataclass(frozen=True)
class PipelineInput:
    name: str
    tooltip: str
    families: tuple[str, ...]
    optional: bool = False

    def spec(self) -> tuple:
        return (PIPELINE, {"tooltip": self.tooltip})

    def check(self, value: Any, node_title: str) -> None:
        if value is None:
            if not self.optional:
                raise InputError(f"{node_title}: connect '{self.name}' to SD Bridge Load Checkpoint.")
            return
        if not isinstance(value, pipeline_cache.LocalPipeline):
            raise InputError(f"{node_title}: '{self.name}' must come from SD Bridge Load Checkpoint or Load LoRA.")
        if value.family not in self.families:
            wanted = " or ".join(model_files.FAMILY_NAMES[f] for f in self.families)
            raise InputError(f"{node_title}: '{self.name}' got a {value.family_name} model "
                             f"({os.path.basename(value.source)}); this input takes {wanted}. Load a matching checkpoint.")


# Prompts longer than this are refused by the local nodes: at about 4 characters a token it is
# over a hundred 75-token chunks, far past what a text encoder gives a picture any sense from.
MAX_PROMPT_CHARACTERS = 32_000


class LocalNode(ImageNode):
    """Subclasses set PIPELINES, PARAMS, TITLE, DESCRIPTION and implement `run`. The same shape
    as the hosted nodes: inputs and validation derive from the params, outputs are images + info."""

    PIPELINES: ClassVar[Sequence[PipelineInput]] = ()
    CATEGORY = CATEGORY
    OUTPUT_TOOLTIPS = ("The generated images, as one batch.",
                       "The run as JSON: seed(s) used, steps, scheduler, size, LoRAs, seconds.")

    @classmethod
    def check_together(cls, values: dict) -> None:
        for name in (surface.PROMPT.name, surface.NEGATIVE_PROMPT.name):
            text = values.get(name)
            if isinstance(text, str) and len(text) > MAX_PROMPT_CHARACTERS:
                raise ValidationError(f"{name}: {len(text):,} characters is longer than the local nodes take "
                                      f"({MAX_PROMPT_CHARACTERS:,}, over a hundred 75-token chunks); shorten it")

    @classmethod
    def check_img2img_steps(cls, values: dict) -> None:
        """img2img runs int(num_inference_steps * strength) of the steps (diffusers' rule): none is
        an error deep inside diffusers, so say it here, with the smallest strength that works."""
        steps, strength = values.get(STEPS.name), values.get("strength")
        if isinstance(steps, int) and isinstance(strength, (int, float)) and 0 < steps and int(steps * strength) < 1:
            raise ValidationError(f"strength: {strength:g} of {steps} num_inference_steps leaves no step to run "
                                  f"(img2img runs steps x strength of them); use a strength of at least "
                                  f"{math.ceil(100 / steps) / 100:g} or more steps")

    @classmethod
    def link_inputs(cls):
        return {"required": {p.name: p.spec() for p in cls.PIPELINES if not p.optional},
                "optional": {p.name: p.spec() for p in cls.PIPELINES if p.optional}}

    def generate(self, unique_id: str | None = None, **values):
        from . import runs

        pipelines = {}
        for pipeline_input in self.PIPELINES:
            pipelines[pipeline_input.name] = values.pop(pipeline_input.name, None)
            pipeline_input.check(pipelines[pipeline_input.name], self.TITLE)
        values = self.normalized(values)
        prompt, negative = surface.styled(values.get("style", surface.NO_STYLE), values["prompt"], values["negative_prompt"])
        settings = runs.RunSettings(
            prompt=prompt, negative_prompt=negative, scheduler=values["scheduler"],
            num_inference_steps=values["num_inference_steps"], guidance_scale=values["guidance_scale"],
            samples=values["samples"], seed=resolve_seed(self.PARAMS, values),
            width=values["img_width"], height=values["img_height"])
        images, info = self.run(pipelines, values, settings, unique_id)
        if values.get("style", surface.NO_STYLE) != surface.NO_STYLE:
            info["style"] = values["style"]
        return (images, json.dumps(info, indent=1))

    def run(self, pipelines: dict, values: dict, settings, node_id: str | None):
        raise NotImplementedError


class SDBridgeLocalTxt2Img(LocalNode):
    TITLE = "SD Bridge Local txt2img"
    DESCRIPTION = ("Text to image on your own GPU with an SD 1.5 or SDXL checkpoint (e.g. Realistic Vision, "
                   "RealVisXL), with the inputs of the Segmind nodes.")
    PIPELINES = (PipelineInput("pipeline", "An SD 1.5 or SDXL base model from SD Bridge Load Checkpoint.",
                               ("sd15", "sdxl_base")),)
    PARAMS = (surface.PROMPT, surface.NEGATIVE_PROMPT, STYLE, _scheduler(surface.TXT2IMG_SCHEDULER), STEPS, GUIDANCE, SAMPLES, SEED,
              _size("img_width", 512), _size("img_height", 512))

    def run(self, pipelines, values, settings, node_id):
        from . import runs

        return runs.txt2img(pipelines["pipeline"], settings, node_id)


class SDBridgeLocalImg2Img(LocalNode):
    TITLE = "SD Bridge Local img2img"
    DESCRIPTION = "Image to image on your own GPU with an SD 1.5, SDXL or SDXL refiner checkpoint."
    PIPELINES = (PipelineInput("pipeline", "An SD 1.5, SDXL base or SDXL refiner model from SD Bridge Load "
                               "Checkpoint.", ("sd15", "sdxl_base", "sdxl_refiner")),)
    PARAMS = (IMAGE, surface.PROMPT, surface.NEGATIVE_PROMPT, STYLE, _scheduler(surface.IMG2IMG_SCHEDULER), STEPS, GUIDANCE, surface.STRENGTH_IMG2IMG, SAMPLES,
              SEED, _size("img_width", 512), _size("img_height", 512))

    @classmethod
    def check_together(cls, values: dict) -> None:
        super().check_together(values)
        cls.check_img2img_steps(values)

    def run(self, pipelines, values, settings, node_id):
        from . import runs

        return runs.img2img(pipelines["pipeline"], settings, values["image"], values["strength"], node_id)


class SDBridgeLocalSDXLRefiner(LocalNode):
    TITLE = "SD Bridge Local SDXL (base + refiner)"
    DESCRIPTION = ("SDXL 1.0 with its refiner on your own GPU, as Segmind's SDXL endpoint runs them: the base "
                   "denoises the first high_noise_fraction of the schedule and the refiner finishes from its latents.")
    PIPELINES = (PipelineInput("base_pipeline", "The SDXL base model.", ("sdxl_base",)),
                 PipelineInput("refiner_pipeline", "The SDXL refiner model (needed when 'refiner' is on).",
                               ("sdxl_refiner",), optional=True))
    PARAMS = (surface.PROMPT, surface.NEGATIVE_PROMPT, STYLE, SAMPLES, _scheduler(surface.TXT2IMG_SCHEDULER), STEPS, GUIDANCE, REFINER_STRENGTH,
              HIGH_NOISE_FRACTION, SEED, _size("img_width", 1024), _size("img_height", 1024), REFINER)

    @classmethod
    def check_together(cls, values: dict) -> None:
        super().check_together(values)
        if values.get("refiner") and values.get(HIGH_NOISE_FRACTION.name) in (0, 1):  # the refiner runs as img2img
            cls.check_img2img_steps(values)

    def run(self, pipelines, values, settings, node_id):
        from . import runs

        refiner = pipelines["refiner_pipeline"] if values["refiner"] else None
        if values["refiner"] and refiner is None:
            raise InputError(f"{self.TITLE}: 'refiner' is on but no refiner_pipeline is connected. Load the SDXL "
                             "refiner with SD Bridge Load Checkpoint and connect it, or turn 'refiner' off.")
        return runs.base_and_refiner(pipelines["base_pipeline"], refiner, settings,
                                         values["high_noise_fraction"], values["strength"], node_id)


# ---------------------------------------------------------------- loaders

MODEL = Param("model", "COMBO", "A checkpoint from ComfyUI's models/checkpoints folder (.safetensors) or a diffusers "
              "folder from models/diffusers. The family (SD 1.5, SDXL base, SDXL refiner) is read from the weights.",
              choices=("(no models found: add some to models/checkpoints)",), open_choices=True)


PATH_OR_HUB_ID = Param("path_or_hub_id", "STRING", "Instead of the list: the absolute path of a .safetensors file or a "
                       "diffusers folder, or a Hugging Face hub id (downloaded once). Leave empty to use the list.",
                       default="", optional=True)


class SDBridgeLoadCheckpoint(ParamNode):
    TITLE = "SD Bridge Load Checkpoint"
    DISPLAY_NAME = f"{TITLE} (local)"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads an SD 1.5, SDXL base or SDXL refiner model for the local nodes, offline. A loaded model "
                   "stays in memory for the next run (up to SDBRIDGE_LOCAL_PIPELINES models, default 2), until "
                   "ComfyUI's Unload models, or ComfyUI needing the memory for its own models, drops it.")
    PARAMS = (MODEL, PATH_OR_HUB_ID)
    RETURN_TYPES = (PIPELINE,)
    RETURN_NAMES = ("pipeline",)
    OUTPUT_TOOLTIPS = ("The loaded model, for the local generation nodes or Load LoRA.",)
    FUNCTION = "load"

    @classmethod
    def editor_params(cls):
        return (with_choices(MODEL, model_files.model_choices(), MODEL.choices[0]), PATH_OR_HUB_ID)

    @classmethod
    def IS_CHANGED(cls, model: str = "", path_or_hub_id: str = "", **_):
        # A replaced file is loaded again.
        try:
            path = model_files.resolve(model, path_or_hub_id or "")
        except model_files.CheckpointError:
            return ""
        return str(os.stat(path).st_mtime_ns) if os.path.exists(path) else path

    def load(self, model: str, path_or_hub_id: str = "", unique_id: str | None = None):
        self.normalized({"model": model, "path_or_hub_id": path_or_hub_id})
        try:
            source = model_files.resolve(model, path_or_hub_id or "")
            return (pipeline_cache.load_cached(source),)
        except model_files.CheckpointError as exc:
            raise InputError(f"SD Bridge Load Checkpoint: {exc}") from None


LORA_SLOTS = 3


def _lora_params(names: tuple[str, ...]) -> tuple[Param, ...]:
    params = []
    for i in range(1, LORA_SLOTS + 1):
        params.append(Param(f"lora_{i}", "COMBO", "A LoRA from ComfyUI's models/loras folder (.safetensors), made for "
                            "the same family as the model. 'None' leaves the slot empty.",
                            default=NONE, choices=names, open_choices=True))
        params.append(Param(f"scale_{i}", "FLOAT", "How strongly the LoRA applies: 0 off, 1 as trained, negative "
                            "inverts it.", default=1.0, min=-4.0, max=4.0, step=0.05))
    return tuple(params)


class SDBridgeLoadLoRA(ParamNode):
    TITLE = "SD Bridge Load LoRA"
    DISPLAY_NAME = f"{TITLE} (local)"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Adds up to three LoRAs, each with its own scale, to a local model. The model other nodes use stays "
                   "unchanged: the LoRAs apply only to generations downstream of this node. Chain nodes for more.")
    PARAMS = _lora_params((NONE,))
    RETURN_TYPES = (PIPELINE,)
    RETURN_NAMES = ("pipeline",)
    OUTPUT_TOOLTIPS = ("The model with these LoRAs added to those it had.",)
    FUNCTION = "apply"
    PIPELINE_INPUT = PipelineInput("pipeline", "A model from SD Bridge Load Checkpoint (or another Load LoRA).",
                                   tuple(model_files.FAMILY_NAMES))

    @classmethod
    def editor_params(cls):
        return _lora_params((NONE, *model_files.lora_choices()))

    @classmethod
    def link_inputs(cls):
        return {"required": {"pipeline": cls.PIPELINE_INPUT.spec()}}

    def apply(self, pipeline, unique_id: str | None = None, **values):
        from .. import runtime

        title = self.TITLE
        self.PIPELINE_INPUT.check(pipeline, title)
        values = self.normalized(values)
        stack = []
        for i in range(1, LORA_SLOTS + 1):
            name = values[f"lora_{i}"]
            if name == NONE:
                continue
            path = runtime.model_path("loras", name)
            if path is None:
                raise InputError(f"{title}: LoRA '{name}' is not in ComfyUI's models/loras folder. Put it there, "
                                 "or pick another and refresh the page.")
            try:
                loras.load_lora(pipeline, path)
            except model_files.CheckpointError as exc:
                raise InputError(f"{title}: {exc}") from None
            stack.append((path, values[f"scale_{i}"]))
        return (pipeline.with_loras(stack),)


NODES = (SDBridgeLoadCheckpoint, SDBridgeLoadLoRA, SDBridgeLocalTxt2Img, SDBridgeLocalImg2Img, SDBridgeLocalSDXLRefiner)
