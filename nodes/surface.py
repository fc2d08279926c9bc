"""The one parameter surface: the inputs that mean the same thing on every family (Segmind,
SinkIn, local diffusers), declared here once.

A hosted node and a local node that share an input share its Param (or its names) from this
module, so a graph moves between them without relearning anything. What only one provider has
(its sizes, step ranges, sample counts) stays in that provider's module.
"""

from __future__ import annotations

from types import MappingProxyType

from .params import Param

PROMPT = Param("prompt", "STRING", "What to render. A1111 emphasis such as (word:1.3) or ((word)) works.",
               default="", multiline=True, nonempty=True)
NEGATIVE_PROMPT = Param("negative_prompt", "STRING",
                        "What to keep out of the image, e.g. 'bad anatomy, bad hands, missing fingers'.",
                        default="", multiline=True)
STRENGTH_IMG2IMG = Param("strength", "FLOAT", "How much to transform the input image: 0.1 keeps it nearly as "
                         "is, 1 replaces it.", default=1.0, min=0.1, max=1.0, step=0.01)

# Seed ranges, each declared once: the seed widget's max, and the range `params.resolve_seed`
# draws a random seed from (it reads the Param's own max). Saved workflows hold these maxima.
EDITOR_SEED_MAX = 2**53 - 1      # the largest whole number the editor's number widgets hold exactly
SEGMIND_SEED_MAX = 999_999_999_999_999   # the seed range Segmind documents
SEED_MAX_32_BIT = 2**32 - 1      # SD 1.5's 32-bit seeds: for a provider that documents no range (SinkIn)


def seed(maximum: int = EDITOR_SEED_MAX) -> Param:
    """The seed input, -1 meaning "pick one" (the seed used is reported in 'info')."""
    return Param("seed", "INT", "Seed for image generation. -1 picks a random seed; the seed used is in 'info'.",
                 default=-1, min=-1, max=maximum, seed=True)


# ---------------------------------------------------------------- style presets

# Segmind's SDXL style names (its full list is unpublished; these are the SDXL presets in use),
# with the prompt template ("{prompt}" is the user's prompt) and the negative prompt addition the
# local nodes apply for each. The order is the COMBO order.
STYLE_TEMPLATES = MappingProxyType({
    "base": ("{prompt}", ""),
    "cinematic": ("cinematic film still of {prompt}, shallow depth of field, vignette, highly detailed, film grain",
                  "anime, cartoon, graphic, painting, drawing, sketch"),
    "photographic": ("cinematic photo of {prompt}, 35mm photograph, film, bokeh, professional, 4k, highly detailed",
                     "drawing, painting, crayon, sketch, graphite, impressionist, noisy, blurry, deformed, ugly"),
    "hdr": ("HDR photo of {prompt}, high dynamic range, vivid, rich details, clear shadows and highlights, realistic",
            "flat, low contrast, oversaturated, underexposed, overexposed, blurry, noisy"),
    "enhance": ("breathtaking {prompt}, award-winning, professional, highly detailed",
                "ugly, deformed, noisy, blurry, distorted, grainy"),
    "anime": ("anime artwork of {prompt}, anime style, key visual, vibrant, studio anime, highly detailed",
              "photo, deformed, black and white, realism, disfigured, low contrast"),
    "digital-art": ("concept art of {prompt}, digital artwork, illustrative, painterly, matte painting, highly detailed",
                    "photo, photorealistic, realism, ugly"),
    "comic-book": ("comic of {prompt}, graphic illustration, comic art, graphic novel art, vibrant, highly detailed",
                   "photograph, deformed, glitch, noisy, realistic, stock photo"),
    "fantasy-art": ("ethereal fantasy concept art of {prompt}, magnificent, celestial, epic, painterly, dreamy",
                    "photographic, realistic, realism, 35mm film, dslr, cropped, frame, text, deformed, ugly"),
    "line-art": ("line art drawing of {prompt}, professional, sleek, modern, minimalist, graphic, line art, vector",
                 "anime, photorealistic, 35mm film, deformed, glitch, blurry, noisy, realistic, abstract"),
    "analog-film": ("analog film photo of {prompt}, faded film, desaturated, 35mm photo, grainy, vignette, vintage",
                    "painting, drawing, illustration, glitch, deformed, cartoon, anime, 3d render"),
    "neon-punk": ("neonpunk style {prompt}, cyberpunk, vaporwave, neon, vibes, vibrant, sharp, ultramodern, magenta",
                  "painting, drawing, illustration, glitch, deformed, mutated, cross-eyed, ugly, disfigured"),
    "isometric": ("isometric style {prompt}, vibrant, beautiful, crisp, detailed, ultra detailed, intricate",
                  "deformed, mutated, ugly, disfigured, blur, blurry, noise, noisy, realistic, photographic"),
    "low-poly": ("low-poly style {prompt}, low-poly game art, polygon mesh, jagged, blocky, wireframe edges, centered",
                 "noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo"),
    "origami": ("origami style {prompt}, paper art, pleated paper, folded, origami art, pleats, cut and fold, centered",
                "noisy, sloppy, messy, grainy, highly detailed, ultra textured, photo"),
    "modeling-compound": ("play-doh style {prompt}, sculpture, clay art, centered composition, claymation",
                          "sloppy, messy, grainy, highly detailed, ultra textured, photo"),
    "3d-model": ("professional 3d model of {prompt}, octane render, highly detailed, volumetric, dramatic lighting",
                 "ugly, deformed, noisy, low poly, blurry, painting"),
    "pixel-art": ("pixel-art {prompt}, low-res, blocky, pixel art style, 8-bit graphics",
                  "sloppy, messy, blurry, noisy, highly detailed, ultra textured, photo, realistic"),
    "tile-texture": ("{prompt}, seamless tileable texture, repeating pattern, top-down view, even lighting",
                     "perspective, horizon, shadows, vignette, border, frame, text"),
})
STYLE_NAMES: tuple[str, ...] = tuple(STYLE_TEMPLATES)
NO_STYLE = STYLE_NAMES[0]


def styled(style: str, prompt: str, negative_prompt: str) -> tuple[str, str]:
    """The prompt and negative prompt with a style preset applied."""
    template, negative = STYLE_TEMPLATES[style]
    negative_prompt = ", ".join(part for part in (negative_prompt.strip(), negative) if part)
    return template.replace("{prompt}", prompt.strip()), negative_prompt


# ---------------------------------------------------------------- scheduler names

# Every scheduler name a document gives, with the sampler it names (local/schedulers.py builds
# each sampler with diffusers, so every name works locally too). Grouped by who documents it,
# in that document's order.
_DOCUMENTED_SCHEDULERS = MappingProxyType({
    # Segmind's list (sd1.5-img2img documents the first eleven; realvis lists UniPC too)
    "segmind": {"DDIM": "ddim", "DPM Multi": "dpm_2m", "DPM Single": "dpm_single", "Euler a": "euler_ancestral",
                "Euler": "euler", "Heun": "heun", "DPM2 a Karras": "kdpm2_ancestral_karras",
                "DPM2 Karras": "kdpm2_karras", "LMS": "lms", "PNDM": "pndm", "DDPM": "ddpm", "UniPC": "unipc"},
    # Realistic Vision's page: its example and its suggestion, beside Segmind's names
    "realistic_vision": {"dpmpp_2m": "dpm_2m", "DPM++ SDE Karras": "dpm_sde_karras"},
    "sinkin": {"DPMSolverMultistep": "dpm_2m", "K_EULER_ANCESTRAL": "euler_ancestral", "DDIM": "ddim",
               "K_EULER": "euler", "PNDM": "pndm", "KLMS": "lms"},
})

# name -> sampler, every documented name once (the local nodes offer them all, in this order)
SCHEDULERS = MappingProxyType({name: sampler for names in _DOCUMENTED_SCHEDULERS.values()
                               for name, sampler in names.items()})


# The documents' defaults: Segmind's text-to-image endpoints and its img2img endpoint.
TXT2IMG_SCHEDULER = "UniPC"
IMG2IMG_SCHEDULER = "DDIM"


def scheduler_names(documented_by: str) -> tuple[str, ...]:
    """The scheduler names one document lists ("segmind", "realistic_vision", "sinkin")."""
    return tuple(_DOCUMENTED_SCHEDULERS[documented_by])
