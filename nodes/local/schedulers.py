"""Documented scheduler names -> diffusers schedulers, built fresh for every run.

Every name a documented endpoint accepts (Segmind's, Realistic Vision's, SinkIn's) works locally,
so a graph moves between a hosted node and a local one without changing its scheduler. A scheduler
keeps state between calls, so each run gets a new one built from the checkpoint's own scheduler
config (its betas, timestep spacing and offset) plus the options that make the named sampler.
"""

from __future__ import annotations

from types import MappingProxyType

from ..errors import InputError
from ..surface import SCHEDULERS

SDE_SCHEDULER = "DPMSolverSDEScheduler"  # draws its noise from a Brownian tree seeded by noise_sampler_seed


class _Recipe:
    """A diffusers scheduler class and the options that turn it into the named sampler."""

    def __init__(self, class_name: str, **options):
        self.class_name = class_name
        self.options = MappingProxyType(options)


# One recipe per sampler; the documented names map to samplers in surface.SCHEDULERS.
_RECIPES = {
    "ddim": _Recipe("DDIMScheduler"),
    "dpm_2m": _Recipe("DPMSolverMultistepScheduler", algorithm_type="dpmsolver++", solver_order=2),
    "dpm_single": _Recipe("DPMSolverSinglestepScheduler", lower_order_final=True),
    "euler_ancestral": _Recipe("EulerAncestralDiscreteScheduler"),
    "euler": _Recipe("EulerDiscreteScheduler"),
    "heun": _Recipe("HeunDiscreteScheduler"),
    "kdpm2_ancestral_karras": _Recipe("KDPM2AncestralDiscreteScheduler", use_karras_sigmas=True),
    "kdpm2_karras": _Recipe("KDPM2DiscreteScheduler", use_karras_sigmas=True),
    "lms": _Recipe("LMSDiscreteScheduler"),
    "pndm": _Recipe("PNDMScheduler", skip_prk_steps=True),
    "ddpm": _Recipe("DDPMScheduler"),
    "unipc": _Recipe("UniPCMultistepScheduler"),
    "dpm_sde_karras": _Recipe(SDE_SCHEDULER, use_karras_sigmas=True),
}


def make_scheduler(name: str, config, seed: int | None = None):
    """A new scheduler for one run: the named sampler on the checkpoint's scheduler config.

    `config` is the freshly loaded pipeline's `pipe.scheduler.config`; it is read, never changed.
    `seed` seeds DPM++ SDE Karras's noise (that scheduler ignores the pipeline's `generator`);
    the other schedulers take their noise from the generator and ignore it.
    """
    if name not in SCHEDULERS:
        raise InputError(f"Unknown scheduler {name!r}. Choose one of: {', '.join(SCHEDULERS)}.")
    recipe = _RECIPES[SCHEDULERS[name]]
    import diffusers

    options = dict(recipe.options)
    if recipe.class_name == SDE_SCHEDULER:
        from diffusers.utils import is_torchsde_available

        if not is_torchsde_available():
            raise RuntimeError(f"The scheduler {name!r} needs the torchsde package: pip install torchsde")
        options["noise_sampler_seed"] = seed
    scheduler_class = getattr(diffusers, recipe.class_name)
    return scheduler_class.from_config(dict(config), **options)
