"""Memory that comes back: after ComfyUI's "Unload models" / POST /free every weight the pack
loaded is gone (no reference left in node outputs, LoRA adapters, img2img variants or the
single-file conversion), and the cache gives way when ComfyUI's model management needs room.
Tiny pipelines loaded through the pack's real loading code; ComfyUI's model management is the
stand-in of support/standin_comfy.py, reached the way ComfyUI reaches it."""

from __future__ import annotations

import gc
import json
import threading
import weakref

import pytest
import torch

from sdbridge.nodes import runtime
from sdbridge.nodes.local import local_nodes, model_files, pipeline_cache, runs

pytestmark = pytest.mark.slow

COMMON = {"prompt": "a red cube", "negative_prompt": "blurry", "style": "base", "scheduler": "Euler",
          "num_inference_steps": 2, "guidance_scale": 7.5, "samples": 1, "seed": 7, "img_width": 64, "img_height": 64}


def weights_of(handle) -> list[weakref.ref]:
    """Weak references to every module, parameter and buffer the cached pipeline (and its
    img2img variants) hold."""
    loaded = handle.loaded
    refs = []
    for pipe in (loaded.pipe, *loaded.variants.values()):
        refs.append(weakref.ref(pipe))
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                refs += [weakref.ref(m) for m in component.modules()]
                refs += [weakref.ref(t) for t in (*component.parameters(), *component.buffers())]
    return refs


def use_everything(name: str):
    """What a graph does with a model: load it, add a LoRA, txt2img on both branches, img2img;
    returns the node outputs ComfyUI keeps in its cache."""
    handle = local_nodes.SDBridgeLoadCheckpoint().load(name)[0]
    lora = local_nodes.SDBridgeLoadLoRA().apply(handle, lora_1="tiny-sd15-lora.safetensors", scale_1=0.5,
                                                lora_2="None", scale_2=1.0, lora_3="None", scale_3=1.0)[0]
    outputs = [handle, lora, local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=handle, **COMMON),
               local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=lora, **COMMON)]
    image = outputs[-1][0]
    outputs.append(local_nodes.SDBridgeLocalImg2Img().generate(pipeline=lora, image=image, strength=0.5, **COMMON))
    return outputs


def test_unload_models_frees_every_weight_the_pack_loaded(local_models, comfy_model_management):
    outputs = use_everything("checkpoints/tiny-sd15.safetensors")
    handle = outputs[0]
    assert handle.loaded.variants, "img2img made its variant"
    weights = weights_of(handle)
    comfy_model_management.unload_all_models()  # what POST /free and the "Unload models" button run
    gc.collect()
    alive = [ref() for ref in weights if ref() is not None]
    assert not alive, f"{len(alive)} of {len(weights)} modules/tensors still alive, e.g. {type(alive[0]).__name__}"
    assert pipeline_cache.cached_count() == 0
    assert ("soft_empty_cache",) in comfy_model_management.calls
    assert json.loads(outputs[2][1])["model"] == "tiny-sd15.safetensors"  # the node outputs ComfyUI keeps are fine
    again = local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=outputs[1], **COMMON)  # and the next use reloads
    assert torch.equal(again[0], outputs[3][0])


def test_a_diffusers_folder_and_a_refiner_sharing_the_base_are_freed_too(local_models, comfy_model_management):
    base = local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sdxl_base.safetensors")[0]
    refiner = local_nodes.SDBridgeLoadCheckpoint().load("diffusers/tiny-sdxl_refiner")[0]
    assert refiner.pipe.vae is base.pipe.vae  # shared between the two cached pipelines
    local_nodes.SDBridgeLocalSDXLRefiner().generate(base_pipeline=base, refiner_pipeline=refiner, strength=0.3,
                                                   high_noise_fraction=0.5, refiner=True, **COMMON)
    weights = weights_of(base) + weights_of(refiner)
    comfy_model_management.unload_all_models()
    gc.collect()
    assert all(ref() is None for ref in weights)


def test_the_cache_gives_way_when_comfyui_needs_memory(local_models, comfy_model_management):
    """ComfyUI loading one of its own models asks free_memory for room: once its own idle models
    are unloaded, the pack's least recently used pipeline goes, and only as many as needed."""
    mm = comfy_model_management
    older = local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sd15.safetensors")[0]
    newer = local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sdxl_base.safetensors")[0]
    assert pipeline_cache.cached_count() == 2, "making room for the second did not drop the first"
    older_weights, newer_unet = weights_of(older), weakref.ref(newer.pipe.unet)
    mm.get_free_memory_of = lambda device: 100 if pipeline_cache.cached_count() == 2 else 10**6
    cpu = torch.device("cpu")
    mm.own_models = ["comfy unet", "comfy clip"]  # ComfyUI loaded its own meanwhile
    assert mm.free_memory(1000, cpu, keep_loaded=["comfy unet"]) == ["comfy clip"]  # ComfyUI's own went first
    assert pipeline_cache.cached_count() == 1
    gc.collect()
    assert all(ref() is None for ref in older_weights) and newer_unet() is not None
    mm.free_memory(10**9, torch.device("cuda", 0))  # memory on another device: ours stay
    mm.free_memory(1000, cpu)  # enough is free now
    assert pipeline_cache.cached_count() == 1


@pytest.mark.parametrize("name", ["checkpoints/tiny-sd15.safetensors", "diffusers/tiny-sd15"])
def test_loading_asks_comfyui_to_make_room_for_the_weights(local_models, comfy_model_management, name):
    local_nodes.SDBridgeLoadCheckpoint().load(name)
    requests = [call for call in comfy_model_management.calls if call[0] == "free_memory"]
    pipe = next(iter(pipeline_cache._cache.values())).pipe
    parameters = sum(p.numel() for m in pipe.components.values() if isinstance(m, torch.nn.Module)
                     for p in m.parameters())
    assert len(requests) == 1 and requests[0][2] == "cpu"
    # fp32 on the CPU: four bytes a value (the files' buffers too), plus ComfyUI's inference reserve
    assert parameters * 4 + 1000 <= requests[0][1] <= parameters * 4 * 1.05 + 1000
    assert comfy_model_management.own_models == []


def test_a_folders_weight_variants_are_not_counted_twice(local_models, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(local_models["sd15"]["folder"], folder)
    plain = model_files.weights_bytes(str(folder), 4)
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    shutil.copy(unet, unet.with_name("diffusion_pytorch_model.fp16.safetensors"))
    (folder / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"x" * 10)
    assert model_files.weights_bytes(str(folder), 4) == plain
    assert model_files.weights_bytes(str(folder), 2) == plain // 2


def test_release_returns_the_memory_to_the_system(local_models, monkeypatch):
    trims = []
    monkeypatch.setattr(runtime, "_malloc_trim", lambda: trims.append)
    local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sd15.safetensors")
    assert pipeline_cache.release_pipelines() == 1 and trims == [0]
    assert pipeline_cache.release_pipelines() == 0 and trims == [0]  # nothing dropped, nothing to do


def test_a_retry_after_out_of_memory_starts_without_the_failed_attempt(local_models, monkeypatch):
    """Loading that runs out of memory empties the cache and tries again, once the failed
    attempt's half-loaded weights (held by its exception's frames) are gone."""
    local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sd15.safetensors")
    real_load, attempts = pipeline_cache._load_to_cpu, []

    def fails_once(*args):
        if not attempts:
            half_loaded = torch.zeros(1000)
            attempts.append(weakref.ref(half_loaded))
            raise torch.OutOfMemoryError("out of memory")
        attempts.append(attempts[0]() is None)
        return real_load(*args)

    monkeypatch.setattr(pipeline_cache, "_load_to_cpu", fails_once)
    local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sdxl_base.safetensors")
    assert attempts[1] is True and pipeline_cache.cached_count() == 1


# ---------------------------------------------------------------- an unload during a run

def _unload_from_another_thread(mm) -> None:
    """What the "Unload models" button does while a prompt runs: ComfyUI's unload, on the server's
    thread (bounded: the run must not make it wait for long)."""
    worker = threading.Thread(target=mm.unload_all_models)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()


def test_unload_models_during_an_img2img_run_waits_for_the_run_and_no_second_model_loads(
        local_models, comfy_model_management, monkeypatch):
    """A 2-image img2img run: "Unload models" arrives between the images. The run keeps the
    pipeline it holds (before: the second image loaded the model again, two UNets alive at
    once); the unload applies when the run ends."""
    handle = local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sd15.safetensors")[0]
    image = torch.rand((2, 64, 64, 3))
    expected = local_nodes.SDBridgeLocalImg2Img().generate(pipeline=handle, image=image, strength=0.5, **COMMON)[0]
    loads, unets, same, real_load, real_run = [], [], [], pipeline_cache._load, runs._run
    monkeypatch.setattr(pipeline_cache, "_load", lambda *args: loads.append(args) or real_load(*args))

    def run_then_unload(*args, **kwargs):
        pipe = next(arg for arg in args if hasattr(arg, "unet"))  # the diffusers pipeline this call runs
        if unets:
            same.append(unets[0]() is pipe.unet)
        unets.append(weakref.ref(pipe.unet))
        result = real_run(*args, **kwargs)
        if len(unets) == 1:
            _unload_from_another_thread(comfy_model_management)
            assert pipeline_cache.cached_count() == 1  # held by the run: not dropped yet
        return result

    monkeypatch.setattr(runs, "_run", run_then_unload)
    images = local_nodes.SDBridgeLocalImg2Img().generate(pipeline=handle, image=image, strength=0.5, **COMMON)[0]
    assert loads == [] and same == [True]  # one UNet for both images, none loaded again
    assert torch.equal(images, expected)
    assert pipeline_cache.cached_count() == 0  # the unload applied once the run ended
    gc.collect()
    assert all(ref() is None for ref in unets)


def test_an_unload_between_taking_a_pipeline_and_switching_loras_keeps_each_branch_its_own(
        local_models, comfy_model_management, monkeypatch):
    """Two branches on one model, one with a LoRA. An unload arrives after a run took its
    pipeline and before it switched LoRAs: the switch must act on the pipeline that runs (before:
    it loaded a fresh copy and switched that one, so the plain branch ran with the other's LoRA)."""
    handle = local_nodes.SDBridgeLoadCheckpoint().load("checkpoints/tiny-sd15.safetensors")[0]
    lora = local_nodes.SDBridgeLoadLoRA().apply(handle, lora_1="tiny-sd15-lora.safetensors", scale_1=1.0,
                                                lora_2="None", scale_2=1.0, lora_3="None", scale_3=1.0)[0]
    plain = local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=handle, **COMMON)[0]
    with_lora = local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=lora, **COMMON)[0]  # the LoRA is on now
    assert not torch.equal(plain, with_lora)
    real_activate, unloads = runs.activate_loras, []

    def unload_then_activate(*args, **kwargs):
        if not unloads:
            unloads.append(1)
            _unload_from_another_thread(comfy_model_management)
        return real_activate(*args, **kwargs)

    monkeypatch.setattr(runs, "activate_loras", unload_then_activate)
    again = local_nodes.SDBridgeLocalTxt2Img().generate(pipeline=handle, **COMMON)[0]
    assert unloads and torch.equal(again, plain)
    assert pipeline_cache.cached_count() == 0
