"""Documented scheduler names -> diffusers schedulers, built fresh for every run.

Every name a documented endpoint accepts (Segmind's, Realistic Vision's, SinkIn's) works locally,
so a graph moves between a hosted node and a local one without changing its scheduler. A scheduler
keeps state between calls, so each run gets a new one built from the checkpoint's own scheduler
config (its betas, timestep spacing and offset) plus the options that make the named sampler.
"""

from __future__ import annotations

from types import MappingProxyType

SDE_SCHEDULER = "DPMSolverSDEScheduler"  # draws its noise from a Brownian tree seeded by noise_sampler_seed


class _Recipe:
    """A diffusers scheduler class and the options that turn it into the named sampler."""

    def __init__(self, class_name: str, **options):
        self.class_name = class_name
        self.options = MappingProxyType(options)


_DPM_2M = _Recipe("DPMSolverMultistepScheduler", algorithm_type="dpmsolver++", solver_order=2)
_EULER_ANCESTRAL = _Recipe("EulerAncestralDiscreteScheduler")
_EULER = _Recipe("EulerDiscreteScheduler")
_LMS = _Recipe("LMSDiscreteScheduler")
_DDIM = _Recipe("DDIMScheduler")
_PNDM = _Recipe("PNDMScheduler", skip_prk_steps=True)

# In COMBO order: Segmind's names in Segmind's order, Realistic Vision's extra names, then SinkIn's.
_RECIPES = {
    "DDIM": _DDIM,
    "DPM Multi": _DPM_2M,
    "DPM Single": _Recipe("DPMSolverSinglestepScheduler", lower_order_final=True),
    "Euler a": _EULER_ANCESTRAL,
    "Euler": _EULER,
    "Heun": _Recipe("HeunDiscreteScheduler"),
    "DPM2 a Karras": _Recipe("KDPM2AncestralDiscreteScheduler", use_karras_sigmas=True),
    "DPM2 Karras": _Recipe("KDPM2DiscreteScheduler", use_karras_sigmas=True),
    "LMS": _LMS,
    "PNDM": _PNDM,
    "DDPM": _Recipe("DDPMScheduler"),
    "UniPC": _Recipe("UniPCMultistepScheduler"),
    "dpmpp_2m": _DPM_2M,
    "DPM++ SDE Karras": _Recipe(SDE_SCHEDULER, use_karras_sigmas=True),
    "DPMSolverMultistep": _DPM_2M,
    "K_EULER_ANCESTRAL": _EULER_ANCESTRAL,
    "K_EULER": _EULER,
    "KLMS": _LMS,
}

SCHEDULER_NAMES: tuple[str, ...] = tuple(_RECIPES)


def make_scheduler(name: str, config, seed: int | None = None):
    """A new scheduler for one run: the named sampler on the checkpoint's scheduler config.

    `config` is the freshly loaded pipeline's `pipe.scheduler.config`; it is read, never changed.
    `seed` seeds DPM++ SDE Karras's noise (that scheduler ignores the pipeline's `generator`);
    the other schedulers take their noise from the generator and ignore it.
    """
    recipe = _RECIPES.get(name)
    if recipe is None:
        raise ValueError(f"Unknown scheduler {name!r}. Choose one of: {', '.join(SCHEDULER_NAMES)}.")
    import diffusers

    options = dict(recipe.options)
    if recipe.class_name == SDE_SCHEDULER:
        from diffusers.utils import is_torchsde_available

        if not is_torchsde_available():
            raise RuntimeError(f"The scheduler {name!r} needs the torchsde package: pip install torchsde")
        options["noise_sampler_seed"] = seed
    scheduler_class = getattr(diffusers, recipe.class_name)
    return scheduler_class.from_config(dict(config), **options)
