"""The local nodes on tiny random-weight pipelines, on CPU at 64x64 with a few steps: inputs
shared with the Segmind nodes, validation, every mode, seeds, progress, interrupt, LoRA."""

from __future__ import annotations

import json
import re

import pytest
import torch

from sdbridge.nodes import runtime
from sdbridge.nodes.hosted.providers.segmind import nodes as segmind_nodes
from sdbridge.nodes.local import local_nodes, pipeline_cache
from sdbridge.nodes.local.schedulers import make_scheduler
from sdbridge.nodes.surface import EDITOR_SEED_MAX, SCHEDULERS, STYLE_TEMPLATES, styled

pytestmark = pytest.mark.slow

COMMON = {"prompt": "a red cube on a table", "negative_prompt": "blurry", "style": "base", "scheduler": "Euler",
          "num_inference_steps": 4, "guidance_scale": 7.5, "samples": 1, "seed": 7, "img_width": 64,
          "img_height": 64}


def load(name: str):
    return local_nodes.SDBridgeLoadCheckpoint().load(name)[0]


@pytest.fixture
def sd15(local_models):
    return load("tiny-sd15.safetensors")


@pytest.fixture
def sdxl(local_models):
    return load("tiny-sdxl_base.safetensors")


@pytest.fixture
def refiner(local_models):
    return load("diffusers/tiny-sdxl_refiner")


def txt2img(pipeline, **changes):
    images, info = local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=pipeline, **{**COMMON, **changes})
    return images, json.loads(info)


def refined(base, refiner_pipeline, **changes):
    values = {**COMMON, "strength": 0.3, "high_noise_fraction": 0.5, "refiner": True, **changes}
    images, info = local_nodes.SDBridgeLocalSDXLRefiner().generate(base_pipeline=base, refiner_pipeline=refiner_pipeline, **values)
    return images, json.loads(info)


class RecordingBar:
    """Stands in for ComfyUI's progress bar (runtime.ProgressBar is the bridge to it)."""

    made: list[RecordingBar] = []

    def __init__(self, total, node_id=None):
        self.total, self.node_id, self.values, self.previews = total, node_id, [], []
        RecordingBar.made.append(self)

    def update(self, value, preview=None):
        self.values.append(value)
        self.previews.append(preview)


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(runtime, "ProgressBar", RecordingBar)
    return RecordingBar.made


# ---------------------------------------------------------------- contract

@pytest.mark.parametrize(("node", "endpoint"), [
    (local_nodes.SDBridgeLocalTxt2Img, segmind_nodes.REALISTIC_VISION), (local_nodes.SDBridgeLocalTxt2Img, segmind_nodes.REALVIS),
    (local_nodes.SDBridgeLocalImg2Img, segmind_nodes.SD15_IMG2IMG), (local_nodes.SDBridgeLocalSDXLRefiner, segmind_nodes.SDXL)])
def test_local_nodes_take_the_segmind_input_names(node, endpoint):
    types = node.INPUT_TYPES()
    local_names = set(types["required"]) | set(types.get("optional", {}))
    assert {p.name for p in endpoint.params} <= local_names


def test_every_style_has_a_template():
    segmind_styles = next(p.choices for p in segmind_nodes.SDXL.params if p.name == "style")
    assert list(STYLE_TEMPLATES) == list(segmind_styles) == local_nodes.SDBridgeLocalTxt2Img.INPUT_TYPES()["required"]["style"][0]
    assert styled("base", "a cat", "") == ("a cat", "")
    prompt, negative = styled("cinematic", " a cat ", "dogs")
    assert prompt.startswith("cinematic film still of a cat,") and negative.startswith("dogs, ")


@pytest.mark.parametrize(("changes", "message"), [
    ({"img_width": 100}, "img_width: 100 is not a multiple of 8; use 96 or 104"),
    ({"img_height": 2056}, "img_height: 2056 is out of range"),
    ({"prompt": "   "}, "prompt: must not be empty"),
    ({"num_inference_steps": 0}, "num_inference_steps: 0 is out of range"),
    ({"scheduler": "Karras 9000"}, "scheduler: 'Karras 9000' is not allowed"),
    ({"style": "vaporwave"}, "style: 'vaporwave' is not allowed"),
])
def test_bad_values_fail_validation_before_running(changes, message):
    result = local_nodes.SDBridgeLocalTxt2Img.VALIDATE_INPUTS(**{**COMMON, **changes})
    assert isinstance(result, str) and message in result
    assert local_nodes.SDBridgeLocalTxt2Img.VALIDATE_INPUTS(**COMMON) is True


def test_bad_values_are_refused_when_run_too(sd15):
    with pytest.raises(ValueError, match="img_width: 100 is not a multiple of 8"):
        txt2img(sd15, img_width=100)


# ---------------------------------------------------------------- loader

def test_loader_lists_models_and_loads_by_path(local_models):
    spec = local_nodes.SDBridgeLoadCheckpoint.INPUT_TYPES()["required"]["model"]
    assert "tiny-sd15.safetensors" in spec[0] and "diffusers/tiny-sdxl_base" in spec[0]
    by_path = local_nodes.SDBridgeLoadCheckpoint().load("(unused)", str(local_models["sd15"]["file"]))[0]
    assert by_path.pipe is load("tiny-sd15.safetensors").pipe  # the same cached weights
    assert by_path.pipe is load("checkpoints/tiny-sd15.safetensors").pipe  # as workflows saved before 0.1.0 name it
    assert local_nodes.SDBridgeLoadCheckpoint.IS_CHANGED(model="tiny-sd15.safetensors").isdigit()


def test_loader_reports_a_missing_file_on_the_node(local_models):
    with pytest.raises(ValueError, match="SD Bridge Load Checkpoint: 'gone.safetensors' is not in ComfyUI's"):
        load("gone.safetensors")


# ---------------------------------------------------------------- txt2img

@pytest.mark.parametrize("name", ["tiny-sd15.safetensors", "diffusers/tiny-sdxl_base"])
def test_txt2img_makes_images_and_reports_the_run(local_models, name):
    images, info = txt2img(load(name), samples=2, seed=41, style="cinematic")
    assert images.shape == (2, 64, 64, 3) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert 0 <= float(images.min()) and float(images.max()) <= 1 and float(images.std()) > 0
    assert info["seeds"] == [41, 42] and info["steps"] == 4 and info["scheduler"] == "Euler"
    assert info["size"] == [64, 64] and info["style"] == "cinematic" and info["seconds"] >= 0


def test_random_seed_is_reported_and_reproduces(sd15):
    images, info = txt2img(sd15, seed=-1)
    assert 0 <= info["seed"] <= EDITOR_SEED_MAX
    again, _ = txt2img(sd15, seed=info["seed"])
    assert torch.equal(images, again)
    assert local_nodes.SDBridgeLocalTxt2Img.IS_CHANGED(**{**COMMON, "seed": -1}) != local_nodes.SDBridgeLocalTxt2Img.IS_CHANGED(
        **{**COMMON, "seed": -1})  # NaN: a new image every run


def distinct_schedulers() -> list[str]:
    """One name per distinct sampler (several documented names are aliases of one)."""
    config = json.loads((pipeline_cache.CONFIGS / "sd15" / "scheduler" / "scheduler_config.json").read_text())
    seen = {}
    for name in SCHEDULERS:
        scheduler = make_scheduler(name, config)
        seen.setdefault((type(scheduler).__name__, json.dumps(dict(scheduler.config), sort_keys=True)), name)
    return list(seen.values())


@pytest.mark.parametrize("scheduler", distinct_schedulers())
def test_each_sample_equals_a_single_run_with_its_seed(sd15, scheduler):
    batch, _ = txt2img(sd15, scheduler=scheduler, samples=2, seed=100)
    second, _ = txt2img(sd15, scheduler=scheduler, samples=1, seed=101)
    # Batched and single kernels round differently (~1e-5); an 8-bit level is 4e-3.
    assert torch.allclose(batch[1:], second, atol=1e-4)
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)
    assert torch.equal(second, txt2img(sd15, scheduler=scheduler, samples=1, seed=101)[0])


def test_the_refiner_cannot_start_from_text(refiner):
    with pytest.raises(ValueError, match="got a SDXL refiner model .*takes SD 1.5 or SDXL base"):
        txt2img(refiner)


# ---------------------------------------------------------------- progress and interrupt

def test_progress_ticks_once_per_unet_call_with_previews(sd15, bars):
    txt2img(sd15, scheduler="Heun", num_inference_steps=3)
    (bar,) = bars
    pipe = sd15.pipe
    assert pipe.num_timesteps == 5  # Heun: two UNet calls per step but the first
    assert bar.values == [1, 2, 3, 4, 5] and bar.total == 5
    shown = [p for p in bar.previews if p is not None]
    assert shown and shown[0].size == (8, 8) and shown[0].mode == "RGB"


def test_interrupt_stops_at_the_next_step(sd15, monkeypatch, bars):
    class InterruptingBar(RecordingBar):
        def update(self, value, preview=None):
            super().update(value, preview)
            if value == 2:
                runtime.request_interrupt()

    monkeypatch.setattr(runtime, "ProgressBar", InterruptingBar)
    with pytest.raises(runtime.Interrupted):
        txt2img(sd15, num_inference_steps=10)
    assert bars[0].values == [1, 2]
    assert not runtime.interrupted()  # cleared once raised: the next run starts clean


# ---------------------------------------------------------------- img2img

def test_img2img_follows_the_image_by_strength(sd15):
    source = torch.zeros(2, 48, 40, 3)
    source[0, :, :20] = 1.0
    source[1, :24] = 0.5
    values = {**COMMON, "scheduler": "DDIM", "samples": 2, "num_inference_steps": 10}
    light, info = local_nodes.SDBridgeLocalImg2Img().generate(pipeline=sd15, image=source, strength=0.1, **values)
    heavy, _ = local_nodes.SDBridgeLocalImg2Img().generate(pipeline=sd15, image=source, strength=1.0, **values)
    assert light.shape == (4, 64, 64, 3)  # each input image, `samples` times, at img_width x img_height
    resized = torch.nn.functional.interpolate(source.permute(0, 3, 1, 2), size=(64, 64)).permute(0, 2, 3, 1)
    target = resized.repeat_interleave(2, dim=0)
    assert (light - target).abs().mean() < (heavy - target).abs().mean()
    assert json.loads(info)["strength"] == 0.1


def test_img2img_takes_sdxl_the_refiner_and_grey_images(sdxl, refiner):
    source = torch.rand(1, 64, 64, 1)
    for pipeline in (sdxl, refiner):
        images, _ = local_nodes.SDBridgeLocalImg2Img().generate(pipeline=pipeline, image=source, strength=0.5, **COMMON)
        assert images.shape == (1, 64, 64, 3)


# ---------------------------------------------------------------- SDXL base + refiner

def test_split_runs_the_base_then_the_refiner_on_its_latents(sdxl, refiner, bars):
    images, info = refined(sdxl, refiner, samples=2, num_inference_steps=6, high_noise_fraction=0.5)
    assert images.shape == (2, 64, 64, 3)
    assert info["high_noise_fraction"] == 0.5 and info["refiner"] == "tiny-sdxl_refiner"
    base_only, _ = refined(sdxl, refiner, samples=2, num_inference_steps=6, refiner=False)
    assert not torch.allclose(images, base_only, atol=1e-3)
    # One bar for the node: the base's share of the steps, then the refiner's.
    assert bars[0].values == list(range(1, 7)) and bars[0].total == 6


def test_refiner_off_is_the_base_alone(sdxl, refiner):
    images, _ = refined(sdxl, refiner, refiner=False)
    alone, _ = txt2img(sdxl)
    assert torch.equal(images, alone)


def test_high_noise_fraction_one_refines_the_finished_image_with_strength(sdxl, refiner):
    weak, info = refined(sdxl, refiner, high_noise_fraction=1.0, strength=0.25, num_inference_steps=8)
    strong, _ = refined(sdxl, refiner, high_noise_fraction=1.0, strength=1.0, num_inference_steps=8)
    base_only, _ = refined(sdxl, refiner, refiner=False, num_inference_steps=8)
    assert info["refiner_strength"] == 0.25
    assert (weak - base_only).abs().mean() < (strong - base_only).abs().mean()


def test_refiner_on_without_a_refiner_says_what_to_connect(sdxl):
    with pytest.raises(ValueError, match="no refiner_pipeline is connected"):
        refined(sdxl, None)


@pytest.mark.parametrize("slot", ["base", "refiner"])
def test_wrong_family_in_a_slot_is_refused(sd15, sdxl, refiner, slot):
    base, other = (sd15, refiner) if slot == "base" else (sdxl, sdxl)
    with pytest.raises(ValueError, match=f"'{slot}_pipeline' got a"):
        refined(base, other)


# ---------------------------------------------------------------- LoRA

def lora_node(pipeline, name, scale=1.0):
    return local_nodes.SDBridgeLoadLoRA().apply(pipeline, lora_1=name, scale_1=scale, lora_2="None", scale_2=1.0,
                                          lora_3="None", scale_3=1.0)[0]


def test_lora_changes_its_branch_only(sd15):
    plain, _ = txt2img(sd15)
    with_lora = lora_node(sd15, "tiny-sd15-lora.safetensors", 1.0)
    changed, info = txt2img(with_lora)
    assert not torch.allclose(plain, changed, atol=1e-3)
    assert info["loras"] == [["tiny-sd15-lora.safetensors", 1.0]]
    assert torch.equal(txt2img(sd15)[0], plain)  # the other branch still gets the plain weights
    off, _ = txt2img(lora_node(sd15, "tiny-sd15-lora.safetensors", 0.0))
    assert torch.allclose(off, plain, atol=1e-5)


def test_lora_for_another_family_is_refused_on_its_node(sd15):
    with pytest.raises(ValueError, match="SD Bridge Load LoRA: LoRA 'tiny-sdxl_base-lora.safetensors' does not fit"):
        lora_node(sd15, "tiny-sdxl_base-lora.safetensors")
    assert torch.isfinite(txt2img(sd15)[0]).all()


def test_missing_lora_names_the_folder(sd15):
    with pytest.raises(ValueError, match="not in ComfyUI's models/loras folder"):
        lora_node(sd15, "gone.safetensors")


# ---------------------------------------------------------------- devices

def test_sdxl_vae_decodes_in_fp32_when_the_model_is_fp16(local_models, monkeypatch):
    monkeypatch.setattr(runtime, "torch_dtype", lambda device: torch.float16)
    local = pipeline_cache.load_cached(str(local_models["sdxl_base"]["file"]))
    assert local.pipe.unet.dtype == torch.float16
    assert local.pipe.vae.config.force_upcast


def test_a_prompt_longer_than_the_local_nodes_take_is_refused_before_any_work():
    node = local_nodes.SDBridgeLocalTxt2Img
    verdict = node.VALIDATE_INPUTS(prompt="a" * 40_000)
    assert "prompt: 40,000 characters is longer than the local nodes take (32,000" in verdict
    with pytest.raises(ValueError, match="negative_prompt: 50,000 characters"):
        node.normalized({**COMMON, "negative_prompt": "b" * 50_000})


def with_image(node, values):
    image = {"image": torch.rand(1, 8, 8, 3)} if node is local_nodes.SDBridgeLocalImg2Img else {}
    return {**COMMON, **image, **values}


@pytest.mark.parametrize(("node", "values", "message"), [
    (local_nodes.SDBridgeLocalImg2Img, {"num_inference_steps": 2, "strength": 0.3},
     "strength: 0.3 of 2 num_inference_steps leaves no step to run (img2img runs steps x strength of them); "
     "use a strength of at least 0.5 or more steps"),
    (local_nodes.SDBridgeLocalImg2Img, {"num_inference_steps": 3, "strength": 0.2}, "at least 0.34 or more steps"),
    (local_nodes.SDBridgeLocalSDXLRefiner, {"num_inference_steps": 4, "strength": 0.2, "high_noise_fraction": 1.0,
                                            "refiner": True}, "at least 0.25 or more steps"),
])
def test_img2img_with_no_step_left_is_refused_with_the_strength_that_works(node, values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        node.normalized(with_image(node, values))


@pytest.mark.parametrize(("node", "values"), [
    (local_nodes.SDBridgeLocalImg2Img, {"num_inference_steps": 4, "strength": 0.25}),
    (local_nodes.SDBridgeLocalImg2Img, {"num_inference_steps": 3, "strength": 0.34}),
    (local_nodes.SDBridgeLocalSDXLRefiner, {"num_inference_steps": 2, "strength": 0.2, "high_noise_fraction": 0.5,
                                            "refiner": True}),  # the split: strength does not apply
    (local_nodes.SDBridgeLocalSDXLRefiner, {"num_inference_steps": 2, "strength": 0.2, "high_noise_fraction": 1.0,
                                            "refiner": False}),
])
def test_img2img_with_a_step_left_passes(node, values):
    node.normalized(with_image(node, values))


def test_img2img_runs_the_smallest_strength_the_message_offers(sd15):
    images, _ = local_nodes.SDBridgeLocalImg2Img().generate(
        pipeline=sd15, image=torch.rand(1, 64, 64, 3), **{**COMMON, "num_inference_steps": 3, "strength": 0.34})
    assert images.shape == (1, 64, 64, 3)
