"""Documented scheduler names -> fresh diffusers schedulers (nodes/local/schedulers.py)."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

from sdbridge.nodes.hosted.providers.segmind import endpoints as segmind_endpoints
from sdbridge.nodes.hosted.providers.sinkin import nodes as sinkin_nodes
from sdbridge.nodes.local import schedulers
from sdbridge.nodes.local.schedulers import make_scheduler
from sdbridge.nodes.surface import SCHEDULERS

SCHEDULER_NAMES = tuple(SCHEDULERS)

# The scheduler configs the real checkpoints ship (runwayml SD 1.5, stabilityai SDXL 1.0 base).
SD15_CONFIG = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
               "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False}
SDXL_CONFIG = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "clip_sample": False,
               "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
               "prediction_type": "epsilon", "interpolation_type": "linear", "sample_max_value": 1.0,
               "timestep_spacing": "leading", "use_karras_sigmas": False}
CONFIGS = {"sd15": SD15_CONFIG, "sdxl": SDXL_CONFIG}

# What each name must become: the class and the options that make the named sampler.
EXPECTED = {
    "DDIM": ("DDIMScheduler", {}),
    "DPM Multi": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPMSolverMultistep": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM Single": ("DPMSolverSinglestepScheduler", {"lower_order_final": True}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "K_EULER_ANCESTRAL": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "K_EULER": ("EulerDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2 a Karras": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "KLMS": ("LMSDiscreteScheduler", {}),
    "PNDM": ("PNDMScheduler", {"skip_prk_steps": True}),
    "DDPM": ("DDPMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True, "noise_sampler_seed": 7}),
}


def test_every_documented_name_is_offered_segmind_first():
    assert SCHEDULER_NAMES[:len(segmind_endpoints.SCHEDULERS)] == segmind_endpoints.SCHEDULERS
    documented = set(segmind_endpoints.SCHEDULERS) | set(segmind_endpoints.SCHEDULERS_RV) | set(sinkin_nodes.SCHEDULERS)
    assert set(SCHEDULER_NAMES) == documented == set(EXPECTED)
    assert set(SCHEDULERS.values()) == set(schedulers._RECIPES)  # every sampler named is built, none unused


@pytest.mark.parametrize("family", CONFIGS)
@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_name_builds_its_scheduler_on_the_checkpoint_config(name, family):
    config = CONFIGS[family]
    original = copy.deepcopy(config)
    scheduler = make_scheduler(name, config, seed=7)
    class_name, options = EXPECTED[name]
    assert type(scheduler).__name__ == class_name
    for key, value in options.items():
        assert scheduler.config[key] == value, key
    # The checkpoint's noise schedule carries over.
    assert (scheduler.config.beta_start, scheduler.config.beta_end, scheduler.config.beta_schedule) == (
        0.00085, 0.012, "scaled_linear")
    if "steps_offset" in scheduler.config:
        assert scheduler.config.steps_offset == 1
    if family == "sdxl" and "timestep_spacing" in scheduler.config:
        assert scheduler.config.timestep_spacing == "leading"
    assert config == original
    assert make_scheduler(name, config, seed=7) is not scheduler


def test_frozen_config_of_a_loaded_scheduler_is_not_changed():
    from diffusers import EulerDiscreteScheduler

    loaded = EulerDiscreteScheduler.from_config(SDXL_CONFIG)
    before = dict(loaded.config)
    for name in SCHEDULER_NAMES:
        make_scheduler(name, loaded.config, seed=1)
    assert dict(loaded.config) == before
    assert type(loaded) is EulerDiscreteScheduler


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown scheduler 'Euler A'.*Euler a.*DPM\\+\\+ SDE Karras"):
        make_scheduler("Euler A", SD15_CONFIG)


def _denoise(scheduler, seed: int) -> torch.Tensor:
    """Four steps of a fixed stand-in model from a fixed start; the steps' generator has `seed`."""
    scheduler.set_timesteps(4)
    sample = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    # As diffusers' pipelines do, pass the generator to the schedulers whose step takes one.
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    extra = {"generator": torch.Generator().manual_seed(seed)} if takes_generator else {}
    for timestep in scheduler.timesteps:
        model_input = scheduler.scale_model_input(sample, timestep)
        noise_prediction = 0.5 * model_input
        sample = scheduler.step(noise_prediction, timestep, sample, **extra).prev_sample
    return sample


@pytest.mark.parametrize("family", CONFIGS)
@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_every_scheduler_runs_and_the_same_seed_repeats(name, family):
    first = _denoise(make_scheduler(name, CONFIGS[family], seed=11), seed=11)
    again = _denoise(make_scheduler(name, CONFIGS[family], seed=11), seed=11)
    assert first.shape == (1, 4, 8, 8) and torch.isfinite(first).all()
    assert torch.equal(first, again)


@pytest.mark.parametrize("name", ["Euler a", "DPM2 a Karras", "DDPM"])
def test_ancestral_schedulers_follow_the_generator(name):
    first = _denoise(make_scheduler(name, SDXL_CONFIG), seed=11)
    assert not torch.equal(first, _denoise(make_scheduler(name, SDXL_CONFIG), seed=12))


def test_dpmpp_sde_karras_follows_its_seed_not_the_generator():
    first = _denoise(make_scheduler("DPM++ SDE Karras", SDXL_CONFIG, seed=11), seed=11)
    assert torch.equal(first, _denoise(make_scheduler("DPM++ SDE Karras", SDXL_CONFIG, seed=11), seed=12))
    assert not torch.equal(first, _denoise(make_scheduler("DPM++ SDE Karras", SDXL_CONFIG, seed=12), seed=11))
